"""Rendering one procedural avatar from its binary attributes and nuisance draws.

An avatar is fully described by two things:

- its **attributes**, a mapping ``name -> 0/1`` over :data:`ATTRIBUTES` (the sensitive
  attribute ``dark_skin`` and the targets), which pick a *class* of avatar parts
  (e.g. ``eyewear=1`` -> one of the glasses);
- its **nuisance draws**, a vector of uniforms in [0, 1) drawn from the image's own RNG,
  which pick the part *within* that class, the colours and a small positional jitter.

Because the nuisance draws never depend on the attributes, toggling one attribute while
keeping the draws fixed changes exactly that attribute ("all else equal"), which is how
the ground-truth signal strength is measured.

Faces are drawn by ``python_avatars`` (SVG) and rasterised by ``resvg_py`` (cairosvg drops
the skin colour, which python_avatars applies through an SVG mask), then the alpha channel
is removed by compositing onto an opaque background colour.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Mapping, Sequence

import numpy as np
import python_avatars as pa
import resvg_py
from PIL import Image

SENSITIVE = "dark_skin"

# Skin-tone groups of python_avatars' SkinColor enum; TANNED (a saturated orange) is left
# out so that the two groups differ in lightness, not in hue. Index k of one group is
# paired with index k of the other when the attribute is toggled.
DARK_SKIN = (pa.SkinColor.BROWN, pa.SkinColor.DARK_BROWN, pa.SkinColor.BLACK)
LIGHT_SKIN = (pa.SkinColor.PALE, pa.SkinColor.LIGHT, pa.SkinColor.YELLOW)

# Headwear that leaves the glasses and facial-hair slots in place. HIJAB has no glasses
# slot; JEDI and GLADIATOR_HELMET hide the face.
HATS = (
    pa.HatType.HAT,
    pa.HatType.TURBAN,
    pa.HatType.WINTER_HAT_1,
    pa.HatType.WINTER_HAT_2,
    pa.HatType.WINTER_HAT_3,
    pa.HatType.WINTER_HAT_4,
    pa.HatType.CHEF_CAP,
)
# Hair reaching the jaw or below. LONG_HAIR_CURLY, LOOSE_HAIR and CURLY_2 lack the glasses
# or facial-hair slot, STRAIGHT_2 ignores the hair colour: all left out.
LONG_HAIR = (
    pa.HairType.BIG_HAIR,
    pa.HairType.BOB,
    pa.HairType.CURVY,
    pa.HairType.DREADS,
    pa.HairType.LONG_NOT_TOO_LONG,
    pa.HairType.MIA_WALLACE,
    pa.HairType.STRAIGHT_1,
    pa.HairType.STRAIGHT_STRAND,
    pa.HairType.TWIST_LONG_HAIR,
    pa.HairType.TWIST_LONG_HAIR_2,
)
# Hair above the ears. Ambiguous lengths (FRO, CURLY, SHAGGY_MULLET, WILD, ...), bald
# (no hair colour) and costume-like tops (ASTRONAUT, FRIDA's flowers) are left out.
SHORT_HAIR = (
    pa.HairType.BUN,
    pa.HairType.CAESAR_SIDE_PART,
    pa.HairType.CAESAR,
    pa.HairType.FRIZZLE,
    pa.HairType.SHAGGY,
    pa.HairType.SHORT_CURLY,
    pa.HairType.SHORT_DREADS_1,
    pa.HairType.SHORT_DREADS_2,
    pa.HairType.SHORT_FLAT,
    pa.HairType.SHORT_ROUND,
    pa.HairType.SHORT_WAVED,
    pa.HairType.SIDES,
    pa.HairType.BUZZCUT,
    pa.HairType.CORNROWS,
    pa.HairType.ELVIS,
    pa.HairType.EVIL_SPIKE,
    pa.HairType.MOHAWK,
    pa.HairType.MOWGLI,
    pa.HairType.PIXIE,
    pa.HairType.POMPADOUR,
    pa.HairType.QUIFF,
)
BLOND = (pa.HairColor.BLONDE, pa.HairColor.BLONDE_GOLDEN, pa.HairColor.PLATINUM)
NOT_BLOND = (pa.HairColor.AUBURN, pa.HairColor.BLACK, pa.HairColor.BROWN, pa.HairColor.BROWN_DARK)
# Grey hair is drawn only where the hair is not blond (blond_hair takes precedence, so every
# blond avatar keeps its pixels); the facial hair takes the same colour.
GRAY_HAIR = pa.HairColor.SILVER_GRAY
EYEWEAR = tuple(a for a in pa.AccessoryType if a not in (pa.AccessoryType.NONE, pa.AccessoryType.EYEPATCH))
# The eye patch takes the accessory slot, so it is drawn only without glasses (eyewear
# takes precedence).
EYEPATCH = pa.AccessoryType.EYEPATCH
FACIAL_HAIR = tuple(f for f in pa.FacialHairType if f is not pa.FacialHairType.NONE)
# Smiles with teeth vs closed mouths; the open DEFAULT smile and open-mouthed expressions
# are left out so the two classes are clearly apart.
SMILING = (pa.MouthType.SMILE, pa.MouthType.BIG_SMILE)
NOT_SMILING = (pa.MouthType.SERIOUS, pa.MouthType.SAD)
RAISED_EYEBROWS = (pa.EyebrowType.RAISED_EXCITED, pa.EyebrowType.RAISED_EXCITED_NATURAL)
OTHER_EYEBROWS = (pa.EyebrowType.DEFAULT, pa.EyebrowType.DEFAULT_NATURAL, pa.EyebrowType.FLAT_NATURAL)
CLOSED_EYES = (pa.EyeType.CLOSED, pa.EyeType.HAPPY)
OPEN_EYES = (pa.EyeType.DEFAULT, pa.EyeType.SIDE, pa.EyeType.SQUINT)
BLAZER = (pa.ClothingType.BLAZER_SHIRT, pa.ClothingType.BLAZER_SWEATER)
# The hoodie is drawn only without a blazer (blazer takes precedence, as a jacket over it).
HOODIE = pa.ClothingType.HOODIE
OTHER_CLOTHES = (
    pa.ClothingType.COLLAR_SWEATER,
    pa.ClothingType.GRAPHIC_SHIRT,
    pa.ClothingType.OVERALL,
    pa.ClothingType.SHIRT_CREW_NECK,
    pa.ClothingType.SHIRT_SCOOP_NECK,
    pa.ClothingType.SHIRT_V_NECK,
)
# The hat colour is drawn from every clothing colour; the clothes' colour from one of two
# groups of four (dark_clothes). PINK, RED and the mid blues are left out of the clothes so
# the groups differ clearly in lightness.
CLOTHING_COLORS = tuple(pa.ClothingColor)
DARK_CLOTHES = (pa.ClothingColor.BLACK, pa.ClothingColor.HEATHER, pa.ClothingColor.BLUE_03, pa.ClothingColor.GRAY_02)
LIGHT_CLOTHES = (pa.ClothingColor.WHITE, pa.ClothingColor.GRAY_01, pa.ClothingColor.PASTEL_BLUE,
                 pa.ClothingColor.PASTEL_YELLOW)
# CUSTOM_TEXT would need system fonts, whose availability varies between machines.
GRAPHICS = tuple(g for g in pa.ClothingGraphic if g not in (pa.ClothingGraphic.NONE, pa.ClothingGraphic.CUSTOM_TEXT))

# The targets, in column order. Headwear replaces the hair in python_avatars, so like a
# hat in a photo it hides ``long_hair`` and (except through the facial hair, which takes
# the hair colour) ``blond_hair``: those labels describe the person, not the pixels, and
# their measured signal strength includes the occlusion.
#
# Draw-order invariant: new attributes are APPENDED (:data:`ADDED_TARGETS`) and sampled from
# their own stream (:func:`extract.datasets.avatars.spec.sample_attributes`), so the labels of
# the first nine targets of a seed never change; new nuisance draws are appended to
# :data:`NUISANCE_FIELDS`, so the existing draws of an image never change either. A new
# attribute that shares a part slot with an older one (the clothes' colour, the hair colour,
# the accessory, the clothing type) changes the pixels of avatars where it is drawn.
FIRST_TARGETS = (
    "hat",
    "eyewear",
    "facial_hair",
    "long_hair",
    "blond_hair",
    "smiling",
    "raised_eyebrows",
    "closed_eyes",
    "blazer",
)
# Added for at least eight targets that every base can learn (issue 26): the clothes'
# lightness, a circular backdrop behind the head (python_avatars' CIRCLE style), the hoodie,
# grey hair and the eye patch. Like a hat over long hair, blazer hides hoodie, blond_hair
# hides gray_hair and eyewear hides eyepatch; their signal strength includes that occlusion.
ADDED_TARGETS = (
    "dark_clothes",
    "backdrop",
    "hoodie",
    "gray_hair",
    "eyepatch",
)
TARGETS = (*FIRST_TARGETS, *ADDED_TARGETS)
ATTRIBUTES = (SENSITIVE, *TARGETS)

# The control bases' labels of the paper's design (data/recipes/avatars-bases.toml), like
# W&R's Wearing_Hat, Chubby and Bangs: independent of dark_skin in the pretraining data (the
# independent preset), and none decides whether a target is drawn.
PAPER_CONTROLS = ("hat", "blazer", "smiling")
# The targets of the paper's design, most salient first (signal strength at 64 px): those that
# reach natural-set probe AUC >= 0.70 at n = 128 (mean of 3 seeds) on every pretrained base of
# the recipe (biased and the three controls), none a control's label; in the celeba-like preset
# two are more frequent among dark-skinned avatars (backdrop, eyewear) and two less
# (dark_clothes, long_hair). Only four of the fourteen targets qualify, not the eight issue 26
# asks for: the hat and blazer controls lose the small facial parts (facial_hair, eyepatch,
# blond_hair at 0.59-0.69). Measurement, commands and the full table: docs/science.md section 2,
# "Avatar targets every base can learn".
PAPER_TARGETS = ("backdrop", "dark_clothes", "long_hair", "eyewear")

# Named uniform draws of one avatar, in draw order (never reorder: it changes every image;
# append new draws at the end).
NUISANCE_FIELDS = (
    "skin", "hat", "hair", "hair_color", "eyewear", "facial_hair", "mouth", "eyebrows",
    "eyes", "clothing", "clothing_color", "hat_color", "graphic",
    "bg_hue", "bg_saturation", "bg_value", "shift_x", "shift_y",
    "backdrop_hue",
)
# The avatar canvas is 264 x 280 SVG units; a square window of this side, centred on the
# head and shifted by up to +-JITTER units, is what gets rasterised.
WINDOW = 256
WINDOW_ORIGIN = (4.0, 12.0)
JITTER = 8.0
_SVG_ROOT = 'width="264px" height="280px" viewBox="0 0 264 280"'
# python_avatars 1.4 paints an unfilled group (drawn black) over the CIRCLE style's coloured
# circle; it is given the backdrop colour.
_CIRCLE_FILL = '<g id="circle_Fabric-Color" mask="url(#circle_mask-2)" fill="">'


def draw_nuisance(rng: np.random.Generator) -> np.ndarray:
    """The nuisance draws of one avatar: ``len(NUISANCE_FIELDS)`` uniforms in [0, 1)."""
    return rng.random(len(NUISANCE_FIELDS))


def _pick(options: Sequence, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _background_hex(draw: Mapping[str, float]) -> str:
    """A muted opaque background colour (hue free, moderate saturation and value)."""
    red, green, blue = colorsys.hsv_to_rgb(
        draw["bg_hue"], 0.15 + 0.45 * draw["bg_saturation"], 0.55 + 0.4 * draw["bg_value"]
    )
    return "#{:02X}{:02X}{:02X}".format(*(int(round(255 * c)) for c in (red, green, blue)))


def _backdrop_hex(draw: Mapping[str, float]) -> str:
    """The backdrop circle's colour: a hue at least a quarter turn from the background's,
    darker than it, so the circle always stands out."""
    hue = (draw["bg_hue"] + 0.25 + 0.5 * draw["backdrop_hue"]) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.55, 0.35 + 0.15 * draw["bg_value"])
    return "#{:02X}{:02X}{:02X}".format(*(int(round(255 * c)) for c in (red, green, blue)))


def _hair_color(attributes: Mapping[str, int], draw: Mapping[str, float]):
    if attributes["blond_hair"]:
        return _pick(BLOND, draw["hair_color"])
    return GRAY_HAIR if attributes["gray_hair"] else _pick(NOT_BLOND, draw["hair_color"])


def _clothing(attributes: Mapping[str, int], draw: Mapping[str, float]):
    if attributes["blazer"]:
        return _pick(BLAZER, draw["clothing"])
    return HOODIE if attributes["hoodie"] else _pick(OTHER_CLOTHES, draw["clothing"])


def _accessory(attributes: Mapping[str, int], draw: Mapping[str, float]):
    if attributes["eyewear"]:
        return _pick(EYEWEAR, draw["eyewear"])
    return EYEPATCH if attributes["eyepatch"] else pa.AccessoryType.NONE


def _avatar(attributes: Mapping[str, int], draw: Mapping[str, float]) -> pa.Avatar:
    """The python_avatars object for one attribute assignment and nuisance draw."""
    if attributes["hat"]:
        top = _pick(HATS, draw["hat"])
    else:
        top = _pick(LONG_HAIR if attributes["long_hair"] else SHORT_HAIR, draw["hair"])
    hair_color = _hair_color(attributes, draw)
    return pa.Avatar(
        style=pa.AvatarStyle.CIRCLE if attributes["backdrop"] else pa.AvatarStyle.TRANSPARENT,
        background_color=_backdrop_hex(draw),
        top=top,
        hat_color=_pick(CLOTHING_COLORS, draw["hat_color"]),
        eyebrows=_pick(RAISED_EYEBROWS if attributes["raised_eyebrows"] else OTHER_EYEBROWS, draw["eyebrows"]),
        eyes=_pick(CLOSED_EYES if attributes["closed_eyes"] else OPEN_EYES, draw["eyes"]),
        nose=pa.NoseType.DEFAULT,
        mouth=_pick(SMILING if attributes["smiling"] else NOT_SMILING, draw["mouth"]),
        facial_hair=_pick(FACIAL_HAIR, draw["facial_hair"]) if attributes["facial_hair"] else pa.FacialHairType.NONE,
        skin_color=_pick(DARK_SKIN if attributes[SENSITIVE] else LIGHT_SKIN, draw["skin"]),
        hair_color=hair_color,
        facial_hair_color=hair_color,
        accessory=_accessory(attributes, draw),
        clothing=_clothing(attributes, draw),
        clothing_color=_pick(DARK_CLOTHES if attributes["dark_clothes"] else LIGHT_CLOTHES, draw["clothing_color"]),
        shirt_graphic=_pick(GRAPHICS, draw["graphic"]),
    )


def avatar_svg(attributes: Mapping[str, int], nuisance: np.ndarray) -> str:
    """SVG markup of one avatar, cropped to a square, jittered window around the head.

    Parameters
    ----------
    attributes : mapping
        ``name -> 0/1`` for every name in :data:`ATTRIBUTES`.
    nuisance : ndarray of shape (len(NUISANCE_FIELDS),)
        Uniform draws from :func:`draw_nuisance`.
    """
    draw = dict(zip(NUISANCE_FIELDS, map(float, nuisance)))
    svg = _avatar(attributes, draw).render()
    if attributes["backdrop"]:
        if _CIRCLE_FILL not in svg:
            raise RuntimeError("python_avatars returned a CIRCLE style without the expected fill group; "
                               "pin python-avatars 1.4.")
        svg = svg.replace(_CIRCLE_FILL, _CIRCLE_FILL.replace('fill=""', f'fill="{_backdrop_hex(draw)}"'), 1)
    x0 = WINDOW_ORIGIN[0] + JITTER * (2 * draw["shift_x"] - 1)
    y0 = WINDOW_ORIGIN[1] + JITTER * (2 * draw["shift_y"] - 1)
    root = f'width="{WINDOW}px" height="{WINDOW}px" viewBox="{x0:.3f} {y0:.3f} {WINDOW} {WINDOW}"'
    if _SVG_ROOT not in svg:  # a python_avatars release with another canvas
        raise RuntimeError("python_avatars returned an SVG with an unexpected canvas; pin python-avatars 1.4.")
    return svg.replace(_SVG_ROOT, root, 1)


def render_avatar(attributes: Mapping[str, int], nuisance: np.ndarray, *, size: int) -> np.ndarray:
    """Rasterise one avatar onto its opaque background.

    Returns
    -------
    ndarray of shape (size, size, 3), uint8
    """
    draw = dict(zip(NUISANCE_FIELDS, map(float, nuisance)))
    png = resvg_py.svg_to_bytes(
        svg_string=avatar_svg(attributes, nuisance),
        width=size,
        height=size,
        background=_background_hex(draw),
        skip_system_fonts=True,  # no text is drawn; loading fonts costs time per call
    )
    with Image.open(io.BytesIO(png)) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if rgb.shape != (size, size, 3):
        raise RuntimeError(f"resvg returned an image of shape {rgb.shape}, expected {(size, size, 3)}.")
    return rgb


def nuisance_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The RNG of image ``index`` in ``stream``: depends on nothing else, so rendering order
    (serial, parallel, chunking) cannot change an image."""
    return np.random.default_rng([seed, stream, index])


