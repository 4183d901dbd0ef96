"""Speed of batched inference (`evaluate.predict`) and of loading artifacts (`artifacts.load_artifact`).

Run: python benchmarks/bench_evaluate.py [--arch convnextv2_atto] [--size 64] [--n 512] [--device auto]
Prints one result line per measurement. Shares the CPU with whatever else runs: compare runs on a quiet machine.
"""
import argparse, tempfile, time
from pathlib import Path
import torch, timm
from torch.utils.data import TensorDataset
from cherry_nb.core import set_seed, get_device
from cherry_nb.learn.models import create_model
from cherry_nb.learn.artifacts import save_artifact, load_artifact
from cherry_nb.judge.evaluate import predict

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', default='convnextv2_atto'); ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--n', type=int, default=512); ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--device', default='auto')
    a = ap.parse_args(); set_seed(0); dev = get_device(a.device)
    ds = TensorDataset(torch.randint(0, 256, (a.n, 3, a.size, a.size), dtype=torch.uint8),
                       torch.zeros(a.n, dtype=torch.long))
    model = create_model(a.arch)
    predict(model, TensorDataset(*ds[:a.batch]), device=dev, progress=False)          # warm-up
    for tta in (False, True):
        t = time.perf_counter()
        predict(model, ds, device=dev, batch_size=a.batch, tta=tta, progress=False)
        dt = time.perf_counter() - t
        print(f"RESULT predict {a.arch} {a.size}px n={a.n} tta={tta} on {dev}: {a.n / dt:.0f} images/s "
              f"({dt:.2f} s, {torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as d:
        for arch in ('convnextv2_atto', 'convnextv2_tiny'):
            p = save_artifact(create_model(arch), Path(d) / arch)
            t = time.perf_counter(); load_artifact(p); dt = time.perf_counter() - t
            t = time.perf_counter(); timm.create_model(arch, num_classes=2); dc = time.perf_counter() - t
            print(f"RESULT load_artifact {arch} ({p.stat().st_size / 1e6:.0f} MB): {dt:.2f} s "
                  f"(timm.create_model with random init alone: {dc:.2f} s)")

if __name__ == '__main__': main()
