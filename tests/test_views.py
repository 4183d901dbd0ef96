"""views: simulator views, per-cherry aggregation, the guarantee counted in cherries, its coverage, and the explorer."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cherry_nb.core import read_json
from cherry_nb.data import (CachedImageDataset, assign_splits, check_leakage, check_splits, make_loader,
                            read_image_folder)
from cherry_nb.faces.explorer import ExplorerState
from cherry_nb.data.synth import VIEW_COLS, ViewConfig, read_truth, render_dataset
from cherry_nb.data.toys import toy_view_scores
from cherry_nb.judge.tiers import DependentCalibration, ThresholdPolicy, guaranteed_tiers, policy_from_dict
from cherry_nb.judge.views import (RULES, CherryPolicy, cherry_guaranteed_tiers, cherry_scores, coverage_summary,
                             resplit_coverage)

TINY = dict(n_train=8, n_val=4, n_test=4, size=32, seed=3, pit_as_clean=0.5, workers=1, progress=False)
PER_CHERRY = ['cherry_id', 'pit_present', 'pit_kind', 'true_label', 'given_label', 'noise_flipped', 'mimic']


def _digest(root: Path) -> str:
    "One sha256 over the relative paths and bytes of every file but dataset.json (it holds the package version)."
    h = hashlib.sha256()
    for p in sorted(root.rglob('*')):
        if p.is_file() and p.name != 'dataset.json':
            h.update(p.relative_to(root).as_posix().encode()); h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def renders(tmp_path_factory):
    d = tmp_path_factory.mktemp('views')
    return {v: render_dataset(d / f'v{v}', views=v, **TINY) for v in (1, 2, 3)}


# ---------------------------------------------------------------- simulator
def test_views1_is_bit_identical_to_the_simulator_before_views(renders):
    # digest of the same call rendered by cherry_nb.data.synth before `views` existed (commit 0b5e805)
    assert _digest(renders[1]) == 'd6b7c8fbb5dc689b7b2fc5abd829909723794f604d0b2abcbde74ed5cabe4910'
    df, meta = read_truth(renders[1]), read_json(renders[1] / 'dataset.json')
    assert not set(VIEW_COLS) & set(df.columns) and 'views' not in meta and 'view_config' not in meta
    assert meta['layout'] == '<split>/<given_label>/<cherry_id>.png'


def test_views3_files_truth_and_same_cherries(renders):
    one, three = read_truth(renders[1]), read_truth(renders[3])
    assert len(three) == 3 * len(one) and all((renders[3] / r).is_file() for r in three.relpath)
    assert three.relpath[:3].tolist() == [f"train/{three.given_label[0]}/train-000000_v{k}.png" for k in range(3)]
    assert list(three.columns[11:15]) == list(VIEW_COLS) and (three.n_views == 3).all()
    assert three.groupby('cherry_id').view.agg(lambda v: sorted(v) == [0, 1, 2]).all()
    per = three.drop_duplicates('cherry_id').reset_index(drop=True)
    pd.testing.assert_frame_equal(per[PER_CHERRY], one[PER_CHERRY])               # the same cherries as views=1
    assert (three.groupby('cherry_id')[PER_CHERRY[1:]].nunique() == 1).all().all()   # per-cherry truth on each view
    vis = three.groupby('cherry_id').visibility.max()
    assert (vis == three.groupby('cherry_id').cherry_visibility.first()).all()
    assert (three.visibility[three.pit_present == 0] == 0).all()
    assert set(three.view_hidden[three.pit_present == 0]) == {0}
    meta = read_json(renders[3] / 'dataset.json')
    assert meta['views'] == 3 and meta['view_config'] == json.loads(json.dumps(ViewConfig().__dict__))
    assert meta['summary']['n'] == 48 and meta['summary']['n_cherries'] == 16


def test_views_are_nested_and_vary(renders):
    two, three = read_truth(renders[2]), read_truth(renders[3])
    for r in two.relpath: assert (renders[2] / r).read_bytes() == (renders[3] / r).read_bytes()
    pits = three[three.pit_present == 1]
    assert (pits.groupby('cherry_id').rot.nunique() == 3).all()
    assert (pits.groupby('cherry_id').pit_depth.nunique() == 3).all()


def test_hidden_views_have_low_visibility(tmp_path):
    root = render_dataset(tmp_path / 'h', n_train=60, n_val=0, n_test=0, size=32, views=4, workers=1, progress=False,
                          view_cfg=ViewConfig(hide_whole=0.5, hide_fragment=0.5))
    p = read_truth(root).query('pit_present == 1')
    assert 0.3 < p.view_hidden.mean() < 0.7
    assert p[p.view_hidden == 1].visibility.mean() < 0.3 * p[p.view_hidden == 0].visibility.mean()
    with pytest.raises(ValueError, match='views must be an integer >= 1'):
        render_dataset(tmp_path / 'bad', n_train=2, n_val=0, n_test=0, views=0, progress=False)
    with pytest.raises(ValueError, match='hide_whole'): ViewConfig(hide_whole=1.5)


# ---------------------------------------------------------------- splits and loader
def test_group_aware_splits_with_views(renders):
    m = read_image_folder(renders[3], progress=False)
    assert (m.groupby('cherry_id').split.nunique() == 1).all()                   # the simulator's splits
    flat = m.drop(columns='split')
    for seed in range(4):
        s = assign_splits(flat, seed=seed, group_col='cherry_id')
        assert (s.groupby('cherry_id').split.nunique() == 1).all()
        assert len(check_leakage(s, 'cherry_id', warn=False)) == 0
    counts = check_splits(s, group_col='cherry_id')
    assert counts.to_numpy().sum() == 16                                           # counted in cherries, not images


def test_loader_one_view_per_cherry_per_epoch(renders):
    m = read_image_folder(renders[3], progress=False)
    tr = m[m.split == 'train'].reset_index(drop=True)
    dl = make_loader(CachedImageDataset(tr, 32, progress=False), 4, shuffle=True, seed=0, group_col='cherry_id')
    epochs = [torch.cat([x for x, _ in dl]) for _ in range(3)]
    assert [len(e) for e in epochs] == [8, 8, 8] and not torch.equal(epochs[0], epochs[1])


# ---------------------------------------------------------------- aggregation
def test_every_rule_by_hand():
    vs, cid = [0.1, 0.9, 0.5, 0.2, 0.6, 0.3], ['A', 'A', 'A', 'B', 'B', 'C']
    want = {'max': [0.9, 0.6, 0.3], 'mean': [0.5, 0.4, 0.3], 'topk': [0.7, 0.4, 0.3],
            'noisy_or': [1 - 0.9 * 0.1 * 0.5, 1 - 0.8 * 0.4, 0.3]}
    assert set(want) == set(RULES)
    for rule, w in want.items():
        t = cherry_scores(vs, cid, rule, k=2)
        assert t.cherry_id.tolist() == ['A', 'B', 'C'] and np.allclose(t.score, w), rule
        assert t.n_views.tolist() == [3, 2, 1] and t.n_failed.tolist() == [0, 0, 0]
    assert np.isclose(cherry_scores(vs, cid, 'topk', k=1).score[0], 0.9)
    assert np.isclose(cherry_scores([1.0, 0.5], ['A', 'A'], 'noisy_or').score[0], 1.0)
    with pytest.raises(ValueError, match='unknown aggregation rule'): cherry_scores(vs, cid, 'vote')
    with pytest.raises(ValueError, match='topk needs an integer k'): cherry_scores(vs, cid, 'topk', k=0)
    with pytest.raises(ValueError, match='6 view scores but 2 group'): cherry_scores(vs, ['A', 'B'])


def test_failed_views_are_stated_and_never_accepted():
    vs, cid = [0.05, np.nan, np.nan, np.nan, 0.02], ['A', 'A', 'B', 'B', 'C']
    t = cherry_scores(vs, cid, 'max', n_views={'A': 2, 'B': 2, 'C': 3, 'D': 2})
    assert t.cherry_id.tolist() == ['A', 'B', 'C', 'D'] and t.n_views.tolist() == [2, 2, 3, 2]
    assert t.n_scored.tolist() == [1, 0, 1, 0] and t.n_failed.tolist() == [1, 2, 2, 2]
    assert np.isclose(t.score[0], 0.05) and t.score[[1, 3]].isna().all()
    tiers = CherryPolicy('max', 0.5, 0.9)(vs, cid, n_views={'A': 2, 'B': 2, 'C': 3, 'D': 2})
    assert tiers.tier.tolist() == ['accept', 'review', 'accept', 'review']      # all views failed: review
    assert CherryPolicy('max', 0.5, 0.9, min_views=2)(vs, cid).tier.tolist() == ['review', 'review', 'review']
    with pytest.raises(ValueError, match='more than the 1 expected'): cherry_scores(vs, cid, n_views=1)
    with pytest.raises(ValueError, match='disagree on the truth'): cherry_scores([0.1, 0.2], ['A', 'A'], y=[0, 1])


def test_certification_leaves_out_unscored_cherries():
    tv = toy_view_scores(800, 3, seed=4)
    s = tv.p_pit.to_numpy().copy(); s[:9] = np.nan                          # cherries c00000-c00002 lose every view
    s[9] = np.nan                                                             # c00003 loses one of three
    cg = cherry_guaranteed_tiers(s, tv.y_pit, tv.cherry_id, 'mean', alpha=0.05, delta=0.1)
    assert (cg.n_cherries, cg.n_left_out, cg.n_views, cg.n_failed) == (797, 3, 2400, 10)
    assert cg.n_pit_cherries == int(tv[tv.view == 0].iloc[3:].y_pit.sum())


# ---------------------------------------------------------------- the guarantee per cherry
def test_per_image_certification_on_grouped_data_is_refused():
    tv = toy_view_scores(600, 3, seed=5)
    with pytest.raises(DependentCalibration, match='not independent draws.*cherry_guaranteed_tiers'):
        guaranteed_tiers(tv.p_pit, tv.y_pit, 0.05, 0.1, groups=tv.cherry_id)
    g = guaranteed_tiers(tv.p_pit, tv.y_pit, 0.05, 0.1, groups=tv.cherry_id, allow_dependent=True)
    plain = guaranteed_tiers(tv.p_pit, tv.y_pit, 0.05, 0.1)
    assert (g.unit, g.n_groups, plain.unit, plain.n_groups) == ('image', 600, 'image', None)
    assert (g.accept_threshold, g.reject_threshold) == (plain.accept_threshold, plain.reject_threshold)
    with pytest.raises(DependentCalibration, match="unit='cherry' needs one row per cherry"):
        guaranteed_tiers(tv.p_pit, tv.y_pit, groups=tv.cherry_id, unit='cherry', allow_dependent=True)
    one = tv[tv.view == 0]
    assert guaranteed_tiers(one.p_pit, one.y_pit, 0.05, 0.1, groups=one.cherry_id).n_groups == 600
    with pytest.raises(ValueError, match="unit must be 'image' or 'cherry'"):
        guaranteed_tiers(one.p_pit, one.y_pit, unit='x')
    with pytest.raises(ValueError, match='groups has 3 entries'):
        guaranteed_tiers(one.p_pit, one.y_pit, groups=[1, 2, 3])


def test_cherry_certificate_states_its_unit_and_matches_aggregated_scores():
    tv = toy_view_scores(1000, 4, seed=6)
    cg = cherry_guaranteed_tiers(tv.p_pit, tv.y_pit, tv.cherry_id, 'topk', alpha=0.02, delta=0.1, beta=0.05, k=2)
    tab = cherry_scores(tv.p_pit, tv.cherry_id, 'topk', k=2, y=tv.y_pit)
    g = guaranteed_tiers(tab.score, tab.y_pit, 0.02, 0.1, 0.05)
    assert (cg.accept_threshold, cg.reject_threshold) == (g.accept_threshold, g.reject_threshold)
    assert (cg.tiers.unit, cg.n_cherries, cg.n_pit_cherries, cg.n_views) == ('cherry', 1000, int(tab.y_pit.sum()), 4000)
    d = json.loads(json.dumps(cg.as_dict()))
    assert d['unit'] == 'cherry' and d['rule'] == 'topk' and d['certificate']['unit'] == 'cherry'
    assert 'certified on 1000 calibration cherries' in d['statement']
    want = CherryPolicy('topk', g.accept_threshold, g.reject_threshold, 2, name=cg.policy.name)
    assert policy_from_dict(d['policy']) == cg.policy == want


def test_cherry_policy_json_round_trip():
    pols = (CherryPolicy(), CherryPolicy('noisy_or', 0.2, 0.7, min_views=3, name='line 2'), CherryPolicy('topk', k=4))
    for p in pols:
        d = json.loads(json.dumps(p.to_dict()))
        assert d['kind'] == 'views' and CherryPolicy.from_dict(d) == p and policy_from_dict(d) == p
    assert CherryPolicy.unit == 'cherry' and 'unit' not in CherryPolicy().to_dict()
    with pytest.raises(ValueError, match='not a per-cherry policy'):
        CherryPolicy.from_dict(ThresholdPolicy().to_dict())
    with pytest.raises(ValueError, match='min_views'): CherryPolicy(min_views=0)


def test_resplit_coverage_small_scale():
    pool = toy_view_scores(800, 3, seed=7)
    cov = resplit_coverage(pool.p_pit, pool.y_pit, pool.cherry_id, 'max', alpha=0.05, delta=0.1, n_cal=300,
                           n_resplits=150, seed=0)
    c = coverage_summary(cov)
    assert c['unit'] == 'cherry' and len(cov) == 150 and c['coverage'].rate >= 0.85 and c['coverage'].hi >= 0.9
    tab = cherry_scores(pool.p_pit, pool.cherry_id, 'max', y=pool.y_pit)
    r0 = cov.iloc[0]                                                       # risk is the pool's per-cherry pit-miss
    assert np.isclose(r0.risk, (tab.score[tab.y_pit == 1] < r0.accept_threshold).mean())


def test_views_as_independent_images_break_the_promise():
    dup = toy_view_scores(1000, 10, hide=0.0, cherry_sd=2.5, view_sd=0.05, seed=1)
    kw = dict(alpha=0.02, delta=0.1, n_cal=240, n_resplits=150, seed=0)
    right = coverage_summary(resplit_coverage(dup.p_pit, dup.y_pit, dup.cherry_id, 'mean', **kw))
    wrong = coverage_summary(resplit_coverage(dup.p_pit, dup.y_pit, dup.cherry_id, 'mean', per_image=True, **kw))
    assert right['coverage'].hi >= 0.9 and wrong['coverage'].hi < 0.9 and wrong['mean_risk'] > right['mean_risk']
    assert wrong['unit'].startswith('image')


# ---------------------------------------------------------------- explorer
def test_explorer_decides_per_cherry_and_shows_views(tmp_path):
    tv = toy_view_scores(300, 3, seed=8)
    tv = tv.assign(model='m', split=np.where(tv.cherry_id < 'c00150', 'val', 'test'),
                   label=np.where(tv.y_pit == 1, 'pit', 'clean'))
    tv['relpath'] = [f"{s}/{c}_v{k}.png" for s, c, k in zip(tv.split, tv.cherry_id, tv.view)]
    tv['path'] = tv.relpath
    st = ExplorerState(tv, mode='guaranteed', alpha=0.1)
    assert st.has_views and st.unit == 'images' and 'not independent draws' in st.table_html()
    st.update(rule='noisy_or')
    assert len(st.eval_rows) == 150 and st.guarantee().unit == 'cherry'
    assert '150 cherries (noisy_or of their views)' in st.table_html()
    v = st.cherry_views('c00200')
    views = tv[tv.cherry_id == 'c00200'].p_pit
    assert len(v['rows']) == 3 and np.isclose(v['score'], 1 - np.prod(1 - views))
    assert v['tier'] == ThresholdPolicy(*st.thresholds())([v['score']])[0]
    assert st.cherry_views_html('c00200').count('<figure') == 3 and 'has no views' in st.cherry_views_html('nope')
