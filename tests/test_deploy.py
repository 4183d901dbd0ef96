"""Decision bundles: round trips of every policy kind, tampering, reproducible digests, the input-size contract,
scoring folders (labelled, unlabelled, CSV, bad files, groups), ONNX against torch, and the command line."""
import json, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, safetensors.torch
from PIL import Image
from cherry_nb.core import *
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder, CachedImageDataset, make_loader, manifest_hash, load_image, save_manifest
from cherry_nb.learn.models import create_model, grow_head
from cherry_nb.learn.artifacts import save_artifact, load_artifact, artifact_hash
from cherry_nb.judge.evaluate import predict
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.judge.tiers import ThresholdPolicy, ArgmaxPolicy, ProductionPolicy, guaranteed_tiers, policy_from_dict
from cherry_nb.judge.ensemble import EnsembleScores, DisagreementPolicy
from cherry_nb.run.jobs import TrainJob, run_job
from cherry_nb.line.bundle import save_bundle, load_bundle, verify_bundle, BundleError, leaf_digests, resolve_bundle
from cherry_nb.line.onnx import export_onnx, validate_onnx, onnx_metadata
from cherry_nb.line.score import predict_folder, read_inputs
from cherry_nb.judge.views import cherry_guaranteed_tiers, cherry_scores

EXE = str(Path(sys.executable).parent / 'cherry-nb')
SIZE = 32


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp('sim') / 'sim'
    render_dataset(root, n_train=48, n_val=80, n_test=300, size=SIZE, workers=1, progress=False, seed=5)
    df = read_image_folder(root, progress=False)
    return root, df[df.split == 'val'].reset_index(drop=True), df[df.split == 'test'].reset_index(drop=True)


def _probs(art, df):
    return predict(load_artifact(art)[0], make_loader(CachedImageDataset(df, SIZE, progress=False)), progress=False)


def _images(df) -> torch.Tensor:
    return torch.from_numpy(np.stack([load_image(p, SIZE) for p in df.path])).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope='module')
def parts(sim, tmp_path_factory):
    """Untrained test_resnet artifacts (training adds nothing to these checks): a binary model, a 3-class model and
    three ensemble members, with the calibration split's scores."""
    _, val, test = sim
    d = tmp_path_factory.mktemp('parts')
    set_seed(0); binary = save_artifact(create_model('test_resnet', CLASSES_2), d / 'binary',
                                        dict(input_size=(3, SIZE, SIZE)))
    set_seed(1); m3 = create_model('test_resnet', CLASSES_3)
    m3.pretrained_cfg = {**m3.pretrained_cfg, 'input_size': (3, SIZE, SIZE), 'fixed_input_size': True}
    # centre the untrained head on the validation images: every class gets argmaxes
    with torch.no_grad():
        m3.get_classifier().bias -= torch.from_numpy(
            predict(m3, make_loader(CachedImageDataset(val, SIZE, progress=False)), progress=False).logits.mean(0))
    three = save_artifact(m3, d / 'three', dict(input_size=(3, SIZE, SIZE)))
    members = []
    for s in range(3):
        set_seed(10 + s); members.append(save_artifact(create_model('test_resnet', CLASSES_2), d / f'm{s}',
                                                       dict(input_size=(3, SIZE, SIZE))))
    ts = TemperatureScaler(0.05)          # sharpens the untrained scores so that every tier occurs
    y_val = (val.label == 'pit').to_numpy().astype(int)
    p_val = ts.probs(_probs(binary, val).logits)[:, 1]
    cal = dict(p_pit=p_val, y_pit=y_val, manifest_hash=manifest_hash(val), split='val')
    return dict(dir=d, binary=binary, three=three, members=members, ts=ts, cal=cal, x_test=_images(test))


def _bundle(parts, kind, out):
    "A bundle of policy `kind` and the reference (p_pit, tiers) on the test images from the library's own objects."
    ts, cal = parts['ts'], parts['cal']
    if kind in ('thresholds', 'guaranteed'):
        ref = _probs(parts['binary'], parts['test'])
        p = ts.probs(ref.logits)[:, 1]
        pol = ThresholdPolicy(*np.quantile(p, [0.4, 0.7]).round(3)) if kind == 'thresholds' else \
            guaranteed_tiers(cal['p_pit'], cal['y_pit'], alpha=0.3, delta=0.2, beta=0.5)
        path = save_bundle(out, parts['binary'], pol, f'{kind} 2-class', temperature=ts, calibration=cal, run='r1',
                           lineage=dict(source_manifest_hash='abc'))
        return path, p, (pol.policy if kind == 'guaranteed' else pol)(p)
    if kind in ('production', 'argmax'):
        q = _probs(parts['three'], parts['test']).probs
        pol = (ProductionPolicy(*np.quantile(q[:, 1], [0.3, 0.6]).round(3), maybe_to_review=True)
               if kind == 'production' else ArgmaxPolicy())
        return save_bundle(out, parts['three'], pol, 'two-stage (seed)'), q[:, 1], pol(q)
    mp = lambda d: np.stack([_probs(a, d).probs for a in parts['members']])
    ev = EnsembleScores(mp(parts['val']), TemperatureScaler(0.02)); et = ev.with_members(mp(parts['test']))
    pol = DisagreementPolicy(*np.quantile(et.p_pit, [0.4, 0.7]).round(3), tau=float(np.quantile(et.disagreement, 0.8)))
    return save_bundle(out, parts['members'], pol, 'ensemble', temperature=ev.temperature), et.p_pit, pol(et)


