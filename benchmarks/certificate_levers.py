"""Certificate levers (issue 22): the Learn-then-Test p-value, the calibration size, the train/calibration split.

No model is trained. Pit scores come from two score models, each with known CDFs:
- `toy`: the Beta scores of `cherry_nb.run.testing.toy_scores` (clean Beta(1.5, 6), pit Beta(5, 1.5), 40% pits);
- `watch-run`: a smoothed fit to real scores: a Gaussian kernel estimate on the logit scale (Silverman's bandwidth,
  shrunk so the variance is kept, as in `automation.plan_calibration`) of the 5000 calibrated scores of the run in
  `benchmarks/results/watch_scores.npz` (convnextv2_atto, 15 epochs, quick preset: its 2000 calibration cherries and
  its 3000 unshifted test cherries, ~50% pits).
For each model, p-value (`tiers.PVALUES`), calibration size (pits) and alpha (delta 10%), `--reps` calibration sets
of i.i.d. pits are drawn and certified by `tiers.guaranteed_tiers(..., beta=None, pvalue=...)` (default candidate
grid; the same draws for every p-value, so differences are paired). Of each certified threshold t:
- its accept share on the population, pi F1(t) + (1 - pi) F0(t) (exact CDFs: an infinitely large test pool), and the
  oracle share at the true alpha-quantile of the pit scores, pi alpha + (1 - pi) F0(F1^-1(alpha));
- its true pit-miss F1(t); the guarantee check is the share of draws with F1(t) > alpha (must be <= delta), and the
  same share measured on a fresh pool of `--pool` cherries drawn once per model.
The split lever: a fixed labelled budget, a share f of it calibrates (f N pi pits), the rest trains. How the scorer
changes with its training size cannot be measured without training; the scenarios shift the pit scores' logits so
that the distance of the pit and clean logit means scales as ((1 - f) / 0.5)^gamma (gamma = 0: the scorer does not
depend on its training size; the measured scores are those of a scorer trained on half the budget). Binomial
p-value, expected share over draws of the certifying order statistic (as `plan_calibration`).

Usage: python benchmarks/certificate_levers.py [--reps 1000] [--pool 1000000] [--budget 4000]
Results: benchmarks/results/certificate_levers.{md,json}
"""
import argparse, json, math, shlex, sys, time
from pathlib import Path

import numpy as np, pandas as pd
from scipy import stats
from cherry_nb.core import rate, to_json, atomic_write
from cherry_nb.judge.tiers import PVALUES, InsufficientCalibration, guaranteed_tiers, binomial_pvalue, risk_pvalues
from cherry_nb.judge.automation import allowed_misses

ALPHAS, DELTA, SIZES = (0.01, 0.02, 0.05), 0.1, (250, 500, 1000, 2000)
GRID = np.linspace(0, 1, 1001).round(12)          # guaranteed_tiers' default candidates
RESULTS = Path(__file__).parent / 'results'

def _say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

class BetaScores:
    "Pit / clean scores from Beta distributions (the tests' toy scores)."
    def __init__(self, pit=(5.0, 1.5), clean=(1.5, 6.0), prior=0.4):
        self.f1, self.f0, self.prior = stats.beta(*pit), stats.beta(*clean), prior
    def pits(self, rng, n): return self.f1.rvs(n, random_state=rng)
    def cleans(self, rng, n): return self.f0.rvs(n, random_state=rng)
    def F1(self, t): return self.f1.cdf(t)
    def F0(self, t): return self.f0.cdf(t)
    def q1(self, u): return self.f1.ppf(u)

def _logit(s): s = np.clip(s, 1e-9, 1 - 1e-9); return np.log(s) - np.log1p(-s)

class _KDE:
    "Variance-preserving Gaussian kernel estimate on the logit scale (Silverman's h), with exact CDF and sampler."
    def __init__(self, z):
        iqr, sd = np.subtract(*np.percentile(z, [75, 25])) / 1.34, z.std(ddof=1)
        self.h = 0.9 * min(sd, iqr) * len(z) ** -0.2
        self.z = z.mean() + (z - z.mean()) / np.sqrt(1 + self.h ** 2 / sd ** 2)
    def sample(self, rng, n):
        return 1 / (1 + np.exp(-(rng.choice(self.z, n) + self.h * rng.standard_normal(n))))
    def cdf(self, t):
        t = np.asarray(t, float); out = np.zeros(t.shape)
        pos = t > 0
        for i in np.flatnonzero(pos.ravel()):                # per threshold: exact mean of the kernels' CDFs
            out.flat[i] = stats.norm.cdf((_logit(t.flat[i]) - self.z) / self.h).mean()
        return out

