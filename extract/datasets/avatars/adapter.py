"""Reading an avatar cache: the dataset adapter and a contact sheet of seeded samples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from extract.datasets.avatars.cache import FORMAT, _check_int, _writable_target
from extract.datasets.avatars.render import ATTRIBUTES
from extract.datasets.avatars.sheet import draw_contact_sheet, tile_labels
from extract.datasets.base import Adapter


class AvatarAdapter(Adapter):
    """Adapter over an avatar cache file written by :func:`render_dataset`.

    ``root`` is the ``.h5`` file itself; ``path`` entries are virtual names inside it.
    :meth:`read_images` is the fast path (one contiguous read of ``/images``, then numpy
    indexing).
    """

    name = "avatars"
    EXPECTED_LAYOUT = (
        "an avatar cache .h5 file written by `biastransfer avatars render` "
        "(/images uint8 N x H x W x 3 and /metadata/*)"
    )

    def __init__(self, root: str | Path):
        super().__init__(root)
        self._images: np.ndarray | None = None
        if not self.root.is_file():
            raise self.layout_error(f"{self.root} is not a file")
        try:
            with h5py.File(self.root, "r") as h5:
                if h5.attrs.get("format") != FORMAT or "images" not in h5 or "metadata" not in h5:
                    raise self.layout_error(f"{self.root} is not a complete avatar cache")
                self.generator = json.loads(h5.attrs["generator"])
                self.signal_strength = json.loads(h5.attrs["signal_strength"])
                self.image_shape = tuple(h5["images"].shape[1:])
        except OSError:
            raise self.layout_error(f"{self.root} is not a readable HDF5 file") from None
        except (KeyError, ValueError):
            raise self.layout_error(f"{self.root} has malformed avatar cache attributes") from None
        self.sensitive_attribute = self.generator["sensitive_attribute"]
        self.targets = list(self.generator["targets"])

    def _build_metadata(self) -> pd.DataFrame:
        with h5py.File(self.root, "r") as h5:
            group = h5["metadata"]
            columns = json.loads(group.attrs["columns"])
            missing = [c for c in columns if c not in group]
            if missing:
                raise self.layout_error(f"{self.root} lacks the metadata column(s) {missing}")
            data = {c: group[c][()] for c in columns}
        for col in ("image_id", "path", "split"):
            data[col] = np.char.decode(data[col], "ascii")
        return pd.DataFrame(data)

    def read_images(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Images of the rows ``indices`` (positions or a boolean mask; all rows if None).

        Returns
        -------
        ndarray of shape (k, H, W, 3), uint8
            A copy when ``indices`` is given; the read-only cached array otherwise.
        """
        if self._images is None:
            with h5py.File(self.root, "r") as h5:
                self._images = h5["images"][()]  # one contiguous read, never per row
            self._images.flags.writeable = False
        if indices is None:
            return self._images
        indices = np.asarray(indices)
        return self._images[indices if indices.dtype == bool else indices.astype(np.int64)]

    def open_image(self, i: int) -> Image.Image:
        """Row ``i`` as an RGB :class:`PIL.Image.Image`."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} is out of range for {len(self)} avatars")
        return Image.fromarray(self.read_images([i])[0], mode="RGB")


def contact_sheet(cache_path: str | Path, out_png: str | Path, *, n: int = 32, columns: int = 8, seed: int = 0) -> Path:
    """Write a PNG grid of ``n`` seeded random avatars from a cache, each labelled with the
    short names of its positive attributes (e.g. ``dark hat glasses``); return its path."""
    n = _check_int("n", n, 1)
    columns = _check_int("columns", columns, 1)
    seed = _check_int("seed", seed, 0)
    adapter = AvatarAdapter(cache_path)
    out_png = _writable_target(out_png, "contact sheet")
    meta = adapter.metadata()
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(meta), size=min(n, len(meta)), replace=False))
    names = [c for c in ATTRIBUTES if c in meta.columns]
    labels = tile_labels(meta[names].to_numpy()[picked], names)
    title = f"{Path(cache_path).name}: preset {adapter.generator['preset']}, seed {adapter.generator['seed']}"
    sheet = draw_contact_sheet(adapter.read_images(picked), labels, columns=columns, title=title)
    sheet.save(out_png, format="PNG")
    return out_png
