"""The scratch salience defaults fit the work: early stopping, 32 px on image files, the expected time in --help."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import analyze.finetune.data as finetune_data
from analyze.cli import main
from analyze.finetune.train import FinetuneNet, RunSettings, train_run
from analyze.salience.fit import SCRATCH_CONFIG, SCRATCH_IMAGE_SIZE, ScratchConfig
from analyze.salience import SalienceConfig
from analyze.salience.table import salience_table
from extract.backbones import create_backbone
from extract.datasets import get_adapter
from extract.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_training_stops_after_patience_epochs_without_improvement():
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=rng)
    y = (torch.rand(32, generator=rng) > 0.5).float()  # noise: validation loss soon stops falling
    backbone = create_backbone("smallcnn.scratch", image_size=16)
    results = {}
    for patience in (0, 1):
        net = FinetuneNet(backbone.model, backbone.feature_dim, backbone.preprocess, seed=0)
        settings = RunSettings(lr=0.5, weight_decay=0.0, epochs=12, batch_size=8, patience=patience)
        results[patience] = train_run(net, x[:16], y[:16], x[16:], y[16:], settings=settings, seed=0,
                                      device=torch.device("cpu"))
    assert len(results[0].val_curve) == 12
    stopped = results[1]
    assert len(stopped.val_curve) == stopped.best_epoch + 1 < 12  # one epoch past the best, then stop
    assert stopped.state is not None


def test_the_default_protocol_stops_early():
    assert SCRATCH_CONFIG.patience == 2 and SCRATCH_CONFIG.epochs == 6
    assert all(s.patience == 2 for s in SCRATCH_CONFIG.settings())
    with pytest.raises(UserError, match="patience must be an integer >= 0"):
        ScratchConfig(patience=-1)


def test_scratch_on_image_files_trains_at_32_px(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    lines = ["path,split,y,s"]
    for i in range(96):
        Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
        lines.append(f"imgs/{i}.png,{['train', 'val', 'test'][i % 3]},{i % 2},{(i // 2) % 2}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    sizes = []
    from_adapter = finetune_data.ImageBank.from_adapter.__func__

    def spy(cls, adapter, preprocess, rows=None, **kwargs):
        sizes.append(preprocess.crop)
        return from_adapter(cls, adapter, preprocess, rows, **{**kwargs, "num_workers": 0})

    monkeypatch.setattr(finetune_data.ImageBank, "from_adapter", classmethod(spy))
    table = salience_table(["y"], "s", adapter=get_adapter("manifest", tmp_path), config=SalienceConfig(
        method="scratch", replicates=1, device="cpu",
        training=ScratchConfig(lrs=(0.05,), weight_decays=(0.0,), epochs=1)))
    assert sizes == [SCRATCH_IMAGE_SIZE] == [32] and len(table) == 1


def test_help_shows_the_expected_time(capsys):
    with pytest.raises(SystemExit):
        main(["salience", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "expect about a minute per target per 2,000 images on one CPU core at the defaults" in text
    assert "early stopping" in text and "32 px" in text
