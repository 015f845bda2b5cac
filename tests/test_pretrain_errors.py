"""Bad input to pretraining: one-sentence UserErrors before any training."""

import numpy as np
import pytest
import torch

from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.pretrain.train import write_base, write_scratch_base
from pretraining import pretrain


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("err") / "pretrain.h5", spec=RenderSpec(n=60, size=32, seed=9, preset="independent", signal_sample=1), workers=1, progress=False)
    return AvatarAdapter(path)


def _fit(adapter, **kw):
    options = dict(attributes=["dark_skin"], arch_kwargs={"width": 4}, epochs=1, batch_size=16, seed=0,
                   device="cpu", progress=False)
    options.update(kw)
    return pretrain(adapter, **options)


@pytest.mark.parametrize("kw, fragment", [
    ({"attributes": ["dark_skn"]}, "did you mean dark_skin"),
    ({"attributes": []}, "no pretraining attribute"),
    ({"attributes": ["hat", "hat"]}, "repeat"),
    ({"arch": "resnet9"}, "unknown architecture"),
    ({"arch_kwargs": {"depth": 3}}, "does not accept"),
    ({"epochs": 0}, "`epochs` must be"),
    ({"batch_size": 2.5}, "`batch_size` must be"),
    ({"lr": float("nan")}, "`lr` must be"),
    ({"val_fraction": 1.0}, "`val_fraction` must be below 1"),
    ({"schedule": "step"}, "unknown learning-rate schedule"),
    ({"rows": np.array([0, 0, 1])}, "distinct positions"),
    ({"rows": np.ones(60, dtype=bool)}, "np.flatnonzero"),
    ({"rows": np.array([5, 999])}, "distinct positions"),
    ({"device": "tpu"}, "device"),
])
def test_bad_options(adapter, kw, fragment):
    with pytest.raises(UserError, match=fragment):
        _fit(adapter, **kw)


def test_single_class_in_rows(adapter):
    light = np.flatnonzero(adapter.metadata()["dark_skin"].to_numpy() == 0)
    with pytest.raises(UserError, match="single class"):
        _fit(adapter, rows=light)
    _fit(adapter, rows=light, attributes=["long_hair"], val_fraction=0.0)  # the same rows work for a varying label


def test_unwritable_output(adapter, tmp_path):
    model, history = _fit(adapter, val_fraction=0.0)
    assert set(history["final"]) == {"train"} and "val" not in history["epochs"][0]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write"):
        write_base(blocker / "base.pt", model, history=history, name="x")
    with pytest.raises(UserError, match="is a folder"):
        write_base(tmp_path, model, history=history, name="x")
    with pytest.raises(UserError, match="cannot write"):
        write_scratch_base(blocker / "scratch.pt", image_size=32)
    with pytest.raises(UserError, match="unknown architecture"):
        write_scratch_base(tmp_path / "s.pt", arch="vgg", image_size=32)


def test_errors_do_not_leave_determinism_switched_on(adapter):
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(UserError):
        _fit(adapter, attributes=["nosuch"])
    assert torch.are_deterministic_algorithms_enabled() == before
