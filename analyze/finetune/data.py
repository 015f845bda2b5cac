"""Images decoded once and held in memory, and the bases a finetune starts from.

A full-finetune grid trains hundreds of models on overlapping rows of one dataset. The
original code re-read and re-decoded every image in every run (about 20 s of start-up per
run); here the rows that any cell needs are decoded once into one uint8 tensor
(:class:`ImageBank`, shape (k, 3, crop, crop), already resized and centre-cropped to the
base's input), which can live on the GPU, and each cell gathers its rows from it.

Bases: :func:`load_base` builds a registered name or a toolkit checkpoint and checks that
its input size suits the dataset; the built base carries the ``arch`` and
``arch_kwargs`` needed to save a finetuned copy with
:func:`extract.backbones.save_checkpoint`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from extract.backbones import (
    Backbone,
    Preprocess,
    create_backbone,
)
from extract.datasets.base import Adapter
from extract.errors import UserError
from extract.extraction import default_num_workers, prepare_uint8

DECODE_BATCH = 256  # rows per decode task: amortises worker IPC, keeps peak memory small


class _RowChunks(Dataset):
    """Item ``b``: the uint8 images (k, 3, crop, crop) of ``rows[b*batch:(b+1)*batch]``.

    An adapter's :class:`UserError` is returned as its message (DataLoader workers would
    wrap it in a traceback) and raised again by the main process.
    """

    def __init__(self, adapter: Adapter, preprocess: Preprocess, rows: np.ndarray, batch: int):
        self.adapter, self.preprocess, self.rows, self.batch = adapter, preprocess, rows, batch

    def __len__(self) -> int:
        return (len(self.rows) + self.batch - 1) // self.batch

    def __getitem__(self, b: int):
        rows = self.rows[b * self.batch:(b + 1) * self.batch]
        try:
            return self._read(rows)
        except UserError as exc:
            return str(exc)

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        if hasattr(self.adapter, "read_images"):  # in-memory fast path (the avatar cache)
            array = np.ascontiguousarray(self.adapter.read_images(rows))
            return prepare_uint8(torch.from_numpy(array).permute(0, 3, 1, 2), self.preprocess)
        images = []
        for i in rows:
            rgb = np.array(self.adapter.open_image(int(i)).convert("RGB"), dtype=np.uint8)
            images.append(prepare_uint8(torch.from_numpy(rgb).permute(2, 0, 1), self.preprocess))
        return torch.stack(images)


@dataclass
class ImageBank:
    """Decoded uint8 images of some dataset rows, gathered by dataset position.

    Attributes
    ----------
    images : Tensor of shape (k, 3, crop, crop), uint8
        Resized and centre-cropped to the base's input, not yet normalised.
    rows : ndarray of shape (k,), int64
        The dataset positions held, sorted; ``images[j]`` is row ``rows[j]``.
    decode_seconds : float
        Time spent decoding (once, shared by every cell).
    """

    images: torch.Tensor
    rows: np.ndarray
    decode_seconds: float = 0.0

    def __post_init__(self):
        size = int(self.rows.max()) + 1 if len(self.rows) else 0
        self._lookup = np.full(size, -1, dtype=np.int64)
        self._lookup[self.rows] = np.arange(len(self.rows))

    @classmethod
    def from_adapter(cls, adapter: Adapter, preprocess: Preprocess, rows=None, *, num_workers: int | None = None,
                     progress: bool = False) -> "ImageBank":
        """Decode ``rows`` (dataset positions; all rows if None) of ``adapter`` once.

        Adapters with ``read_images`` are read in bulk in this process; others through
        ``open_image`` in ``num_workers`` DataLoader processes (default: all cores but one).
        """
        began = time.perf_counter()
        rows = np.arange(len(adapter)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        if len(rows) == 0:
            raise UserError("no rows to decode; check that the subsets and the test split are not empty.")
        workers = default_num_workers(adapter) if num_workers is None else int(num_workers)
        loader = DataLoader(_RowChunks(adapter, preprocess, rows, DECODE_BATCH), batch_size=None,
                            num_workers=workers, shuffle=False)
        out = torch.empty((len(rows), 3, preprocess.crop, preprocess.crop), dtype=torch.uint8)
        start = 0
        with tqdm(total=len(rows), unit="img", desc="decode images", disable=not progress, leave=False) as bar:
            for batch in loader:
                if isinstance(batch, str):
                    raise UserError(batch)
                out[start:start + len(batch)] = batch
                start += len(batch)
                bar.update(len(batch))
        return cls(out, rows, time.perf_counter() - began)

    def positions(self, rows) -> torch.Tensor:
        """Bank indices (int64 tensor) of dataset positions ``rows``; every row must be held."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return torch.empty(0, dtype=torch.int64)
        if rows.min() < 0 or rows.max() >= len(self._lookup) or (self._lookup[rows] < 0).any():
            raise UserError("a requested row was not decoded; build the ImageBank from the rows the cells use.")
        return torch.from_numpy(self._lookup[rows])

    def take(self, rows) -> torch.Tensor:
        """uint8 images of dataset positions ``rows``, shape (len(rows), 3, crop, crop), on the bank's device."""
        return self.images.index_select(0, self.positions(rows).to(self.images.device))

    def to(self, device: torch.device) -> "ImageBank":
        """The same bank with its images on ``device`` (a GPU holds them once for every cell)."""
        self.images = self.images.to(device)
        return self


