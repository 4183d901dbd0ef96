"""Tests of the guarantee watch (cherry_nb.line.watch) and of the simulator's shifts it is measured on."""
import hashlib, json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cherry_nb.core import read_json, rate, atomic_write_json, to_json
from cherry_nb.data.synth import Shift, render_dataset, read_truth
from cherry_nb.line.watch import (Watch, Reference, watch_scores, write_watch, watch_alarms, audit_bound, audit_plan,
                             pit_rate_upper, pit_rate_lower, to_pit_miss, ks_alarms, shewhart_alarms, cusum_alarms,
                             cusum_limit)


MULTISCALE = dict(betting='multiscale', bins=16, concentrations=(1, 8), discounts=(1.0, 0.99))   # the new watch
KS = dict(betting='ks')                                                  # a bettor per cut and tilt, fixed share
SCORES = Path(__file__).resolve().parents[1] / 'benchmarks' / 'results' / 'watch_scores.npz'   # simulator scores


def mixture(n, rng, pit=(5.0, 1.5), share=0.4):
    "Synthetic pit scores: clean ~ Beta(1.5, 6), pits ~ `pit`."
    y = rng.random(n) < share
    return np.where(y, rng.beta(*pit, n), rng.beta(1.5, 6.0, n))


@pytest.mark.parametrize('kw', [dict(), dict(betting='jumper'), dict(method='conditional'), dict(bins=4), MULTISCALE,
                                KS, dict(betting='ks', bins=4, jump=0.05)])
def test_false_alarm_bound_by_simulation(kw):
    "Streams exchangeable with a fresh reference alarm in at most `level` of cases (not significantly more)."
    rng, level, S, hits = np.random.default_rng(7), 0.1, 200, 0
    for i in range(S):
        x = mixture(80 + 400, rng)
        x[rng.random(len(x)) < 0.05] = 1.0                      # ties, as saturated float32 scores give
        hits += Watch(x[:80], level=level, seed=i, **kw).update(x[80:])['alarm']
    assert rate(hits, S).lo <= level, (kw, hits)


def test_shifted_stream_alarms_and_calm_one_does_not():
    rng = np.random.default_rng(0)
    ref = mixture(1000, rng)
    calm, shifted = mixture(3000, rng), mixture(3000, rng, pit=(3.0, 3.0))     # pits look cleaner
    w = Watch.from_scores(ref, level=0.01)
    assert not w.update(calm)['alarm']
    s = Watch.from_scores(ref, level=0.01).update(shifted)
    assert s['alarm'] and s['alarm_at'] < 1000 and s['max_log10_martingale'] > 2
    fig = Watch(ref).figure(); assert len(fig.data) == 1


def test_multiscale_sees_a_shift_inside_the_fifths():
    "Scores pushed down inside each fifth of the reference: 5-bin bettors cannot see it, the multi-scale watch does."
    rng, S = np.random.default_rng(3), 20
    ref = rng.random(2000)
    inside = lambda n: (rng.integers(0, 5, n) + rng.random(n) ** 2) / 5       # same fifths, lower inside each
    old = watch_alarms(ref, np.stack([inside(1000) for _ in range(S)]))
    new = np.array([Watch(ref, seed=i, **MULTISCALE).update(inside(1000))['alarm_at'] or np.nan
                    for i in range(S)])
    assert np.isnan(old).all() and not np.isnan(new).any() and np.median(new) < 400, (old, new)
    with pytest.raises(ValueError, match='power of 2'): Watch(ref, betting='multiscale', bins=10)
    with pytest.raises(ValueError, match='discounts'): Watch(ref, betting='multiscale', discounts=(0,))


@pytest.mark.slow
def test_ks_watch_level_on_long_exchangeable_streams():
    "The KS-cut watch at level 5% on 400 long streams exchangeable with a fresh reference: no more alarms than 5%."
    rng, level, S, hits = np.random.default_rng(11), 0.05, 400, 0
    for i in range(S):
        x = mixture(200 + 1500, rng)
        x[rng.random(len(x)) < 0.05] = 1.0
        hits += Watch(x[:200], level=level, seed=i, **KS).update(x[200:])['alarm']
    assert rate(hits, S).lo <= level, hits


def _streams_from_pools(shift, S, rng, pre=200, post=800):
    "Streams of the simulator's scores: `pre` unshifted cherries, then `post` from the shifted pool."
    z = np.load(SCORES)
    none, pool = z['none_score'].astype(np.float64), z[f'{shift}_score'].astype(np.float64)
    return z['calibration_score'].astype(np.float64), np.concatenate(
        [none[rng.integers(0, len(none), (S, pre))], pool[rng.integers(0, len(pool), (S, post))]], 1)


