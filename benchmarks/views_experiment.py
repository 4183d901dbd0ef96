"""Measured (issue 15): per-cherry tiers from V = 1, 3 and 10 views per cherry, with the same number of training images.

One simulator set with 10 exchangeable views per cherry (64 px, seed 0) is rendered once. For each V and training seed a
small model is trained per image on the first V views of the first N/V training cherries (so every arm sees N training
images, and fewer cherries when V is larger), then scores the first V views of the validation cherries (temperature)
and of a shared pool of cherries. For every aggregation rule (`cherry_nb.judge.views.RULES`) the pool is split by cherry
into calibration and test halves many times; per split the tiers are certified on the calibration cherries
(alpha 2%, delta 10%, beta 5%) and the test cherries give the per-cherry pit-miss and review rates; the review rate at
a test pit-miss of 2% (an oracle accept threshold on the test half) is the matched point. Then the coverage of the
cherry-level guarantee over random calibration draws, and the same with the views certified as independent images.

Everything trained or scored is cached under --out (runs/ is not in git), so a rerun only computes what is missing.
Results: benchmarks/results/views_experiment.{json,md}.
Usage: python benchmarks/views_experiment.py [--out runs/views-experiment] [--seeds 0 1 2] [--epochs 6]
"""
import argparse, math, time
from pathlib import Path

import numpy as np, pandas as pd, torch
from scipy import stats
from cherry_nb.core import *
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder, save_manifest, CachedImageDataset, make_loader
from cherry_nb.run.jobs import TrainJob, run_job
from cherry_nb.learn.artifacts import load_artifact
from cherry_nb.judge.evaluate import predict
from cherry_nb.judge.calibrate import fit_temperature, softmax_t
from cherry_nb.judge.tiers import guaranteed_tiers, InsufficientCalibration
from cherry_nb.judge.views import RULES, cherry_scores, resplit_coverage, coverage_summary

ALPHA, DELTA, BETA, TOPK = 0.02, 0.1, 0.05, 2
RESULTS = Path(__file__).parent / 'results'

def _say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

def data_manifest(out: Path, a) -> pd.DataFrame:
    "The rendered set (10 views per cherry) as a manifest with the truth columns; rendered and read once."
    root, f = out / 'data', out / 'manifest.csv'
    if not (root / 'dataset.json').exists():
        _say('rendering', a.train_images, 'train,', a.n_val, 'val and', a.n_pool, 'pool cherries x', max(a.views))
        render_dataset(root, n_train=a.train_images, n_val=a.n_val, n_test=a.n_pool, size=64, views=max(a.views),
                       seed=0, workers=2, progress=False)
    if not f.exists():
        _say('reading the image folder'); save_manifest(read_image_folder(root, progress=False), f)
    m = pd.read_csv(f, dtype={'cherry_id': str, 'path': str})
    m['path'] = [str(f.parent.absolute() / q) for q in m.path]         # stored relative to the manifest
    m['index'] = m.cherry_id.str.rsplit('-', n=1).str[1].astype(int)
    return m

