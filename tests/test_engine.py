"""Scoring engines and per-cherry ONNX: predict through onnxruntime gives the tiers torch gives on a real folder,
`--engine onnx` without onnxruntime is refused clearly, and the per-cherry graph (the aggregation rule inside it)
agrees with `predict_folder` on a real 3-view folder, for every rule."""
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from cherry_nb.core import *
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder
from cherry_nb.learn.models import create_model
from cherry_nb.learn.artifacts import save_artifact
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.judge.tiers import ThresholdPolicy
from cherry_nb.judge.views import CherryPolicy, cherry_scores
from cherry_nb.line.bundle import save_bundle, load_bundle
from cherry_nb.line.onnx import export_onnx, onnx_metadata, engine_graph, ONNX_TOL
from cherry_nb.line.score import predict_folder, validate_cherry_onnx

pytest.importorskip('onnxruntime'); pytest.importorskip('onnxscript')
EXE = str(Path(sys.executable).parent / 'cherry-nb')
SIZE = 32


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "An untrained test_resnet (sharpened by T = 0.05 so that every tier occurs), a labelled folder, a 3-view folder."
    d = tmp_path_factory.mktemp('engine')
    flat = render_dataset(d / 'sim', n_train=0, n_val=0, n_test=120, size=SIZE, workers=1, progress=False, seed=3)
    views = render_dataset(d / 'views', n_train=0, n_val=40, n_test=30, views=3, size=SIZE, workers=1,
                           progress=False, seed=4)
    set_seed(0)
    art = save_artifact(create_model('test_resnet', CLASSES_2), d / 'binary', dict(input_size=(3, SIZE, SIZE)))
    ts = TemperatureScaler(0.05)
    b = load_bundle(save_bundle(d / 'b0', art, ThresholdPolicy(0.3, 0.6), 'enhanced 2-class', temperature=ts))
    q = np.quantile(b.predict(sorted(map(str, Path(flat).rglob('*.png')))).p_pit, [0.4, 0.7]).round(4)
    b = load_bundle(save_bundle(d / 'bundle', art, ThresholdPolicy(*q), 'enhanced 2-class', temperature=ts))
    return dict(d=d, flat=flat, views=views, art=art, ts=ts, b=b)


@pytest.mark.slow
def test_onnx_engine_gives_torch_tiers_on_a_real_folder(setup, tmp_path):
    b = setup['b']
    ro = predict_folder(b, setup['flat'], tmp_path / 'o', progress=False, verbose=False, engine='onnx')
    rt = predict_folder(b, setup['flat'], tmp_path / 't', progress=False, verbose=False, engine='torch')
    assert (ro.summary['engine'], rt.summary['engine']) == ('onnx', 'torch') and len(ro.predictions) == 120
    assert (ro.predictions.relpath == rt.predictions.relpath).all()
    assert (ro.predictions.tier == rt.predictions.tier).all() and ro.predictions.tier.nunique() == 3
    assert np.abs(ro.predictions.p_pit - rt.predictions.p_pit).max() <= ONNX_TOL
    g = engine_graph(b)
    assert g.is_file() and b.path not in g.parents and sorted(p.name for p in b.path.iterdir()) == sorted(
        ['bundle.json', *{m['file'] for m in b.decision['models']}])          # nothing written into the bundle
    assert json.loads((tmp_path / 'o' / 'summary.json').read_text())['engine'] == 'onnx'


@pytest.mark.slow        # three CLI processes (about 15 s on an idle machine)
def test_cli_engine_choice_and_refusal_without_onnxruntime(setup, tmp_path):
    b = setup['b']
    r = subprocess.run([EXE, 'predict', str(b.path), str(setup['flat']), '--out', str(tmp_path / 'o'),
                        '--engine', 'torch'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'o' / 'summary.json').read_text())['engine'] == 'torch'
    blocked = ("import sys; sys.modules['onnxruntime'] = None; from cherry_nb.faces.cli import main; "
               f"sys.exit(main(['predict', {str(b.path)!r}, {str(setup['flat'])!r}, '--out', "
               f"{str(tmp_path / 'x')!r}, '--engine', '{{}}']))")
    r = subprocess.run([sys.executable, '-c', blocked.format('onnx')], capture_output=True, text=True)
    assert r.returncode == 2 and "engine 'onnx' needs onnx, onnxruntime and onnxscript" in r.stderr + r.stdout
    assert 'pip install' in r.stderr + r.stdout and not (tmp_path / 'x' / 'predictions.csv').exists()
    r = subprocess.run([sys.executable, '-c', blocked.format('auto')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr                        # auto falls back to torch
    assert json.loads((tmp_path / 'x' / 'summary.json').read_text())['engine'] == 'torch'


@pytest.mark.slow
@pytest.mark.parametrize('rule', ['max', 'mean', 'topk', 'noisy_or'])
def test_per_cherry_onnx_agrees_with_predict_on_a_3_view_folder(setup, rule, tmp_path):
    df = read_image_folder(setup['views'], progress=False)
    val, test = df[df.split == 'val'], df[df.split == 'test']
    b0 = setup['b']
    p = b0.predict(list(val.path)).p_pit
    s = cherry_scores(p, val.cherry_id, rule).score
    pol = CherryPolicy(rule, *np.quantile(s, [0.4, 0.75]).round(4), k=2, min_views=3)
    cb = load_bundle(save_bundle(tmp_path / 'cb', setup['art'], pol, f'{rule} of views',
                                 temperature=setup['ts'], unit='cherry'))
    line = tmp_path / 'line'; line.mkdir()
    for q in test.path: (line / Path(q).name).write_bytes(Path(q).read_bytes())
    bad = sorted(line.iterdir())[4]; bad.write_bytes(bad.read_bytes()[:100])          # one view fails to decode
    onnx = export_onnx(cb, tmp_path / 'c.onnx')
    meta = onnx_metadata(onnx)
    assert meta["graph"] == "cherry" and meta["cherry_decision"]["rule"] == rule
    assert "inside" in meta["outputs"] + \
        meta['cherry_decision']['note']
    v = validate_cherry_onnx(cb, onnx, line)
    assert v['ok'], v
    assert v['n'] == 30 and v['tiers_agree'] == 30
    res = predict_folder(cb, line, tmp_path / 'p', progress=False, verbose=False, engine='torch')
    assert res.groups.tier.nunique() >= 2 and (res.groups.n_scored == 2).sum() == 1     # a failed view (min_views 3)
    assert (res.groups.tier[res.groups.n_scored == 2] == 'review').all()