@pytest.fixture(scope='module')
def full_parts(parts, sim):
    _, val, test = sim
    return {**parts, 'val': val, 'test': test}


KINDS = ('thresholds', 'guaranteed', 'production', 'argmax', 'disagreement')


@pytest.mark.parametrize('kind', KINDS)
def test_every_policy_kind_round_trips(full_parts, kind, tmp_path):
    path, p_ref, t_ref = _bundle(full_parts, kind, tmp_path / kind)
    b = load_bundle(path)
    sc = b.predict(full_parts['x_test'])
    assert np.abs(sc.p_pit - p_ref).max() < 1e-5 and (sc.tiers == t_ref).all()
    assert len(set(sc.tiers)) == 3, 'the test should exercise every tier'
    assert b.decision['policy']['kind'] == kind and b.unit == 'image' and b.input_size == (SIZE, SIZE)
    assert policy_from_dict(b.decision['policy']) == b.policy
    assert load_bundle(path, expect_digest=b.digest).digest == b.digest
    assert all(a['weights_sha256'] for a in b.lineage['artifacts'])
    if kind == 'guaranteed':
        c = b.certificate
        for k in ('alpha', 'delta', 'beta', 'n_pits', 'n_clean', 'pvalue_accept', 'pvalue_reject',
                  'calibration_manifest_hash'):
            assert c[k] is not None, k
        assert c['unit'] == 'image' and c['alpha'] == 0.3 and c['n_pits'] + c['n_clean'] == len(full_parts['val'])
        assert c['calibration_manifest_hash'] == manifest_hash(full_parts['val'])
        assert np.allclose(b.calibration_scores.p_pit, full_parts['cal']['p_pit'])
        assert (b.calibration_scores.y_pit == full_parts['cal']['y_pit']).all()
    else: assert b.certificate is None
    if kind == 'disagreement':
        assert len(b.models) == 3
        assert b.decision['calibration']['on'].startswith('log of the mean')


def test_policy_from_dict_reloads_deployed_json():
    assert policy_from_dict(dict(policy='production', review=0.5, reject=0.75)) == ProductionPolicy()
    with pytest.raises(ValueError, match='unknown policy kind'): policy_from_dict(dict(kind='nonsense'))


def test_guaranteed_bundle_needs_its_calibration(parts, tmp_path):
    cal = parts['cal']
    g = guaranteed_tiers(cal['p_pit'], cal['y_pit'], alpha=0.3, delta=0.2, beta=0.5)
    with pytest.raises(ValueError, match='manifest hash'):
        save_bundle(tmp_path / 'a', parts['binary'], g, 'g', temperature=parts['ts'])
    wrong = dict(cal, p_pit=1 - cal['p_pit'])
    with pytest.raises(ValueError, match='do not follow from the calibration scores'):
        save_bundle(tmp_path / 'b', parts['binary'], g, 'g', temperature=parts['ts'], calibration=wrong)
    with pytest.raises(ValueError, match='needs a 3-class model'):
        save_bundle(tmp_path / 'c', parts['binary'], ArgmaxPolicy(), 'x')
    with pytest.raises(ValueError, match='cannot tell the image size'):
        save_bundle(tmp_path / 'd', create_model('test_resnet'), ThresholdPolicy(), 'x')
    assert not [p for p in tmp_path.iterdir()]


# ---------------------------------------------------------------- tampering
def _edit(v):
    "A different JSON value of the same kind."
    if isinstance(v, bool): return not v
    if isinstance(v, (int, float)): return v + 1 if isinstance(v, int) else v + 0.5
    if isinstance(v, str): return v + 'x'
    if isinstance(v, list): return v[:-1] if v else [0]
    if isinstance(v, dict): return {**v, 'x': 1}
    return 0


