"""tiers: policies, tier metrics and costs, guaranteed thresholds (checked against MAPIE and by simulation), AURC."""
import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from cherry_nb.core import atomic_write_json, read_json, to_json
from cherry_nb.judge.tiers import (POLICY_CLASSES, PVALUES, ArgmaxPolicy, Costs, GuaranteedTiers,
                                   InsufficientCalibration, ProductionPolicy, ThresholdPolicy, aurc, binomial_pvalue,
                                   calibration_size_needed, cost_curve, cost_table, enhanced_two_class,
                                   evaluate_policy, guaranteed_tiers, pit_scores, policy_from_dict, register_policy,
                                   risk_coverage, risk_coverage_figure, score_histogram, tier_metrics, risk_pvalues,
                                   bentkus_pvalue, wsr_capital)

CLEAN_AB, PIT_AB = (1.5, 6.0), (5.0, 1.5)      # simulator-like scores: clean ~ Beta(1.5, 6), pit ~ Beta(5, 1.5)


def scores(n_clean, n_pit, seed):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.beta(*CLEAN_AB, n_clean), rng.beta(*PIT_AB, n_pit)]
    y = np.r_[np.zeros(n_clean, int), np.ones(n_pit, int)]
    o = rng.permutation(len(s))
    return s[o], y[o]


# ---------------------------------------------------------------- policies
def test_threshold_policies_boundaries_and_validation():
    s = np.array([0.0, 0.4999, 0.5, 0.65, 0.7499, 0.75, 0.85, 1.0])
    assert enhanced_two_class()(s).tolist() == ['accept'] * 3 + ['review', 'review', 'review', 'reject', 'reject']
    assert ThresholdPolicy(0.5, 0.75)(s).tolist() == ['accept', 'accept', 'review', 'review', 'review',
                                                      'reject', 'reject', 'reject']
    assert ThresholdPolicy(0.5, 0.5)(s).tolist() == ['accept', 'accept'] + ['reject'] * 6     # no review tier
    probs2 = np.c_[1 - s, s]
    assert np.array_equal(enhanced_two_class()(probs2), enhanced_two_class()(s))
    for review, reject in ((0.8, 0.7), (-0.01, 0.5), (0.2, 1.01), (float('nan'), 0.5)):
        with pytest.raises(ValueError, match='0 <= review <= reject <= 1'):
            ThresholdPolicy(review, reject)
    with pytest.raises(ValueError, match='not probabilities'):
        enhanced_two_class()(np.array([0.2, 1.5]))
    d = enhanced_two_class().to_dict()
    assert d == dict(kind='thresholds', review=0.65, reject=0.85, name='enhanced-2class')
    assert policy_from_dict(json.loads(json.dumps(d))) == enhanced_two_class()


def test_three_class_policies():
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], 2000)                          # columns clean, pit, maybe
    arg = ArgmaxPolicy()(p)
    assert np.array_equal(arg, np.array(['accept', 'reject', 'review'])[p.argmax(1)])
    prod = ProductionPolicy()(p)
    assert np.array_equal(prod == 'reject', p[:, 1] >= 0.75)
    assert np.array_equal(prod == 'review', (p[:, 1] >= 0.5) & (p[:, 1] < 0.75))
    prod_m = ProductionPolicy(maybe_to_review=True)(p)
    changed = prod_m != prod
    assert changed.sum() > 0 and np.all(p[changed].argmax(1) == 2)
    assert np.all(prod[changed] == 'accept') and np.all(prod_m[changed] == 'review')
    assert np.all(prod_m[(p.argmax(1) == 2)] != 'accept')
    for pol in (ArgmaxPolicy(), ProductionPolicy(0.4, 0.8, True)):
        assert policy_from_dict(pol.to_dict()) == pol and pol.to_dict()['name']
    with pytest.raises(ValueError, match=r'\[N, 3\]'):
        ProductionPolicy()(p[:, :2])
    with pytest.raises(ValueError, match='unknown policy kind'):
        policy_from_dict(dict(kind='magic'))


