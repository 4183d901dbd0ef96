"""The guarantee watch on the simulator: false alarms, detection delays, what each shift does to the guarantee, and
simple monitors on the same streams.

Two stages (run both, in order; the first is the heavy one):
  python benchmarks/watch_sim.py scores   # render, train once, score the pools -> benchmarks/results/watch_scores.npz
  python benchmarks/watch_sim.py sim      # streams from those scores -> benchmarks/results/watch_sim.{json,md}

`scores` renders the `quick` preset at 64 px (seed 0) and trains one binary `convnextv2_atto` on its 600 train
images (`TrainJob`, heavy field-simulator augmentation, 15 epochs, CPU). It then renders, with seed 1, a calibration
split (2000 cherries) and a pool of 3000 other cherries, unshifted and under each shift (`synth.Shift`: the same 3000
cherries with one thing changed), and scores every image. Data and the run folder go under data/watch-sim/ and
runs/watch-sim/ (both git-ignored). It took 56 minutes on the busy shared 2-core machine.

`sim` draws streams from those scores (200 per setting by default; about 6 minutes on 2 cores):
- false alarms within 2000 cherries at level 1% and 5%: unshifted streams drawn without replacement, the reference
  either a fresh random split of the 5000 unshifted scores (the guarantee's setting) or the fixed calibration split;
- delays at level 1%: reference = the calibration split, streams of 5000 resampled with replacement from each pool
  (the `none` pool is the control: resampling a finite pool is itself a small shift);
- the realised pit-miss rate under each shift at the thresholds certified on the calibration split (alpha 5%, 2%);
- the same streams through windowed KS tests, a Shewhart mean chart and a CUSUM, and the watch's candidate settings,
  ranked by `choose_default`.
Everything in `sim` is seeded: a rerun on the same scores reproduces the tables exactly.

`power` (scores only, a few minutes on 2 busy cores) compares the default watch (5-bin histogram bettors), the
multi-scale watch (`NEW_WATCH`), the KS-cut watch (`KS_WATCH`: a bettor per cut and tilt, fixed share), a windowed
KS test, a Shewhart chart and a CUSUM in the issue's protocol:
streams of 200 in-distribution cherries, then 800 shifted ones (reference = the calibration split, level 1%).
Shifts: the simulator's pools, plus milder and gradual ones made at the score level from the same cherries (each
cherry's logit moved a fraction of the way from its unshifted to its shifted score: `gain~0.9` is 40% of the way
to `dim-0.5` (exposure x0.75), i.e. about a gain of 0.9; `blur~1.5px` 30% of the way to `blur-0.5` (+5 px motion);
`... ramp` goes from 0 to 100% over the 800 cherries). It writes benchmarks/results/watch_power.{md,json}:
  nice -n 5 python benchmarks/watch_sim.py power --streams 200 --seed 1   # seed 1: held out from tuning KS_WATCH
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'benchmarks' / 'results'   # `--results` changes it
SHIFTS = [('dim', 0.5), ('dim', 1.0), ('tint', 0.5), ('tint', 1.0), ('blur', 0.5), ('blur', 1.0),
          ('faint', 0.5), ('faint', 1.0), ('prevalence', 0.2), ('prevalence', 0.5)]
N_CAL, N_POOL, SIZE = 2000, 3000, 64


def pool_name(kind, strength): return 'none' if kind == 'none' else f'{kind}-{strength:g}'


def stage_scores(a):
    from cherry_nb.data.synth import render_dataset
    from cherry_nb.data import read_image_folder, save_manifest
    from cherry_nb.run.jobs import TrainJob, run_job, artifact_dir
    from cherry_nb.studies.two_stage import pit_scores_for
    from cherry_nb.learn.artifacts import read_artifact_meta
    data, run = ROOT / 'data' / 'watch-sim', ROOT / 'runs' / 'watch-sim'
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_root = data / 'train-quick'
    if not (train_root / 'dataset.json').exists():
        render_dataset(train_root, 'quick', seed=0, size=SIZE, workers=a.workers, overwrite=True)
    save_manifest(read_image_folder(train_root, check='header', progress=False), run / 'manifest.csv')
    job = TrainJob(name='binary', manifest='manifest.csv', arch=a.arch, image_size=SIZE, aug='heavy',
                   train=dict(epochs=a.epochs, lr=1e-3, batch_size=32, seed=0, device='cpu'))
    w = run_job(job, run, progress=True)
    meta = read_artifact_meta(artifact_dir(run) / 'binary')
    print(f"model {a.arch}: best epoch {meta['metrics']['best_epoch']}, {meta['metrics']['best']}", flush=True)
    pools = [('calibration', None, 'val', N_CAL), ('none', None, 'test', N_POOL)]
    pools += [(pool_name(k, s), (k, s), 'test', N_POOL) for k, s in SHIFTS]
    out = {}
    for name, shift, split, n in pools:
        root = data / f'pool-{name}'
        if not (root / 'dataset.json').exists():
            render_dataset(root, n_train=0, n_val=n if split == 'val' else 0, n_test=n if split == 'test' else 0,
                           seed=1, size=SIZE, shift=shift, workers=a.workers, overwrite=True, progress=False)
        df = read_image_folder(root, check='header', progress=False).sort_values('cherry_id').reset_index(drop=True)
        s = pit_scores_for(artifact_dir(run) / 'binary', df, SIZE, cache=None, progress=False)
        out[f'{name}_score'] = s.astype(np.float32)
        out[f'{name}_y'] = (df['true_label'] == 'pit').to_numpy().astype(np.int8)
        acc = float(((s >= 0.5) == out[f'{name}_y']).mean())
        print(f"{name}: {len(df)} cherries, pits {out[f'{name}_y'].mean():.3f}, accuracy@0.5 {acc:.3f}, "
              f"{time.time() - t0:.0f} s", flush=True)
    info = dict(arch=a.arch, epochs=a.epochs, image_size=SIZE, train='quick preset, seed 0, 600 train / 200 val',
                pools='seed 1: calibration = val split, pools = the same test-split cherries under each shift',
                n_calibration=N_CAL, n_pool=N_POOL, shifts=SHIFTS, best_epoch=meta['metrics']['best_epoch'],
                best=meta['metrics']['best'], seconds=round(time.time() - t0))
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(RESULTS / 'watch_scores.npz', info=np.array(json.dumps(info)), **out)
    print(f"wrote {RESULTS / 'watch_scores.npz'} in {time.time() - t0:.0f} s")


ALPHAS, DELTA, BETA = (0.05, 0.02), 0.1, 0.05
LEVELS, FA_LEN, DELAY_LEN, N_REF_FA = (0.01, 0.05), 2000, 5000, 2000
VARIANTS = {      # the watch's candidate settings; the default is chosen by the rule in `choose_default`
    'histogram bins=5': dict(bins=5), 'histogram bins=10': dict(bins=10), 'histogram bins=20': dict(bins=20),
    'histogram bins=10, a=10 only': dict(bins=10, concentrations=(1,)),
    'histogram bins=10, a=640 only': dict(bins=10, concentrations=(64,)),
    'jumper both sides': dict(betting='jumper', bins=20), 'jumper low': dict(betting='jumper', bins=20, side='low'),
    'jumper high': dict(betting='jumper', bins=20, side='high'),
    'conditional bins=10': dict(method='conditional', bins=10),
}


def _rate_row(k, n):
    from cherry_nb.core import rate
    r = rate(int(k), int(n)); return dict(count=f"{r.k}/{r.n}", rate=r.rate, lo=r.lo, hi=r.hi)


def delay_stats(t, horizon):
    "Median and 90th percentile of the alarm cherry (inf: none within horizon), shares never / within 1000."
    t = np.where(np.isnan(t), np.inf, t)
    q = lambda p: float(np.quantile(t, p, method='inverted_cdf'))
    return dict(median=q(0.5), p90=q(0.9), never=_rate_row((t > horizon).sum(), len(t)),
                within_1000=_rate_row((t <= 1000).sum(), len(t)))


def guarantee_table(cal, ycal, pools):
    from cherry_nb.judge.tiers import guaranteed_tiers, evaluate_policy
    rows, certs = [], {}
    for alpha in ALPHAS:
        g = guaranteed_tiers(cal, ycal, alpha=alpha, delta=DELTA, beta=BETA); certs[alpha] = g.as_dict()
        for name, (s, y) in pools.items():
            m = evaluate_policy(g.policy, s, y)
            rows.append(dict(alpha=alpha, pool=name, accept_threshold=g.accept_threshold, pits=int(y.sum()),
                             pit_miss=m.pit_miss.as_dict(), accept_share=m.counts['accept'] / m.n,
                             review=m.review.rate, exceeds=bool(m.pit_miss.rate > alpha),
                             breaks=bool(m.pit_miss.lo > alpha), prevalence=float(y.mean())))
    return rows, certs


def _monitors(level, h):
    "name -> fn(reference, streams [S, T], stream index) -> alarm cherries: the watch, its variants, the simple ones."
    from cherry_nb.line.watch import watch_alarms, ks_alarms, shewhart_alarms, cusum_alarms
    mons = {'watch (default)': lambda r, s, i: watch_alarms(r, s, level=level, seed=i)}
    mons |= {f'watch: {k}': (lambda kw: lambda r, s, i: watch_alarms(r, s, level=level, seed=i, **kw))(kw)
             for k, kw in VARIANTS.items()}
    return mons | {'KS, windows of 200': lambda r, s, i: ks_alarms(r, s, 200, level),
                   'Shewhart mean chart (50, 3 sd)': lambda r, s, i: shewhart_alarms(r, s),
                   f'CUSUM (k 0.5, h for {FA_LEN})': lambda r, s, i: cusum_alarms(r, s, h=h)}


def false_alarm_table(cal, none, S, rng):
    """False alarms within FA_LEN cherries on unshifted streams drawn without replacement: (a) 'fresh split': reference
    and stream a random split of the 5000 unshifted scores (the guarantee's setting); (b) 'fixed calibration': the
    calibration split as reference, streams from the unshifted pool (the rate given this one reference)."""
    from cherry_nb.line.watch import cusum_limit
    union = np.r_[cal, none]; perms = [rng.permutation(len(union)) for _ in range(S)]
    setups = {'fresh split': [(union[p[:N_REF_FA]], union[p[N_REF_FA:N_REF_FA + FA_LEN]]) for p in perms],
              'fixed calibration': [(cal, none[rng.permutation(len(none))[:FA_LEN]]) for _ in range(S)]}
    rows = []
    for level in LEVELS:
        for name, fn in _monitors(level, cusum_limit(cal, FA_LEN, level)).items():
            for setup, pairs in setups.items():
                t = np.array([fn(r, s[None], i)[0] for i, (r, s) in enumerate(pairs)])
                rows.append(dict(monitor=name, level=level, reference=setup, **_rate_row((~np.isnan(t)).sum(), S)))
            print(f"false alarms, level {level}: {name}: {rows[-2]['count']}, {rows[-1]['count']}", flush=True)
    return rows


def delay_table(cal, pools, S, rng, level=0.01):
    from cherry_nb.line.watch import cusum_limit
    mons = _monitors(level, cusum_limit(cal, FA_LEN, level))
    rows = []
    for pool, (s, _) in pools.items():
        st = rng.choice(s, (S, DELAY_LEN))
        for name, fn in mons.items():
            t = (np.array([fn(cal, x[None], i)[0] for i, x in enumerate(st)]) if name.startswith('watch')
                 else fn(cal, st, 0))
            rows.append(dict(monitor=name, pool=pool, level=level, **delay_stats(t, DELAY_LEN)))
        print(f"delays {pool}: " + ', '.join(f"{r['monitor']} {r['median']:g}" for r in rows[-len(mons):]), flush=True)
    return rows


def choose_default(guarantee, delays):
    """Rule: among the watch variants, (1) the most streams alarmed within 1000 cherries on the shifts that break the
    promise (pit-miss 95% lower bound above alpha = 5%), then (2) the shortest median delays on those shifts
    (geometric mean), then (3) the most streams alarmed within 1000 cherries over all shifts."""
    breaking = {r['pool'] for r in guarantee if r['alpha'] == ALPHAS[0] and r['breaks'] and r['pool'] != 'none'}
    score = {}
    for r in delays:
        if not r['monitor'].startswith('watch: ') or r['pool'] == 'none': continue
        b, a, m = score.setdefault(r['monitor'][7:], [[], [], []])
        if r['pool'] in breaking: b.append(r['within_1000']['rate']); m.append(r['median'])
        a.append(r['within_1000']['rate'])
    gm = lambda v: float(np.exp(np.mean(np.log(v)))) if v else float('inf')
    ranked = sorted(score, key=lambda k: (-np.mean(score[k][0] or [0]), gm(score[k][2]), -np.mean(score[k][1])))
    return dict(rule=' '.join(choose_default.__doc__.split()), breaking=sorted(breaking), ranking=[
        dict(variant=k, within_1000_breaking=float(np.mean(score[k][0] or [np.nan])),
             median_delay_breaking=gm(score[k][2]), within_1000_all=float(np.mean(score[k][1]))) for k in ranked])


NEW_WATCH = dict(betting='multiscale', bins=16, concentrations=(1, 8), discounts=(1.0, 0.99))
KS_WATCH = dict(betting='ks')                  # 16 bins, tilts +-0.2 / +-0.4, fixed share 0.001 (its defaults)
WATCHES = {'watch, old default (histogram, 5 bins)': {},
           'watch, multiscale (16 bins, forgetting 0.99)': NEW_WATCH,
           'watch, KS-cut (betting=ks)': KS_WATCH}
PRE, POST = 200, 800


def _interp(a, b, lam):
    "Scores a fraction `lam` of the way from `a` to `b` in logit space (the same cherries)."
    from scipy.special import expit, logit
    e = 1e-6; la, lb = logit(np.clip(a, e, 1 - e)), logit(np.clip(b, e, 1 - e))
    return expit((1 - lam) * la + lam * lb)


def power_streams(z, S, rng):
    "name -> streams [S, PRE + POST] (the change at PRE), the simulator's pools and score-level milder / gradual ones."
    none = z['none_score'].astype(np.float64); n = len(none)
    pool = lambda k: z[f'{k}_score'].astype(np.float64)
    fixed = {'gain~0.9': _interp(none, pool('dim-0.5'), 0.4), 'gain~0.8': _interp(none, pool('dim-0.5'), 0.8),
             'blur~1.5px': _interp(none, pool('blur-0.5'), 0.3), 'blur~3px': _interp(none, pool('blur-0.5'), 0.6)}
    fixed |= {k: pool(k) for k in [pool_name(*s) for s in SHIFTS]}
    out = {'none': np.r_[[none[rng.integers(0, n, PRE + POST)] for _ in range(S)]]}
    for k, p in fixed.items():
        out[k] = np.concatenate([none[rng.integers(0, n, (S, PRE))], p[rng.integers(0, n, (S, POST))]], 1)
    ramp = np.r_[np.zeros(PRE), np.linspace(0, 1, POST)]
    for k, target in (('gain ramp to ~0.75', 'dim-0.5'), ('blur ramp to +5px', 'blur-0.5')):
        c = rng.integers(0, n, (S, PRE + POST)); out[k] = _interp(none[c], pool(target)[c], ramp[None])
    return out


def power_monitors(cal, level=0.01):
    "name -> fn(streams [S, T]) -> alarm cherry per stream (NaN: none)."
    from cherry_nb.line.watch import watch_alarms, ks_alarms, shewhart_alarms, cusum_alarms, cusum_limit
    w = lambda kw: lambda st: np.array([watch_alarms(cal, x[None], level=level, seed=i, **kw)[0]
                                        for i, x in enumerate(st)])
    h = cusum_limit(cal, PRE + POST, level)
    return {**{name: w(kw) for name, kw in WATCHES.items()},
            'KS, windows of 200 (level 1% each)': lambda st: ks_alarms(cal, st, 200, level),
            'KS, windows of 200 (Bonferroni: 1% / 5 windows)': lambda st: ks_alarms(cal, st, 200, level / 5),
            'Shewhart mean chart (50, 3 sd)': lambda st: shewhart_alarms(cal, st),
            f'CUSUM (k 0.5, h {h:.2f} for 1% within {PRE + POST})': lambda st: cusum_alarms(cal, st, h=h)}


def stage_power(a):
    t0 = time.time(); z = np.load(RESULTS / 'watch_scores.npz', allow_pickle=False); rng = np.random.default_rng(a.seed)
    cal = z['calibration_score'].astype(np.float64)
    streams, mons, rows = power_streams(z, a.streams, rng), power_monitors(cal), []
    union = np.r_[cal, z['none_score'].astype(np.float64)]               # the guarantee's setting: a fresh split
    perms = [rng.permutation(len(union)) for _ in range(a.streams)]
    from cherry_nb.line.watch import Watch
    for name, kw in WATCHES.items():
        t = [Watch(union[p[:N_CAL]], level=0.01, seed=i, **kw).update(union[p[N_CAL:N_CAL + PRE + POST]])['alarm_at']
             for i, p in enumerate(perms)]
        rows.append(dict(monitor=name, shift='none, fresh split', **_rate_row(sum(x is not None for x in t), len(t))))
    for shift, st in streams.items():
        for name, fn in mons.items():
            t = fn(st); t = np.where(np.isnan(t), np.inf, t)
            early, det = (t <= PRE), (t > PRE) & np.isfinite(t)
            d = t[det] - PRE
            rows.append(dict(monitor=name, shift=shift, false_alarm=_rate_row(early.sum(), len(t)),
                             detected=_rate_row(det.sum(), len(t)),
                             median_delay=float(np.median(d)) if len(d) else None))
        print(f"{shift}: " + ', '.join(f"{r['monitor'].split(' (')[0]} {r['detected']['count']}"
                                       for r in rows[-len(mons):]), flush=True)
    res = dict(info=dict(streams=a.streams, seed=a.seed, pre=PRE, post=POST, watches=WATCHES,
                         seconds=round(time.time() - t0), command='nice -n 5 python benchmarks/watch_sim.py power '
                                                                 f'--streams {a.streams} --seed {a.seed}'), rows=rows)
    from cherry_nb.core import atomic_write_json, atomic_write
    atomic_write_json(RESULTS / 'watch_power.json', res); atomic_write(RESULTS / 'watch_power.md', power_markdown(res))
    print(f"wrote {RESULTS / 'watch_power.md'} in {time.time() - t0:.0f} s")


def power_markdown(res) -> str:
    import pandas as pd
    from cherry_nb.faces.report import md_table
    rs = [r for r in res['rows'] if 'detected' in r]
    delay = lambda r: '-' if r['median_delay'] is None else f"{r['median_delay']:.0f}"
    cell = lambda r: f"{100 * r['detected']['rate']:.1f}% / {delay(r)} / {100 * r['false_alarm']['rate']:.1f}%"
    tab = pd.DataFrame([dict(shift=r['shift'], monitor=r['monitor'], v=cell(r)) for r in rs])
    tab = tab.pivot(index='shift', columns='monitor', values='v').reindex(list(dict.fromkeys(r['shift'] for r in rs)))
    tab = tab[list(dict.fromkeys(r['monitor'] for r in rs))]; tab.columns.name = None
    fa = pd.DataFrame([dict(monitor=r['monitor'], alarmed=f"{r['count']} ({100 * r['rate']:.1f}%, "
                                                          f"{100 * r['lo']:.1f}-{100 * r['hi']:.1f}%)")
                       for r in res['rows'] if 'detected' not in r])
    i = res['info']
    return '\n'.join([
        '# Watch power: the watches against KS, Shewhart and CUSUM', '',
        f"Command: `{i['command']}` ({i['seconds']} s; scores from benchmarks/results/watch_scores.npz). "
        f"{i['streams']} streams per shift: {i['pre']} in-distribution cherries, then {i['post']} shifted ones; "
        "reference = the calibration split (2000 scores); level 1%. Watch settings: " + json.dumps(i['watches']) + '.',
        '', 'Each cell: detected after the change within the stream / median delay after the change (detected '
        'streams) / false alarms (an alarm before the change); in the row `none` every alarm is false. Only the '
        'watches are anytime-valid (level 1% over an unbounded stream); KS tests each window at 1% (5 looks in 1000 '
        'cherries) or at 0.2% (Bonferroni over the 5 windows: 1% within 1000 cherries, not beyond); Shewhart and '
        'CUSUM limits are fitted to the reference.', '',
        md_table(tab.reset_index()), '',
        "False alarms of the watches in the guarantee's own setting (reference and a "
        f"{i['pre'] + i['post']}-cherry stream a fresh random split of the 5000 unshifted scores):", '',
        md_table(fa), ''])


def stage_sim(a):

    t0 = time.time()
    z = np.load(RESULTS / 'watch_scores.npz', allow_pickle=False)
    info = json.loads(str(z['info'])); rng = np.random.default_rng(a.seed)
    cal, ycal = z['calibration_score'].astype(np.float64), z['calibration_y'].astype(int)
    pools = {n: (z[f'{n}_score'].astype(np.float64), z[f'{n}_y'].astype(int))
             for n in ['none'] + [pool_name(k, s) for k, s in SHIFTS]}
    guarantee, certs = guarantee_table(cal, ycal, pools)
    fa = false_alarm_table(cal, pools['none'][0], a.streams, rng)
    delays = delay_table(cal, pools, a.streams, rng)
    res = dict(info=info | dict(streams=a.streams, seed=a.seed, sim_seconds=round(time.time() - t0)),
               certificates=certs, guarantee=guarantee, false_alarms=fa, delays=delays,
               default=choose_default(guarantee, delays))
    from cherry_nb.core import atomic_write_json, atomic_write
    atomic_write_json(RESULTS / 'watch_sim.json', res)
    atomic_write(RESULTS / 'watch_sim.md', markdown(res))
    print(f"wrote {RESULTS / 'watch_sim.json'} and .md in {time.time() - t0:.0f} s")


def _fmt_delay(v): return '>5000' if not np.isfinite(v) else f"{v:.0f}"
def _pct(r): return f"{r['count']} ({100 * r['rate']:.1f}%, {100 * r['lo']:.1f}-{100 * r['hi']:.1f}%)"


def tables(res) -> dict:
    "The results as DataFrames: guarantee, false alarms, delays (monitor x pool), default ranking."
    import pandas as pd
    g = pd.DataFrame([dict(alpha=r['alpha'], pool=r['pool'], threshold=r['accept_threshold'],
                           pit_miss=_pct(dict(count=f"{r['pit_miss']['k']}/{r['pit_miss']['n']}", **r['pit_miss'])),
                           accepted=f"{100 * r['accept_share']:.1f}%", pits=f"{100 * r['prevalence']:.0f}%",
                           exceeds='yes' if r['exceeds'] else 'no', breaks='yes' if r['breaks'] else 'no')
                      for r in res['guarantee']])
    fa = pd.DataFrame([dict(monitor=r['monitor'], level=f"level {r['level']:g}, {r['reference']}", alarmed=_pct(r))
                       for r in res['false_alarms']]).pivot(index='monitor', columns='level', values='alarmed')
    fa.columns.name = None
    cell = lambda r: f"{_fmt_delay(r['median'])} / {_fmt_delay(r['p90'])} / {100 * r['never']['rate']:.0f}%"
    d = pd.DataFrame([dict(monitor=r['monitor'], pool=r['pool'], v=cell(r)) for r in res['delays']])
    d = d.pivot(index='monitor', columns='pool', values='v')[list(dict.fromkeys(r['pool'] for r in res['delays']))]
    d.columns.name = None
    w1 = pd.DataFrame([dict(monitor=r['monitor'], pool=r['pool'], v=f"{100 * r['within_1000']['rate']:.0f}%")
                       for r in res['delays']]).pivot(index='monitor', columns='pool', values='v')[d.columns]
    w1.columns.name = None
    return dict(guarantee=g, false_alarms=fa.reset_index(), delays=d.reset_index(), within_1000=w1.reset_index(),
                default=pd.DataFrame(res['default']['ranking']))


def markdown(res) -> str:
    from cherry_nb.faces.report import md_table
    t = tables(res)
    out = ["# Guarantee watch on the simulator", '', f"Model and pools: {json.dumps(res['info'])}", '',
           '## What each shift does to the guarantee (certified on the calibration split)', '',
           md_table(t['guarantee']), '',
           f"## False alarms within {FA_LEN} cherries ({res['info']['streams']} exchangeable streams)", '',
           md_table(t['false_alarms']), '',
           f'## Delays at level 1%: median / 90th percentile / share never alarmed within {DELAY_LEN}', '',
           md_table(t['delays']), '', '## Share of streams alarmed within 1000 cherries (level 1%)', '',
           md_table(t['within_1000']), '', '## Default choice', '', res['default']['rule'], '',
           md_table(t['default'], floatfmt='.3f')]
    return '\n'.join(out) + '\n'


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('stage', choices=['scores', 'sim', 'power'])
    ap.add_argument('--arch', default='convnextv2_atto')
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--streams', type=int, default=200)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--results', default=str(RESULTS), help='folder of watch_scores.npz and the tables')
    a = ap.parse_args()
    RESULTS = Path(a.results)
    if a.stage == 'scores': stage_scores(a)
    elif a.stage == 'power': stage_power(a)
    else: stage_sim(a)
