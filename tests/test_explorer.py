"""explorer: the threshold explorer's logic (loading, tiers, guaranteed mode, figures, gallery) and its widget wiring,
without a browser (see test_explorer_browser.py for the real thing in headless Chromium)."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cherry_nb.faces.explorer import (PREDICTION_COLUMNS, Explorer, ExplorerState, explore, plotly_output,
                                      read_predictions, thumbnail_uri)
from cherry_nb.judge.tiers import (ArgmaxPolicy, Costs, InsufficientCalibration, ThresholdPolicy, cost_table,
                             guaranteed_tiers, tier_metrics)


def make_predictions(n_clean=300, n_pit=100, seed=0, splits=('val', 'test')):
    "Two models (binary, 3-class 'stage2') with Beta-distributed pit scores, as a run's predictions.csv."
    rng = np.random.default_rng(seed); out = []
    for split in splits:
        y = rng.permutation(np.r_[np.zeros(n_clean, int), np.ones(n_pit, int)])
        rel = [f"{split}/{'pit' if t else 'clean'}/{i:04d}.png" for i, t in enumerate(y)]
        for m in ('binary', 'stage2'):
            s = np.where(y == 1, rng.beta(5, 1.5, len(y)), rng.beta(1.5, 6, len(y)))
            d = pd.DataFrame(dict(model=m, split=split, relpath=rel, path=rel, label=np.where(y == 1, 'pit', 'clean'),
                                  y_pit=y, p_pit=s))
            if m == 'stage2':
                d['p_maybe'] = (1 - s) * rng.uniform(0, 0.6, len(y)); d['p_clean'] = 1 - s - d.p_maybe
            out.append(d)
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A run folder: predictions.csv and real PNGs for the test images (one left out, one corrupt)."
    root = tmp_path_factory.mktemp('run')
    df = make_predictions(); df.to_csv(root / 'predictions.csv', index=False)
    test = df[(df.model == 'binary') & (df.split == 'test')]
    for i, (rel, y) in enumerate(zip(test.relpath, test.y_pit)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (40, 30), (150 + i % 100, 10, 30 + 100 * y)).save(root / rel)
    lowest = test.relpath[test.p_pit.idxmin()]; (root / lowest).unlink()                 # missing image
    highest = test.relpath[test.p_pit.idxmax()]; (root / highest).write_bytes(b'not a png')  # unreadable image
    return root, df, lowest, highest


def direct_metrics(df, review, reject, model='binary', split='test', costs=None):
    t = df[(df.model == model) & (df.split == split)].sort_values('relpath')
    return tier_metrics(ThresholdPolicy(review, reject)(t.p_pit.to_numpy()), t.y_pit.to_numpy(), costs)


def accept_count(html):
    "The 'tier accept' count k of the table HTML ('k/n')."
    row = html.split('<td>tier accept</td>')[1]
    return int(row.split('<td>')[1].split('/')[0])


# ---------------------------------------------------------------- loading
def test_load_from_run_folder_csv_and_dataframe(run):
    root, df, *_ = run
    a, b, c = read_predictions(root), read_predictions(root / 'predictions.csv'), read_predictions(df)
    assert len(a) == len(df) == 1600 and a.attrs['source'] == str(root / 'predictions.csv') == b.attrs['source']
    assert c.attrs['source'] == 'predictions DataFrame'
    pd.testing.assert_frame_equal(a[list(PREDICTION_COLUMNS)], c[list(PREDICTION_COLUMNS)], check_dtype=False)
    assert a.y_pit.dtype == np.int64 and a.p_clean[a.model == 'binary'].isna().all()
    assert a.p_maybe[a.model == 'stage2'].notna().all()
    st = ExplorerState(root)
    assert (st.models, st.splits(), st.eval_split, st.cal_split) == (['binary', 'stage2'], ['val', 'test'],
                                                                     'test', 'val')
    assert st.root == root and len(st.eval_rows) == 400 and st.eval_rows.relpath.is_monotonic_increasing


def test_load_errors_name_the_file_and_the_problem(run, tmp_path):
    root, df, *_ = run
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*has no predictions.csv"): read_predictions(tmp_path)
    with pytest.raises(FileNotFoundError, match='nope.csv: not found'): ExplorerState(tmp_path / 'nope.csv')
    f = tmp_path / 'predictions.csv'
    df.drop(columns=['p_pit', 'relpath']).to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"predictions.csv: missing required columns \['relpath', 'p_pit'\]") as e:
        read_predictions(tmp_path)
    assert str(f) in str(e.value) and 'found [' in str(e.value)
    df.assign(p_pit=df.p_pit.where(df.index != 5, 1.5)).to_csv(f, index=False)
    with pytest.raises(ValueError, match=rf"{f}: column p_pit must hold probabilities in \[0, 1\]; "
                                         rf"1 rows do not \(e.g. '{df.relpath[5]}'\)"):
        read_predictions(tmp_path)
    with pytest.raises(ValueError, match='p_pit must hold probabilities'): read_predictions(df.assign(p_pit=np.nan))
    with pytest.raises(ValueError, match='column y_pit must be 0 or 1; 1600 rows'):
        read_predictions(df.assign(y_pit='pit'))
    with pytest.raises(ValueError, match='duplicate'): read_predictions(pd.concat([df, df.head(2)]))
    with pytest.raises(ValueError, match='no rows'): read_predictions(df.head(0))


# ---------------------------------------------------------------- thresholds
def test_threshold_changes_move_counts_as_tier_metrics(run):
    root, df, *_ = run
    st = ExplorerState(root, costs=Costs(500, 2, 0.5))
    prev = None
    for review in (0.3, 0.5, 0.65, 0.8):
        m = st.update(review=review).metrics(); d = direct_metrics(df, review, 0.85, costs=Costs(500, 2, 0.5))
        assert m.counts == d.counts and m.pit_miss == d.pit_miss and m.false_reject == d.false_reject
        assert m.review == d.review and m.total_cost == pytest.approx(d.total_cost)
        if prev: assert m.counts['accept'] > prev.counts['accept'] and m.pit_miss.k >= prev.pit_miss.k
        prev = m
    assert st.table().equals(d.table())
    html = st.table_html()
    assert accept_count(html) == d.counts['accept'] and str(d.pit_miss.k) + '/100' in html and '95% CI' in html
    assert st.update(reject=0.95).metrics().counts['reject'] < prev.counts['reject']


def test_thresholds_are_clamped_and_checked(run):
    st = ExplorerState(run[0])
    assert (st.update(review=0.9).review, st.reject) == (0.9, 0.9)        # review pushes reject up
    assert (st.update(reject=0.4).review, st.reject) == (0.4, 0.4)        # reject pushes review down
    assert (st.update(review=0.7, reject=0.6).review, st.reject) == (0.6, 0.6)  # both given: reject wins
    with pytest.raises(ValueError, match=r'review threshold must lie in \[0, 1\]'): st.update(review=1.2)
    with pytest.raises(TypeError, match='unknown explorer settings'): st.update(gamma=1)
    with pytest.raises(ValueError, match="unknown model 'x'"): st.update(model='x')
    with pytest.raises(ValueError, match="has no split 'train'"): st.update(eval_split='train')
    with pytest.raises(ValueError, match='alpha must lie strictly between 0 and 1'): st.update(alpha=0)
    with pytest.raises(ValueError, match="mode must be one of"): st.update(model='stage2', mode='nope')
    assert (st.model, st.review, st.reject, st.alpha) == ('binary', 0.6, 0.6, 0.01)  # a rejected update changes nothing


# ---------------------------------------------------------------- guaranteed and argmax modes
@pytest.mark.parametrize('alpha,delta,beta', [(0.05, 0.1, 0.05), (0.1, 0.2, None), (0.08, 0.05, 0.1)])
def test_guaranteed_mode_equals_guaranteed_tiers(run, alpha, delta, beta):
    root, df, *_ = run
    st = ExplorerState(root, mode='guaranteed', alpha=alpha, delta=delta, beta=beta)
    cal = df[(df.model == 'binary') & (df.split == 'val')]
    g = guaranteed_tiers(cal.p_pit.to_numpy(), cal.y_pit.to_numpy(), alpha, delta, beta)
    assert st.thresholds() == (g.accept_threshold, g.reject_threshold)
    assert st.metrics().counts == direct_metrics(df, g.accept_threshold, g.reject_threshold).counts
    html = st.table_html()
    assert f"certified on 'val' ({g.n_pits} pits, {g.n_clean} clean)" in html and f"{g.accept_threshold:.3f}" in html
    if beta is None: assert st.metrics().counts['review'] == 0 and 'no review tier' in html
    assert 'do not test the guarantee' not in html
    assert 'do not test the guarantee' in st.update(cal_split='test').table_html()


def test_insufficient_calibration_shows_its_message(run):
    st = ExplorerState(run[0], mode='guaranteed', alpha=0.01, delta=0.1)
    with pytest.raises(InsufficientCalibration): st.metrics()
    html = st.table_html()
    assert 'needs 230 pits, has 100' in html and '<table' not in html and 'calibration split too small' in html
    assert 'no tiers to show' in st.gallery_html()
    figs = st.figures()                                   # figures still drawn, without thresholds
    assert figs['histogram'].layout.shapes == () and len(figs['risk_coverage'].data) == 1
    st.update(beta=0.001)                                 # reject side impossible too, pit side first
    assert 'needs 230 pits' in st.table_html()
    st.update(alpha=0.1, beta=0.001)
    assert 'cleans, has 300' in st.table_html()
    one_split = ExplorerState(make_predictions(splits=('test',)), mode='guaranteed')
    assert one_split.cal_split is None and 'needs a calibration split' in one_split.table_html()


def test_argmax_mode_for_three_class_models(run):
    root, df, *_ = run
    st = ExplorerState(root, model='stage2', mode='argmax')
    t = df[(df.model == 'stage2') & (df.split == 'test')].sort_values('relpath')
    tiers = ArgmaxPolicy()(t[['p_clean', 'p_pit', 'p_maybe']].to_numpy())
    assert st.thresholds() is None and (st.tiers() == tiers).all()
    assert st.metrics().counts == tier_metrics(tiers, t.y_pit).counts and '3-class argmax' in st.table_html()
    assert st.update(model='binary').mode == 'thresholds' and st.modes == ('thresholds', 'guaranteed')


# ---------------------------------------------------------------- figures and gallery
def test_figures_follow_the_settings(run):
    root, df, *_ = run
    st = ExplorerState(root, review=0.55, reject=0.9, costs=Costs(100, 1, 0.3))
    f = st.figures()
    assert [s.x0 for s in f['histogram'].layout.shapes] == [0.55, 0.9] and f['cost'].layout.shapes[0].x0 == 0.55
    t = st.tiers(); y = st.eval_rows.y_pit.to_numpy()
    pt = f['risk_coverage'].data[-1]
    assert pt.x[0] == pytest.approx((t == 'accept').mean()) and pt.y[0] == pytest.approx(y[t == 'accept'].mean())
    ct = cost_table(st.eval_rows.p_pit, y, Costs(100, 1, 0.3), reject=0.9)
    assert np.allclose(f['cost'].data[0].y, ct.mean_cost) and 'reject at 0.9' in f['cost'].layout.title.text
    out = plotly_output(f['histogram'])
    assert out['output_type'] == 'display_data' and json.dumps(out)          # JSON-able for the widget protocol
    assert out['data']['application/vnd.plotly.v1+json']['layout']['shapes'][1]['x0'] == 0.9


def test_gallery_picks_per_tier(run, tmp_path):
    root, df, lowest, highest = run
    st = ExplorerState(root)
    pk = st.gallery(3)
    tiers = st.tiers()
    for tier, g in pk.items():
        assert len(g) == 3 and (g.tier == tier).all() and g.p_pit.is_monotonic_increasing
        scores = st.eval_rows.p_pit[tiers == tier]
        assert g.p_pit.iloc[0] == scores.min() and g.p_pit.iloc[-1] == scores.max()
    assert [g.relpath.tolist() for g in st.gallery(3).values()] == [g.relpath.tolist() for g in pk.values()]
    assert pk['accept'].relpath[0] == lowest and pk['accept'].image[0] is None
    assert pk['reject'].relpath[2] == highest and pk['review'].image.map(lambda p: p.is_file()).all()
    html = st.gallery_html(3, size=48)
    assert html.count("<figure class='cherry-thumb") == 9 and html.count('data:image/png;base64,') == 7
    assert f"missing<br>{lowest.split('/')[-1]}" in html and f"unreadable<br>{highest.split('/')[-1]}" in html
    assert "data-tier='review'><b>review</b>: " + str(st.metrics().counts['review']) in html
    n_wrong = sum(((g.tier == 'accept') & (g.y_pit == 1) | (g.tier == 'reject') & (g.y_pit == 0)).sum()
                  for g in pk.values())
    assert html.count('cherry-thumb cherry-wrong') == n_wrong
    big = st.gallery(1000)
    assert sum(map(len, big.values())) == 400                                # small tiers: every cherry once
    # absolute paths that moved: found again under image_root / relpath
    moved = df.assign(path='/nonexistent/' + df.relpath)
    assert ExplorerState(moved).gallery(2)['review'].image.isna().all()
    assert ExplorerState(moved, image_root=root).gallery(2)['review'].image.map(lambda p: p.is_file()).all()
    uri = thumbnail_uri(root / pk['review'].relpath[0], 16)
    assert uri.startswith('data:image/png;base64,')


# ---------------------------------------------------------------- widgets (no browser)
@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_widget_callbacks_update_table_and_figures(run):
    root, df, *_ = run
    ex = explore(root)
    assert 'cherry-explorer' in ex.widget._dom_classes and 'cherry-tier-table' in ex.table._dom_classes
    for w, c in ((ex.review, 'cherry-review'), (ex.reject, 'cherry-reject'), (ex.gallery, 'cherry-gallery'),
                 (ex.outputs['histogram'], 'cherry-histogram'), (ex.outputs['cost'], 'cherry-cost-curve'),
                 (ex.outputs['risk_coverage'], 'cherry-risk-coverage'), (ex.alpha, 'cherry-alpha')):
        assert c in w._dom_classes
    assert 'application/vnd.jupyter.widget-view+json' in ex._repr_mimebundle_()
    assert ex.model.layout.display is None and ex.guarantee_box.layout.display == 'none'   # two models: dropdown shown
    h0 = ex.table.value; a0 = accept_count(h0)
    ex.review.value = 0.75                                                     # as a slider move would
    assert ex.table.value != h0 and accept_count(ex.table.value) == direct_metrics(df, 0.75, 0.85).counts['accept'] > a0
    shapes = ex.outputs['histogram'].outputs[0]['data']['application/vnd.plotly.v1+json']['layout']['shapes']
    assert [s['x0'] for s in shapes] == [0.75, 0.85] and ex.figures['histogram'].layout.shapes[0].x0 == 0.75
    ex.review.value = 0.95                                                     # pushes the reject slider
    assert ex.reject.value == 0.95 and accept_count(ex.table.value) == direct_metrics(df, 0.95, 0.95).counts['accept']
    ex.preset.value = 'production'
    assert (ex.review.value, ex.reject.value) == (0.5, 0.75) == (ex.state.review, ex.state.reject)
    ex.reject.value = 0.8
    assert ex.preset.value == 'custom'
    g0 = ex.gallery.value; ex.review.value = 0.3
    assert ex.gallery.value != g0
    ex.cost_pit.value = 10.0
    assert ex.state.costs == Costs(10.0, 1.0, 0.2) and 'pit accepted 10' in ex.figures['cost'].layout.title.text
    ex.cost_clean.value = -1.0                                                 # rejected with a message, state kept
    assert 'costs must be finite' in ex.message.value and ex.state.costs.clean_rejected == 1.0
    ex.mode.value = 'guaranteed'
    assert ex.threshold_box.layout.display == 'none' and ex.guarantee_box.layout.display is None
    assert 'needs 230 pits, has 100' in ex.table.value and ex.message.value == ''
    ex.alpha.value = 0.05
    cal = df[(df.model == 'binary') & (df.split == 'val')]
    g = guaranteed_tiers(cal.p_pit, cal.y_pit, 0.05, 0.1, 0.05)
    assert accept_count(ex.table.value) == direct_metrics(df, g.accept_threshold, g.reject_threshold).counts['accept']
    ex.beta.value = 0
    assert ex.state.beta is None and 'no review tier' in ex.table.value
    ex.model.value = 'stage2'
    assert ex.mode.options == ('thresholds', 'guaranteed', 'argmax')
    ex.mode.value = 'argmax'
    assert '3-class argmax' in ex.table.value and ex.guarantee_box.layout.display == 'none'
    ex.model.value = 'binary'                                                  # no argmax for a binary model
    assert ex.mode.value == 'thresholds' == ex.state.mode and ex.mode.options == ('thresholds', 'guaranteed')


def test_single_model_hides_the_model_dropdown():
    df = make_predictions(60, 20); df = df[df.model == 'binary']
    ex = Explorer(df, eval_split='val', n_gallery=2)
    assert ex.model.layout.display == 'none' and ex.state.eval_split == 'val' and ex.eval_split.value == 'val'
    assert ex.gallery.value.count('cherry-missing') == 6                       # no images: placeholders, no crash