def test_policies_register_themselves():
    "`tiers` knows no higher policy; views and ensembles register theirs on import, and so can any module."
    from cherry_nb.judge.ensemble import DisagreementPolicy
    from cherry_nb.judge.views import CherryPolicy
    for pol in (DisagreementPolicy(0.6, 0.9, tau=0.1), CherryPolicy('topk', 0.4, 0.8, k=3)):
        assert POLICY_CLASSES[pol.to_dict()['kind']] is type(pol) and policy_from_dict(pol.to_dict()) == pol

    @register_policy('always-review')
    @dataclasses.dataclass(frozen=True)
    class AlwaysReview:
        name: str = 'always review'
        def __call__(self, s): return np.full(len(pit_scores(s)), 'review')
        def to_dict(self): return dict(kind='always-review', name=self.name)
    try:
        back = policy_from_dict(json.loads(json.dumps(AlwaysReview('r').to_dict())))
        assert back == AlwaysReview('r') and back(np.array([0.1, 0.9])).tolist() == ['review', 'review']
    finally: del POLICY_CLASSES['always-review']
    with pytest.raises(ValueError, match='unknown policy kind'): policy_from_dict(dict(kind='always-review'))


# ---------------------------------------------------------------- metrics and costs
def test_tier_metrics_hand_computed(tmp_path):
    tiers = ['accept', 'accept', 'review', 'reject', 'accept', 'review', 'accept', 'reject', 'accept']
    y = ['pit', 'clean', 'pit', 'pit', 'clean', 'clean', 'clean', 'clean', 'pit']
    m = tier_metrics(tiers, y, Costs(pit_accepted=1000, clean_rejected=1, review=0.2))
    assert (m.pit_miss.k, m.pit_miss.n) == (2, 4) and (m.false_reject.k, m.false_reject.n) == (1, 5)
    assert (m.review.k, m.review.n) == (2, 9) and m.counts == dict(accept=5, review=2, reject=2)
    assert (m.accepted_clean.k, m.accepted_clean.n) == (3, 5) and (m.rejected_pit.k, m.rejected_pit.n) == (1, 2)
    assert m.total_cost == pytest.approx(2000 + 1 + 0.4) and m.mean_cost == pytest.approx(2001.4 / 9)
    t = m.table()
    assert list(t.columns) == ['metric', 'count', 'rate', 'lo', 'hi']
    row = t.set_index('metric').loc['pit-miss rate']
    assert row['count'] == '2/4' and row['rate'] == 0.5 and row['lo'] < 0.5 < row['hi']
    assert t.set_index('metric').loc['tier accept', 'count'] == '5/9'
    # Wilson interval by default, Clopper-Pearson on request (0/n gives an exact upper bound)
    m_cp = tier_metrics(['accept'] * 3 + ['reject'] * 10, [0] * 3 + [1] * 10, method='clopper-pearson')
    assert m_cp.pit_miss.k == 0 and m_cp.pit_miss.hi == pytest.approx(1 - 0.025 ** (1 / 10))
    d = read_json(atomic_write_json(tmp_path / 'metrics.json', m.as_dict()))
    assert d['pit_miss']['k'] == 2 and d['costs']['pit_accepted'] == 1000 and d['counts']['review'] == 2
    with pytest.raises(ValueError, match='unknown tiers'):
        tier_metrics(['accept', 'maybe'], [0, 1])
    with pytest.raises(ValueError, match="'clean' or 'pit'"):
        tier_metrics(['accept', 'accept'], ['clean', 'maybe'])
    with pytest.raises(ValueError, match='>= 0'):
        Costs(review=-1)


def test_cost_table_agrees_with_tier_metrics():
    s, y = scores(800, 300, seed=1)
    costs = Costs(500, 2, 0.3)
    grid = np.linspace(0, 1, 41)
    ct = cost_table(s, y, costs, reject=0.8, grid=grid)
    for i in (0, 7, 20, 33, 40):
        t = grid[i]
        m = evaluate_policy(ThresholdPolicy(t, max(t, 0.8)), s, y, costs)
        assert ct.pits_accepted[i] == m.pit_miss.k and ct.cleans_rejected[i] == m.false_reject.k
        assert ct.reviewed[i] == m.counts['review'] and ct.mean_cost[i] == pytest.approx(m.mean_cost)
    no_review = cost_table(s, y, costs, reject=None, grid=grid)
    assert (no_review.reviewed == 0).all()
    fig = cost_curve(s, y, costs, reject=0.8, grid=grid)
    assert fig.data[1].y[0] == pytest.approx(ct.mean_cost.min())


