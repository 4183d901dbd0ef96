"""The labelling layer against the package: the labels CSV, `select`'s designs, the session's saving and resuming on
real images, agreement against scikit-learn, the `labels` parameter checked before a run, and (slow) the comparison
workflow running the explicit 3-class method on a 2-class folder with a labels file."""
import json, subprocess, sys
from pathlib import Path

import numpy as np, pandas as pd, pytest
from sklearn.metrics import cohen_kappa_score
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_labels, join_labels, put_label, LabelError, LABEL_COLS
from cherry_nb.studies.label import label_items, select, LabelSession, label, agreement, weighted_share
from cherry_nb.params import ParamError, config_from
from cherry_nb.studies.compare import CompareConfig

EXE = str(Path(sys.executable).parent / 'cherry-nb')


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp('sim') / 'sim', n_train=24, n_val=8, n_test=8, size=32, workers=1,
                          progress=False)


def test_select_three_class_weights_are_unbiased():
    rng = np.random.default_rng(3)
    pop = pd.DataFrame(dict(relpath=[f'{i}.png' for i in range(3000)], score=rng.random(3000)))
    band = (pop.score > 0.35) & (pop.score < 0.65)
    pop['label'] = np.where(band & (rng.random(3000) < 0.5) | (rng.random(3000) < 0.03), 'maybe', 'clean')
    s = select(pop, 400, band_share=0.5, seed=1)
    assert s.relpath.is_unique and len(s) == 400 and (s.stratum == 'band').sum() == 200
    assert s.design.iloc[0].startswith('three_class: band 0.35<score<0.65 200 of')
    assert np.isclose(s.weight.mean(), 1.0)
    est = np.mean([weighted_share(select(pop, 400, seed=k))[0] for k in range(100)])
    assert abs(est - (pop.label == 'maybe').mean()) < 0.01
    srs = select(pop.assign(tier=np.where(pop.score < 0.3, 'accept', 'review')), 50, 'audit', tier='accept', seed=0)
    assert (srs.weight == 1).all() and (srs.score < 0.3).all() and 'in tier accept' in srs.design.iloc[0]
    with pytest.raises(ValueError, match='out-of-fold'): select(pop.assign(score=np.nan), 10)


def test_session_saves_each_label_and_resumes(sim, tmp_path):
    items = label_items(sim)
    out = tmp_path / 'labels.csv'
    s = LabelSession(items, out, annotator='a')
    s.label('pit'); s.skip(); s.label('maybe'); s.label('clean'); s.undo()
    df = read_labels(out)
    assert df.columns[:8].tolist() == list(LABEL_COLS)
    assert df.relpath.tolist() == [items.relpath[0], items.relpath[2]] and df.label.tolist() == ['pit', 'maybe']
    r = LabelSession(items, out, annotator='a')                # restart: the first unlabelled item is the skipped one
    assert r.i == 1 and r.n_done == 2
    b = LabelSession(items, out, annotator='b'); assert b.i == 0  # another annotator starts at the beginning
    st = label(sim, tmp_path / 'st.csv', annotator='k', blind=False)
    st.keys.value = 'm'
    row = read_labels(tmp_path / 'st.csv').iloc[0]
    assert row.label == 'maybe' and not row.blind and row.annotator == 'k'
    with pytest.raises(ValueError, match='inside the image folder'): LabelSession(items, sim / 'train' / 'x.csv')


def test_agreement_matches_sklearn():
    rng = np.random.default_rng(0); cls = np.array(['clean', 'pit', 'maybe'])
    a = cls[rng.integers(0, 3, 200)]; b = np.where(rng.random(200) < 0.7, a, cls[rng.integers(0, 3, 200)])
    lab = pd.concat([pd.DataFrame(dict(relpath=[f'{i}' for i in range(200)], label=x, annotator=n))
                     for x, n in ((a, 'a'), (b, 'b'))])
    ag = agreement(lab, 'a', 'b', n_boot=500)
    assert ag['kappa'] == pytest.approx(cohen_kappa_score(a, b)) and ag['lo'] < ag['kappa'] < ag['hi']
    assert int(ag['confusion'].to_numpy().trace()) == int((a == b).sum()) and len(ag['disagreements']) == (a != b).sum()


