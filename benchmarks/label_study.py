"""Measured (issue 24): what k labels buy the explicit 3-class method when `label.select` picks them, against a random
pick of the same size, with the simulator's truth playing the annotator.

One simulator set (64 px, seed 0) is rendered once. Its training split is the unlabelled pool. Two binary stage-1
models, each trained on half the pool, score the other half (out-of-fold p_pit, as `mining` makes). For each k and
seed, `select(pool, k, 'three_class')` (uncertain band 0.35-0.65 over-sampled, half of k; the rest at random, with
stratum weights) and a simple random sample of k are labelled with the simulator's label3 (clean / pit / maybe), and
the explicit 3-class model is trained on those k images alone, for the same number of image passes whatever k. Its
pit score (1 - p(clean)) is certified on the whole validation split, which needs only pit truth (alpha 2%, delta 10%,
beta 5%, `tiers.guaranteed_tiers`); the test split gives the certified accept share, the realised pit-miss, the maybe
recall (true maybe images predicted maybe) and the share of maybe images not accepted by the certified policy. The
ceiling is the same model on every pool image's label3. The labelled sample's weighted maybe share
(`label.weighted_share`) is compared with the pool's true share.

Everything trained is cached under --out (runs/ is not in git), so a rerun only computes what is missing.
Results: benchmarks/results/label_study.{json,md}.
Usage: nice python benchmarks/label_study.py [--out runs/label-study] [--ks 100 300 1000] [--seeds 0 1]
"""
import argparse, json, math, os, sys, time
from pathlib import Path

import numpy as np, pandas as pd
from cherry_nb.core import *
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder, save_manifest
from cherry_nb.run.jobs import TrainJob, run_job
from cherry_nb.judge.evaluate import score_artifact
from cherry_nb.judge.tiers import guaranteed_tiers, InsufficientCalibration
from cherry_nb.studies.label import select, weighted_share

ALPHA, DELTA, BETA = 0.02, 0.1, 0.05
RESULTS = Path(__file__).parent / 'results'

def _say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

def data(out: Path, a) -> pd.DataFrame:
    "The rendered set as a manifest with the truth columns (rendered once)."
    root = out / 'data'
    if not (root / 'dataset.json').exists():
        _say('rendering', a.n_pool, 'pool,', a.n_val, 'val,', a.n_test, 'test images')
        render_dataset(root, n_train=a.n_pool, n_val=a.n_val, n_test=a.n_test, size=64, seed=0, workers=1,
                       progress=False)
    return read_image_folder(root, progress=False)

def job(name, manifest, classes, label_col, epochs, a, **kw) -> TrainJob:
    tr = dict(epochs=epochs, lr=a.lr, batch_size=32, seed=kw.pop('seed', 0), fit_check=False)
    return TrainJob(name, manifest, label_col=label_col, classes=classes, arch=a.arch, image_size=64, aug='light',
                    val_split=None, train=tr, **kw)

def oof_scores(df: pd.DataFrame, out: Path, a) -> np.ndarray:
    "Out-of-fold stage-1 p_pit of every pool image (two halves, each scored by the model trained on the other)."
    pool = df[df.split == 'train'].reset_index(drop=True)
    half = np.random.default_rng(0).permutation(len(pool)) % 2
    save_manifest(pool.assign(fold=half), out / 'pool_folds.csv'); p = np.zeros(len(pool))
    for f in (0, 1):
        j = job(f'stage1_fold{f}', 'pool_folds.csv', CLASSES_2, 'label', a.epochs1, a, exclude_fold=f)
        run_job(j, out, progress=False)
        p[half == f] = score_artifact(out / 'artifacts' / j.name, pool[half == f], out / '.cache', False).pit_score
    return p

def three_class(df: pd.DataFrame, rows: pd.DataFrame, name: str, out: Path, a, seed: int) -> tuple:
    "Train the explicit 3-class model on the labelled `rows`; its pit scores on val and test, and test argmax."
    save_manifest(rows.assign(split='train'), out / f'{name}.csv')
    epochs = max(1, math.ceil(a.passes / len(rows)))
    j = job(name, f'{name}.csv', CLASSES_3, 'label3', epochs, a, seed=seed)
    run_job(j, out, progress=False)
    pr = {s: score_artifact(out / 'artifacts' / name, df[df.split == s], out / '.cache', False).probs
          for s in ('val', 'test')}
    return 1 - pr['val'][:, 0], 1 - pr['test'][:, 0], pr['test'].argmax(1)

def measure(df: pd.DataFrame, sv, st, arg) -> dict:
    "Certified accept share, realised pit-miss, maybe recall and maybe-not-accepted on test."
    va, te = df[df.split == 'val'], df[df.split == 'test']
    yv, yt = (va.true_label == 'pit').to_numpy(int), (te.true_label == 'pit').to_numpy(int)
    maybe = (te.label3 == 'maybe').to_numpy()
    out = dict(maybe_recall=rate(int((arg[maybe] == 2).sum()), int(maybe.sum())))
    try: g = guaranteed_tiers(sv, yv, ALPHA, DELTA, BETA)
    except InsufficientCalibration as e: return dict(out, note=str(e))
    acc = st < g.accept_threshold
    return dict(out, threshold=g.accept_threshold, accept=rate(int(acc.sum()), len(acc)),
                pit_miss=rate(int((acc & (yt == 1)).sum()), int(yt.sum())),
                maybe_not_accepted=rate(int((~acc & maybe).sum()), int(maybe.sum())))