class KDEScores:
    "Pit / clean scores from kernel estimates of a run's scores; `gap` scales the pit-clean distance of logit means."
    def __init__(self, s, y, gap: float = 1.0):
        z = _logit(s); zp, zc = z[y == 1], z[y == 0]
        zp = zp + (gap - 1) * (zp.mean() - zc.mean())            # the pit distribution shifted, its shape kept
        self.k1, self.k0, self.prior = _KDE(zp), _KDE(zc), float(y.mean())
        grid = np.linspace(-20, 20, 8001); self._g, self._c1 = grid, np.maximum.accumulate(
            stats.norm.cdf((grid[:, None] - self.k1.z) / self.k1.h).mean(1))
    def pits(self, rng, n): return self.k1.sample(rng, n)
    def cleans(self, rng, n): return self.k0.sample(rng, n)
    def F1(self, t): return self.k1.cdf(t)
    def F0(self, t): return self.k0.cdf(t)
    def q1(self, u): return 1 / (1 + np.exp(-np.interp(u, self._c1, self._g)))

def watch_run(gap: float = 1.0) -> KDEScores:
    z = np.load(RESULTS / 'watch_scores.npz')
    s = np.r_[z['calibration_score'], z['none_score']]; y = np.r_[z['calibration_y'], z['none_y']].astype(int)
    return KDEScores(s, y, gap)

def certify(sp: np.ndarray, alpha: float, method: str, kmax: int) -> float:
    """`guaranteed_tiers(sp, pits, alpha, DELTA, beta=None, pvalue=method).accept_threshold` (0: nothing certified), on
    the default grid cut to the candidates that can matter: from the last one below every pit (all earlier ones have
    the same zero losses, so the same p-value) to the one above the (kmax+1)-th pit; the full grid when the cut one
    does not stop the fixed sequence before its end."""
    o = np.sort(sp); lo = max(int(np.searchsorted(GRID, o[0], 'right')) - 1, 0)
    hi = int(np.searchsorted(GRID, o[min(kmax, len(o) - 1)], 'right')) + 1
    for cand in (GRID[lo:hi], None):
        try: g = guaranteed_tiers(sp, np.ones(len(sp), int), alpha, DELTA, beta=None, candidates=cand, pvalue=method)
        except InsufficientCalibration: return 0.0
        if cand is None or g.accept_threshold < cand[-1]: return g.accept_threshold
    raise AssertionError('unreachable')

def levers(model, name: str, reps: int, pool: int, seed: int, half: int = 550) -> list:
    "One row per (alpha, size, p-value): shares, ratio to the oracle, guarantee check; the same draws for all p-values."
    rng = np.random.default_rng(seed); fresh = np.sort(model.pits(rng, int(round(pool * model.prior))))
    rng_half = np.random.default_rng(seed + 100)
    rows = []
    for alpha in ALPHAS:
        oracle = model.prior * alpha + (1 - model.prior) * float(model.F0(model.q1(alpha)))
        for n in SIZES:
            kmax = 2 * max(allowed_misses(n, alpha, DELTA), 0) + 10
            draws = [model.pits(rng, n) for _ in range(reps)]
            t0 = time.process_time()
            th = {m: np.array([certify(d, alpha, m, kmax) for d in draws]) for m in PVALUES}
            _say(f"{name} alpha={alpha} n={n}: {time.process_time() - t0:.0f} s CPU")
            base = None
            for m, t in th.items():
                u, it = np.unique(t, return_inverse=True)
                miss, share = model.F1(u)[it], (model.prior * model.F1(u) + (1 - model.prior) * model.F0(u))[it]
                pool_miss = np.searchsorted(fresh, t, 'left') / len(fresh)
                half_miss = rng_half.binomial(half, miss) / half  # the thresholds judged on a test half of `half` pits
                base = share if base is None else base
                d = share - base; sd = share.std(ddof=1) / math.sqrt(reps)
                K = allowed_misses(n, alpha, DELTA) if m == 'binomial' else _k_of(m, n, alpha)
                rows.append(dict(model=name, alpha=alpha, n_pits=n, pvalue=m, reps=reps, oracle=oracle,
                                 share=float(share.mean()), share_lo=float(share.mean() - 1.96 * sd),
                                 share_hi=float(share.mean() + 1.96 * sd), share_p10=float(np.quantile(share, .1)),
                                 share_p90=float(np.quantile(share, .9)), ratio=float(share.mean() / oracle),
                                 diff=float(d.mean()), diff_lo=float(d.mean() - 1.96 * d.std(ddof=1) / math.sqrt(reps)),
                                 diff_hi=float(d.mean() + 1.96 * d.std(ddof=1) / math.sqrt(reps)),
                                 true_miss=float(miss.mean()), fail=rate(int((miss > alpha).sum()), reps).as_dict(),
                                 fail_pool=rate(int((pool_miss > alpha).sum()), reps).as_dict(), K=K,
                                 fail_half=rate(int((half_miss > alpha).sum()), reps).as_dict(),
                                 fail_exact=_exact(K, n, alpha)))
    return rows

