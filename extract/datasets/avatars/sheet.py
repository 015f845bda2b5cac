"""Drawing a labelled contact sheet (a grid of image tiles with text under each)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Short names printed under each tile for the attributes that are 1.
ABBREVIATIONS = {
    "dark_skin": "dark",
    "hat": "hat",
    "eyewear": "glasses",
    "facial_hair": "beard",
    "long_hair": "long",
    "blond_hair": "blond",
    "smiling": "smile",
    "raised_eyebrows": "brows",
    "closed_eyes": "closed",
    "blazer": "blazer",
    "dark_clothes": "darkclothes",
    "backdrop": "circle",
    "hoodie": "hoodie",
    "gray_hair": "grey",
    "eyepatch": "patch",
}
MIN_TILE = 112  # small renders are enlarged (nearest neighbour) so labels fit under them
LINE_HEIGHT = 11
PAD = 4


def tile_labels(rows: np.ndarray, names: Sequence[str]) -> list[list[str]]:
    """The abbreviations of the positive attributes of each row (``rows``: (k, len(names)))."""
    return [[ABBREVIATIONS.get(name, name) for name, value in zip(names, row) if value == 1] for row in rows]


def _wrap(words: list[str], width_chars: int) -> list[str]:
    lines, current = [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if current and len(candidate) > width_chars:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines or ["-"]


def draw_contact_sheet(images: np.ndarray, labels: list[list[str]], *, columns: int, title: str = "") -> Image.Image:
    """A grid of ``images`` ((k, H, W, 3) uint8) with each tile's words written under it."""
    k, height, width = images.shape[:3]
    scale = max(1, -(-MIN_TILE // width))
    tile_w, tile_h = width * scale, height * scale
    font = ImageFont.load_default()
    wrapped = [_wrap(words, max(8, tile_w // 6)) for words in labels]
    text_h = max(len(lines) for lines in wrapped) * LINE_HEIGHT + PAD
    columns = max(1, min(columns, k))
    grid_rows = -(-k // columns)
    header = LINE_HEIGHT + 2 * PAD if title else 0
    sheet = Image.new("RGB", (columns * (tile_w + PAD) + PAD, header + grid_rows * (tile_h + text_h + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), title, fill="black", font=font)
    for position, (image, lines) in enumerate(zip(images, wrapped)):
        x = PAD + (position % columns) * (tile_w + PAD)
        y = header + PAD + (position // columns) * (tile_h + text_h + PAD)
        sheet.paste(Image.fromarray(image).resize((tile_w, tile_h), Image.NEAREST), (x, y))
        for line_no, line in enumerate(lines):
            draw.text((x + 1, y + tile_h + 2 + line_no * LINE_HEIGHT), line, fill="black", font=font)
    return sheet