def train(out: Path, m: pd.DataFrame, V: int, seed: int, a) -> Path:
    "Train (or find) the model of arm V and seed: first V views of the first N/V training cherries, val views < V."
    run = out / f'V{V}'; run.mkdir(parents=True, exist_ok=True)
    rows = m[(m.view < V) & (((m.split == 'train') & (m['index'] < a.train_images // V)) | (m.split == 'val'))]
    if not (run / 'manifest.csv').exists(): save_manifest(rows.drop(columns='index'), run / 'manifest.csv')
    job = TrainJob(f'seed{seed}', 'manifest.csv', arch=a.arch, image_size=64, aug='light',
                   train=dict(epochs=a.epochs, lr=a.lr, batch_size=64, seed=seed, warmup_epochs=0.5))
    t = time.time(); w = run_job(job, run, cache_dir=out / '.cache', progress=False)
    _say(f'V={V} seed={seed}: model ready ({time.time() - t:.0f} s,',
         f"{int(((rows.split == 'train')).sum())} training images)")
    return w

def score(out: Path, m: pd.DataFrame, V: int, seed: int, weights: Path) -> pd.DataFrame:
    "Logits of the first V views of the val and pool cherries (cached as CSV)."
    f = out / f'V{V}' / f'scores_seed{seed}.csv'
    if f.exists(): return pd.read_csv(f, dtype={'cherry_id': str})
    model, _ = load_artifact(weights)
    rows = m[(m.view < V) & m.split.isin(['val', 'test'])].reset_index(drop=True)
    ds = CachedImageDataset(rows, 64, CLASSES_2, 'label', cache_dir=out / '.cache', progress=False)
    pr = predict(model, make_loader(ds, 256), device='cpu', progress=False)
    d = rows[['relpath', 'split', 'cherry_id', 'view', 'pit_present', 'visibility', 'view_hidden']].assign(
        logit_clean=pr.logits[:, 0], logit_pit=pr.logits[:, 1])
    atomic_write(f, d.to_csv(index=False))
    return d

def calibrated(d: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    "The pool's views with p = p(pit) after temperature scaling fitted on the validation views; and T."
    z = lambda x: x[['logit_clean', 'logit_pit']].to_numpy()
    v, pool = d[d.split == 'val'], d[d.split == 'test'].reset_index(drop=True)
    ts = fit_temperature(z(v), v.pit_present.to_numpy())
    return pool.assign(p=softmax_t(z(pool), ts.temperature)[:, 1]), ts.temperature

def _matched_review(s, y, reject: float, target: float = ALPHA) -> float:
    "Review rate at the most lenient accept threshold whose pit-miss on (s, y) is <= target (reject kept)."
    sp = np.sort(s[y == 1]); m = int(math.floor(target * len(sp) + 1e-9))
    t = sp[m] if m < len(sp) else 1.0 + 1e-9                # accept iff s < t: exactly the m lowest pits
    return float(((s >= t) & (s < max(reject, t))).mean())

def evaluate(pool: pd.DataFrame, n_splits: int) -> pd.DataFrame:
    "Per rule and cal/test split of the pool's cherries: certified thresholds, test pit-miss, review, matched review."
    out = []
    for rule in RULES:
        tab = cherry_scores(pool.p, pool.cherry_id, rule, TOPK, y=pool.pit_present)
        s, y, n = tab.score.to_numpy(), tab.y_pit.to_numpy(), len(tab)
        for r in range(n_splits):
            perm = np.random.default_rng([7, r]).permutation(n); cal, te = perm[:n // 2], perm[n // 2:]
            try: g = guaranteed_tiers(s[cal], y[cal], ALPHA, DELTA, BETA); t, j = g.accept_threshold, g.reject_threshold
            except InsufficientCalibration: t, j = 0.0, 1.0
            st, yt = s[te], y[te]
            out.append(dict(rule=rule, split=r, accept=t, reject=j, pits=int(yt.sum()), n=len(te),
                            pits_accepted=int(((st < t) & (yt == 1)).sum()), reviewed=int(((st >= t) & (st < j)).sum()),
                            matched_review=_matched_review(st, yt, j)))
    return pd.DataFrame(out)

def coverage(pool: pd.DataFrame, n_draws: int) -> list:
    "Coverage of the per-cherry guarantee (cherry-level vs views certified as images) over calibration draws."
    rows = []
    for rule in RULES:
        for per_image in (False, True):
            cv = resplit_coverage(pool.p, pool.pit_present, pool.cherry_id, rule, ALPHA, DELTA, None,
                                  n_cal=pool.cherry_id.nunique() // 2, n_resplits=n_draws, per_image=per_image,
                                  k=TOPK, seed=1)
            c = coverage_summary(cv)
            rows.append(dict(rule=rule, per_image=per_image, covered=c['coverage'].k, draws=c['coverage'].n,
                             mean_risk=c['mean_risk'], mean_accepted=c['mean_accepted']))
    return rows

def _interval(v) -> tuple[float, float, float]:
    "Mean and 95% t-interval over seeds (the mean twice when there is one seed)."
    v = np.asarray(v, float); m = float(v.mean())
    if len(v) < 2: return m, m, m
    h = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - h, m + h

def summarise(ev: pd.DataFrame, cov: pd.DataFrame) -> dict:
    "Per (V, rule): rates pooled over splits per seed, then mean and interval over seeds; review ratios vs V = 1."
    g = ev.groupby(['V', 'rule', 'seed']).agg(pits_accepted=('pits_accepted', 'sum'), pits=('pits', 'sum'),
                                                reviewed=('reviewed', 'sum'), n=('n', 'sum'),
                                                matched=('matched_review', 'mean')).reset_index()
    g['pit_miss'], g['review'] = g.pits_accepted / g.pits, g.reviewed / g.n
    rows = []
    for (V, rule), d in g.groupby(['V', 'rule']):
        base = g[(g.V == min(g.V)) & (g.rule == rule)].set_index('seed')
        r = dict(V=int(V), rule=rule, seeds=sorted(d.seed.tolist()), pits_accepted=int(d.pits_accepted.sum()),
                 pits=int(d.pits.sum()), reviewed=int(d.reviewed.sum()), n=int(d.n.sum()))
        for k in ('pit_miss', 'review', 'matched'): r[k] = _interval(d[k])
        for k in ('review', 'matched'):
            ratio = d.set_index('seed')[k] / base[k].reindex(d.seed).to_numpy()
            lr = _interval(np.log(ratio.to_numpy()))
            r[f'{k}_ratio'] = tuple(float(np.exp(x)) for x in lr)
        rows.append(r)
    c = cov.groupby(['V', 'rule', 'per_image']).agg(covered=('covered', 'sum'), draws=('draws', 'sum'),
                                                   mean_risk=('mean_risk', 'mean'),
                                                   mean_accepted=('mean_accepted', 'mean')).reset_index()
    return dict(arms=rows, coverage=c.to_dict(orient='records'))

def _pct(x) -> str: return f"{100 * x:.1f}%"
def _ci(t, f=_pct) -> str: return f"{f(t[0])} [{f(t[1])}, {f(t[2])}]"

def _info(res: dict) -> str:
    "Per V: the model's per-view AUROC and temperature (mean over seeds)."
    d = pd.DataFrame(res['info']).groupby('V')[['view_auroc', 'temperature']].mean()
    return '; '.join(f"V={V}: view AUROC {r.view_auroc:.3f}, T {r.temperature:.2f}" for V, r in d.iterrows())

def markdown(res: dict, a) -> str:
    "The results as Markdown tables."
    arms, x = pd.DataFrame(res['arms']), lambda v: f"{v:.2f}x"
    lines = [f"Simulator (64 px, 10 exchangeable views per cherry), {a.train_images} training images per arm, "
             f"`{a.arch}`, {a.epochs} epochs, seeds {a.seeds}; a pool of {a.n_pool} cherries split {a.splits} times "
             f"into calibration / test halves; alpha {ALPHA:g}, delta {DELTA:g}, beta {BETA:g}. Rates per cherry, "
             "mean over seeds [95% t-interval over seeds] (counts pooled over seeds and splits); ratios: geometric "
             f"mean over seeds of review(V) / review(V=1) with the same rule. {_info(res)}.", '',
             '| V | rule | pit-miss (guaranteed) | review (guaranteed) | review at pit-miss 2% | review ratio '
             '| ratio at pit-miss 2% |', '|---|---|---|---|---|---|---|']
    for r in arms.itertuples():                                  # one view: every rule gives the view's score
        if r.V == 1 and r.rule != arms.rule.iloc[0]: continue
        rule = 'any (one view)' if r.V == 1 else r.rule
        lines.append(f"| {r.V} | {rule} | {_ci(r.pit_miss)} ({r.pits_accepted}/{r.pits}) | {_ci(r.review)} "
                     f"({r.reviewed}/{r.n}) | {_ci(r.matched)} | {_ci(r.review_ratio, x)} "
                     f"| {_ci(r.matched_ratio, x)} |")
    lines += ['', 'Coverage of the per-cherry promise (pit-miss per cherry <= alpha on the pool) over random '
              'calibration draws of half the pool (promised: 90%), accept / reject tiers only (no beta); '
              '"accepted": share of the pool accepted:', '',
              '| V | rule | certified per cherry | views certified as independent images |', '|---|---|---|---|']
    c = pd.DataFrame(res['coverage'])
    cell = lambda q: (f"{rate(int(q.covered), int(q.draws))}, mean pit-miss {_pct(q.mean_risk)}, "
                      f"accepted {_pct(q.mean_accepted)}")
    for (V, rule), d in c.groupby(['V', 'rule'], sort=False):
        if V == 1 and rule != c.rule.iloc[0]: continue
        rule = 'any (one view)' if V == 1 else rule
        lines.append(f"| {V} | {rule} | {cell(d[~d.per_image].iloc[0])} | {cell(d[d.per_image].iloc[0])} |")
    return '\n'.join(lines) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='runs/views-experiment')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--views', type=int, nargs='+', default=[1, 3, 10])
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--lr', type=float, default=3e-3); ap.add_argument('--arch', default='test_resnet')
    ap.add_argument('--train-images', type=int, default=2400); ap.add_argument('--n-val', type=int, default=200)
    ap.add_argument('--n-pool', type=int, default=1200); ap.add_argument('--splits', type=int, default=100)
    ap.add_argument('--draws', type=int, default=200)
    a = ap.parse_args(); out = Path(a.out); torch.set_num_threads(2); t0 = time.time()
    m = data_manifest(out, a)
    ev, cov, info = [], [], []
    for seed in a.seeds:
        for V in a.views:
            pool, T = calibrated(score(out, m, V, seed, train(out, m, V, seed, a)))
            ev.append(evaluate(pool, a.splits).assign(V=V, seed=seed))
            cov += [dict(V=V, seed=seed, **c) for c in coverage(pool, a.draws)]
            info.append(dict(V=V, seed=seed, temperature=T, n_pool_views=len(pool),
                             view_auroc=float(roc_auc(pool.p, pool.pit_present))))
            _say(f"V={V} seed={seed}: evaluated (T={T:.2f}, view AUROC {info[-1]['view_auroc']:.3f})")
    ev = pd.concat(ev, ignore_index=True)
    res = summarise(ev, pd.DataFrame(cov)) | dict(info=info, args=vars(a), minutes=round((time.time() - t0) / 60, 1))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / 'views_experiment.json', res)
    md = markdown(res, a); atomic_write(RESULTS / 'views_experiment.md', md); print(md)
    _say(f"done in {res['minutes']} min")

def roc_auc(s, y) -> float:
    "Area under the ROC curve (Mann-Whitney)."
    from sklearn.metrics import roc_auc_score
    return roc_auc_score(np.asarray(y), np.asarray(s))

if __name__ == '__main__': main()