def render_rows(seed: int, stream: int, size: int, start: int, rows: np.ndarray) -> np.ndarray:
    """Render consecutive images ``start, start + 1, ...`` (a worker's chunk).

    Parameters
    ----------
    rows : ndarray of shape (k, len(ATTRIBUTES)), int8
        The attribute rows, columns in :data:`ATTRIBUTES` order.

    Returns
    -------
    ndarray of shape (k, size, size, 3), uint8
    """
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for offset, row in enumerate(rows):
        nuisance = draw_nuisance(nuisance_rng(seed, stream, start + offset))
        out[offset] = render_avatar(dict(zip(ATTRIBUTES, map(int, row))), nuisance, size=size)
    return out


def toggle_changes(seed: int, stream: int, size: int, start: int, rows: np.ndarray) -> np.ndarray:
    """Mean absolute pixel change when each attribute of each avatar is flipped alone.

    Returns
    -------
    ndarray of shape (k, len(ATTRIBUTES)), float64
        Entry ``(j, a)``: mean over pixels and channels of ``|render(a=1) - render(a=0)|``
        for avatar ``start + j`` with everything else fixed, on a 0-1 intensity scale.
    """
    changes = np.empty((len(rows), len(ATTRIBUTES)))
    for offset, row in enumerate(rows):
        nuisance = draw_nuisance(nuisance_rng(seed, stream, start + offset))
        attributes = dict(zip(ATTRIBUTES, map(int, row)))
        base = render_avatar(attributes, nuisance, size=size).astype(np.int16)
        for col, name in enumerate(ATTRIBUTES):
            flipped = render_avatar({**attributes, name: 1 - attributes[name]}, nuisance, size=size)
            changes[offset, col] = np.abs(base - flipped).mean() / 255.0
    return changes