@pytest.mark.slow
def test_ks_watch_catches_a_small_prevalence_change_the_default_misses():
    """On the simulator's scores (a model scoring rendered cherries; pits 20% more common after cherry 200), the KS-cut
    watch alarms after the change on significantly more streams than the default watch (paired sign test), and
    false-alarms before it no more often."""
    ref, st = _streams_from_pools('prevalence-0.2', 100, np.random.default_rng(5))
    old, new = watch_alarms(ref, st), watch_alarms(ref, st, **KS)
    hit = lambda t: np.nan_to_num(t, nan=0) > 200                           # an alarm after the change
    only_new, only_old = int((hit(new) & ~hit(old)).sum()), int((hit(old) & ~hit(new)).sum())
    p = stats.binomtest(only_new, only_new + only_old, 0.5, alternative='greater').pvalue
    assert p < 0.01, (only_new, only_old)
    assert (new <= 200).sum() <= (old <= 200).sum() + 1


def test_ks_settings_are_checked_and_kept():
    ref = np.random.default_rng(0).random(100)
    w = Watch(ref, betting='ks')
    assert w.bins == 16 and w.jump == 0.001 and len(w.log_parts) == 15 * 2 * 2
    assert Watch(ref).bins == 5 and Watch(ref, betting='jumper').jump == 0.01     # the other bettings keep theirs
    with pytest.raises(ValueError, match='tilts'): Watch(ref, betting='ks', tilts=(0.2, -0.1))
    with pytest.raises(ValueError, match='conditional'): Watch(ref, betting='ks', method='conditional')


def test_json_round_trip_and_batches(tmp_path):
    rng = np.random.default_rng(1)
    ref, x = mixture(500, rng), mixture(800, rng, pit=(3.0, 3.0))
    for kw in (dict(), dict(betting='jumper', side='low'), dict(method='conditional'),
               MULTISCALE, KS):
        whole = Watch(ref, **kw); whole.update(x)
        part = Watch(ref, **kw)
        for chunk in np.array_split(x[:300], 7): part.update(chunk)
        atomic_write_json(tmp_path / 'watch.json', part.to_dict())
        resumed = Watch.from_dict(read_json(tmp_path / 'watch.json'))
        for v in x[300:310]: resumed.update(v)
        resumed.update(x[310:])
        assert np.allclose(resumed.path, whole.path, atol=1e-9) and resumed.alarm_at == whole.alarm_at
        assert resumed.settings() == whole.settings() and resumed.t == 800
    with pytest.raises(ValueError, match='not a saved watch'): Watch.from_dict({'kind': 'other'})


def test_reference_is_a_set_and_bad_input_is_refused():
    rng = np.random.default_rng(2); ref = mixture(300, rng); x = mixture(200, rng)
    a, b = Watch(ref), Watch(rng.permutation(ref))
    a.update(x); b.update(x)
    assert np.array_equal(a.path, b.path)
    with pytest.raises(ValueError, match='at least 20'): Reference([0.1, 0.2])
    with pytest.raises(ValueError, match='not finite'): Watch(ref).update([0.1, np.nan])
    with pytest.raises(ValueError, match='level'): Watch(ref, level=0)
    with pytest.raises(ValueError, match='bins'): Watch(ref, bins=1)
    with pytest.raises(ValueError, match='not probabilities'): Watch.from_scores(np.r_[ref, 1.5])


def test_audit_bound_matches_scipy_binomtest():
    for conf in (0.9, 0.95, 0.99):
        for k, n in ((0, 1), (0, 30), (1, 30), (5, 200), (40, 1000), (30, 30), (299, 300)):
            up = stats.binomtest(k, n, alternative='less').proportion_ci(confidence_level=conf, method='exact').high
            lo = stats.binomtest(k, n, alternative='greater').proportion_ci(confidence_level=conf, method='exact').low
            two = stats.binomtest(k, n).proportion_ci(confidence_level=2 * conf - 1, method='exact')
            assert abs(pit_rate_upper(k, n, conf) - up) < 1e-9 and abs(pit_rate_upper(k, n, conf) - two.high) < 1e-9
            assert abs(pit_rate_lower(k, n, conf) - lo) < 1e-9
    b = audit_bound(2, 400, accept_share=0.6, prevalence=0.3, alpha=0.05)
    assert abs(b.pit_miss_upper - b.accepted_upper * 0.6 / 0.3) < 1e-12 and b.verdict == 'confirmed'
    assert audit_bound(30, 400, 0.6, 0.3, alpha=0.05).verdict == 'refuted'
    assert to_pit_miss(0.9, 0.9, 0.1) == 1.0
    with pytest.raises(ValueError): to_pit_miss(0.1, 0.0, 0.5)


def test_audit_plan():
    p = audit_plan(alpha=0.05, conf=0.95, expected_pit_miss=0.01, accept_share=0.5, prevalence=0.5, power=0.8)
    assert p.power >= 0.8 and pit_rate_upper(p.confirm_max, p.n) <= 0.05 < pit_rate_upper(p.confirm_max + 1, p.n)
    smaller = audit_plan(alpha=0.05, conf=0.95, expected_pit_miss=0.01, accept_share=0.5, prevalence=0.5, power=0.5)
    assert smaller.n <= p.n
    # simulated audits at the expected rate confirm about as often as promised
    k = np.random.default_rng(0).binomial(p.n, p.expected_rate, 4000)
    assert abs((k <= p.confirm_max).mean() - p.power) < 0.03
    with pytest.raises(ValueError, match='expected_pit_miss'): audit_plan(alpha=0.05, expected_pit_miss=0.05)