def test_score_histogram_threshold_lines():
    s, y = scores(300, 100, seed=2)
    fig = score_histogram(s, y, {'accept': 0.3, 'reject': 0.7})
    assert [tr.name for tr in fig.data] == ['clean (n=300)', 'pit (n=100)'] and len(fig.data[1].x) == 100
    assert sorted(sh.x0 for sh in fig.layout.shapes) == [0.3, 0.7]
    assert len(score_histogram(s, y, [0.1, 0.2, 0.9]).layout.shapes) == 3
    g = guaranteed_tiers(s, y, alpha=0.05, delta=0.2, beta=0.05)
    assert sorted(sh.x0 for sh in score_histogram(s, y, g).layout.shapes) == [g.accept_threshold, g.reject_threshold]


# ---------------------------------------------------------------- guaranteed thresholds
def test_insufficient_calibration_reports_needed_and_have():
    assert calibration_size_needed(0.01, 0.10) == 230
    s, y = scores(500, 229, seed=3)
    with pytest.raises(InsufficientCalibration) as e:
        guaranteed_tiers(s, y, alpha=0.01, delta=0.10)
    assert (e.value.needed, e.value.have) == (230, 229) and '230' in str(e.value) and '229' in str(e.value)
    assert isinstance(e.value, ValueError)
    s, y = scores(500, 230, seed=3)                     # one more pit: now a threshold (maybe strict) exists
    g = guaranteed_tiers(s, y, alpha=0.01, delta=0.10)
    assert g.n_pits == 230 and g.pvalues_accept[0] == pytest.approx(0.99 ** 230) and g.accept_threshold >= 0
    with pytest.raises(InsufficientCalibration, match='false-reject') as e:   # the clean side too
        guaranteed_tiers(*scores(20, 400, seed=4), alpha=0.05, delta=0.1, beta=0.01)
    assert e.value.which == 'clean' and e.value.have == 20 and e.value.needed == calibration_size_needed(0.01, 0.1)
    with pytest.raises(ValueError, match='alpha'):
        guaranteed_tiers(s, y, alpha=0.0)


def test_guaranteed_thresholds_by_hand():
    # 300 pits with known scores 0.001, 0.002, ..., 0.3 (k(t) = pits below t), cleans far away
    s = np.r_[np.arange(1, 301) / 1000, np.full(1000, 0.001)]
    y = np.r_[np.ones(300, int), np.zeros(1000, int)]
    alpha, delta = 0.02, 0.1
    k_star = int(max(k for k in range(300) if stats.binom.cdf(k, 300, alpha) <= delta))
    g = guaranteed_tiers(s, y, alpha=alpha, delta=delta, beta=None)
    assert isinstance(g, GuaranteedTiers)
    # largest candidate t with #pits < t <= k_star is the (k_star+1)-th pit score itself
    assert g.accept_threshold == pytest.approx((k_star + 1) / 1000) and g.reject_threshold == g.accept_threshold
    assert g.cal_pit_miss.k == k_star and g.cal_pit_miss.k / 300 <= alpha
    assert binomial_pvalue(k_star, 300, alpha) <= delta < binomial_pvalue(k_star + 1, 300, alpha)
    pol = g.policy
    assert isinstance(pol, ThresholdPolicy) and pol.review == g.accept_threshold and 'alpha=0.02' in pol.name
    d = json.loads(to_json(g.as_dict()))
    assert d['accept_threshold'] == g.accept_threshold and d['pvalue_accept'] <= delta
    assert d['cal_pit_miss']['k'] == k_star


def _mapie_controller(risk, target, confidence, candidates, choice):
    from mapie.risk_control import BinaryClassificationController
    # predict_proba of "the cherry is flagged" (not accepted): y_pred = 1 iff pit score >= lambda
    return BinaryClassificationController(predict_function=lambda X: np.c_[1 - X, X], risk=risk, target_level=target,
                                          confidence_level=confidence, best_predict_param_choice=choice,
                                          list_predict_params=candidates, fwer_method='fixed_sequence')


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_accept_threshold_agrees_with_mapie(seed):
    """MAPIE's BinaryClassificationController with risk 'recall' (1 - recall of flagging pits = pit-miss rate),
    Learn-then-Test fixed-sequence testing and the same candidate thresholds certifies the same thresholds.

    MAPIE computes its binomial p-value at ceil(n * r_hat) with r_hat a float; 512 pits and 512 cleans make
    r_hat = k / 512 exact in binary floating point, so its p-values equal ours exactly (see the next test for
    other n, where MAPIE's float rounding can only make it more conservative)."""
    s, y = scores(512, 512, seed)
    alpha, delta, beta = [(0.02, 0.1, 0.05), (0.05, 0.05, 0.02), (0.01, 0.1, 0.1), (0.03, 0.2, 0.03)][seed]
    g = guaranteed_tiers(s, y, alpha=alpha, delta=delta, beta=beta)
    c = g.candidates
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        acc = _mapie_controller('recall', 1 - alpha, 1 - delta, c, 'predicted_positive_fraction').calibrate(s, y)
        rej = _mapie_controller('fpr', beta, 1 - delta, c, 'fpr').calibrate(s, y)
    assert np.allclose(acc.p_values[:, 0], g.pvalues_accept, rtol=1e-9, atol=1e-15)
    assert np.array_equal(np.sort(acc.valid_predict_params), g.valid_accept) and len(g.valid_accept) > 1
    assert g.accept_threshold == acc.valid_predict_params.max()
    # MAPIE's chosen threshold (fewest flagged cherries among the certified) flags exactly the same calibration cherries
    assert np.array_equal(s >= acc.best_predict_param, s >= g.accept_threshold)
    # reject side: false-positive rate of "reject iff s >= lambda" on the cleans
    assert np.allclose(rej.p_values[:, 0], g.pvalues_reject, rtol=1e-9, atol=1e-15)
    assert np.array_equal(np.sort(rej.valid_predict_params), np.sort(g.valid_reject))
    assert g.reject_threshold == max(rej.valid_predict_params.min(), g.accept_threshold)


