"""automation: certified and oracle accept share, and the calibration planner checked against resplits of a pool."""
import numpy as np
import pytest

from cherry_nb.judge.automation import (accept_shares, allowed_misses, automation_metrics, min_calibration_pits,
                                  oracle_threshold, plan_calibration, planner_line)
from cherry_nb.core import jsonable, from_jsonable
from cherry_nb.judge.tiers import InsufficientCalibration, binomial_pvalue, guaranteed_tiers

# Simulator-like scores on the logit scale: the two pools differ in how far the pit tail reaches into the cleans.
POOLS = {'overlapping': (1.5, 1.5, -2.0, 1.2), 'separated': (2.5, 1.0, -1.0, 1.0)}


def pool(n, seed, mp, sp, mc, sc):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    z = np.where(y == 1, rng.normal(mp, sp, n), rng.normal(mc, sc, n))
    return 1 / (1 + np.exp(-z)), y


def empirical_share(s, y, n_pits, alpha, delta, draws, rng):
    "Mean share of the pool accepted by thresholds certified on `draws` resplits of `n_pits` pool pits."
    pits, out = np.flatnonzero(y == 1), []
    for _ in range(draws):
        ip = rng.choice(pits, n_pits, replace=False)
        try: t = guaranteed_tiers(s[ip], y[ip], alpha, delta, beta=None).accept_threshold
        except InsufficientCalibration: t = 0.0
        out.append((s < t).mean())
    return np.array(out)


def test_feasibility_follows_the_binomial_test():
    assert min_calibration_pits(0.01, 0.1) == 230 == int(np.ceil(np.log(0.1) / np.log(0.99)))
    assert min_calibration_pits(0.05, 0.1) == 45
    for n, a, d in ((230, 0.01, 0.1), (1000, 0.01, 0.1), (96, 0.05, 0.1), (500, 0.02, 0.05)):
        k = allowed_misses(n, a, d)
        assert binomial_pvalue(k, n, a) <= d < binomial_pvalue(k + 1, n, a)
    assert allowed_misses(229, 0.01, 0.1) == -1 and allowed_misses(0, 0.01, 0.1) == -1


@pytest.mark.parametrize('name', list(POOLS))
@pytest.mark.parametrize('alpha', [0.01, 0.02])
def test_planner_matches_certification_on_resplits(name, alpha):
    """Planned from 600 validation rows (~300 pits) of a 60000-cherry pool, the certified accept share at 250-2000
    calibration pits matches the mean over 60 resplits of the pool within 4 points or 15% of it, and the planned
    10-90% band over calibration draws is within a factor 2 of the resplits' spread."""
    s, y = pool(60000, 1, *POOLS[name])
    plan = plan_calibration(s[:600], y[:600], alpha, 0.1, (100, 250, 500, 1000, 2000))
    rng = np.random.default_rng(2)
    for r in plan.itertuples():
        emp = empirical_share(s, y, r.n_pits, alpha, 0.1, 60, rng)
        if not r.feasible:
            assert r.n_pits < min_calibration_pits(alpha, 0.1) and (emp == 0).all() and r.accept_share == 0
            continue
        tol = max(0.04, 0.15 * emp.mean())
        assert abs(r.accept_share - emp.mean()) <= tol, (r, emp.mean())
        spread = np.subtract(*np.quantile(emp, [0.9, 0.1]))               # calibration draws spread as planned
        assert 0.5 <= (r.accept_hi - r.accept_lo) / spread <= 2, (r, spread)
    oracle = (s < np.quantile(s[y == 1], alpha)).mean()
    assert abs(plan.attrs['oracle_accept_share'] - oracle) <= max(0.04, 0.15 * oracle)
    assert plan.accept_share.iloc[-1] <= plan.attrs['oracle_accept_share'] + 0.01


def test_planner_refuses_and_counts_cherries():
    s, y = pool(600, 3, *POOLS['separated'])
    with pytest.raises(ValueError, match='need a rule'):
        plan_calibration(np.repeat(s, 2), np.repeat(y, 2), groups=np.repeat(np.arange(600), 2))
    plan = plan_calibration(np.repeat(s, 2), np.repeat(y, 2), groups=np.repeat(np.arange(600), 2), rule='max')
    assert plan.attrs['unit'] == 'cherry' and plan.attrs['pits_seen'] == y.sum()
    line = planner_line(plan, 250)
    assert line.startswith('alpha 0.01 at delta 0.1 needs >= 230 calibration pitted cherries; with 250 it accepts ~')
    assert '2000 would accept ~' in line and "oracle" in line