def test_labels_parameter_checked_before_the_run(sim, tmp_path):
    bad = tmp_path / 'bad.csv'; bad.write_text('relpath,label\nx.png,pit\n')
    with pytest.raises(ParamError, match='labels'): config_from(CompareConfig, dict(labels=str(bad)))
    with pytest.raises(ParamError, match='no such labels file'): config_from(CompareConfig, dict(labels='nope.csv'))
    good = tmp_path / 'good.csv'
    put_label(good, dict(relpath='train/clean/nope.png', label='maybe', annotator='a'))
    assert config_from(CompareConfig, dict(labels=str(good))).labels == str(good)
    from cherry_nb.data import read_image_folder
    with pytest.raises(LabelError, match='match no image'): join_labels(read_image_folder(sim, progress=False), good)


@pytest.mark.slow
def test_compare_runs_explicit_three_class_from_a_labels_file(tmp_path):
    data = render_dataset(tmp_path / 'sim', n_train=48, n_val=24, n_test=24, size=32, workers=1, progress=False,
                          seed=3)
    meta = pd.read_csv(data / 'metadata.csv')
    two = tmp_path / 'two'                                          # a real 2-class folder: no label3 anywhere
    for r in meta.itertuples():
        (two / Path(r.relpath).parent).mkdir(parents=True, exist_ok=True)
        (two / r.relpath).write_bytes((data / r.relpath).read_bytes())
    train = meta[meta.relpath.str.startswith(('train/', 'test/'))].sample(40, random_state=0)
    for r in train.itertuples():            # the simulator's truth plays the annotator
        put_label(tmp_path / 'labels.csv', dict(relpath=r.relpath, label=r.label3, annotator='sim', weight=0.5,
                                                stratum='band'))
    args = [EXE, 'run', 'compare', '-p', 'data', str(two), '-p', 'labels', str(tmp_path / 'labels.csv'),
            '-p', 'methods', 'explicit 3-class,enhanced 2-class', '-p', 'arch', 'test_resnet', '-p', 'aug', 'none',
            '-p', 'image_size', '32', '-p', 'epochs', '1', '-p', 'batch_size', '16', '-p', 'seeds', '1',
            '--runs-dir', str(tmp_path / 'runs')]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next((tmp_path / 'runs').iterdir())
    rows = {row['method']: row for row in json.loads((run / 'results.json').read_text())['rows']}
    assert 'not available' not in rows['explicit 3-class'].get('note', '')
    assert rows['explicit 3-class']['pit_miss']['n'] > 0
    lab = pd.read_csv(run / 'seed0' / 'manifest_label3.csv')
    assert set(lab.relpath) == set(train.relpath[train.relpath.str.startswith('train/')]) | \
        set(train.relpath[train.relpath.str.startswith('test/')]) and (lab.label3 == train.set_index('relpath')
                                                                      .label3.reindex(lab.relpath).to_numpy()).all()
    n_maybe = int(((train.label3 == 'maybe') & train.relpath.str.startswith('test/')).sum())
    assert rows['explicit 3-class']['labelled_maybe'] == n_maybe


@pytest.mark.slow
def test_two_stage_reports_three_class_on_the_labelled_test_images(tmp_path):
    data = render_dataset(tmp_path / 'sim', n_train=48, n_val=24, n_test=24, size=32, workers=1, progress=False,
                          seed=2)
    m = pd.read_csv(data / 'metadata.csv').sample(40, random_state=0)
    for r in m.itertuples(): put_label(tmp_path / 'labels.csv', dict(relpath=r.relpath, label=r.label3, annotator='s'))
    args = [EXE, 'run', 'two-stage', '-p', 'data', str(data), '-p', 'labels', str(tmp_path / 'labels.csv'),
            '-p', 'arch', 'test_resnet', '-p', 'aug', 'none', '-p', 'image_size', '32', '-p', 'epochs1', '1',
            '-p', 'epochs2', '1', '-p', 'batch_size', '16', '--runs-dir', str(tmp_path / 'runs')]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    met = json.loads((next((tmp_path / 'runs').iterdir()) / 'metrics.json').read_text())
    rep = {row['index']: row['support'] for row in met['stage2_test_report3']}
    want = m[m.relpath.str.startswith('test/')].label3.value_counts()
    assert rep['accuracy'] == len(m[m.relpath.str.startswith('test/')])
    assert all(rep[c] == want.get(c, 0) for c in ('clean', 'pit', 'maybe'))