def test_simple_monitors():
    rng = np.random.default_rng(3); ref = mixture(2000, rng)
    calm, shifted = mixture((2, 2000), rng), mixture((2, 2000), rng, pit=(2.0, 4.0))
    assert np.isnan(cusum_alarms(ref, calm, h=cusum_limit(ref, 2000, 0.001, n_boot=500))).all()
    assert (ks_alarms(ref, shifted) <= 400).all() and (shewhart_alarms(ref, shifted) <= 500).all()
    assert (watch_alarms(ref, shifted) < 500).all()


def _digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_shift_strength_zero_is_the_unshifted_renderer(tmp_path):
    kw = dict(n_train=6, n_val=3, n_test=3, size=32, workers=1, progress=False, pit_as_clean=0.2)
    base = _digest(render_dataset(tmp_path / 'base', **kw))
    for kind in ('dim', 'tint', 'blur', 'faint', 'prevalence'):
        assert _digest(render_dataset(tmp_path / kind, shift=(kind, 0.0), **kw)) == base, kind
    faint = render_dataset(tmp_path / 'faint1', shift=Shift('faint', 1.0), **kw)
    a, b = read_truth(tmp_path / 'base'), read_truth(faint)
    assert (a.cherry_id == b.cherry_id).all() and (a.pit_present == b.pit_present).all()
    pits = a.pit_present == 1
    assert (b.pit_r[pits] < a.pit_r[pits]).all() and (b.visibility[pits] <= a.visibility[pits] + 1e-9).all()
    assert read_json(faint / 'dataset.json')['shift'] == dict(kind='faint', strength=1.0)
    with pytest.raises(ValueError, match='unknown shift kind'): render_dataset(tmp_path / 'x', shift=('fog', 1), **kw)


def test_watch_scores_and_write_watch(tmp_path):
    rng = np.random.default_rng(4); ref = mixture(1000, rng)
    scores = np.r_[mixture(400, rng), mixture(600, rng, pit=(3.0, 3.0))]
    times = pd.date_range('2026-06-01 06:00', periods=1000, freq='s').to_numpy()[::-1]   # files in reverse order
    w, path = watch_scores(scores[::-1], ref, level=0.01, times=times)
    assert (path['score'].to_numpy() == scores).all() and w.alarm and w.alarm_at > 400
    files = write_watch(tmp_path / 'out', w, path)
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['watch.html', 'watch_alarm.json', 'watch_path.csv']
    alarm = read_json(files['alarm'])
    assert alarm['alarm_at'] == w.alarm_at and alarm['at']['cherry'] == w.alarm_at
    assert alarm['at']['time'][:10] == '2026-06-01'
    back = pd.read_csv(files['path'])
    assert len(back) == 1000 and back['alarm'].sum() == 1000 - w.alarm_at + 1
    with pytest.raises(ValueError, match='times has'): watch_scores(scores, ref, times=times[:5])


@pytest.mark.slow
def test_watch_command_end_to_end(tmp_path):
    "`cherry-nb watch` and `cherry-nb predict --watch` on tiny data: files written, quiet on a mixed folder order"
    import shutil, subprocess, sys, json
    from pathlib import Path
    from cherry_nb.data.toys import tiny_manifest
    from cherry_nb.run.testing import tiny_job
    from cherry_nb.run.runs import RunFolder
    from cherry_nb.judge.evaluate import score_artifact
    from cherry_nb.data import save_manifest
    from cherry_nb.run.jobs import run_job
    from cherry_nb.line.bundle import save_bundle
    from cherry_nb.judge.tiers import ThresholdPolicy
    exe = str(Path(sys.executable).parent / 'cherry-nb')
    df = tiny_manifest(n_val=60)
    run = RunFolder(tmp_path / 'run', create=True); save_manifest(df, run / 'manifest.csv')
    run_job(tiny_job(), run, progress=False)
    val = df[df.split == 'val']
    cal = dict(p_pit=score_artifact(run.artifact('model'), val, progress=False).pit_score,
               y_pit=(val.label == 'pit').to_numpy())
    b = save_bundle(tmp_path / 'bundle', run.artifact('model'), ThresholdPolicy(0.65, 0.85), 'demo', calibration=cal)
    same = tmp_path / 'same'; same.mkdir()
    for i in range(120): shutil.copy(df.path[0], same / f'{i:03d}.png')
    r = subprocess.run([exe, 'watch', str(b), str(same), '--out', str(tmp_path / 'w'), '--level', '0.05'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 3 and 'ALARM at cherry' in r.stdout, r.stdout + r.stderr
    alarm = json.loads((tmp_path / 'w' / 'watch_alarm.json').read_text())
    assert alarm['alarm'] and alarm['cherries'] == 120 and (tmp_path / 'w' / 'watch.html').exists()
    r = subprocess.run([exe, 'predict', str(b), str(same), '--out', str(tmp_path / 'p'), '--watch'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 3 and (tmp_path / 'p' / 'predictions.csv').exists() and 'watch:' in r.stdout
