"""Two avatar domains (style differs, tops shared) and the avatar geography experiment end to end (small)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from analyze.geography.avatars import AvatarGeographyConfig, run_avatar_experiment
from extract.datasets.avatars import AvatarAdapter
from extract.datasets.avatars.domains import (
    TOP_COLUMNS,
    domain_draws,
    render_domain,
    top_index,
)
from extract.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_domains_share_classes_and_differ_in_style(tmp_path):
    a = AvatarAdapter(render_domain(tmp_path / "a.h5", domain="a", n=24, size=32, seed=3))
    b = AvatarAdapter(render_domain(tmp_path / "b.h5", domain="b", n=24, size=32, seed=3))
    meta_a, meta_b = a.metadata(), b.metadata()
    assert list(meta_a.columns) == ["image_id", "path", "split", *TOP_COLUMNS, "domain_a"]
    assert (meta_a[list(TOP_COLUMNS)].sum(axis=1) == 1).all() and meta_a["domain_a"].eq(1).all()
    assert meta_b["domain_a"].eq(0).all()
    # corners are background: warm (red > blue) in domain a, cool (blue > red) in domain b
    corner_a = a.read_images()[:, :3, :3].reshape(-1, 3).astype(int).mean(axis=0)
    corner_b = b.read_images()[:, :3, :3].reshape(-1, 3).astype(int).mean(axis=0)
    assert corner_a[0] > corner_a[2] + 20 and corner_b[2] > corner_b[0] + 20
    again = AvatarAdapter(render_domain(tmp_path / "a2.h5", domain="a", n=24, size=32, seed=3))
    assert np.array_equal(again.read_images(), a.read_images())
    classes = top_index(domain_draws(0, "a", 4000))
    assert np.bincount(classes, minlength=8).min() > 400  # uniform over the eight tops
    with pytest.raises(UserError, match="unknown avatar domain 'c'"):
        render_domain(tmp_path / "c.h5", domain="c", n=24)
    with pytest.raises(UserError, match="n must be an integer >= 8"):
        render_domain(tmp_path / "c.h5", domain="a", n=4)


def test_avatar_experiment_end_to_end(tmp_path):
    config = AvatarGeographyConfig(n_pretrain=48, n_eval=80, epochs=1, shares=(0.0, 0.1, 0.9, 1.0), n=16,
                                   seeds=(0, 1), k=2, Cs=(0.1, 1.0))
    result = run_avatar_experiment(tmp_path, config, progress=False)
    table = result["table"]
    assert len(table) == 2 * 4 * 2 and set(table["backbone"]) == {"base-a", "base-b"}
    assert table["spec_kind"].eq("domain_mix").all() and table["n_train"].eq(16).all()
    summary = result["summary"]
    assert {"top2_accuracy_a", "top2_accuracy_b", "macro_ap_a", "macro_ap_b"} <= set(summary["metric"])
    assert (summary["seeds"] == 2).all()
    first, second = result["findings"]
    assert (first["metric"], first["base"], second["metric"], second["base"]) == (
        "top2_accuracy_a", "base-a", "top2_accuracy_b", "base-b")
    assert first["status"] in ("holds", "holds (overlapping intervals)", "does not hold")
    written = pd.read_csv(result["paths"]["findings"])
    assert list(written["metric"]) == ["top2_accuracy_a", "top2_accuracy_b"]
    # pretraining images are never finetuning or test images
    digests = {}
    for role in ("pretrain", "eval"):
        for path in (tmp_path / "avatars").glob(f"domain-*-{role}-*.h5"):
            images = AvatarAdapter(path).read_images()
            digests.setdefault(role, set()).update(hashlib.sha256(img.tobytes()).hexdigest() for img in images)
    assert len(digests["pretrain"]) == 96 and not digests["pretrain"] & digests["eval"]
    # a second run reuses every cache, base, store and record
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.suffix in (".h5", ".pt", ".json")}
    again = run_avatar_experiment(tmp_path, config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    pd.testing.assert_frame_equal(again["summary"], summary)


def test_config_checks():
    with pytest.raises(UserError, match="k=8 must be from 1 to 7"):
        AvatarGeographyConfig(k=8)
    with pytest.raises(UserError, match="must both be among the shares"):
        AvatarGeographyConfig(shares=(0.0, 0.1, 1.0))


def test_geography_avatars_verb(tmp_path, capsys):
    from analyze.cli import main

    argv = ["geography-avatars", "--work", str(tmp_path), "--n-pretrain", "48", "--n-eval", "80", "--epochs", "1",
            "--shares", "0,0.1,0.9,1", "--n", "16", "--seeds", "0,1", "--k", "3", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "top3_accuracy_a: base-a with a share of 0.10 reaches" in printed
    assert (tmp_path / "results" / "n16-k3" / "summary.md").is_file()
    assert main(argv[:-3] + ["--k", "8"]) == 2
    assert "k=8 must be from 1 to 7" in capsys.readouterr().err
