"""The geography experiment's finding logic and the `geography` verb on two small real stores."""

import numpy as np
import pandas as pd
import pytest

from analyze.cli import main
from analyze.geography.experiment import (
    finding_sentence,
    share_to_match,
    summarize,
    summary_markdown,
)
from analyze.results import collect
from extract.errors import UserError
from tests.test_probe_multilabel import CLASSES, domain_data, write_store


def fake_summary():
    rows = []
    curves = {"diverse": [0.30, 0.50, 0.55, 0.58, 0.60], "imagenet": [0.20, 0.30, 0.52, 0.56, 0.58]}
    for base, means in curves.items():
        for share, mean in zip([0.0, 0.1, 0.5, 0.9, 1.0], means):
            rows.append({"backbone": base, "n": 128, "share": share, "metric": "top5_accuracy_ds", "mean": mean,
                         "low": mean - 0.02, "high": mean + 0.02, "seeds": 5})
            # the second source's metric: higher for imagenet, counted by the share of the second source
            rows.append({"backbone": base, "n": 128, "share": share, "metric": "macro_ap_coco",
                         "mean": (0.4 if base == "imagenet" else 0.3) + 0.2 * (1 - share), "low": 0.0, "high": 1.0,
                         "seeds": 5})
    return pd.DataFrame(rows)


def test_share_to_match_reads_the_curves():
    result = share_to_match(fake_summary(), metric="top5_accuracy_ds", base="diverse", other="imagenet")
    assert result["reference"] == pytest.approx(0.50) and result["other_at_same_share"] == pytest.approx(0.30)
    assert result["share_needed"] == 0.5 and result["status"] == "holds"
    back = share_to_match(fake_summary(), metric="top5_accuracy_ds", base="imagenet", other="diverse")
    assert back["share_needed"] == 0.0 and back["status"] == "does not hold"
    coco = share_to_match(fake_summary(), metric="macro_ap_coco", base="imagenet", other="diverse", source_index=1)
    # imagenet at 10% COCO (share 0.9) has 0.42; diverse reaches 0.42 only with 90% COCO (share 0.1)
    assert coco["reference"] == pytest.approx(0.42) and coco["share_needed"] == pytest.approx(0.9)
    assert coco["status"] == "holds (overlapping intervals)"
    sentence = finding_sentence(result)
    assert "diverse with a share of 0.10 reaches 0.500" in sentence and "needs a share of 0.50" in sentence
    text = summary_markdown(fake_summary(), [result], metrics=["top5_accuracy_ds"])
    assert "| 0.10 | 0.500 [0.480, 0.520] | 0.300 [0.280, 0.320] |" in text
    with pytest.raises(UserError, match="no metric 'auc'"):
        share_to_match(fake_summary(), metric="auc", base="diverse", other="imagenet")
    with pytest.raises(UserError, match="lacks 'diverse' at share 0.3"):
        share_to_match(fake_summary(), metric="top5_accuracy_ds", base="diverse", other="imagenet", at_share=0.3)


def test_geography_verb_on_stores(tmp_path, capsys):
    paths = {}
    for base, shift in (("near", 0), ("far", 5)):
        for source, seed, income in (("street", 1, True), ("coco", 2, False)):
            x, meta = domain_data(400, seed=seed, shift=0 if source == "street" else 4, income=income)
            # the "far" base sees the street domain through a rotation that mixes the classes' directions
            if base == "far":
                x = (x.astype(np.float32) @ np.random.default_rng(shift).normal(size=(x.shape[1],) * 2) * 0.3
                     ).astype(np.float16)
            paths[base, source] = write_store(tmp_path / f"{base}-{source}.h5", x, meta, dataset=source).path
    out = tmp_path / "results"
    argv = ["geography", "--sources", "street,coco", "--classes", ",".join(CLASSES), "--shares", "0,0.1,0.5,0.9,1",
            "--n", "40", "--size", "60", "--seeds", "0,1", "--k", "2", "--Cs", "0.1,1", "--out", str(out)]
    for base in ("near", "far"):
        argv += ["--base", base, f"street={paths[base, 'street']}", f"coco={paths[base, 'coco']}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "top2_accuracy_street: near with a share of 0.10 reaches" in printed
    assert "macro_ap_coco: far with a share of 0.10" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["backbone"]) == {"near", "far"} and set(summary["share"]) == {0.0, 0.1, 0.5, 0.9, 1.0}
    assert {"top2_accuracy_street_income_bucket_1", "macro_ap_coco"} <= set(summary["metric"])
    assert (summary["seeds"] == 2).all()
    assert len(list(out.glob("*.json"))) == 20
    table = collect(out)
    assert (table["n_val"] == 12).all()  # 60 rows: 48 for training (40 kept), 12 for validation
    findings = pd.read_csv(out / "findings.csv")
    assert list(findings["metric"]) == ["top2_accuracy_street", "macro_ap_coco"]
    assert (out / "summary.md").read_text().startswith("# Geographic representation")


@pytest.mark.parametrize("argv, message", [
    (["--base", "near", "street=a.h5"], "needs one store per source ['street', 'coco']"),
    (["--base", "near", "street=a.h5", "mars=b.h5"], "'mars=b.h5' is not SOURCE=STORE"),
    (["--base", "near", "street=a.h5", "coco=b.h5", "--sources", "street"], "must name two different sources"),
    (["--base", "near", "street=a.h5", "coco=b.h5", "--test", "street=all"], "are 'all'; choose one of"),
    (["--base", "near", "street=a.h5", "coco=b.h5", "--test", "mars=unused"], "names the source 'mars'"),
])
def test_geography_verb_bad_bases(argv, message, capsys):
    base = ["geography", "--sources", "street,coco"] if "--sources" not in argv else ["geography"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_summarize_needs_domain_mix_rows():
    with pytest.raises(UserError, match="no domain-mix cells"):
        summarize(pd.DataFrame({"spec_kind": ["correlation"]}))
