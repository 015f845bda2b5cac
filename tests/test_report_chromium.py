"""The report page rendered in headless Chromium: the DOM keeps its tables and figures, the pixels show them.

Skipped when no ``chromium`` binary is on the PATH. Chromium runs with no network services,
no profile of its own (a temporary ``--user-data-dir``) and a tall window so the first
figures are inside the screenshot. The page's CSS is neutral grey, so strongly coloured pixels
can only come from the (colour-palette) figures: counting them checks that the inline PNGs
decoded and were painted, not merely that the ``<img>`` elements exist.
"""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from analyze.report.build import build_report
from tests.test_report_html import report_inputs

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on the PATH")
WINDOW = (1280, 7000)
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def _chromium(args, tmp_path, *, timeout=120):
    command = [CHROMIUM, *QUIET, f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Counter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.counts, self.images = {}, []

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("chromium-report")
    results, salience, _ = report_inputs(runners=("probe",))
    _, html_path = build_report(results, out_dir=out, salience=salience)
    return html_path


def test_rendered_dom_has_tables_and_inline_figures(page, tmp_path):
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    counter = _Counter()
    counter.feed(dom)
    assert counter.counts.get("table", 0) >= 5 and counter.counts.get("figure", 0) == 7
    assert len(counter.images) == 7 and all(src.startswith("data:image/png;base64,") for src in counter.images)


def test_screenshot_shows_the_page_and_its_figures(page, tmp_path):
    shot = tmp_path / "page.png"
    _chromium([f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", page.as_uri()], tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert pixels.std() > 10  # not a blank page
    dark = (pixels.max(axis=2) < 100).mean()
    colourful = ((pixels.max(axis=2) - pixels.min(axis=2)) > 80).mean()
    assert dark > 0.002  # text and table rules were painted
    assert colourful > 0.001  # the figures' coloured lines and bands were painted


def test_a_page_without_figures_has_no_colour(page, tmp_path):
    """The control for the colour check above: the same page with its images removed."""
    stripped = tmp_path / "stripped.html"
    text = page.read_text(encoding="utf-8")
    while "<figure>" in text:
        start = text.index("<figure>")
        text = text[:start] + text[text.index("</figure>", start) + len("</figure>"):]
    stripped.write_text(text, encoding="utf-8")
    shot = tmp_path / "stripped.png"
    _chromium([f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", stripped.as_uri()], tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert ((pixels.max(axis=2) - pixels.min(axis=2)) > 80).mean() < 0.0005


FIRST_SCREEN = (1280, 900)
MAX_ITEM_WORDS = 40
# Appended to a copy of the page (its CSP forbids scripts; the copy drops it): where the findings
# table and the first bulleted list are laid out, written into the DOM that --dump-dom returns.
PROBE = """<script>
const table = document.querySelector("table.findings");
const lists = [...document.querySelectorAll("ul")].filter(u => !u.closest("nav"));
const first = lists.length ? lists[0] : null;
document.body.setAttribute("data-table-top", table ? table.getBoundingClientRect().top : -1);
document.body.setAttribute("data-table-before-lists",
  table && first ? String(!!(table.compareDocumentPosition(first) & Node.DOCUMENT_POSITION_FOLLOWING)) : "none");
document.body.setAttribute("data-toc-after-table", String(!!(table.compareDocumentPosition(
  document.querySelector("nav")) & Node.DOCUMENT_POSITION_FOLLOWING)));
</script>"""


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    """A demo-shaped report: both runners, five bases of every kind, salience and a curation plan."""
    from tests.test_report_html import report_inputs

    out = tmp_path_factory.mktemp("chromium-demo")
    results, salience, plan = report_inputs()
    _, html_path = build_report(results, out_dir=out, salience=salience, plan=plan,
                                title="biastransfer demo: bias transfer on procedural avatars")
    return html_path


def _layout(page, tmp_path) -> dict:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace("</body>", PROBE + "</body>")
    probe = tmp_path / "probe.html"
    probe.write_text(text, encoding="utf-8")
    dom = _chromium([f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}", "--dump-dom", probe.as_uri()], tmp_path)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))


def test_the_findings_table_is_on_the_first_screen_before_any_list(demo_page, tmp_path):
    layout = _layout(demo_page, tmp_path)
    assert 0 <= float(layout["table-top"]) < FIRST_SCREEN[1] - 100  # its header and first rows are visible
    assert layout["table-before-lists"] == "true" and layout["toc-after-table"] == "true"
    page = demo_page.read_text(encoding="utf-8")
    table = page[page.index('<table class="findings">'):]
    table = table[:table.index("</table>")]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert "difference" in header and "95% interval" in header
    assert page.index('<table class="findings">') < page.index("<ul>")


def test_no_list_item_in_the_findings_is_longer_than_40_words(demo_page):
    page = demo_page.read_text(encoding="utf-8")
    section = page[page.index('id="findings"'):]
    section = section[:section.index("<h2", 10)]
    items = [re.sub(r"<[^>]+>", "", item) for item in re.findall(r"<li>(.*?)</li>", section, flags=re.S)]
    assert items and all(len(item.split()) <= MAX_ITEM_WORDS for item in items), max(items, key=len)