def _exact(K, n: int, alpha: float):
    "P(Binomial(n, alpha) <= K): the failure probability of certifying K misses (None: order-dependent)."
    return None if K is None else float(binomial_pvalue(K, n, alpha)) if K >= 0 else 0.0

def _k_of(method: str, n: int, alpha: float):
    "Most losses a count-only p-value certifies among n (None for an order-dependent one)."
    if method == 'wsr': return None
    k = np.arange(n + 1); L = np.arange(n)[:, None] < k
    ok = np.flatnonzero(risk_pvalues(L, alpha, DELTA, method) <= DELTA)
    return int(ok[-1]) if len(ok) else -1

def split_lever(budget: int, gammas=(0.0, 0.1, 0.25), fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6), draws: int = 4000,
                seed: int = 0) -> list:
    "Expected certified share (binomial) per calibration fraction of a labelled budget, per learning-curve scenario."
    rng, rows = np.random.default_rng(seed), []
    for gamma in gammas:
        for f in fractions:
            model = watch_run(((1 - f) / 0.5) ** gamma); n = int(round(f * budget * model.prior))
            for alpha in ALPHAS:
                K = allowed_misses(n, alpha, DELTA)
                if K < 0: rows.append(dict(gamma=gamma, fraction=f, n_pits=n, alpha=alpha, share=0.0)); continue
                t = np.floor(model.q1(rng.beta(K + 1, n - K, draws)) / 0.001 + 1e-9) * 0.001
                u, it = np.unique(t, return_inverse=True)
                share = (model.prior * model.F1(u) + (1 - model.prior) * model.F0(u))[it]
                oracle = model.prior * alpha + (1 - model.prior) * float(model.F0(model.q1(alpha)))
                rows.append(dict(gamma=gamma, fraction=f, n_pits=n, alpha=alpha, share=float(share.mean()),
                                 share_lo=float(np.quantile(share, .1)), share_hi=float(np.quantile(share, .9)),
                                 oracle=oracle))
    return rows

def _pct(v): return f"{100 * v:.2f}%"
def _fail(r): return f"{r['k']}/{r['n']} ({100 * r['rate']:.1f}%, {100 * r['lo']:.1f}-{100 * r['hi']:.1f})"

def _diff(r) -> str:
    if r.pvalue == 'binomial': return '-'
    return f"{100 * r.diff:+.3f} ({100 * r.diff_lo:+.3f} to {100 * r.diff_hi:+.3f}) pt"

def report(rows: list, split: list, cmd: str, seconds: float, args) -> str:
    df = pd.DataFrame(rows)
    out = ["# Certificate levers: p-value, calibration size, train/calibration split", "",
           f"Command: `{cmd}` ({seconds:.0f} s wall, 2 shared CPU cores). No model is trained: see the script's "
           "docstring for the two score models (`toy`: the tests' Beta scores; `watch-run`: a kernel fit to 5000 "
           "real calibrated scores of `benchmarks/results/watch_scores.npz`).", "",
           f"Per row, {args.reps} calibration draws of i.i.d. pits, the same draws for each p-value; delta = 10%. "
           "share: certified accept share of all cherries on the population (exact CDFs), mean with 95% interval of "
           "the mean [10-90% of draws]; ratio: mean share / oracle share; diff vs binomial: paired mean difference "
           "with 95% interval; fail: draws whose TRUE pit-miss F1(t) exceeds alpha (Wilson 95%), which the "
           f"certificate promises <= 10%; fail (pool): the same measured on a fresh pool of {args.pool:,} cherries; "
           "exact: P(Binomial(n, alpha) <= K) for the count-only p-values (K = the most calibration misses they "
           "certify; the grid only lowers it); fail (550-pit half): the same thresholds judged on a test half of 550 "
           "pits (binomial draws at the true pit-miss), as `certified_automation.py`'s resplits of its pool did.", ""]
    for name, g in df.groupby('model', sort=False):
        out += [f"## {name}", "", "| alpha | pits | p-value | K | oracle | certified share | ratio | "
                "diff vs binomial | fail (true pit-miss > alpha) | fail (pool) | exact | fail (550-pit half) |",
                "|---" * 12 + "|"]
        for r in g.itertuples():
            out.append(f"| {r.alpha:g} | {r.n_pits} | {r.pvalue} | {'-' if r.K is None or pd.isna(r.K) else int(r.K)} "
                       f"| {_pct(r.oracle)} | {_pct(r.share)} ({_pct(r.share_lo)}-{_pct(r.share_hi)}) "
                       f"[{_pct(r.share_p10)}-{_pct(r.share_p90)}] | {r.ratio:.3f} | "
                       f"{_diff(r)}"
                       f" | {_fail(r.fail)} | {_fail(r.fail_pool)} | "
                       f"{'-' if r.fail_exact is None or pd.isna(r.fail_exact) else f'{100 * r.fail_exact:.1f}%'} | "
                       f"{_fail(r.fail_half)} |")
        out.append("")
    out += summary(rows)
    sp = pd.DataFrame(split)
    out += ["## Split lever (watch-run model, binomial p-value)", "",
            f"A labelled budget of {args.budget} cherries ({100 * watch_run().prior:.0f}% pits); a fraction f "
            "calibrates, the rest trains. gamma: assumed learning curve, the pit logits shifted so that the distance "
            "of the pit and clean logit means scales as ((1 - f) / 0.5)^gamma (0: the scorer does not depend on its "
            "training size, so calibration is free; not measured, scenarios). Cells: expected certified accept share "
            "[10-90% of draws], and the "
            "oracle share of that scorer.", "",
            "| gamma | f | cal pits | " + " | ".join(f"alpha {a:g}" for a in ALPHAS) + " |",
            "|---|---|---|" + "---|" * len(ALPHAS)]
    for (gm, f), g in sp.groupby(['gamma', 'fraction']):
        cells = [f"{_pct(r.share)} [{_pct(r.share_lo)}-{_pct(r.share_hi)}] (oracle {_pct(r.oracle)})"
                 if r.share > 0 else 'infeasible' for r in g.sort_values('alpha').itertuples()]
        out.append(f"| {gm:g} | {f:g} | {int(g.n_pits.iloc[0])} | " + " | ".join(cells) + " |")
    return '\n'.join(out) + '\n'