def test_mapie_never_certifies_more_than_we_do():
    "For any n, MAPIE's valid set is a prefix of ours: float rounding in ceil(n * r_hat) can only raise its p-values."
    for seed, n_pit in enumerate((230, 301, 457, 999)):
        s, y = scores(700, n_pit, seed + 10)
        g = guaranteed_tiers(s, y, alpha=0.02, delta=0.1, beta=None)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            acc = _mapie_controller('recall', 0.98, 0.9, g.candidates, 'predicted_positive_fraction').calibrate(s, y)
        mv = np.sort(acc.valid_predict_params)
        assert len(mv) > 0 and np.array_equal(mv, g.valid_accept[:len(mv)])
        k = np.searchsorted(np.sort(s[y == 1]), g.candidates, 'left')
        # min(Hoeffding, binomial tail at ceil(n * r_hat)): between ours at k and k + 1
        pm = acc.p_values[:, 0]
        assert np.all(pm >= binomial_pvalue(k, n_pit, 0.02) * (1 - 1e-9))
        assert np.all(pm <= binomial_pvalue(k + 1, n_pit, 0.02) * (1 + 1e-9))
        assert np.isclose(pm, binomial_pvalue(k, n_pit, 0.02), rtol=1e-9).mean() > 0.3


def test_guarantee_holds_over_random_calibration_splits():
    """Over 400 calibration splits, the true pit-miss rate of the certified threshold (Beta CDF: new cherries
    from the same distribution) exceeds alpha in at most about delta of the splits, and the guarantee is not vacuous."""
    alpha, delta, beta = 0.05, 0.1, 0.05
    n_splits, n_pit, n_clean = 400, 300, 500
    rng = np.random.default_rng(2024)
    pits = rng.beta(*PIT_AB, (n_splits, n_pit)); cleans = rng.beta(*CLEAN_AB, (n_splits, n_clean))
    y = np.r_[np.ones(n_pit, int), np.zeros(n_clean, int)]
    cand = np.linspace(0, 1, 501)
    th = np.array([[(g := guaranteed_tiers(np.r_[p, c], y, alpha, delta, beta, candidates=cand)).accept_threshold,
                    g.reject_threshold] for p, c in zip(pits, cleans)])
    miss = stats.beta.cdf(th[:, 0], *PIT_AB)                    # true pit-miss rate of each split's threshold
    false_rej = stats.beta.sf(th[:, 1], *CLEAN_AB)              # true false-reject rate
    freq_miss, freq_fr = (miss > alpha).mean(), (false_rej > beta).mean()
    slack = 3 * math.sqrt(delta * (1 - delta) / n_splits)       # 3 binomial standard deviations (0.045)
    assert freq_miss <= delta + slack and freq_fr <= delta + slack, (freq_miss, freq_fr)
    # not vacuous: thresholds well above 0, review rate well below 1, realised miss rate mostly close to alpha
    review = (stats.beta.cdf(th[:, 1], *PIT_AB) - miss) * n_pit / (n_pit + n_clean) + \
             (stats.beta.cdf(th[:, 1], *CLEAN_AB) - stats.beta.cdf(th[:, 0], *CLEAN_AB)) * n_clean / (n_pit + n_clean)
    assert review.max() < 0.5 and np.median(miss) > 0.6 * alpha and np.quantile(miss, 0.1) > 0.4 * alpha
    assert freq_miss > 0.02                                     # the bound is used, not wasted
    print(f"violations: pit-miss {freq_miss:.3f}, false-reject {freq_fr:.3f}; median true miss {np.median(miss):.4f}, "
          f"median review {np.median(review):.3f}")
    # the same on finite test sets: realised test miss rates scatter around (below) alpha
    test_pits = rng.beta(*PIT_AB, (n_splits, 2000))
    test_miss = (test_pits < th[:, :1]).mean(1)
    assert abs(test_miss.mean() - miss.mean()) < 0.003 and test_miss.mean() < alpha


