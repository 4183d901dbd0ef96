"""The line loop: pinned and signed bundles, unlisted files, the arrival-order check, the audit's running bound and
its exit code, recalibration (refused when infeasible; coverage on a shifted simulator line; end to end on images)."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from cherry_nb.core import *
from cherry_nb.faces.cli import main
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder, manifest_hash
from cherry_nb.learn.models import create_model
from cherry_nb.learn.artifacts import save_artifact
from cherry_nb.judge.tiers import guaranteed_tiers, ThresholdPolicy, InsufficientCalibration
from cherry_nb.judge.views import cherry_guaranteed_tiers, resplit_coverage
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.line.bundle import save_bundle, load_bundle, sign_bundle, BundleError, leaf_digests, total_digest
from cherry_nb.line.score import read_inputs
from cherry_nb.line.signing import generate_keypair, PUBLIC_KEY_ENV
from cherry_nb.line.watch import audit_sequence, pit_rate_cs, arrival_order_problem
from cherry_nb.line.recalibrate import recalibrate, raw_scores, p_pit_at

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    "A small labelled simulator folder (read class by class) and a binary test_resnet artifact."
    d = tmp_path_factory.mktemp('line')
    root = render_dataset(d / 'sim', n_train=0, n_val=60, n_test=40, size=SIZE, workers=1, progress=False, seed=4)
    set_seed(0)
    art = save_artifact(create_model('test_resnet', CLASSES_2), d / 'binary', dict(input_size=(3, SIZE, SIZE)))
    return dict(dir=d, root=root, art=art, df=read_image_folder(root, progress=False))


def _scores(art, paths, ts, tmp: Path):
    "The bundle's own calibrated p(pit) of `paths` (through a throwaway bundle in `tmp`)."
    b = load_bundle(save_bundle(tmp / 'scorer', art, ThresholdPolicy(), 'scorer', temperature=ts, overwrite=True))
    return b.predict(list(paths)).p_pit


@pytest.fixture(scope='module')
def bundle(sim):
    "A guaranteed per-image bundle certified on the val split (alpha 0.3, delta 0.2)."
    val = sim['df'][sim['df'].split == 'val'].reset_index(drop=True)
    ts = TemperatureScaler(0.05)
    p = _scores(sim['art'], val.path, ts, sim['dir']); y = (val.label == 'pit').to_numpy().astype(int)
    g = guaranteed_tiers(p, y, alpha=0.3, delta=0.2, beta=0.5)
    return save_bundle(sim['dir'] / 'bundle', sim['art'], g, 'guaranteed 2-class', temperature=ts,
                       calibration=dict(p_pit=p, y_pit=y, manifest_hash=manifest_hash(val)))


def _forge(src: Path, dst: Path) -> Path:
    "A forger's copy: a threshold edited and every digest recomputed with the package's own functions."
    shutil.copytree(src, dst); j = json.loads((dst / 'bundle.json').read_text())
    j['decision']['policy']['review'] = 0.999
    have = {k: v for k, v in j['digests'].items() if k.startswith('tensors.')}
    have.update({**leaf_digests(j['decision'], 'decision'), **leaf_digests(j['info'], 'info')})
    j['digests'], j['digest'] = dict(sorted(have.items())), total_digest(have)
    (dst / 'bundle.json').write_text(json.dumps(j)); return dst


# ---------------------------------------------------------------- pin and sign
def test_forged_unsigned_and_extra_files(bundle, sim, tmp_path, monkeypatch, capsys):
    good = tmp_path / 'good'; shutil.copytree(bundle, good)
    assert main(['keygen', str(tmp_path / 'k' / 'owner.key')]) == 0
    priv, pub = tmp_path / 'k' / 'owner.key', tmp_path / 'k' / 'owner.key.pub'
    assert main(['sign', str(good), '--key', str(priv)]) == 0 and (good / 'signature.json').is_file()
    fake, digest = _forge(good, tmp_path / 'fake'), load_bundle(good).digest
    assert load_bundle(fake).decision['policy']['review'] == 0.999          # nothing configured: it cannot be told
    with pytest.raises(BundleError, match='not the pinned'): load_bundle(fake, expect_digest=digest)
    with pytest.raises(BundleError, match='changed after it was signed'): load_bundle(fake, public_key=pub)
    with pytest.raises(BundleError, match='unsigned'): load_bundle(bundle, public_key=pub)
    _, other = generate_keypair(tmp_path / 'k' / 'other.key')
    with pytest.raises(BundleError, match='does not verify'): load_bundle(good, public_key=other)
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(pub))                            # configured for every consumer
    assert load_bundle(good).digest == digest
    with pytest.raises(BundleError, match='not signed by the configured key'): load_bundle(fake)
    new = tmp_path / 'new'; new.mkdir(); shutil.copy(sim['df'].path[0], new)
    capsys.readouterr()
    assert main(['predict', str(fake), str(new), '--out', str(tmp_path / 'p')]) == 2
    assert 'not signed by the configured key' in capsys.readouterr().err and not (tmp_path / 'p').exists()
    monkeypatch.delenv(PUBLIC_KEY_ENV)
    assert main(['predict', str(fake), str(new), '--out', str(tmp_path / 'p'), '--expect-digest', digest[:12]]) == 2
    assert main(['predict', str(good), str(new), '--out', str(tmp_path / 'p'), '--expect-digest', digest[:12],
                 '--public-key', str(pub)]) == 0
    (good / 'notes.txt').write_text('x'); (good / 'extra').mkdir()
    with pytest.raises(BundleError, match='files the bundle does not list') as e: load_bundle(good)
    assert e.value.fields == ['extra/', 'notes.txt']


# ---------------------------------------------------------------- arrival order
def test_labelled_folder_read_class_by_class_is_refused_before_scoring(bundle, sim, tmp_path, capsys):
    test = sim['root'] / 'test'
    assert main(['watch', str(bundle), str(test), '--out', str(tmp_path / 'w')]) == 2
    err = capsys.readouterr().err
    assert 'read class by class' in err and '--time-col' in err and not (tmp_path / 'w').exists()
    assert main(['predict', str(bundle), str(test), '--out', str(tmp_path / 'p'), '--watch']) == 2
    assert not (tmp_path / 'p').exists()
    assert main(['watch', str(bundle), str(test), '--out', str(tmp_path / 'w'), '--order', 'files']) in (0, 3)
    assert (tmp_path / 'w' / 'watch_alarm.json').is_file()
    rng = np.random.default_rng(0); lab = rng.choice(['clean', 'pit'], 300)
    assert arrival_order_problem(lab) is None and 'long blocks' in arrival_order_problem(np.sort(lab))


# ---------------------------------------------------------------- audit
def _labels(tmp, y, name='audit.csv'):
    ids = [f'c{i:05d}' for i in range(len(y))]
    t = pd.DataFrame(dict(relpath=[f'{c}.png' for c in ids], cherry_id=ids,
                          label=np.where(np.asarray(y) == 1, 'pit', 'clean'), annotator='ana', time=np.arange(len(y)),
                          blind=True, stratum='accept', weight=1.0))
    t.to_csv(tmp / name, index=False); return tmp / name


def test_audit_update_exit_code_and_plan(bundle, tmp_path, capsys):
    b = load_bundle(bundle); alpha = b.certificate['alpha']
    rng = np.random.default_rng(0)
    bad = _labels(tmp_path, (rng.random(400) < 0.6).astype(int), 'bad.csv')        # pits everywhere: broken
    lv = ['--accept-share', '0.5', '--prevalence', '0.2']                           # alpha 0.3: 12% pits when accepted
    assert main(['audit', 'update', str(bundle), str(bad), '--out', str(tmp_path / 'bounds.csv'), *lv]) == 4
    out = capsys.readouterr().out
    assert 'STOP ACCEPTING' in out and len(pd.read_csv(tmp_path / 'bounds.csv')) == 400
    ok = _labels(tmp_path, np.zeros(400, int), 'ok.csv')
    assert main(['audit', 'update', str(bundle), str(ok), *lv]) == 0 and 'STOP' not in capsys.readouterr().out
    assert main(['audit', 'plan', str(bundle), '--per-hour', '3600']) == 0
    assert 'cut open' in capsys.readouterr().out
    tab, v = audit_sequence(np.zeros(50, int), alpha, 0.5, 0.5)
    assert v['verdict'] != 'broken' and tab.pit_miss_upper.is_monotonic_decreasing


def test_confidence_sequence_is_time_uniform():
    "Over 50 audits read after every cherry, the running bounds exclude the true rate in at most 5% (+ noise)."
    rng, wrong = np.random.default_rng(3), 0
    for _ in range(50):
        cs = pit_rate_cs((rng.random(400) < 0.05).astype(int))
        wrong += bool(((cs.upper < 0.05) | (cs.lower > 0.05)).any())
    assert wrong <= 6


# ---------------------------------------------------------------- recalibration
def test_recalibration_keeps_the_promise_where_the_old_bundle_breaks_it():
    "Simulator scores (benchmarks/watch_sim.py): the faint-pit shift breaks the certificate of the calibration split;"
    " thresholds recertified on draws of the shifted line keep it on the rest of that line."
    z = np.load(ROOT / 'benchmarks' / 'results' / 'watch_scores.npz', allow_pickle=False)
    alpha, delta = 0.05, 0.1
    old = guaranteed_tiers(z['calibration_score'], z['calibration_y'], alpha, delta, beta=None).accept_threshold
    s, y = z['faint-1_score'].astype(float), z['faint-1_y'].astype(int)
    rng = np.random.default_rng(0)
    old_risk = [float((s[i][y[i] == 1] < old).mean()) for i in (rng.integers(0, len(s), 1500) for _ in range(100))]
    new = resplit_coverage(s, y, np.arange(len(s)), 'max', alpha, delta, n_cal=1500, n_resplits=200, seed=1)
    print(f"old bundle: pit-miss on the shifted line {np.mean(old_risk):.3f}, above alpha in "
          f"{np.mean(np.array(old_risk) > alpha):.0%} of draws; recalibrated: covered in {new.covered.mean():.1%}, "
          f"accepted {new.accepted.mean():.1%}")
    assert np.mean(np.array(old_risk) > alpha) > 0.9
    assert new.covered.mean() >= 1 - delta - 0.03 and new.accepted.mean() > 0


def test_infeasible_calibrate_is_refused_with_the_pits_needed(bundle, sim, tmp_path, capsys):
    test = sim['df'][sim['df'].split == 'test']
    lab = pd.DataFrame(dict(relpath=test.relpath, cherry_id=test.cherry_id, label=test.label, annotator='ana',
                            time=np.arange(len(test)), blind=True, stratum='all', weight=1.0))
    lab.to_csv(tmp_path / 'labels.csv', index=False)
    n_pits = int((test.label == 'pit').sum())
    assert main(['calibrate', str(bundle), str(tmp_path / 'labels.csv'), '--root', str(sim['root']), '--out',
                 str(tmp_path / 'new'), '--alpha', '0.001']) == 2
    err = capsys.readouterr().err
    assert f'{n_pits} labelled pits' in err and 'label at least' in err and not (tmp_path / 'new').exists()


@pytest.mark.slow
def test_calibrate_end_to_end_per_image_and_per_cherry(bundle, sim, tmp_path, capsys):
    "A shifted simulator line, labelled; calibrate writes a bundle with the same weights, named parent, watchable."
    line = render_dataset(tmp_path / 'line', n_train=0, n_val=0, n_test=80, size=SIZE, workers=1, progress=False,
                          seed=11, shift=('faint', 1.0))
    assert main(['calibrate', str(bundle), str(line), '--out', str(tmp_path / 'recal')]) == 0
    out = capsys.readouterr().out
    assert 'recalibrated from' in out and 'before' in out and 'after' in out
    old, new = load_bundle(bundle), load_bundle(tmp_path / 'recal')
    w = lambda b: {k: v for k, v in b.spec['digests'].items() if k.startswith('tensors.model')}
    assert w(old) == w(new) and new.lineage['recalibrated_from'] == old.digest
    assert new.temperature != old.temperature and new.certificate['alpha'] == old.certificate['alpha']
    assert new.certificate['calibration_manifest_hash'] == new.lineage['line_calibration']['manifest_hash']
    rows = read_inputs(line, progress=False)
    z, failed = raw_scores(new, list(rows.path))
    assert not failed
    assert np.array_equal(p_pit_at(z, new.temperature), new.calibration_scores.p_pit.to_numpy(np.float32))
    flat = tmp_path / 'flat'; flat.mkdir()
    for p in rows.path.sample(frac=1, random_state=0): shutil.copy(p, flat / Path(p).name)
    assert main(['watch', str(tmp_path / 'recal'), str(flat), '--out', str(tmp_path / 'w')]) in (0, 3)
    # per cherry: three views, the parent's rule kept
    vs = render_dataset(tmp_path / 'views', n_train=0, n_val=40, n_test=40, views=3, size=SIZE, workers=1,
                        progress=False, seed=2)
    df = read_image_folder(vs, progress=False); val = df[df.split == 'val'].reset_index(drop=True)
    ts = TemperatureScaler(0.05); p = _scores(sim['art'], val.path, ts, tmp_path)
    y = (val.label == 'pit').to_numpy().astype(int)
    cg = cherry_guaranteed_tiers(p, y, val.cherry_id, 'max', alpha=0.3, delta=0.2, beta=0.5)
    cb = save_bundle(tmp_path / 'cherry', sim['art'], cg, 'guaranteed, max of views', temperature=ts, unit='cherry',
                     calibration=dict(p_pit=p, y_pit=y, groups=val.cherry_id, manifest_hash=manifest_hash(val)))
    assert main(['calibrate', str(cb), str(vs / 'test'), '--out', str(tmp_path / 'crecal'), '--no-temperature']) == 0
    nc = load_bundle(tmp_path / 'crecal')
    assert nc.unit == 'cherry' and nc.policy.rule == 'max' and nc.certificate['n_cherries'] == 40
    assert nc.temperature == load_bundle(cb).temperature and len(nc.calibration_scores) == 40
