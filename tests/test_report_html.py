"""The report's HTML page: self-contained, tables and figures in the DOM, all text escaped, atomic writes.

:func:`report_inputs` (a probe + full-finetune table, a salience table and a plan) is imported
by the other report tests.
"""

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyze.report.build import build_report, plan_table, sweep_summary
from analyze.report.findings import FindingOptions
from analyze.report.document import (
    Bullets,
    Heading,
    Paragraph,
    Table,
    table_from_frame,
    to_html,
    to_markdown,
)
from extract.errors import UserError
from tests.test_effects_table import synthetic_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report_inputs(*, runners=("probe", "finetune"), n_targets=3):
    """(results, salience, plan): two runners of the planted synthetic sweep at n = 1024."""
    parts = []
    for i, runner in enumerate(runners):
        part = synthetic_results(n_targets=n_targets, seeds=3, sizes=(1024,), runner=runner, random_state=i)
        parts.append(part.assign(cell_id=runner + "-" + part["cell_id"]))
    results = pd.concat(parts, ignore_index=True)
    targets = sorted(results["target"].unique())
    truth = np.linspace(0.2, 1.5, len(targets))
    salience = pd.DataFrame({"target": targets, "sensitive": "s", "salience": truth / 3, "ci_low": truth / 3 - 0.05,
                             "ci_high": truth / 3 + 0.05, "true_log_ratio": truth})
    plan = pd.DataFrame({"backbone": ["biased_net"], "target": [targets[0]], "move": [0.2], "gap_ratio": [0.48],
                         "auc_cost": [0.012]})
    return results.drop(columns=["salience"]), salience, plan


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results, salience, plan = report_inputs()
    md_path, html_path = build_report(results, out_dir=out, salience=salience, plan=plan, title="Test <report>")
    return out, md_path, html_path


def test_page_is_self_contained(report):
    _, _, html_path = report
    page = html_path.read_text(encoding="utf-8")
    dom = parse(page)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(dom.tags)
    for tag, name, value in dom.attrs:
        if name in ("src", "srcset", "poster", "data", "action", "formaction"):
            assert value.startswith("data:image/png;base64,"), (tag, name, value[:60])
        if name == "href":
            assert value.startswith("#"), (tag, value)
    assert "url(" not in page and "@import" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//|file:)", page)
    assert "default-src 'none'" in page  # the CSP forbids fetching anything else


def test_figures_are_inline_pngs_of_the_written_files(report):
    out, _, html_path = report
    dom = parse(html_path.read_text(encoding="utf-8"))
    images = [value for tag, name, value in dom.attrs if tag == "img" and name == "src"]
    # per runner: correlation, trade-off, three coefficient plots (paper, general, moderation); plus salience
    # and the forest plot of the findings
    assert len(images) == 12
    pngs = {p.read_bytes() for p in (out / "figures").glob("*.png")}
    for src in images:
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_MAGIC) and data in pngs


def test_tables_and_sections_are_in_the_dom(report):
    _, _, html_path = report
    dom = parse(html_path.read_text(encoding="utf-8"))
    text = " ".join(dom.text)
    assert dom.tags.count("table") >= 10  # sweep, comparison, 2 x bias-per-level, 2 x 2 models x 2 fits, ...
    assert dom.tags.count("figure") == 12 and dom.tags.count("figcaption") == 12
    for heading in ("The sweep", "Findings", "Linear probes beside full finetuning",
                    "Results: linear probes on frozen features", "Results: full finetuning", "Salience",
                    "Curation plan", "The paper's model", "General model"):
        assert heading in text, heading
    for term in ("Saliency", "Skew", "base[T.biased]:correlation_strength"):
        assert term in text


def test_markdown_links_the_figures_and_holds_the_same_findings(report):
    out, md_path, html_path = report
    markdown = md_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 12 and all((out / link).is_file() for link in links)
    findings = markdown.split("## Findings")[1].split("\n## ")[0]
    bullets = [line[2:] for line in findings.splitlines() if line.startswith("- ")]
    page = html.unescape(html_path.read_text(encoding="utf-8"))
    assert bullets and all(b in page for b in bullets)
    assert not list(out.rglob("*.partial"))