def _set(obj, path, fn):
    keys = path.split('.')
    for k in keys[:-1]: obj = obj[int(k)] if isinstance(obj, list) else obj[k]
    k = int(keys[-1]) if isinstance(obj, list) else keys[-1]
    obj[k] = fn(obj[k])


@pytest.mark.parametrize('kind', ('guaranteed', 'disagreement'))
def test_each_decision_field_edited_is_refused_and_named(full_parts, kind, tmp_path):
    path, *_ = _bundle(full_parts, kind, tmp_path / 'b')
    spec = json.loads((path / 'bundle.json').read_text())
    fields = [k[len('decision.'):] for k in spec['digests'] if k.startswith('decision.')]
    assert {'policy.review', 'calibration.temperature', 'preprocess.mean', 'preprocess.input_size',
            'lineage.artifacts.0.weights_sha256', 'models.0.arch'} <= set(fields)
    if kind == 'guaranteed':
        assert {'certificate.alpha', 'certificate.n_pits', 'certificate.calibration_manifest_hash'} <= set(fields)
    for f in fields:
        bad = json.loads(json.dumps(spec)); _set(bad['decision'], f, _edit)
        (path / 'bundle.json').write_text(json.dumps(bad))
        with pytest.raises(BundleError) as e: load_bundle(path)
        # 'changed' (or, for an empty dict, 'removed')
        assert f in e.value.fields and f in str(e.value), (f, str(e.value))
    (path / 'bundle.json').write_text(json.dumps(spec))
    assert load_bundle(path).digest == spec['digest']


def test_tensor_and_digest_edits_are_refused(full_parts, tmp_path):
    path, *_ = _bundle(full_parts, 'guaranteed', tmp_path / 'b')
    spec = json.loads((path / 'bundle.json').read_text()); good = {f.name: f.read_bytes() for f in path.iterdir()}
    def restore():
        for n, data in good.items(): (path / n).write_bytes(data)
    for f in ('model.safetensors', 'calibration.safetensors'):
        raw = bytearray(good[f]); raw[-3] ^= 0x10; (path / f).write_bytes(bytes(raw))
        with pytest.raises(BundleError, match=rf"tensor \S+ in {f} changed") as e: load_bundle(path)
        assert any(f in x for x in e.value.fields); restore()
    (path / 'model.safetensors').write_bytes(b'garbage')
    with pytest.raises(BundleError, match='not a readable safetensors file'): load_bundle(path)
    restore()
    # a field edited together with its entry in the digest map: the total digest gives it away
    bad = json.loads(json.dumps(spec)); bad['decision']['policy']['review'] = 0.0
    bad['digests']['decision.policy.review'] = leaf_digests(0.0)['']
    (path / 'bundle.json').write_text(json.dumps(bad))
    with pytest.raises(BundleError, match='digest or the digest map was edited'): load_bundle(path)
    restore()
    bad = json.loads(json.dumps(spec)); bad['info']['run'] = 'another'
    (path / 'bundle.json').write_text(json.dumps(bad))
    with pytest.raises(BundleError, match='info field run changed'): load_bundle(path)
    restore()
    with pytest.raises(BundleError, match='is not the expected'): load_bundle(path, expect_digest='0' * 64)
    # the same tensors written by plain safetensors (another header, metadata, layout) load with the same digest
    sd = safetensors.torch.load_file(str(path / 'model.safetensors'))
    safetensors.torch.save_file(dict(reversed(list(sd.items()))), str(path / 'model.safetensors'),
                                metadata={'z': '1', 'a': '2'})
    assert load_bundle(path).digest == spec['digest']


# ---------------------------------------------------------------- reproducibility
def test_two_identical_trainings_give_the_same_digest(sim, tmp_path):
    root, val, _ = sim
    df = read_image_folder(root, progress=False)
    digests, hashes = [], []
    for run in ('run_a', 'run_b'):
        rd = tmp_path / run; save_manifest(df, rd / 'manifest.csv')
        job = TrainJob('binary', 'manifest.csv', arch='test_resnet', image_size=SIZE, aug='light',
                       train=dict(epochs=1, lr=1e-3, batch_size=16, seed=3, device='cpu'))
        art = run_job(job, rd, progress=False); hashes.append(artifact_hash(art))
        pv = _probs(art, val); ts = TemperatureScaler.fit(pv.logits, pv.labels)
        b = save_bundle(rd / 'bundles' / 'enhanced', art, ThresholdPolicy(), 'enhanced 2-class', temperature=ts,
                        run=run, calibration=dict(p_pit=ts.probs(pv.logits)[:, 1], y_pit=pv.labels,
                                                  manifest_hash=manifest_hash(val)))
        digests.append(load_bundle(b).digest)
    assert hashes[0] == hashes[1], 'bit-identical trainings must write identical weights files'
    assert digests[0] == digests[1]


