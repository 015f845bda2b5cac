"""Two avatar *domains* that differ in style, with a shared multi-class target (the top).

The geographic-representation experiment (Wang & Russakovsky's GeoDE vs ImageNet bases
finetuned on Dollar Street + COCO mixes) needs two image domains that show the same classes
in different styles. Here the classes are eight *top types* (four hats, two long and two
short hair styles; :data:`TOPS`), drawn uniformly; the domains differ only in style:

- ``a``: warm backgrounds (hues 0-0.12), formal clothes (blazers, collar sweater) in warm
  or dark colours, warm hat colours;
- ``b``: cool backgrounds (hues 0.48-0.68), casual clothes (hoodie, overall, graphic and
  crew-neck shirts) in blue, green or grey, cool hat colours.

Everything else (skin tone, hair colour, eyewear, facial hair, mouth, eyes, eyebrows,
clothing graphic, jitter) is a nuisance drawn identically in both domains. A cache holds
one-hot target columns ``top_<name>`` (one 1 per row, so a set of binary probes is a
multi-class model scored by top-k accuracy) and ``domain_a`` (1 in domain ``a``), in the
avatar cache format that :class:`extract.datasets.avatars.AvatarAdapter` reads. Images are a
function of the seed, the domain and the index only.
"""

from __future__ import annotations

import colorsys
import io
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import python_avatars as pa
import resvg_py
from PIL import Image
from tqdm.auto import tqdm

from extract.datasets.avatars.render import (
    _SVG_ROOT,
    BLOND,
    CLOSED_EYES,
    DARK_SKIN,
    EYEWEAR,
    FACIAL_HAIR,
    GRAPHICS,
    JITTER,
    LIGHT_SKIN,
    NOT_BLOND,
    NOT_SMILING,
    OPEN_EYES,
    OTHER_EYEBROWS,
    RAISED_EYEBROWS,
    SMILING,
    WINDOW,
    WINDOW_ORIGIN,
)
from extract.datasets.avatars.spec import assign_splits
from extract.errors import UserError
from extract.io import atomic_write

# The eight classes: distinct silhouettes at 32 px, none hiding the face.
TOPS = {
    "hat": pa.HatType.HAT,
    "turban": pa.HatType.TURBAN,
    "winter_hat": pa.HatType.WINTER_HAT_1,
    "chef_cap": pa.HatType.CHEF_CAP,
    "bob": pa.HairType.BOB,
    "big_hair": pa.HairType.BIG_HAIR,
    "mohawk": pa.HairType.MOHAWK,
    "short_flat": pa.HairType.SHORT_FLAT,
}
TOP_COLUMNS = tuple(f"top_{name}" for name in TOPS)
DOMAIN_COLUMN = "domain_a"
C = pa.ClothingColor


@dataclass(frozen=True)
class DomainStyle:
    """What differs between the domains: background hues, clothing and its colours, hat colours."""

    hue_range: tuple[float, float]
    clothing: tuple
    clothing_colors: tuple
    hat_colors: tuple


DOMAINS = {
    "a": DomainStyle(hue_range=(0.0, 0.12),
                     clothing=(pa.ClothingType.BLAZER_SHIRT, pa.ClothingType.BLAZER_SWEATER,
                               pa.ClothingType.COLLAR_SWEATER),
                     clothing_colors=(C.RED, C.PINK, C.PASTEL_ORANGE, C.PASTEL_YELLOW, C.BLACK, C.HEATHER),
                     hat_colors=(C.RED, C.PINK, C.PASTEL_ORANGE, C.PASTEL_YELLOW)),
    "b": DomainStyle(hue_range=(0.48, 0.68),
                     clothing=(pa.ClothingType.HOODIE, pa.ClothingType.OVERALL, pa.ClothingType.GRAPHIC_SHIRT,
                               pa.ClothingType.SHIRT_CREW_NECK),
                     clothing_colors=(C.BLUE_01, C.BLUE_02, C.BLUE_03, C.PASTEL_BLUE, C.PASTEL_GREEN, C.GRAY_01),
                     hat_colors=(C.BLUE_01, C.BLUE_02, C.PASTEL_BLUE, C.PASTEL_GREEN)),
}
# Named uniform draws of one image, in draw order (never reorder: it changes every image).
FIELDS = ("top", "skin_group", "skin", "hair_color", "blond", "eyewear_on", "eyewear", "beard_on", "beard",
          "mouth", "eyes", "eyebrows", "clothing", "clothing_color", "hat_color", "graphic", "bg_hue",
          "bg_saturation", "bg_value", "shift_x", "shift_y")
