"""The report page rendered in headless Chromium: the DOM keeps its tables and figures, the pixels show them.

Skipped when no ``chromium`` binary is on the PATH. Chromium runs with no network services,
no profile of its own (a temporary ``--user-data-dir``) and a tall window so the first
figures are inside the screenshot. The page's CSS is neutral grey, so strongly coloured pixels
can only come from the (colour-palette) figures: counting them checks that the inline PNGs
decoded and were painted, not merely that the ``<img>`` elements exist.
"""

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
    assert counter.counts.get("table", 0) >= 5 and counter.counts.get("figure", 0) == 6
    assert len(counter.images) == 6 and all(src.startswith("data:image/png;base64,") for src in counter.images)


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
