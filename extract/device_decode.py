"""Device-side JPEG decoding for the extraction loop (``decode="device"``).

Host decode (the default): DataLoader workers decode, resize and crop every image and send
uint8 batches. Device decode: workers only read the files. JPEG files (recognised by their
first bytes, ``FF D8 FF``, whatever their name) travel as encoded bytes, one flat buffer
per batch, and the main process decodes the whole batch with
``torchvision.io.decode_jpeg(list_of_tensors, device=...)`` (nvjpeg on CUDA), then
resizes and crops on the device with the same :func:`extract.image_prep.prepare_uint8`.
It frees the CPU cores that JPEG decoding otherwise needs to keep a GPU busy; on CPU it
runs too (``device="cpu"``), which is how it is tested.

Fallbacks, all transparent: a file that is not a JPEG (PNG, ...) is decoded on the host in
the worker as usual, so mixed folders work; a batch the device decoder refuses is decoded
image by image, and an image it still refuses (e.g. an unusual colour space) with PIL on
the host. An image that PIL cannot read either gives the usual one-sentence "corrupt or
not an image" :class:`~extract.errors.UserError`.

Decoders differ in the last bits (nvjpeg vs libjpeg-turbo): features agree with host
decoding to a small tolerance, not bit for bit; ids and row order are identical.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from extract.backbones import Preprocess
from extract.datasets.base import Adapter, load_rgb
from extract.errors import UserError
from extract.image_prep import prepare_uint8

log = logging.getLogger(__name__)

DECODE_MODES = ("host", "device")
JPEG_MAGIC = b"\xff\xd8\xff"


def check_decode(decode: str, adapter: Adapter) -> str:
    """``decode`` if it is a known mode that ``adapter`` supports, else a :class:`UserError`."""
    if decode not in DECODE_MODES:
        raise UserError(f"decode={decode!r} is not a decode mode; use 'host' (workers decode) or 'device' "
                        "(JPEG files decoded on the device).")
    if decode == "device" and hasattr(adapter, "read_images"):
        raise UserError(f"the {adapter.name} dataset holds decoded images in memory, so there is nothing to decode "
                        "on the device; use `decode='host'`.")
    return decode


def rgb_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)


def read_encoded(adapter: Adapter, rows: np.ndarray, preprocess: Preprocess) -> dict:
    """Worker side of device decoding: the files of ``rows``, JPEGs still encoded.

    Returns a dict of ``n`` (rows in the batch); ``jpeg`` (1-D uint8, the JPEG files
    concatenated), ``lengths`` (int64, bytes per JPEG), ``jpeg_rows`` (their positions in
    the batch) and ``paths`` (for error messages); ``host`` ((m, 3, crop, crop) uint8, the
    other files decoded, resized and cropped here) and ``host_rows`` (their positions).
    """
    blobs, paths, jpeg_rows, host, host_rows = [], [], [], [], []
    for position, i in enumerate(rows):
        path = adapter.image_path(int(i))
        data = _read_bytes(path)
        if data.startswith(JPEG_MAGIC):
            blobs.append(data)
            paths.append(str(path))
            jpeg_rows.append(position)
        else:
            host.append(prepare_uint8(rgb_tensor(load_rgb(path)), preprocess))
            host_rows.append(position)
    empty = torch.empty((0, 3, preprocess.crop, preprocess.crop), dtype=torch.uint8)
    return {
        "n": len(rows),
        "jpeg": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8) if blobs else torch.empty(0, dtype=torch.uint8),
        "lengths": torch.tensor([len(blob) for blob in blobs], dtype=torch.int64),
        "jpeg_rows": torch.tensor(jpeg_rows, dtype=torch.int64),
        "paths": paths,
        "host": torch.stack(host) if host else empty,
        "host_rows": torch.tensor(host_rows, dtype=torch.int64),
    }


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        load_rgb(path)  # raises the usual one-sentence UserError (missing, unreadable)
        raise


class DeviceDecoder:
    """Main-process side: a :func:`read_encoded` batch -> (k, 3, crop, crop) uint8 on ``device``."""

    def __init__(self, preprocess: Preprocess, device: torch.device):
        self.preprocess = preprocess
        self.device = torch.device(device)

    def __call__(self, batch: dict) -> torch.Tensor:
        crop, non_blocking = self.preprocess.crop, self.device.type == "cuda"
        out = torch.empty((int(batch["n"]), 3, crop, crop), dtype=torch.uint8, device=self.device)
        if len(batch["host_rows"]):
            out[batch["host_rows"].to(self.device)] = batch["host"].to(self.device, non_blocking=non_blocking)
        if len(batch["jpeg_rows"]):
            blobs = list(torch.split(batch["jpeg"], batch["lengths"].tolist()))
            images = self._decode(blobs, batch["paths"])
            by_size = defaultdict(list)  # images of one size are resized together
            for k, image in enumerate(images):
                by_size[tuple(image.shape[-2:])].append(k)
            for members in by_size.values():
                rows = batch["jpeg_rows"][members].to(self.device)
                out[rows] = prepare_uint8(torch.stack([images[k] for k in members]), self.preprocess)
        return out

    def _decode(self, blobs: list[torch.Tensor], paths: list[str]) -> list[torch.Tensor]:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates torchvision.io in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:  # one bad image fails the batch: find it
                return [self._decode_one(blob, path) for blob, path in zip(blobs, paths)]

    def _decode_one(self, blob: torch.Tensor, path: str) -> torch.Tensor:
        try:
            return decode_jpeg(blob, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError as exc:
            log.debug("decode_jpeg refused %s (%s); decoding it with PIL on the host", path, exc)
            return rgb_tensor(load_rgb(Path(path))).to(self.device)


__all__ = ["DECODE_MODES", "DeviceDecoder", "check_decode", "read_encoded", "rgb_tensor"]
