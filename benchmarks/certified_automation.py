"""Certified-automation benchmark (issue 22): how many cherries a certified policy accepts on presets nobody tuned for.

A user of `cherry-nb sweep`: the two-stage workflow runs once per simulator preset (`quick`, `hard` and the `shift`
family of `cherry_nb.data.synth`), each a normal run folder of one sweep. Each run's stage-1 model (with the run's own
temperature) then scores a fresh pool of the same preset, rendered with another seed and never seen in training:
its `val` half calibrates, its `test` half measures. Per alpha (1%, 2%, 5%; delta 10%) the table gives:
- the oracle accept share: the threshold at the true alpha-quantile of the test pits' scores (the scorer's limit);
- the certified accept share: `tiers.guaranteed_tiers` certified on the calibration half, applied to the test half;
- the certified policy's pit-miss on the test half (a fresh draw), with its 95% interval;
- the share of 200 random resplits of the pool whose certified test pit-miss exceeds alpha (checks the guarantee);
- AUROC on the test half, and the run's wall and CPU time (from the sweep's `sweep_cost.json`).
The shares are computed here from the scores; a run's own `metrics.json` "automation" entry (one alpha) is not needed.

Usage: python benchmarks/certified_automation.py [--presets quick,hard,shift-light,...] [--epochs1 20] [--epochs2 5]
       [--pool 1100] [--runs-dir runs/certified-automation] [--backend local|ray]
Results: benchmarks/results/certified_automation.{md,json}
"""
import argparse, json, math, shlex, sys, time
from pathlib import Path

import numpy as np, pandas as pd
from cherry_nb.core import rate, to_json, atomic_write, read_json
from cherry_nb.data.synth import PRESETS, PRESET_FAMILIES, render_dataset
from cherry_nb.data import read_image_folder
from cherry_nb.run.runs import RunFolder
from cherry_nb.judge.evaluate import score_artifact
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.judge.tiers import guaranteed_tiers, InsufficientCalibration, calibration_size_needed
from cherry_nb.faces.sweep import run_sweep, sweep_table, plan_sweep, SweepFailed

ALPHAS, DELTA, POOL_SEED = (0.01, 0.02, 0.05), 0.1, 1000
RESULTS = Path(__file__).parent / 'results'

def _say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

def pool(runs_dir: Path, preset: str, n: int) -> pd.DataFrame:
    "A fresh pool of `preset` (seed POOL_SEED, n cherries in each of val and test), rendered once."
    root = runs_dir / 'pools' / f'{preset}-seed{POOL_SEED}-n{n}'
    if not (root / 'dataset.json').exists():
        _say('render pool', root.name)
        render_dataset(root, preset, seed=POOL_SEED, n_train=0, n_val=n, n_test=n, workers=1, progress=False,
                       overwrite=root.exists())
    return read_image_folder(root, progress=False)

def pool_scores(run: Path, df: pd.DataFrame, cache: Path) -> dict:
    "{split: (calibrated p(pit), y_pit)} of the run's stage-1 model and temperature on the pool (kept in the run)."
    f = run / 'pool_scores.npz'
    if f.is_file():
        z = np.load(f); return {sp: (z[f'{sp}_s'], z[f'{sp}_y']) for sp in ('val', 'test')}
    ts = TemperatureScaler.from_meta(read_json(run / 'metrics.json')['temperature'])
    out = {}
    for sp in ('val', 'test'):
        d = df[df['split'] == sp].reset_index(drop=True)
        q = score_artifact(RunFolder(run).artifact('stage1'), d, cache, progress=False)
        out[sp] = (ts.probs(q.logits)[:, 1], (d['label'] == 'pit').to_numpy().astype(int))
    np.savez(f, **{f'{sp}_{k}': v for sp, (s, y) in out.items() for k, v in (('s', s), ('y', y))})
    return out