def is_random_init(backbone: Backbone) -> bool:
    """True for a base without loaded weights (a ``*.scratch`` entry built from its seed)."""
    return backbone.weights_path is None


def load_base(base: str | Path, *, weights: str | Path | None = None, seed: int = 0, image_size: int | None = None,
              native_size: int | None = None) -> Backbone:
    """Build the base ``base`` (registered name or checkpoint) and check its input size.

    Parameters
    ----------
    base : str or Path
        ``arch.tag`` name or a checkpoint written by ``save_checkpoint``.
    weights : path, optional
        Local weights file of a registered entry (nothing is downloaded).
    seed : int
        Initialisation seed of a random-init base.
    image_size : int, optional
        Resize and crop images to this size (overrides the base's preprocessing).
    native_size : int, optional
        The dataset's own image side when it has one (the avatar cache). A random-init
        base adopts it when ``image_size`` is None; a pretrained base whose input side
        differs is an error, because silently rescaling its inputs changes what its
        filters see.
    """
    backbone = create_backbone(base, weights=weights, seed=seed, image_size=image_size)
    if image_size is None and native_size is not None and backbone.preprocess.crop != native_size:
        if is_random_init(backbone):
            backbone = create_backbone(base, weights=weights, seed=seed, image_size=native_size)
        else:
            raise UserError(
                f"base {base} takes {backbone.preprocess.crop} px inputs but the dataset's images are {native_size} px; "
                f"use a base pretrained at {native_size} px, or pass `image_size` to resize the images deliberately."
            )
    check_forward(backbone)
    return backbone


def check_forward(backbone: Backbone) -> None:
    """One forward pass at the base's input size; an architecture that cannot take it is a UserError."""
    side = backbone.preprocess.crop
    try:
        with torch.inference_mode():
            features = backbone.model.eval()(torch.zeros(2, 3, side, side))
    except RuntimeError as exc:
        raise UserError(f"base {backbone.name} cannot take {side} px inputs ({str(exc).splitlines()[0]}); "
                        "pass a larger `image_size`.") from None
    if tuple(features.shape) != (2, backbone.feature_dim):
        raise UserError(f"base {backbone.name} returned features of shape {tuple(features.shape)} instead of "
                        f"(2, {backbone.feature_dim}); it is not a pooled-feature backbone.")