# ---------------------------------------------------------------- input size
def test_wrong_input_size_is_refused(parts, sim, tmp_path):
    b = load_bundle(save_bundle(tmp_path / 'b', parts['binary'], ThresholdPolicy(), 'x', temperature=parts['ts']))
    with pytest.raises(ValueError, match=r'images are 64x64 but this bundle takes 32x32'):
        b.predict(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match='uint8'): b.predict(torch.zeros(2, 3, 32, 32))
    model, _ = load_artifact(parts['binary'])
    ds = torch.utils.data.TensorDataset(torch.zeros(4, 3, 64, 64, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r'images are 64x64 but the model was trained at 32x32'):
        predict(model, ds, device='cpu', progress=False)
    # files of another size are brought to 32x32 exactly as in training; a PIL image gives the same
    big = tmp_path / 'big.png'; Image.fromarray(load_image(sim[2].path[0], 64)).save(big)
    a = b.predict([big]); ref = b.predict(torch.from_numpy(load_image(big, SIZE)).permute(2, 0, 1)[None])
    assert a.p_pit[0] == ref.p_pit[0] and b.predict(Image.open(big)).p_pit[0] == a.p_pit[0]


# ---------------------------------------------------------------- folders
def _listing(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b'')
                  for p in root.rglob('*'))


@pytest.fixture(scope='module')
def enhanced(parts, tmp_path_factory):
    return load_bundle(save_bundle(tmp_path_factory.mktemp('b') / 'enhanced', parts['binary'],
                                   ThresholdPolicy(0.3, 0.6), 'enhanced 2-class', temperature=parts['ts']))


def test_unlabelled_flat_and_nested_folders(enhanced, sim, tmp_path):
    test = sim[2]
    flat, nested = tmp_path / 'flat', tmp_path / 'nested'
    flat.mkdir()
    for i, p in enumerate(test.path[:20]):
        shutil.copy(p, flat / f'img{i:02d}.png')
        d = nested / f'lane{i % 2}' / f'cherry{i // 4}'; d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / f'view{i}.png')
    before = _listing(flat), _listing(nested)
    r1 = predict_folder(enhanced, flat, tmp_path / 'o1', progress=False, verbose=False)
    r2 = predict_folder(enhanced, nested, tmp_path / 'o2', group_col='folder', group_rule='most-severe',
                        progress=False, verbose=False)
    assert (_listing(flat), _listing(nested)) == before
    assert len(r1.predictions) == len(r2.predictions) == 20 and not len(r1.skipped) and r1.metrics is None
    ref = enhanced.predict(list(test.path[:20]))
    assert np.abs(r1.predictions.p_pit.to_numpy() - ref.p_pit).max() <= 1e-4      # onnxruntime where installed
    assert (r1.predictions.tier.to_numpy() == ref.tiers).all()
    assert set(r2.predictions.folder) == {f'lane{i % 2}/cherry{i // 4}' for i in range(20)} and len(r2.groups) == 10
    out = pd.read_csv(tmp_path / 'o1' / 'predictions.csv')
    assert list(out.columns) == ['relpath', 'path', 'p_pit', 'tier', 'method', 'bundle_digest']
    assert (out.bundle_digest == enhanced.digest).all() and (out.method == 'enhanced 2-class').all()
    s = json.loads((tmp_path / 'o2' / 'summary.json').read_text())
    assert s['n_groups'] == 10 and s['group_rule'] == 'most-severe' and 'most severe' in s['group_rule_text']
    g = pd.read_csv(tmp_path / 'o2' / 'groups.csv')
    worst = r2.predictions.groupby('folder')['tier'].agg(lambda t: max(t, key=['accept', 'review', 'reject'].index))
    assert (g.set_index('folder')['tier'] == worst).all()
    with pytest.raises(ValueError, match='the source is only read'):
        predict_folder(enhanced, nested, nested / 'out', progress=False)


def test_bad_files_are_listed_and_skipped(enhanced, sim, tmp_path):
    src = tmp_path / 'in'; src.mkdir()
    good = list(sim[2].path[:5])
    for i, p in enumerate(good): shutil.copy(p, src / f'ok{i}.png')
    (src / 'truncated.png').write_bytes(Path(good[0]).read_bytes()[:150])
    (src / 'text.png').write_text('this is not an image')
    (src / 'empty.jpg').write_bytes(b'')
    (src / 'notes.txt').write_text('not an image file name: ignored')
    res = predict_folder(enhanced, src, tmp_path / 'out', progress=False, verbose=False)
    assert len(res.predictions) == 5
    why = dict((Path(p).name, r) for p, r in pd.read_csv(tmp_path / 'out' / 'skipped.csv').itertuples(index=False))
    assert set(why) == {'truncated.png', 'text.png', 'empty.jpg'}
    assert 'truncated' in why['truncated.png'] and 'not an image' in why['text.png'] and 'empty' in why['empty.jpg']