def arms(df: pd.DataFrame, p_oof: np.ndarray, a):
    "(design, k, seed, labelled rows) of every arm: `select` and random for each k and seed, and the ceiling."
    pool = df[df.split == 'train'].reset_index(drop=True)
    items = pool.assign(score=p_oof, cherry_id='', stratum='all', weight=1.0)
    for k in a.ks:
        for s in a.seeds:
            for design, purpose in (('select', 'three_class'), ('random', 'calibration')):
                yield design, k, s, select(items, k, purpose, seed=s)
    yield 'all labels', len(pool), 0, items

def _pool(rates) -> Rate: return rate(sum(r.k for r in rates), sum(r.n for r in rates))

def summarize(rows: list) -> pd.DataFrame:
    "One row per (design, k): counts pooled over seeds, and the mean weighted maybe estimate."
    out = []
    for (d, k), g in pd.DataFrame(rows).groupby(['design', 'k'], sort=False):
        r = dict(design=d, k=k, seeds=len(g))
        for c in ('accept', 'pit_miss', 'maybe_recall', 'maybe_not_accepted'):
            got = [x for x in g.get(c, []) if isinstance(x, Rate)]
            r[c] = _pool(got) if got else None
        r['labelled_maybe'] = int(g.labelled_maybe.sum()); r['maybe_estimate'] = float(g.maybe_estimate.mean())
        out.append(r)
    return pd.DataFrame(out)

def write(summary: pd.DataFrame, rows: list, meta: dict):
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / 'label_study.json', jsonable(dict(meta=meta, rows=rows,
                                                                   summary=summary.to_dict('records'))))
    lines = [f"# Label study: `select` vs random labels for the explicit 3-class method\n", meta['scale'] + '\n',
             f"Command: `{meta['command']}` ({meta['minutes']:.1f} min wall on {meta['host']}).\n",
             "| design | k | labelled maybe | weighted maybe estimate (pool: {:.3f}) | certified accept share | "
             "pit-miss (test) | maybe recall (argmax) | maybe not accepted (certified) |".format(meta['pool_maybe']),
             "|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        show = lambda x: '-' if x is None else str(x)
        lines.append(f"| {r.design} | {r.k} | {r.labelled_maybe} | {r.maybe_estimate:.3f} | {show(r.accept)} | "
                     f"{show(r.pit_miss)} | {show(r.maybe_recall)} | {show(r.maybe_not_accepted)} |")
    atomic_write(RESULTS / 'label_study.md', '\n'.join(lines) + '\n\n' + meta['reading'] + '\n')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='runs/label-study'); ap.add_argument('--ks', type=int, nargs='+',
                                                                         default=[100, 300, 1000])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1]); ap.add_argument('--arch', default='test_resnet')
    ap.add_argument('--n-pool', type=int, default=2400); ap.add_argument('--n-val', type=int, default=800)
    ap.add_argument('--n-test', type=int, default=1000); ap.add_argument('--epochs1', type=int, default=4)
    ap.add_argument('--passes', type=int, default=6000, help='image passes of every 3-class model')
    ap.add_argument('--lr', type=float, default=1e-3)
    a = ap.parse_args(argv); out = Path(a.out); out.mkdir(parents=True, exist_ok=True); t0 = time.time()
    df = data(out, a); _say('stage 1 (out of fold)'); p = oof_scores(df, out, a); rows = []
    for design, k, s, lab in arms(df, p, a):
        name = f"three_class_{design.replace(' ', '_')}_k{k}_s{s}"; _say(name)
        sv, st, arg = three_class(df, lab, name, out, a, s)
        est = weighted_share(lab.assign(label=lab.label3))[0]
        rows.append(dict(design=design, k=k, seed=s, labelled_maybe=int((lab.label3 == 'maybe').sum()),
                         maybe_estimate=est, **measure(df, sv, st, arg)))
    pool = df[df.split == 'train']
    meta = dict(command='nice python benchmarks/' + ' '.join([Path(sys.argv[0]).name] + sys.argv[1:]),
                minutes=(time.time() - t0) / 60, host=f"{os.cpu_count()} CPU cores (shared), CPU only",
                pool_maybe=float((pool.label3 == 'maybe').mean()),
                scale=(f"Simulator, 64 px, seed 0: pool (train) {a.n_pool}, val (calibration, pit truth only) "
                       f"{a.n_val}, test {a.n_test} images; `{a.arch}`, aug light; stage 1: 2 half-pool models x "
                       f"{a.epochs1} epochs; each 3-class model {a.passes} image passes (epochs = passes / k, no fit "
                       f"check); seeds {a.seeds}; "
                       f"alpha {ALPHA}, delta {DELTA}, beta {BETA}. Rates pool the seeds' test counts (per image). "
                       "A small CPU-scale study: read the direction, not the decimals."),
                reading='')
    summary = summarize(rows); meta['reading'] = reading(summary); write(summary, rows, meta)
    print((RESULTS / 'label_study.md').read_text())

def reading(s: pd.DataFrame) -> str:
    "One honest paragraph generated from the numbers (no claims the table does not carry)."
    parts = []
    for k in sorted(set(s.k) - {s.k.max()} if 'all labels' in set(s.design) else set(s.k)):
        a, b = (s[(s.k == k) & (s.design == d)].iloc[0] for d in ('select', 'random'))
        pc = lambda r: '-' if r is None else f"{r.rate:.0%}"
        parts.append(f"k={k}: select labels {a.labelled_maybe} maybe vs {b.labelled_maybe} at random; maybe recall "
                     f"{pc(a.maybe_recall)} vs {pc(b.maybe_recall)}; certified accept share "
                     f"{pc(a.accept)} vs {pc(b.accept)}.")
    return ' '.join(parts)

if __name__ == '__main__':
    main()