# ---------------------------------------------------------------- p-values of Learn-then-Test
@pytest.mark.parametrize('n,alpha', [(100, 0.05), (200, 0.02)])
def test_pvalues_are_super_uniform_under_the_null(n, alpha):
    """Bernoulli(alpha) losses sit on the null's boundary (risk = alpha, the hardest case for H0 'risk > alpha'):
    every p-value of PVALUES is <= x in at most a share x of 20,000 samples, within 3 binomial standard deviations,
    at every level x; with the risk above alpha it rejects even less."""
    rng = np.random.default_rng(n)
    for risk in (alpha, 1.5 * alpha):
        losses = rng.random((n, 20000)) < risk
        for m in PVALUES:
            p = risk_pvalues(losses, alpha, 0.1, m)
            for x in (0.02, 0.05, 0.1, 0.2, 0.5):
                assert (p <= x).mean() <= x + 3 * math.sqrt(x * (1 - x) / 20000), (m, risk, x, (p <= x).mean())
            if risk > alpha: assert (p <= 0.1).mean() < 0.05, m


def test_wsr_capital_is_a_fair_bet_at_the_null():
    "At risk = alpha the WSR capital is a martingale (mean 1 at every step); above alpha it loses (a supermartingale)."
    rng = np.random.default_rng(0); alpha = 0.05
    at = np.exp(wsr_capital(rng.random((100, 40000)) < alpha, alpha, 0.1))
    mean, se = at.mean(1), at.std(1) / math.sqrt(at.shape[1])
    assert np.all(np.abs(mean - 1) < 4 * se + 1e-12)           # at every step, within 4 standard errors
    above = np.exp(wsr_capital(rng.random((100, 40000)) < 2 * alpha, alpha, 0.1))[-1]
    assert above.mean() + 4 * above.std() / 200 < 1
    # the bet is predictable: the first factor does not see the first loss (nu_1 from the prior variance 1/4)
    lk = wsr_capital(np.array([[0.0], [1.0]]), alpha, 0.1)
    nu1 = min(1.0, math.sqrt(2 * math.log(10) / (2 * 0.25)))
    assert lk[0, 0] == pytest.approx(math.log1p(nu1 * alpha))


def test_count_only_pvalues_order_and_options():
    """For binary losses Bentkus is never below the exact binomial (so it certifies a prefix of its thresholds), at
    zero losses Hoeffding equals the binomial; WSR reads the order; the option names one registry entry."""
    for n in (50, 230, 1000):
        k = np.arange(n + 1); L = np.arange(n)[:, None] < k
        assert np.all(bentkus_pvalue(L, 0.02) >= binomial_pvalue(k, n, 0.02) * (1 - 1e-12))
        assert risk_pvalues(L[:, :1], 0.02, 0.1, 'bentkus')[0] == pytest.approx(0.98 ** n)
    first = (np.arange(500) < 5).astype(float)
    assert risk_pvalues(first, 0.01, 0.1, 'wsr')[0] != risk_pvalues(first[::-1], 0.01, 0.1, 'wsr')[0]
    assert risk_pvalues(first, 0.01, 0.1, 'binomial')[0] == risk_pvalues(first[::-1], 0.01, 0.1, 'binomial')[0]
    with pytest.raises(ValueError, match='0/1'): risk_pvalues([0.5, 0.0], 0.1, 0.1, 'binomial')
    with pytest.raises(ValueError, match='unknown p-value'): risk_pvalues([0, 1], 0.1, 0.1, 'hoeffding')
    assert [calibration_size_needed(0.01, 0.1, pvalue=m) for m in ('binomial', 'bentkus')] == [230, 230]
    assert calibration_size_needed(0.01, 0.1, pvalue='wsr') > 230
    s, y = scores(300, 235, seed=5)                  # 235 pits: enough for the binomial, not for WSR
    assert guaranteed_tiers(s, y, 0.01, 0.1, beta=None).pvalue == 'binomial'
    with pytest.raises(InsufficientCalibration) as e: guaranteed_tiers(s, y, 0.01, 0.1, beta=None, pvalue='wsr')
    assert e.value.needed == calibration_size_needed(0.01, 0.1, pvalue='wsr')
    with pytest.raises(ValueError, match='unknown p-value'): guaranteed_tiers(s, y, pvalue='hb')