def test_labelled_folder_and_grouped_manifest(enhanced, sim, tmp_path, capsys):
    root, _, test = sim
    res = predict_folder(enhanced, root, tmp_path / 'o', progress=False)
    printed = capsys.readouterr().out
    assert 'pit-miss rate' in printed and '%' in printed
    p = res.predictions; y = p.y_pit.to_numpy()
    pits = y == 1
    assert res.metrics.n == len(p)
    assert res.metrics.pit_miss.k == int(((p.tier == 'accept') & pits).sum())
    assert res.metrics.pit_miss.n == pits.sum()
    # a manifest CSV with a group column: two views per cherry, the 'majority' rule
    m = test.iloc[:40][['path', 'label']].assign(cherry=[f'c{i // 2}' for i in range(40)])
    m.to_csv(tmp_path / 'm.csv', index=False)
    r = predict_folder(enhanced, tmp_path / 'm.csv', tmp_path / 'o2', group_col='cherry', group_rule='majority',
                       progress=False, verbose=False)
    assert len(r.groups) == 20 and (r.groups.rule == 'majority').all() and r.group_metrics.n == 20
    assert read_inputs(tmp_path / 'm.csv', progress=False).attrs['labelled']
    with pytest.raises(ValueError, match="group column 'nope'"):
        predict_folder(enhanced, root, tmp_path / 'o3', group_col='nope', group_rule='most-severe', progress=False)


# ---------------------------------------------------------------- ONNX
@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
@pytest.mark.parametrize('kind', ('guaranteed', 'production', 'disagreement'))
def test_onnx_matches_torch(full_parts, sim, kind, tmp_path):
    import onnxruntime as ort
    path, *_ = _bundle(full_parts, kind, tmp_path / 'b')
    b = load_bundle(path)
    imgs = list(sim[2].path) + list(sim[1].path)                     # 380 real images
    onnx_path = export_onnx(b, tmp_path / 'm.onnx', check_images=imgs)
    v = validate_onnx(b, onnx_path, imgs)
    assert v['n'] == 380 and v['max_abs_diff'] <= 1e-4 and v['tiers_agree'] == 380 and v['ok'], v
    sess = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    x = full_parts['x_test']
    for n in (1, 7):                                                 # any batch size
        p, t = sess.run(None, {'images': x[:n].numpy()})
        assert p.shape == (n,) and t.dtype == np.int64 and set(t.tolist()) <= {0, 1, 2}
    meta = onnx_metadata(onnx_path)
    assert meta['bundle_digest'] == b.digest and meta['policy'] == b.decision['policy'] and meta['lineage'] == b.lineage
    assert meta['certificate'] == b.certificate and meta['decision'] == b.decision
    with pytest.raises(Exception): sess.run(None, {'images': np.zeros((1, 3, 64, 64), np.uint8)})


