"""Images/s of the decode-once cached loader (epoch 2+) vs a DataLoader that decodes every file every epoch.

Writes a few hundred 128 px PNG cherries to a temporary folder, reads them with `read_image_folder`, then times
  * disk:   a plain Dataset that opens + converts + resizes each file per item, DataLoader(num_workers=2, persistent)
  * cached: CachedImageDataset + make_loader (one uint8 tensor, batches sliced, no per-item collate)
both for full shuffled epochs after the first one. Also prints the one-off costs: decoding into the cache, and
rebuilding a second dataset from the disk cache.

Usage: python benchmarks/bench_loader.py [--n 400] [--px 128] [--size 128] [--batch 64] [--epochs 3]
"""
import argparse, gc, shutil, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps
from torch.utils.data import DataLoader, Dataset

from cherry_nb.core import class_index
from cherry_nb.data import CachedImageDataset, decode_stats, make_loader, read_image_folder


def write_images(root: Path, n: int, px: int):
    r = np.random.default_rng(0)
    for i in range(n):
        label = ('clean', 'pit')[i % 2]
        bg = r.integers(200, 240, (px, px, 3)).astype(np.uint8)          # textured belt: realistic PNG sizes
        im = Image.fromarray(bg); d = ImageDraw.Draw(im)
        c, rad = px / 2 + r.uniform(-8, 8, 2), px * r.uniform(.3, .4)
        d.ellipse([c[0] - rad, c[1] - rad, c[0] + rad, c[1] + rad], fill=(int(r.integers(140, 210)), 20, 30))
        if label == 'pit':
            d.ellipse([c[0] - rad / 3, c[1] - rad / 4, c[0] + rad / 3, c[1] + rad / 4], fill=(70, 30, 20))
        (root / label).mkdir(parents=True, exist_ok=True); im.save(root / label / f'{i:04d}.png')


class DiskDataset(Dataset):
    "The usual way: open, convert and resize one file per item, every epoch."
    def __init__(self, df, size):
        self.paths, self.labels, self.size = list(df.path), [class_index(l) for l in df.label], size
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            im = ImageOps.fit(im.convert('RGB'), (self.size, self.size), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()
        return x, self.labels[i]


def rate(loader, epochs: int, n: int) -> float:
    "Images/s over `epochs` full epochs (after one warm-up epoch that is not timed)."
    for _ in loader: pass
    t = time.perf_counter(); seen = 0
    for _ in range(epochs):
        for x, y in loader: seen += len(y)
    assert seen == epochs * n
    return seen / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=400); ap.add_argument('--px', type=int, default=128)
    ap.add_argument('--size', type=int, default=128); ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--epochs', type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp()); root = tmp / 'data'
    try:
        write_images(root, a.n, a.px)
        df = read_image_folder(root, classes=('clean', 'pit'), progress=False)
        torch.set_num_threads(2)

        disk_dl = DataLoader(DiskDataset(df, a.size), batch_size=a.batch, shuffle=True, num_workers=2,
                             persistent_workers=True, generator=torch.Generator().manual_seed(0))
        disk = rate(disk_dl, a.epochs, len(df)); del disk_dl

        t = time.perf_counter()
        ds = CachedImageDataset(df, size=a.size, cache_dir=tmp / 'cache', progress=False)
        build = time.perf_counter() - t
        cached = rate(make_loader(ds, a.batch, shuffle=True, seed=0), a.epochs * 10, len(df))
        del ds; gc.collect()
        d0 = decode_stats['decoded']; t = time.perf_counter()
        ds2 = CachedImageDataset(df, size=a.size, cache_dir=tmp / 'cache', progress=False)
        reload = time.perf_counter() - t
        assert decode_stats['decoded'] == d0 and ds2.source['disk'] == len(df)

        print(f"{len(df)} PNG images of {a.px} px -> {a.size} px, batch {a.batch}, torch threads 2")
        print(f"one-off: decode into cache (2 threads, writes .npy) {build:.2f} s = {len(df) / build:,.0f} img/s; "
              f"second dataset from disk cache {reload:.2f} s = {len(df) / reload:,.0f} img/s (0 decodes)")
        print(f"disk-decoding DataLoader (num_workers=2), epoch 2+: {disk:,.0f} img/s")
        print(f"cached loader (make_loader), epoch 2+:            {cached:,.0f} img/s")
        print(f"RESULT cached/disk = {cached / disk:,.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
