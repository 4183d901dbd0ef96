"""Benchmark: render the `seed-scale` preset (3676 train / 1226 val / 1226 test at 128 px) with 2 worker processes.

Goal: under a minute on 2 cores. Run: python benchmarks/bench_synth.py [--preset seed-scale] [--workers 2] [--size 128]
"""
import argparse, tempfile, time
from pathlib import Path

from cherry_nb.data.synth import PRESETS, read_truth, render_dataset

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--preset', default='seed-scale', choices=list(PRESETS))
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--size', type=int, default=128)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        root = render_dataset(Path(d) / a.preset, a.preset, size=a.size, workers=a.workers, progress=False)
        dt = time.perf_counter() - t
        df = read_truth(root)
        mb = sum(p.stat().st_size for p in root.rglob('*') if p.is_file()) / 2**20
    n = len(df)
    print(f"synth {a.preset}: {n} images at {a.size} px with {a.workers} workers in {dt:.1f} s "
          f"({n / dt:.0f} img/s, {mb:.0f} MiB; ambiguous {df.ambiguous.mean():.1%}; "
          f"goal < 60 s: {'OK' if dt < 60 else 'MISSED'})")