# ---------------------------------------------------------------- command line
@pytest.mark.slow
def test_cli_predict_and_export_from_a_run_folder(full_parts, sim, tmp_path):
    run = tmp_path / 'runs' / 'r'
    for kind in ('guaranteed', 'thresholds'): _bundle(full_parts, kind, run / 'bundles' / kind)
    (run / 'bundles' / 'default').write_text(json.dumps({'name': 'guaranteed'}))
    assert resolve_bundle(run) == run / 'bundles' / 'guaranteed'
    r = subprocess.run([EXE, 'predict', str(run), str(sim[0]), '--out', str(tmp_path / 'p')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'pit-miss rate' in r.stdout and (tmp_path / 'p' / 'predictions.csv').is_file()
    r = subprocess.run([EXE, 'export', str(run), '--onnx', str(tmp_path / 'm.onnx'), '--check', str(sim[0])],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'tiers agree 256/256' in r.stdout, r.stdout + r.stderr[-3000:]
    spec = json.loads((run / 'bundles' / 'guaranteed' / 'bundle.json').read_text())
    spec['decision']['policy']['reject'] = 0.99
    (run / 'bundles' / 'guaranteed' / 'bundle.json').write_text(json.dumps(spec))
    r = subprocess.run([EXE, 'predict', str(run), str(sim[0]), '--out', str(tmp_path / 'p2')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and 'policy.reject changed' in r.stderr and not (tmp_path / 'p2').exists()


# ---------------------------------------------------------------- per-cherry bundles: several views, one decision
VIEW_RE = r'(?P<cherry>[^/]+)_v\d+'


@pytest.fixture(scope='module')
def cherry(parts, tmp_path_factory):
    "A 3-view simulator set (40 calibration cherries, 8 new ones) and a per-cherry bundle certified on its views."
    d = tmp_path_factory.mktemp('views')
    root = render_dataset(d / 'sim', n_train=0, n_val=40, n_test=8, views=3, size=SIZE, workers=1, progress=False,
                          seed=2)
    df = read_image_folder(root, progress=False)
    val, test = (df[df.split == s].reset_index(drop=True) for s in ('val', 'test'))
    p = parts['ts'].probs(_probs(parts['binary'], val).logits)[:, 1]
    y = (val.true_label == 'pit').to_numpy().astype(int)
    g = cherry_guaranteed_tiers(p, y, val.cherry_id, 'max', alpha=0.3, delta=0.2, beta=0.5)
    cal = dict(p_pit=p, y_pit=y, groups=val.cherry_id, manifest_hash=manifest_hash(val), split='val')
    path = save_bundle(d / 'bundle', parts['binary'], g, 'guaranteed 2-class, max of views', temperature=parts['ts'],
                       unit='cherry', calibration=cal)
    line = d / 'line'; line.mkdir()                     # what a line delivers: a flat folder of <cherry>_v<k>.png
    for q in test.path: shutil.copy(q, line / Path(q).name)
    return dict(root=root, val=val, test=test, g=g, cal=cal, path=path, line=line, dir=d)


def test_cherry_bundle_from_view_scores(cherry, parts, tmp_path):
    b, g, test = load_bundle(cherry['path']), cherry['g'], cherry['test']
    c = b.certificate
    assert b.unit == 'cherry' and b.decision['policy']['kind'] == 'views' and b.policy == g.policy
    assert (c['unit'], c['rule'], c['n_cherries'], c['n_views'], c['n_failed']) == ('cherry', 'max', 40, 120, 0)
    assert 'per cherry' in c['statement'] and c['accept_threshold'] == g.accept_threshold
    again = save_bundle(tmp_path / 'again', parts['binary'], g, 'guaranteed 2-class, max of views',
                        temperature=parts['ts'], unit='cherry', calibration=cherry['cal'])
    assert load_bundle(again).digest == b.digest                       # reproducible
    sv = b.predict(list(test.path))
    dec = b.decide_cherries(sv, test.cherry_id)
    assert len(dec) == 8 and (dec.n_views == 3).all() and (dec.rule == 'max').all()
    by_hand = pd.Series(sv.p_pit).groupby(test.cherry_id.to_numpy()).max()      # the rule: max of the 3 views
    assert np.allclose(dec.set_index('cherry_id').score, by_hand.reindex(dec.cherry_id))
    want = np.where(dec.score < g.accept_threshold, 'accept',
                    np.where(dec.score >= g.reject_threshold, 'reject', 'review'))
    assert (dec.tier.to_numpy() == want).all()
    image = load_bundle(save_bundle(tmp_path / 'img', parts['binary'], ThresholdPolicy(0.3, 0.6), 'x'))
    with pytest.raises(ValueError, match='decides per image'): image.decide_cherries(sv, test.cherry_id)


def test_cherry_bundle_save_refusals(cherry, parts, tmp_path):
    g, cal, art = cherry['g'], cherry['cal'], parts['binary']
    save = lambda pol, **kw: save_bundle(tmp_path / 'x', art, pol, 'x', temperature=parts['ts'], **kw)
    with pytest.raises(ValueError, match="unit='cherry'"): save(g, unit='image', calibration=cal)
    with pytest.raises(ValueError, match='needs a per-cherry policy'): save(ThresholdPolicy(0.3, 0.6), unit='cherry')
    with pytest.raises(ValueError, match='cherry of each calibration view'):
        save(g, unit='cherry', calibration={k: v for k, v in cal.items() if k != 'groups'})
    short = dict(cal, p_pit=cal['p_pit'][1:], y_pit=cal['y_pit'][1:], groups=cal['groups'][1:])   # a view left out
    with pytest.raises(ValueError, match='n_views 120 .recomputed: 119'): save(g, unit='cherry', calibration=short)
    assert not (tmp_path / 'x').exists()


def test_cherry_bundle_tampering_is_refused_and_named(cherry, tmp_path):
    def copy(name):
        dst = tmp_path / name; shutil.copytree(cherry['path'], dst); return dst
    for field, edit in {'policy.rule': lambda d: d['policy'].update(rule='mean'),
                        'policy.min_views': lambda d: d['policy'].update(min_views=2),
                        'certificate.n_cherries': lambda d: d['certificate'].update(n_cherries=400)}.items():
        dst = copy(field); spec = json.loads((dst / 'bundle.json').read_text()); edit(spec['decision'])
        (dst / 'bundle.json').write_text(json.dumps(spec))
        with pytest.raises(BundleError) as e: load_bundle(dst)
        assert any(field in f for f in e.value.fields), (field, e.value.fields)
    dst = copy('groups'); f = dst / 'calibration.safetensors'
    t = safetensors.torch.load_file(str(f)); t['groups'][0] = t['groups'][-1]; safetensors.torch.save_file(t, str(f))
    with pytest.raises(BundleError, match='groups'): load_bundle(dst)


def test_unit_refusal_both_ways(cherry, enhanced, tmp_path):
    cb, root, test = load_bundle(cherry['path']), cherry['root'], cherry['test']
    odd = tmp_path / 'odd'; odd.mkdir()
    for i, q in enumerate(test.path[:4]): shutil.copy(q, odd / f'img{i}.png')       # views with no cherry in the name
    run = lambda b, src, out, **kw: predict_folder(b, src, tmp_path / out, progress=False, verbose=False, **kw)
    with pytest.raises(ValueError, match=r'4 of 4 files .* not named <cherry>_v<k>.*group_pattern'): run(cb, odd, 'a')
    with pytest.raises(ValueError, match="one file per cherry"): run(cb, root, 'b', group_col='relpath')
    with pytest.raises(ValueError, match="this bundle decides each cherry by its own rule"):
        run(cb, root, 'c', group_col='cherry_id', group_rule='majority')
    with pytest.raises(ValueError, match=r"decides per image.*column 'cherry_id'.*has 3 files"):
        run(enhanced, root, 'd')
    with pytest.raises(ValueError, match=r"decides per image.*file names <cherry>_v<k>"):
        run(enhanced, cherry['line'], 'e')
    with pytest.raises(ValueError, match=r"decides per image.*group_pattern="):
        run(enhanced, cherry['line'], 'f', group_pattern=VIEW_RE)
    assert not any((tmp_path / o).exists() for o in 'abcdef')
    ok = run(enhanced, cherry['line'], 'g', group_pattern=VIEW_RE, group_rule='most-severe')   # asked for explicitly
    assert len(ok.groups) == 8 and 'not themselves certified' in ok.summary['note']


def test_group_pattern_and_labelled_views(cherry, tmp_path):
    cb, test = load_bundle(cherry['path']), cherry['test']
    lanes = tmp_path / 'lanes'
    for i, q in enumerate(test.path):                   # another naming: lane<j>/<cherry>-view<k>.png, one bad file
        d = lanes / f'lane{i % 2}'; d.mkdir(parents=True, exist_ok=True)
        shutil.copy(q, d / Path(q).name.replace('_v', '-view'))
    bad = next(lanes.rglob('*-view0.png')); bad.write_bytes(bad.read_bytes()[:150])
    res = predict_folder(cb, lanes, tmp_path / 'o', group_pattern=r'(?P<cherry>[^/]+)-view\d+', progress=False,
                         verbose=False)
    assert len(res.groups) == 8 and res.groups.n_failed.sum() == 1 and len(res.skipped) == 1
    sc = cb.predict(list(res.predictions.path)).p_pit                 # the broken view counts as failed in its cherry
    ref = cb.policy(np.r_[sc, np.nan], list(res.predictions.cherry) + [bad.name.split('-view')[0]])
    assert (res.groups.tier.to_numpy() == ref.tier.to_numpy()).all()
    lab = predict_folder(cb, cherry['root'], tmp_path / 'l', group_col='cherry_id', progress=False, verbose=False)
    assert len(lab.groups) == 48 and lab.group_metrics.n == 48 and lab.metrics is None
    assert 'view_tier' in lab.predictions
    s = json.loads((tmp_path / 'l' / 'summary.json').read_text())
    assert s['unit'] == 'cherry' and s['n_groups'] == 48 and "rule 'max'" in s['group_rule_text']
    assert 'per cherry' in s['note'] and s['guarantee'].startswith('per cherry')


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_cli_predict_per_cherry(cherry, tmp_path):
    "`cherry-nb predict` through the real command line on a folder of views: one row per cherry, guarantee per cherry."
    cb = load_bundle(cherry['path'])
    r = _cli(cherry['path'], cherry['line'], '--out', tmp_path / 'p')     # <cherry>_v<k>.png names: no option needed
    assert r.returncode == 0, r.stderr[-3000:]
    g = pd.read_csv(tmp_path / 'p' / 'groups.csv'); v = pd.read_csv(tmp_path / 'p' / 'predictions.csv')
    assert len(g) == 8 and len(v) == 24 and g.cherry.nunique() == 8 and (g.n_views == 3).all()
    assert 'per cherry (8 cherries' in r.stdout and 'guarantee (per cherry)' in r.stdout
    want = cb.decide_cherries(cb.predict(list(v.path)), v.cherry)
    assert (g.tier.to_numpy() == want.tier.to_numpy()).all() and np.allclose(g.score, want.score)


def _cli(*a):
    return subprocess.run([EXE, 'predict', *map(str, a)], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_predict_group_pattern_unit_and_tampered_cherry_bundle(cherry, enhanced, tmp_path):
    r = _cli(enhanced.path, cherry['line'], '--out', tmp_path / 'r')               # an image bundle given views
    assert r.returncode == 2 and 'decides per image' in r.stderr and not (tmp_path / 'r').exists()
    lanes = tmp_path / 'lanes'
    for i, q in enumerate(cherry['test'].path):
        d = lanes / f'lane{i % 2}'; d.mkdir(parents=True, exist_ok=True)
        shutil.copy(q, d / Path(q).name.replace('_v', '-view'))
    r = _cli(cherry['path'], lanes, '--out', tmp_path / 'q', '--group-pattern', r'(?P<cherry>[^/]+)-view\d+')
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / 'q' / 'groups.csv')) == 8 and "by the pattern" in r.stdout
    r = _cli(cherry['path'], lanes, '--out', tmp_path / 'q2')                          # no grouping, odd names
    assert r.returncode == 2 and '--group-pattern' in r.stderr and not (tmp_path / 'q2').exists()
    t = tmp_path / 'tampered'; shutil.copytree(cherry['path'], t)
    spec = json.loads((t / 'bundle.json').read_text()); spec['decision']['policy']['rule'] = 'mean'
    (t / 'bundle.json').write_text(json.dumps(spec))
    r = _cli(t, cherry['line'], '--out', tmp_path / 's')
    assert r.returncode == 2 and 'policy.rule' in r.stderr and not (tmp_path / 's').exists()


def test_watch_folder_watches_cherries(cherry, tmp_path):
    "A per-cherry bundle's watch compares one score per cherry (its rule) with the calibration cherries' scores."
    from cherry_nb.line.watch import watch_folder
    w, path, _ = watch_folder(cherry['path'], cherry['line'], tmp_path / 'w', progress=False)
    assert w.t == 8 and len(path) == 8 and set(path.relpath) == set(cherry['test'].cherry_id)
    assert len(load_bundle(cherry['path']).calibration_scores) == 40          # the reference: 40 calibration cherries


# ---------------------------------------------------------------- exit codes a script can trust
@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_cli_predict_nothing_to_score_and_far_sizes(full_parts, sim, tmp_path):
    "Nothing to score (an empty folder, only bad files) exits 1 with the reason; images far from the input size are"
    " scored with a warning that counts them."
    path, _, _ = _bundle(full_parts, 'thresholds', tmp_path / 'b')
    run = lambda src, out: subprocess.run([EXE, 'predict', str(path), str(src), '--out', str(out)],
                                          capture_output=True, text=True, timeout=600)
    (tmp_path / 'empty').mkdir()
    r = run(tmp_path / 'empty', tmp_path / 'o1')
    assert r.returncode == 1 and 'nothing to score' in r.stderr and 'no images found' in r.stderr, r.stderr
    bad = tmp_path / 'bad'; bad.mkdir()
    for i in range(3): (bad / f'x{i}.png').write_text('not an image')
    (bad / 'empty.jpg').write_bytes(b'')
    r = run(bad, tmp_path / 'o2')
    assert r.returncode == 1 and 'nothing to score' in r.stderr and '4 problem(s)' in r.stderr, r.stderr
    assert 'not an image' in r.stderr and 'skipped.csv' in r.stderr
    mixed = tmp_path / 'mixed'; mixed.mkdir()
    for f in sorted(sim[0].glob('test/*/*.png'))[:4]: shutil.copy(f, mixed / f.name)
    Image.new('RGB', (1, 1), (200, 30, 40)).save(mixed / 'tiny.png')
    Image.new('RGB', (4000, 4000), (200, 30, 40)).save(mixed / 'huge.png')
    r = run(mixed, tmp_path / 'o3')
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"warning: 2 of 6 images are far from the bundle's {SIZE} px input" in r.stdout, r.stdout
    assert json.loads((tmp_path / 'o3' / 'summary.json').read_text())['n_far_size'] == 2