def summary(rows: list) -> list:
    "Lines: the p-value ordering per cell and the guarantee check, computed from the rows."
    df = pd.DataFrame(rows); out = ["## Summary (computed from the rows above)", ""]
    for name, g in df.groupby('model', sort=False):
        cells = g.groupby(['alpha', 'n_pits'])
        best = cells.apply(lambda c: c.loc[c.share.idxmax(), 'pvalue'], include_groups=False)
        w = g[g.pvalue == 'wsr']; b = g[g.pvalue == 'bentkus']
        out.append(f"- {name}: highest mean certified share by p-value over {len(best)} (alpha, size) cells: "
                   + ', '.join(f"{m} {int((best == m).sum())}" for m in PVALUES) + "; WSR above binomial (paired "
                   f"95% interval above 0) in {int((w.diff_lo > 0).sum())}, below (interval below 0) in "
                   f"{int((w.diff_hi < 0).sum())}; Bentkus below binomial in {int((b.diff_hi < 0).sum())}, "
                   f"never above: {bool((b['diff'] <= 1e-15).all())}.")
        f = pd.DataFrame([r['fail'] for r in g.to_dict('records')])
        out.append(f"- {name}: guarantee check, share of draws with true pit-miss > alpha: at most "
                   f"{100 * f.rate.max():.1f}% (Wilson upper bound at most {100 * f.hi.max():.1f}%); cells whose "
                   f"Wilson 95% interval lies above delta = 10%: {int((f.lo > DELTA).sum())} of {len(f)}.")
    return out + [""]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=1000); ap.add_argument('--pool', type=int, default=1_000_000)
    ap.add_argument('--budget', type=int, default=4000); ap.add_argument('--models', default='toy,watch-run')
    ap.add_argument('--out', default=str(RESULTS / 'certificate_levers'))
    ap.add_argument('--report-only', action='store_true', help='rewrite the .md from the .json of an earlier run')
    args = ap.parse_args(argv); t0 = time.time()
    if args.report_only:
        d = json.loads(Path(args.out + '.json').read_text())
        md = report(d['rows'], d['split'], d['command'], d['seconds'], argparse.Namespace(**d['args']))
        atomic_write(Path(args.out + '.md'), md); print(md); return
    cmd = 'python benchmarks/certificate_levers.py ' + shlex.join(argv if argv is not None else sys.argv[1:])
    models = dict(toy=BetaScores, **{'watch-run': watch_run})
    rows = [r for i, m in enumerate(args.models.split(',')) for r in levers(models[m](), m, args.reps, args.pool, i)]
    split = split_lever(args.budget)
    md = report(rows, split, cmd.strip(), time.time() - t0, args)
    atomic_write(Path(args.out + '.json'), to_json(dict(rows=rows, split=split, command=cmd.strip(),
                                                        seconds=time.time() - t0, args=vars(args))))
    atomic_write(Path(args.out + '.md'), md); print(md)

if __name__ == '__main__': main()
