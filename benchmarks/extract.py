"""Benchmark: feature extraction images/s, biastransfer vs a plain DataLoader loop, same run.

End to end from encoded images: ``--n`` JPEG (or PNG) files of ``--source-size`` pixels
(default 178x218, CelebA's aligned size; random crops, flips and brightness changes of
scikit-learn's two bundled photos, so decoding costs what real photos cost) are written
to a temporary image-folder tree, then embedded by

  baseline      ``torchvision.datasets.ImageFolder`` + PIL ``Resize``/``CenterCrop``/
                ``ToTensor``/``Normalize`` + ``DataLoader`` + ``model(x.to(device))`` under
                ``torch.no_grad()`` in float32, features gathered in a list: what a
                researcher writes;
  biastransfer  :func:`extract.extraction.extract_features` through the ``folder`` adapter,
                including writing the HDF5 store (uint8 batches, device-side normalise,
                bf16 + channels_last on CUDA, store writes on a background thread);
  biastransfer-device-decode
                the same with ``decode="device"``: workers only read the files and the
                JPEGs are decoded on the device (nvjpeg on CUDA) and resized there
                (``--decode device``, or ``--decode both`` for both toolkit methods).

Both use the same backbone (seeded random init), batch size and decode workers. Seconds
are the median over ``--repeats`` timed runs (methods alternate); on CUDA each method
first runs once untimed (CUDA context, cuDNN heuristics, page cache). The median relative
difference between the two methods' features is printed as a sanity check. Rows go to
``benchmarks/results/extract-<device>.csv`` (``cpu`` or ``cuda-<gpu model>``), replacing
earlier rows of the same method, backbone, image size and image count.

    python benchmarks/extract.py --backbone smallcnn.scratch --image-size 64 --n 1024    # this CPU
    python benchmarks/extract.py --backbone resnet50.scratch --image-size 224 --n 20000 \\
        --device cuda --batch-size 512 --workers 14 --decode both                       # one GPU
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from extract.backbones import create_backbone  # noqa: E402
from extract.datasets.folder import ImageFolderAdapter  # noqa: E402
from extract.devices import resolve_device
from extract.extraction import MAX_DEFAULT_WORKERS, ExtractOptions, extract_features  # noqa: E402
from extract.store.reader import FeatureStore  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ["method", "backbone", "image_size", "images", "seconds", "images_per_s", "speedup_vs_baseline"]
KEY = ["method", "backbone", "image_size", "images"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50.scratch", help="registered arch.tag (default resnet50.scratch)")
    parser.add_argument("--image-size", type=int, default=224, help="resize/crop side fed to the model")
    parser.add_argument("--n", type=int, default=256, help="number of encoded images")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None,
                        help=f"decode workers for both methods (default: cores - 1, at most {MAX_DEFAULT_WORKERS})")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (median reported)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="one untimed run per method first (default: on for CUDA, off for CPU)")
    parser.add_argument("--decode", choices=("host", "device", "both"), default="host",
                        help="toolkit decode mode(s) to time: host (workers), device (decode_jpeg on --device), both")
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--source-size", default="178x218", help="WIDTHxHEIGHT of the encoded images")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the images go (default: system temp)")
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default: results/extract-<device>.csv)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# -- data -------------------------------------------------------------------------------------
def write_images(root: Path, *, n: int, width: int, height: int, fmt: str, seed: int, threads: int) -> Path:
    """``n`` photo-like images in two class folders ``root/a``, ``root/b`` (image-folder layout)."""
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(p) for p in load_sample_images().images]  # two 427 x 640 photos
    rng = np.random.default_rng(seed)
    plans = [(int(rng.integers(2)), rng.random(4)) for _ in range(n)]
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        which, (u, v, flip, gain) = plans[i]
        photo = photos[which]
        scale = min(photo.shape[0] / height, photo.shape[1] / width) * (0.5 + 0.5 * u)
        h, w = max(1, int(height * scale)), max(1, int(width * scale))
        top, left = int(v * (photo.shape[0] - h)), int((1 - v) * (photo.shape[1] - w))
        crop = photo[top:top + h, left:left + w]
        crop = crop[:, ::-1] if flip < 0.5 else crop
        image = Image.fromarray(np.clip(crop * (0.7 + 0.6 * gain), 0, 255).astype(np.uint8))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        suffix, options = (".jpg", {"quality": 90}) if fmt == "jpeg" else (".png", {})
        image.save(root / "ab"[i % 2] / f"{i:07d}{suffix}", **options)  # both folders get images

    with ThreadPoolExecutor(max(1, threads)) as pool:  # PIL releases the GIL while encoding
        list(pool.map(write, range(n)))
    return root


# -- the two methods -------------------------------------------------------------------------------
def run_baseline(root: Path, args, device: torch.device, workers: int) -> tuple[float, np.ndarray]:
    """The plain loop: PIL transforms on the host, float32 model, features kept in memory."""
    backbone = create_backbone(args.backbone, seed=args.seed, image_size=args.image_size)
    pre = backbone.preprocess
    transform = transforms.Compose([
        transforms.Resize(pre.resize, interpolation=transforms.InterpolationMode(pre.interpolation.lower())),
        transforms.CenterCrop(pre.crop), transforms.ToTensor(), transforms.Normalize(pre.mean, pre.std)])
    began = time.perf_counter()
    loader = DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=args.batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    model = backbone.model.eval().to(device)
    features = []
    with torch.no_grad():
        for x, _ in loader:
            features.append(model(x.to(device)).cpu())
    out = torch.cat(features).numpy()
    return time.perf_counter() - began, out


def run_biastransfer(root: Path, args, device: torch.device, workers: int, store: Path,
                     decode: str = "host") -> tuple[float, np.ndarray]:
    """The toolkit path, end to end including the store write."""
    backbone = create_backbone(args.backbone, seed=args.seed, image_size=args.image_size)
    store.unlink(missing_ok=True)
    began = time.perf_counter()
    options = ExtractOptions(batch_size=args.batch_size, device=str(device), num_workers=workers, resume=False,
                             overwrite=True, progress=False, decode=decode)
    extract_features(ImageFolderAdapter(root), backbone, store, options=options)
    seconds = time.perf_counter() - began
    return seconds, FeatureStore.open(store).features


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Median over images of ``|a_i - b_i| / |b_i|`` (a sanity check that both embed the same images)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.median(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-12)))


def device_label(device: torch.device) -> str:
    """``cpu``, or ``cuda-`` + the GPU model in lower case (``cuda-nvidia-h100-80gb-hbm3``)."""
    if device.type != "cuda":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


# -- main -----------------------------------------------------------------------------------------
def measure(root: Path, args, device: torch.device, workers: int, scratch: Path) -> dict:
    """Median seconds per method and the features of the last runs."""
    warmup = device.type == "cuda" if args.warmup is None else args.warmup
    runs = {"baseline": lambda: run_baseline(root, args, device, workers)}
    if args.decode in ("host", "both"):
        runs["biastransfer"] = lambda: run_biastransfer(root, args, device, workers, scratch / "store.h5")
    if args.decode in ("device", "both"):
        runs["biastransfer-device-decode"] = lambda: run_biastransfer(root, args, device, workers,
                                                                      scratch / "store.h5", decode="device")
    if warmup:
        for run in runs.values():
            run()
    seconds, features = {m: [] for m in runs}, {}
    for repeat in range(args.repeats):
        for method in (runs if repeat % 2 == 0 else reversed(list(runs))):  # alternate the order: drift hits both
            elapsed, features[method] = runs[method]()
            seconds[method].append(elapsed)
    return {"seconds": {m: statistics.median(s) for m, s in seconds.items()}, "features": features}


def write_rows(out: Path, rows: list[dict]) -> None:
    """Replace rows with the same key in ``out`` (other backbones and sizes are kept); atomic."""
    new = pd.DataFrame(rows, columns=FIELDS)
    if out.exists():
        old = pd.read_csv(out)
        keep = ~old[KEY].astype(str).apply(tuple, axis=1).isin(set(new[KEY].astype(str).apply(tuple, axis=1)))
        new = pd.concat([old[keep], new], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    new.to_csv(tmp, index=False, float_format="%.4g")
    os.replace(tmp, out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.n < 2 or args.repeats < 1 or args.batch_size < 1:
        raise SystemExit("--n must be at least 2 (two class folders), --repeats and --batch-size at least 1")
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    workers = args.workers if args.workers is not None else max(0, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) - 1))
    width, height = (int(x) for x in args.source_size.lower().split("x"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-extract-", dir=args.tmp_dir))
    try:
        began = time.perf_counter()
        root = write_images(scratch / "images", n=args.n, width=width, height=height, fmt=args.format,
                            seed=args.seed, threads=max(1, workers))
        print(f"wrote {args.n} {args.format} images of {width}x{height} in {time.perf_counter() - began:.1f} s")
        result = measure(root, args, device, workers, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = result["seconds"]["baseline"]
    rows = [{"method": m, "backbone": args.backbone, "image_size": args.image_size, "images": args.n,
             "seconds": s, "images_per_s": args.n / s, "speedup_vs_baseline": base / s}
            for m, s in result["seconds"].items()]
    out = args.out or RESULTS / f"extract-{device_label(device)}.csv"
    write_rows(out, rows)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{name}, batch {args.batch_size}, {workers} decode workers, {args.repeats} repeat(s) -> {out}")
    for row in rows:
        print(f"  {row['method']:<26} {row['backbone']} @ {row['image_size']} px: {row['seconds']:.2f} s, "
              f"{row['images_per_s']:.0f} images/s, x{row['speedup_vs_baseline']:.2f} vs baseline")
    for method in (m for m in result["features"] if m != "baseline"):
        difference = relative_difference(result["features"][method], result["features"]["baseline"])
        print(f"  median relative feature difference, {method} vs baseline: {difference:.2e} "
              "(PIL vs tensor resize, JPEG decoders; bf16 on CUDA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