def test_effect_tables_are_written_next_to_the_report(report):
    out = report[0]
    written = {p.name for p in (out / "effects").iterdir()}
    for runner in ("probe", "finetune"):
        assert {f"{runner}-paper.csv", f"{runner}-paper.md", f"{runner}-paper.tex", f"{runner}-paper_rows.csv",
                f"{runner}-general.csv"} <= written


def test_every_text_from_the_data_is_escaped(tmp_path):
    results, _, _ = report_inputs(runners=("probe",))
    evil = '<script>alert("x")</script>'
    results["target"] = results["target"].replace({"attr00": evil})
    results["backbone"] = results["backbone"].replace({"ctrl_c": "ctrl<b>&c"})
    _, html_path = build_report(results, out_dir=tmp_path, title="<i>title</i>")
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<i>" not in page and "ctrl<b>" not in page
    assert html.escape(evil) in page and "ctrl&lt;b&gt;&amp;c" in page and "&lt;i&gt;title&lt;/i&gt;" in page


def test_document_renderers_on_hand_blocks(tmp_path):
    blocks = [Heading("Title", 1), Heading("A & B", 2), Paragraph("x < y"), Bullets(("one", "two | three")),
              Table(("name", "value"), (("a|b", "0.1 [0.0, 0.2]"),), caption="cap")]
    page = to_html(blocks, title="T")
    assert '<h2 id="a-b">A &amp; B</h2>' in page and '<a href="#a-b">' in page
    assert "<p>x &lt; y</p>" in page and '<td class="num">0.1 [0.0, 0.2]</td>' in page
    markdown = to_markdown(blocks, relative_to=tmp_path)
    assert "| a\\|b | 0.1 [0.0, 0.2] |" in markdown and "|---|---:|" in markdown and "- two | three" in markdown


def test_table_from_frame_formats_numbers_and_missing_values():
    table = table_from_frame(pd.DataFrame({"a": [0.123456789, np.nan], "b": ["x", None]}))
    assert table.rows == (("0.1235", "x"), ("", ""))


def test_sweep_summary_counts():
    results, _, _ = report_inputs()
    summary = dict(sweep_summary(results).rows)
    assert summary["cells"] == str(len(results))
    assert f"(probe): {len(results) // 2} cells" in summary["runners"]
    assert summary["targets"].startswith("3: ") and summary["seeds"] == "3: 0, 1, 2"
    assert "biased_net (biased)" in summary["bases (kind)"]


def test_bad_inputs_raise_one_sentence_and_write_nothing(tmp_path):
    results, _, _ = report_inputs(runners=("probe",))
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "missing.csv", out_dir=tmp_path / "a")
    with pytest.raises(UserError, match="'fpr_gap_stereotype'"):
        build_report(results.drop(columns=["fpr_gap_stereotype"]), out_dir=tmp_path / "b")
    with pytest.raises(UserError, match=r"runner\(s\) \['finetune'\]"):
        build_report(results, out_dir=tmp_path / "c", options=FindingOptions(runners=("finetune",)))
    with pytest.raises(UserError, match="no rows"):
        build_report(results.iloc[0:0], out_dir=tmp_path / "d")
    assert not any(Path(tmp_path / d).exists() for d in "abcd")


def test_plan_intervals_are_merged_into_one_column():
    plan = pd.DataFrame({"backbone": ["b", "c"], "move": [0.2, np.nan], "move_low": [0.1, np.nan],
                         "move_high": [0.3, np.nan], "status": ["ok", "the gap does not halve"]})
    shown = plan_table(plan)
    assert list(shown.columns) == ["backbone", "move [95% CI]", "status"]
    assert list(shown["move [95% CI]"]) == ["0.200 [0.100, 0.300]", ""]


def test_a_plan_from_the_planner_is_rendered(tmp_path):
    planner = pytest.importorskip("analyze.curation")
    results, _, _ = report_inputs(runners=("probe",))
    plan = planner.plan_curation(results, intervals=planner.IntervalConfig(n_boot=20, random_state=0))
    md_path, _ = build_report(results, out_dir=tmp_path, plan=plan)
    section = md_path.read_text(encoding="utf-8").split("\n## Curation plan")[1]
    assert "move [95% CI]" in section and "auc_cost [95% CI]" in section
    assert f"for {(plan['status'] == 'ok').sum()} of {len(plan)} (base, target) rows" in md_path.read_text()