STREAM_DOMAIN_IMAGES = 10  # the avatar streams 0-4 are taken (extract.datasets.avatars.spec)
FORMAT, FORMAT_VERSION = "biastransfer-avatars", 1


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _check_domain(domain: str) -> DomainStyle:
    if domain not in DOMAINS:
        raise UserError(f"unknown avatar domain {domain!r}; choose one of {sorted(DOMAINS)}.")
    return DOMAINS[domain]


def domain_draws(seed: int, domain: str, n: int) -> np.ndarray:
    """The uniforms of ``n`` images of ``domain``: shape (n, len(FIELDS)), one row per image."""
    stream = STREAM_DOMAIN_IMAGES + sorted(DOMAINS).index(domain)
    return np.stack([np.random.default_rng([seed, stream, i]).random(len(FIELDS)) for i in range(n)]) if n else \
        np.empty((0, len(FIELDS)))


def top_index(draws: np.ndarray) -> np.ndarray:
    """The class (index into :data:`TOPS`) of each image, uniform over the eight tops."""
    return np.minimum((draws[:, FIELDS.index("top")] * len(TOPS)).astype(np.int64), len(TOPS) - 1)


def render_domain_avatar(domain: str, draw: np.ndarray, *, size: int) -> np.ndarray:
    """Rasterise one image of ``domain`` from its uniforms; (size, size, 3) uint8."""
    style = _check_domain(domain)
    d = dict(zip(FIELDS, map(float, draw)))
    hair_color = _pick(BLOND if d["blond"] < 0.3 else NOT_BLOND, d["hair_color"])
    avatar = pa.Avatar(
        style=pa.AvatarStyle.TRANSPARENT,
        top=_pick(list(TOPS.values()), d["top"]),
        hat_color=_pick(style.hat_colors, d["hat_color"]),
        eyebrows=_pick(RAISED_EYEBROWS + OTHER_EYEBROWS, d["eyebrows"]),
        eyes=_pick(OPEN_EYES + CLOSED_EYES, d["eyes"]),
        nose=pa.NoseType.DEFAULT,
        mouth=_pick(SMILING + NOT_SMILING, d["mouth"]),
        facial_hair=_pick(FACIAL_HAIR, d["beard"]) if d["beard_on"] < 0.25 else pa.FacialHairType.NONE,
        skin_color=_pick(DARK_SKIN if d["skin_group"] < 0.5 else LIGHT_SKIN, d["skin"]),
        hair_color=hair_color,
        facial_hair_color=hair_color,
        accessory=_pick(EYEWEAR, d["eyewear"]) if d["eyewear_on"] < 0.3 else pa.AccessoryType.NONE,
        clothing=_pick(style.clothing, d["clothing"]),
        clothing_color=_pick(style.clothing_colors, d["clothing_color"]),
        shirt_graphic=_pick(GRAPHICS, d["graphic"]),
    )
    svg = avatar.render()
    if _SVG_ROOT not in svg:
        raise RuntimeError("python_avatars returned an SVG with an unexpected canvas; pin python-avatars 1.4.")
    x0 = WINDOW_ORIGIN[0] + JITTER * (2 * d["shift_x"] - 1)
    y0 = WINDOW_ORIGIN[1] + JITTER * (2 * d["shift_y"] - 1)
    window = f'width="{WINDOW}px" height="{WINDOW}px" viewBox="{x0:.3f} {y0:.3f} {WINDOW} {WINDOW}"'
    svg = svg.replace(_SVG_ROOT, window, 1)
    low, high = style.hue_range
    rgb = colorsys.hsv_to_rgb(low + (high - low) * d["bg_hue"], 0.25 + 0.4 * d["bg_saturation"],
                              0.6 + 0.35 * d["bg_value"])
    background = "#{:02X}{:02X}{:02X}".format(*(round(255 * c) for c in rgb))
    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, background=background,
                                skip_system_fonts=True)
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def render_domain(out: str | Path, *, domain: str, n: int, size: int = 32, seed: int = 0,
                  progress: bool = False) -> Path:
    """Render ``n`` images of ``domain`` into an avatar cache ``out`` (written atomically).

    Parameters
    ----------
    out : path
        The cache file; :class:`extract.datasets.avatars.AvatarAdapter` reads it.
    domain : {"a", "b"}
    n : int
        Number of images (>= 8).
    size : int, default 32
        Image side in pixels, 32 to 128.
    seed : int, default 0
        Seed of every choice (images, classes, the 60/20/20 split).
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    Path
        ``out``.
    """
    _check_domain(domain)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 8:
        raise UserError(f"n must be an integer >= 8 (got {n!r}).")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 32 <= size <= 128:
        raise UserError(f"size must be an integer between 32 and 128 (got {size!r}).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be an integer >= 0 (got {seed!r}).")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    draws = domain_draws(seed, domain, n)
    classes = top_index(draws)
    with atomic_write(out, hint="choose a writable cache path") as tmp, h5py.File(tmp, "w") as h5:
        images = h5.create_dataset("images", shape=(n, size, size, 3), dtype=np.uint8)
        for i in tqdm(range(n), desc=f"render domain {domain}", unit="img", disable=not progress, leave=False):
            images[i] = render_domain_avatar(domain, draws[i], size=size)
        group = h5.create_group("metadata")
        ids = np.array([f"{domain}_{i:06d}" for i in range(n)])
        group.create_dataset("image_id", data=np.char.encode(ids, "ascii"))
        group.create_dataset("path", data=np.char.encode(np.char.add(ids, ".png"), "ascii"))
        group.create_dataset("split", data=np.char.encode(assign_splits(n, seed=seed).astype(str), "ascii"))
        for k, column in enumerate(TOP_COLUMNS):
            group.create_dataset(column, data=(classes == k).astype(np.int8))
        group.create_dataset(DOMAIN_COLUMN, data=np.full(n, int(domain == "a"), np.int8))
        group.attrs["columns"] = json.dumps(["image_id", "path", "split", *TOP_COLUMNS, DOMAIN_COLUMN])
        h5.attrs["generator"] = json.dumps({
            "kind": "domains", "domain": domain, "n": int(n), "size": int(size), "seed": int(seed),
            "sensitive_attribute": DOMAIN_COLUMN, "targets": list(TOP_COLUMNS), "preset": f"domain-{domain}",
            "style": {"hue_range": DOMAINS[domain].hue_range,
                      "clothing": [c.name for c in DOMAINS[domain].clothing],
                      "clothing_colors": [c.name for c in DOMAINS[domain].clothing_colors],
                      "hat_colors": [c.name for c in DOMAINS[domain].hat_colors]},
            "versions": {pkg: version(pkg) for pkg in ("python-avatars", "resvg-py", "numpy")}})
        h5.attrs["signal_strength"] = json.dumps({})
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["format"] = FORMAT
    return out


__all__ = ["DOMAINS", "DOMAIN_COLUMN", "TOPS", "TOP_COLUMNS", "DomainStyle", "domain_draws", "render_domain",
           "render_domain_avatar", "top_index"]