def test_measured_pvalue_ordering():
    """The ordering benchmarks/certificate_levers.py measured: Bentkus never certifies a higher threshold than the
    binomial (its p-values are never lower), WSR on average a lower one (toy scores, alpha 2%, 500 pits: -2.4 points
    of accept share there) but not always: losses early in the order let it certify more losses than the binomial."""
    rng, cand = np.random.default_rng(7), np.linspace(0, 0.6, 601)
    th = {m: [] for m in PVALUES}
    for _ in range(100):
        sp = rng.beta(*PIT_AB, 500); y = np.ones(500, int)
        for m in PVALUES: th[m].append(guaranteed_tiers(sp, y, 0.02, 0.1, beta=None, candidates=cand, pvalue=m)
                                       .accept_threshold)
    th = {m: np.array(v) for m, v in th.items()}
    assert np.all(th['bentkus'] <= th['binomial']) and np.any(th['bentkus'] < th['binomial'])
    share = {m: stats.beta.cdf(t, *PIT_AB) * 0.4 + stats.beta.cdf(t, *CLEAN_AB) * 0.6 for m, t in th.items()}
    d = share['wsr'] - share['binomial']
    assert d.mean() + 3 * d.std() / math.sqrt(len(d)) < 0, (d.mean(), d.std())   # lower on average, by 3 s.e.
    assert np.any(d > 0)                                                  # but above in some draws
    early = (np.arange(1000)[:, None] < np.arange(12)).astype(float)      # k losses first, then zeros
    k_ok = {m: int(np.flatnonzero(risk_pvalues(early, 0.01, 0.1, m) <= 0.1)[-1]) for m in PVALUES}
    assert k_ok['wsr'] > k_ok['binomial'] >= k_ok['bentkus'], k_ok


# ---------------------------------------------------------------- risk-coverage
def test_risk_coverage_and_aurc_hand_computed():
    # accept-first: order 0.1 (clean), 0.2 (pit), 0.3 (clean), 0.4 (pit), 0.5 (clean)
    s, y = [0.3, 0.1, 0.5, 0.4, 0.2], [0, 0, 0, 1, 1]
    rc = risk_coverage(s, y)
    assert np.allclose(rc.coverage, [0.2, 0.4, 0.6, 0.8, 1.0]) and np.allclose(rc.risk, [0, 1/2, 1/3, 2/4, 2/5])
    assert aurc(s, y) == pytest.approx((0 + 1/2 + 1/3 + 1/2 + 2/5) / 5)
    assert aurc([0.1, 0.2, 0.9], [0, 0, 1]) == pytest.approx(1 / 9)
    assert aurc([0.9, 0.1], [0, 1]) == pytest.approx((1 + 1/2) / 2)
    # ties: the order inside a tie does not matter
    assert np.allclose(risk_coverage([0.2, 0.2, 0.2, 0.7], [1, 0, 0, 1]).risk, [1/3, 1/3, 1/3, 1/2])
    assert aurc([0.2, 0.2, 0.2, 0.7], [1, 0, 0, 1]) == aurc([0.2, 0.2, 0.2, 0.7], [0, 0, 1, 1])
    # selective: confidence max(s, 1-s); errors where (s >= 0.5) != y
    assert np.allclose(risk_coverage([0.95, 0.1, 0.6, 0.45], [1, 1, 0, 0], 'selective').risk, [0, 1/2, 2/3, 2/4])
    # a better model has a lower AURC
    s1, y1 = scores(1000, 400, seed=9)
    noisy = np.clip(s1 + np.random.default_rng(0).normal(0, 0.3, len(s1)), 0, 1)
    assert aurc(s1, y1) < aurc(noisy, y1)
    fig = risk_coverage_figure({'model': s1, 'noisy': noisy}, y1, points={'op': (0.5, 0.01)})
    assert len(fig.data) == 3 and 'AURC' in fig.data[0].name
    with pytest.raises(ValueError, match='mode'):
        risk_coverage(s, y, mode='reject')