def test_oracle_and_accept_shares():
    s = np.r_[np.linspace(0.1, 1, 10), np.arange(30) / 100 + 0.015]; y = np.r_[np.ones(10), np.zeros(30)]
    assert oracle_threshold(s, y, 0.1) == 0.2 and oracle_threshold(s, y, 0.5) == 0.6
    assert oracle_threshold(s, y, 0.99) == 1.0 and oracle_threshold(s[y == 0], y[y == 0], 0.1) == np.inf
    sh = accept_shares(s, y, s < 0.15, 0.1)
    assert (sh['certified_accept_share'].k, sh['certified_pit_miss'].k, sh['oracle_accept_share'].k) == (15, 1, 20)
    assert sh['ratio'] == pytest.approx(15 / 20)
    with pytest.raises(ValueError, match='accepted has'):
        accept_shares(s, y, s[:5] < 0.1, 0.1)


def test_automation_metrics_per_image_and_per_cherry():
    s, y = pool(6000, 4, *POOLS['separated'])
    am = automation_metrics(s[:600], y[:600], s[600:], y[600:], 0.01, 0.1)
    g = guaranteed_tiers(s[:600], y[:600], 0.01, 0.1)                   # the workflow's guaranteed tiers
    assert am['certified'] and am['accept_threshold'] == g.accept_threshold and am['unit'] == 'image'
    assert am['certified_accept_share'].k == int((s[600:] < g.accept_threshold).sum())
    assert 0 < am['certified_accept_share'].rate <= am['oracle_accept_share'].rate
    assert {'alpha', 'delta', 'unit', 'certified_accept_share', 'oracle_accept_share', 'certified_pit_miss',
            'planner'} <= set(am)
    assert from_jsonable(jsonable(am))['certified_accept_share'] == am['certified_accept_share']
    assert [r['n_pits'] for r in am['planner']] == sorted({100, 250, 500, 1000, 2000, am['n_cal_pits']})
    # 200 calibration images cannot certify alpha 1%: the guaranteed policy accepts nothing, and says why
    small = automation_metrics(s[:200], y[:200], s[600:], y[600:], 0.01, 0.1)
    assert not small['certified'] and small['certified_accept_share'].k == 0 and 'needs at least 230' in small['error']
    # three views per cherry: everything per cherry (max rule), the views never counted as independent pits
    v = lambda a: np.repeat(a, 3)
    cal, test = np.arange(900), np.arange(900, 6000)
    ac = automation_metrics(v(s[cal]), v(y[cal]), v(s[test]), v(y[test]), 0.01, 0.1, v(cal), v(test), 'max')
    assert ac['unit'] == 'cherry' and ac['n_cal_pits'] == y[cal].sum() and ac['certified_accept_share'].n == len(test)
    with pytest.raises(ValueError, match='for both splits'):
        automation_metrics(s, y, s, y, groups_val=np.arange(len(s)))


def test_plan_command_on_a_run_folder(tmp_path, capsys):
    "`cherry-nb plan RUN` reads the run's calibration rows (stage 1 on val) and prints the plan and its line."
    from cherry_nb.faces.cli import main
    from cherry_nb.run.runs import write_params, write_predictions
    import pandas as pd
    s, y = pool(1000, 5, *POOLS['separated'])
    split = np.r_[['val'] * 600, ['test'] * 400]
    rows = lambda model: pd.DataFrame(dict(model=model, split=split, relpath=[f"{i}.png" for i in range(1000)],
                                           path=[f"/x/{i}.png" for i in range(1000)],
                                           label=np.where(y == 1, 'pit', 'clean'), y_pit=y, p_pit=s))
    run = tmp_path / 'run'
    write_predictions(run, pd.concat([rows('stage1'), rows('stage2')])); write_params(run, dict(rule='max'))
    assert main(['plan', str(run), '--alpha', '0.01', '--pits', '100,1000']) == 0
    out = capsys.readouterr().out; have = int(y[:600].sum())
    assert f"calibration planner (stage1): alpha 0.01, delta 0.1, from {have} calibration pits" in out
    assert '100 pits: certifies nothing' in out and f"{have} pits: accepts ~" in out and '(this run)' in out
    assert f"needs >= 230 calibration pits; with {have} it accepts ~" in out
    assert main(['plan', str(run), '--alpha', '1.5']) == 2 and 'alpha must lie strictly' in capsys.readouterr().err
    assert main(['plan', str(run), '--model', 'nope']) == 2 and "no model 'nope'" in capsys.readouterr().err