def resplit_failures(sc: dict, alpha: float, n: int = 200, seed: int = 0) -> dict:
    "Over n random half-splits of the whole pool: share of certificates whose test pit-miss exceeds alpha."
    s, y = np.r_[sc['val'][0], sc['test'][0]], np.r_[sc['val'][1], sc['test'][1]]
    rng, over, ok = np.random.default_rng(seed), 0, 0
    for _ in range(n):
        i = rng.permutation(len(s)); c, t = i[:len(s) // 2], i[len(s) // 2:]
        try: thr = guaranteed_tiers(s[c], y[c], alpha, DELTA, beta=None).accept_threshold
        except InsufficientCalibration: continue
        ok += 1; over += (s[t][y[t] == 1] < thr).mean() > alpha
    return dict(splits=ok, over_alpha=over / ok if ok else float('nan'))

def oracle_share(s, y, alpha: float):
    "Accept share of the threshold at the true alpha-quantile of the pits' scores (accept iff s < t)."
    sp = np.sort(s[y == 1]); k = int(math.floor(alpha * len(sp)))
    t = sp[k] if k < len(sp) else np.inf
    return rate((s < t).sum(), len(s))

def at_alpha(cal, test, alpha: float) -> dict:
    "Oracle and certified accept share and the certified pit-miss on the test half, at alpha (delta 10%)."
    (sc, yc), (st, yt) = cal, test
    out = dict(oracle=oracle_share(st, yt, alpha), cal_pits=int(yc.sum()))
    try: t = guaranteed_tiers(sc, yc, alpha, DELTA, beta=None).accept_threshold
    except InsufficientCalibration as e: return out | dict(certified=None, pit_miss=None, needed=e.needed)
    return out | dict(certified=rate((st < t).sum(), len(st)), pit_miss=rate((st[yt == 1] < t).sum(), yt.sum()),
                      threshold=t)

def measure(run: Path, df: pd.DataFrame, cache: Path) -> dict:
    "AUROC and the three alphas of one run on its preset's pool."
    from sklearn.metrics import roc_auc_score
    sc = pool_scores(run, df, cache)
    st, yt = sc['test']
    return dict(auroc=float(roc_auc_score(yt, st)), n_test=len(st), test_pits=int(yt.sum()),
                alphas={a: at_alpha(sc['val'], sc['test'], a) | dict(resplits=resplit_failures(sc, a)) for a in ALPHAS})

def _r(x) -> str:
    if x is None: return 'infeasible'
    return f"{100 * x.rate:.1f}% ({100 * x.lo:.1f}-{100 * x.hi:.1f})"

def table(rows: list) -> str:
    "The Markdown table: one row per preset."
    head = ['preset', 'AUROC', 'cal pits'] + [f'{k} {100 * a:g}%' for a in ALPHAS for k in ('oracle', 'certified')] \
           + [f'pit-miss {100 * a:g}%' for a in ALPHAS] + [f'resplits > {100 * a:g}%' for a in ALPHAS] \
           + ['wall s', 'CPU s']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        m = r['m']; al = m['alphas']
        cells = [r['preset'], f"{m['auroc']:.3f}", str(al[ALPHAS[0]]['cal_pits'])]
        cells += [_r(al[a][k]) for a in ALPHAS for k in ('oracle', 'certified')]
        cells += [_r(al[a]['pit_miss']) if al[a]['pit_miss'] else '-' for a in ALPHAS]
        cells += [f"{100 * al[a]['resplits']['over_alpha']:.0f}%" for a in ALPHAS]
        lines.append('| ' + ' | '.join(cells + [f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}"]) + ' |')
    return '\n'.join(lines)

def args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--presets', default=','.join(('quick', 'hard') + PRESET_FAMILIES['shift']))
    ap.add_argument('--epochs1', type=int, default=None, help='stage-1 epochs (default: the workflow default)')
    ap.add_argument('--epochs2', type=int, default=None, help='stage-2 epochs (default: the workflow default)')
    ap.add_argument('--pool', type=int, default=1100, help='cherries in each half (calibration, test) of the pool')
    ap.add_argument('--runs-dir', default='runs/certified-automation')
    ap.add_argument('--backend', default='local', choices=('local', 'ray'))
    ap.add_argument('--out', default=str(RESULTS / 'certified_automation'))
    ap.add_argument('--report-only', action='store_true', help='measure the completed cells only; run nothing new')
    return ap.parse_args()

def main():
    a = args(); t0 = time.time(); runs = Path(a.runs_dir)
    presets = a.presets.split(',')
    bad = [p for p in presets if p not in PRESETS]
    if bad: sys.exit(f"unknown presets {bad}; choose from {list(PRESETS)}")
    grid = dict(preset=presets, **{k: [v] for k, v in (('epochs1', a.epochs1), ('epochs2', a.epochs2)) if v})
    try: root = plan_sweep('two-stage', grid, runs)[0] if a.report_only else run_sweep('two-stage', grid, runs,
                                                                                       backend=a.backend)
    except SweepFailed as e: root = e.root; _say(e)
    cost = sweep_table(root).set_index('cell')
    rows = []
    for p in presets:
        cell = f'preset-{p}' if len(presets) > 1 else 'single'
        if cost.loc[cell, 'status'] != 'completed': _say('not completed, left out:', p); continue
        _say('score the pool of', p)
        m = measure(root / cell, pool(runs, p, a.pool), runs / 'pools' / '.cache')
        rows.append(dict(preset=p, m=m, wall_s=float(cost.loc[cell, 'wall_s']), cpu_s=float(cost.loc[cell, 'cpu_s'])))
    write(a, rows, root, time.time() - t0)

def write(a, rows: list, root: Path, seconds: float):
    "benchmarks/results/certified_automation.{md,json}: the table, the command and the scale."
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in sys.argv)
    need = {x: calibration_size_needed(x, DELTA) for x in ALPHAS}
    counts = sorted({'/'.join(str(PRESETS[r['preset']][f'n_{s}']) for s in ('train', 'val', 'test')) for r in rows})
    scale = (f"two-stage workflow defaults except epochs1={a.epochs1 or 'default'}, epochs2={a.epochs2 or 'default'}; "
             f"the presets' own train/val/test counts for the runs ({', '.join(counts)}); a fresh pool of {a.pool} "
             f"calibration and {a.pool} test cherries per preset (seed {POOL_SEED}), one view per cherry")
    md = (f"# Certified automation benchmark\n\nCommand: `{cmd}`\n\nScale: {scale}. Sweep folder: `{root}`. "
          f"Total wall time {seconds:.0f} s (shared 2-core machine, `nice`, OMP_NUM_THREADS=1).\n\n"
          f"Accept shares are shares of all test cherries, with 95% Wilson intervals; delta = {DELTA:g}. "
          "Zero calibration misses need at least " + ', '.join(f"{n} pits for alpha {100 * x:g}%" for x, n in
                                                                  need.items())
          + ". 'infeasible': the calibration half has fewer pits than that allows. 'resplits > alpha': over 200 random "
          "half-splits of the whole pool, the share of certificates whose test pit-miss exceeds alpha (the guarantee "
          "allows delta = 10%, plus the noise of a finite test half).\n\n" + table(rows) + '\n')
    atomic_write(Path(a.out + '.md'), md)
    atomic_write(Path(a.out + '.json'), to_json(dict(command=cmd, scale=scale, sweep=str(root), seconds=seconds,
                                                     rows=rows)))
    print(md)

if __name__ == '__main__':
    main()
