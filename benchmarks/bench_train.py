"""Training-step throughput of `cherry_nb.learn.train.fit` against a bare timm + torch loop.

Same model (convnextv2_atto, 2 classes), batch 64 at 128 px, same uint8 data in the same DataLoader, AdamW, the
same eval transform (uint8 -> normalised float on the device) and no augmentation in both. The engine runs its
default callbacks (shuffle reseeding, device/transform, LR schedule, NaN check, history, best tracking, progress
bars); clipping and label smoothing are turned off so both do the same arithmetic. Images/s come from the median
time between optimizer steps after `--warmup` steps, by wall clock and by this process's CPU time (the robust number
on a CPU shared with other jobs); runs alternate bare/engine for `--repeats` rounds; medians are compared.

    python benchmarks/bench_train.py [--steps 8] [--warmup 2] [--repeats 3] [--threads 1] [--device cpu]
"""
import argparse, os, statistics, time

import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from cherry_nb.learn.augment import EvalTransform
from cherry_nb.learn.learner import Callback, TrainConfig
from cherry_nb.learn.train import fit


def make_data(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 2, (n,), generator=g))


def model(seed=0):
    torch.manual_seed(seed)
    return timm.create_model('convnextv2_atto', pretrained=False, num_classes=2)


def now(): return time.perf_counter(), time.process_time()


def throughput(stamps, bs, warmup):
    "Images/s from the median step after `warmup` steps: (wall clock, CPU time of this process)."
    t = stamps[warmup - 1:]
    return tuple(bs / statistics.median(b[k] - a[k] for a, b in zip(t, t[1:])) for k in (0, 1))


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def bare(dl, dev, lr, wd):
    m = model().to(dev).train()
    ev = EvalTransform.from_model(m).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd)
    stamps = []
    for x, y in dl:
        x, y = ev(x.to(dev)), y.to(dev)
        loss = F.cross_entropy(m(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        sync(dev); stamps.append(now())
    return stamps


class Stamp(Callback):
    order = 100
    def before_fit(self): self.stamps = []
    def after_step(self): sync(self.learn.device); self.stamps.append(now())


def engine(dl, dev, lr, wd):
    cfg = TrainConfig(epochs=1, lr=lr, weight_decay=wd, warmup_epochs=0.25, clip_grad=None, label_smoothing=0,
                      monitor='train_loss', device=str(dev), amp=False, channels_last=False)
    st = Stamp()
    fit(model(), dl, None, cfg, aug=False, callbacks=[st], progress=True)
    return st.stamps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=8, help='timed steps per run')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps at the start of each run')
    p.add_argument('--repeats', type=int, default=3, help='alternating bare/engine rounds')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--threads', type=int, default=0, help='torch intra-op threads (0: torch default)')
    p.add_argument('--device', default='cpu')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    x, y = make_data(a.bs * (a.steps + a.warmup), a.size)
    dl = DataLoader(TensorDataset(x, y), batch_size=a.bs, shuffle=True)
    print(f"convnextv2_atto, batch {a.bs}, {a.size} px, {a.warmup}+{a.steps} steps x {a.repeats} rounds on {dev}, "
          f"{torch.get_num_threads()} threads, load average before {os.getloadavg()[0]:.1f}")
    res = {'bare': [], 'engine': []}
    for r in range(a.repeats):
        for name, fn in (('bare', bare), ('engine', engine)):
            wall, cpu = throughput(fn(dl, dev, 1e-3, 0.05), a.bs, a.warmup)
            res[name].append((wall, cpu))
            print(f"  round {r}: {name:6s} {wall:7.1f} img/s wall clock, {cpu:7.1f} img/s of CPU time")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    for k, what in ((0, 'wall clock'), (1, 'CPU time (robust to other jobs on a shared CPU)')):
        b, e = (statistics.median(v[k] for v in res[n]) for n in ('bare', 'engine'))
        print(f"RESULT {what}: bare {b:.1f} img/s | engine {e:.1f} img/s | engine/bare {e / b:.3f} "
              f"(overhead {100 * (1 - e / b):+.1f}%, target < 5%)")


if __name__ == '__main__':
    main()
