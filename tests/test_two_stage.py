"""The two-stage workflow end to end through papermill and the console command, and in-sample vs out-of-fold mining."""
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import read_image_folder, save_manifest
from cherry_nb.run.jobs import TrainJob
from cherry_nb.studies.two_stage import verify_lineage
from cherry_nb.studies.recipes import mining_scores
from cherry_nb.judge.mining import apply_mining, MiningConfig
from cherry_nb.learn.artifacts import read_artifact_meta

EXE = str(Path(sys.executable).parent / 'cherry-nb')

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('sim') / 'tiny'
    return render_dataset(root, n_train=64, n_val=40, n_test=40, size=32, workers=1, progress=False, pit_as_clean=0.1,
                          seed=3)

@pytest.mark.slow
def test_workflow_end_to_end(tiny, tmp_path):
    r = subprocess.run([EXE, 'run', 'two-stage', '-p', 'data', str(tiny), '-p', 'image_size', '32',
                        '-p', 'epochs1', '1',
                        '-p', 'epochs2', '1', '-p', 'batch_size', '16', '--runs-dir', str(tmp_path / 'runs')],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next((tmp_path / 'runs').iterdir())
    assert f"report: {run / 'report.html'}" in r.stdout
    for f in ('two_stage.ipynb', 'params.json', 'run.json', 'metrics.json', 'report.md', 'report.html',
              'predictions.csv', 'manifest.csv', 'mined_manifest.csv', 'artifacts/stage1.safetensors',
              'artifacts/stage2.json', 'artifacts/deployed.json'):
        assert (run / f).exists(), f
    params = json.loads((run / 'params.json').read_text())
    assert params['epochs1'] == 1 and params['data'] == str(tiny)
    m = json.loads((run / 'metrics.json').read_text())
    assert m['n'] == {'train': 64, 'val': 40, 'test': 40} and 0 <= m['stage1_best_val_accuracy'] <= 1
    au = m['automation']                    # the number that matters: 40 val images cannot certify alpha 1%
    assert au['unit'] == 'image' and not au['certified'] and au['certified_accept_share']['k'] == 0
    assert au['certified_accept_share']['n'] == 40 and au['oracle_accept_share']['n'] == 40
    moved = sum(row["Moved to 'Maybe'"] for row in m['mining_table'])
    mined = pd.read_csv(run / 'mined_manifest.csv')
    assert moved == int((mined['mined_label'] == 'maybe').sum())
    assert (mined.loc[mined.split == 'test', 'mined_label'] != 'maybe').all()
    lin = verify_lineage(run)
    assert read_artifact_meta(run / 'artifacts' / 'deployed')['parent_hash'] == lin['stage2_hash']
    rep = (run / 'report.md').read_text()
    for s in ('## Executive Summary', '## Certified Automation', '## Mining Statistics',
              '## Forgetting and Stage-1 Misses', '## Safety Tiers', '## Deployment Recommendation'):
        assert s in rep
    assert ('DEPLOY TO PRODUCTION' in rep) != ('DO NOT DEPLOY' in rep)
    assert rep.startswith('# Model Report: 2-Stage Robust Training (convnextv2_atto)')   # the run's architecture
    cal, train = rep.split('## Calibration')[1].split('## Training')
    assert '| Temperature T |' in cal and '| Job | Epochs | Kept epoch |' in train.split('## Artifacts')[0]
    assert '| stage1 | 1 | 1 |' in train                                  # epochs count from 1, as in the terminal
    html = (run / 'report.html').read_text(); assert 'plotly' in html and '<table>' in html
    assert '<nav class="contents">' in html and 'href="#section-1"' in html
    # score new cherries with the run's default bundle, export it, and check that the three agree
    new = render_dataset(tmp_path / 'new', n_train=0, n_val=0, n_test=120, size=32, workers=1, progress=False, seed=9)
    r = subprocess.run([EXE, 'predict', str(run), str(new), '--out', str(tmp_path / 'pred')], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0 and 'pit-miss' in r.stdout, r.stderr[-3000:]
    pred = pd.read_csv(tmp_path / 'pred' / 'predictions.csv')
    assert len(pred) == 120 and (pred.method == 'two-stage (seed)').all()
    from cherry_nb.line.bundle import load_bundle, resolve_bundle
    b = load_bundle(resolve_bundle(run))
    sc = b.predict(list(pred.path))
    assert (sc.tiers == pred.tier.to_numpy()).all() and np.allclose(sc.p_pit, pred.p_pit, atol=1e-6)
    r = subprocess.run([EXE, 'export', str(run), '--onnx', str(tmp_path / 'd.onnx'), '--check', str(new)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0 and 'tiers agree 120/120' in r.stdout, r.stdout + r.stderr[-3000:]
    # every bundle of the run can be watched; the README's `cherry-nb watch runs/<run> <folder>` works
    for d in (run / 'bundles').iterdir():
        if (d / 'bundle.json').is_file(): assert load_bundle(d).calibration_scores is not None, d.name
    r = subprocess.run([EXE, 'watch', str(run), str(new), '--out', str(tmp_path / 'w0')], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)                   # labelled: read class by class
    assert r.returncode == 2 and 'read class by class' in r.stderr and not (tmp_path / 'w0').exists()
    flat = tmp_path / 'flat'; flat.mkdir()
    for p in pred.path.sample(frac=1, random_state=0): (flat / Path(p).name).write_bytes(Path(p).read_bytes())
    r = subprocess.run([EXE, 'watch', str(run), str(flat), '--out', str(tmp_path / 'w')], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode in (0, 3) and 'watch:' in r.stdout, r.stderr[-3000:]
    run_miss = m['production_tiers_test']['pit_miss']; y = pred.y_pit.to_numpy()
    new_miss = ((pred.tier == 'accept') & (y == 1)).sum() / max(y.sum(), 1)
    assert run_miss['lo'] - 1e-9 <= new_miss <= run_miss['hi'] + 1e-9, (new_miss, run_miss)
    # tampering with the mined labels breaks the lineage
    (run / 'mined_manifest.csv').write_text((run / 'mined_manifest.csv').read_text() + '\n')
    with pytest.raises(ValueError, match='mining_manifest_hash'): verify_lineage(run)

@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_failed_run_exits_nonzero(tmp_path):
    "A run that fails inside the notebook (a data folder that exists but holds no image) exits 1 with a failed record."
    (tmp_path / 'empty').mkdir()
    r = subprocess.run([EXE, 'run', 'two-stage', '-p', 'data', str(tmp_path / 'empty'),
                        '--runs-dir', str(tmp_path / 'runs')],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and 'no images found' in r.stderr and 'run folder:' in r.stderr, r.stderr
    run = next((tmp_path / 'runs').iterdir())
    assert json.loads((run / 'run.json').read_text())['status'] == 'failed'
    assert 'empty' in (run / 'two_stage.ipynb').read_text()

@pytest.mark.slow
def test_out_of_fold_mining_finds_mislabelled_pits(tmp_path):
    """A stage-1 model that fits its training labels (here the smallest timm ResNet, no augmentation, no early
    selection) scores its own mislabelled pits as clean, so in-sample mining misses them; out-of-fold models,
    which never saw those images, flag them."""
    from cherry_nb.data.synth import SynthConfig
    easy = SynthConfig(size=32, fragment_fraction=0.0, pit_absorb=(1.5, 2.5), pit_depth=(0.0, 0.3), p_stem=0,
                       p_bruise=0,
                       p_dark_flesh=0, p_juice=0, p_glint=0, p_cup_edge=0, motion_blur=(0, 1), noise=(0.004, 0.01))
    root = render_dataset(tmp_path / 'noisy', n_train=120, n_val=40, n_test=0, size=32, workers=1, progress=False,
                          pit_as_clean=0.25, seed=11, cfg=easy)
    df = read_image_folder(root, progress=False)
    run = tmp_path / 'run'; save_manifest(df, run / 'manifest.csv')
    base = TrainJob('stage1', 'manifest.csv', arch='test_resnet', image_size=32, aug=None,
                    train=dict(epochs=30, lr=3e-3, batch_size=32, warmup_epochs=1, label_smoothing=0.0,
                               weight_decay=0.0,
                               monitor='train_loss'))
    from cherry_nb.run.jobs import run_job
    run_job(base, run, progress=False)
    found = {}
    for mode in ('in-sample', 'out-of-fold'):
        cfg = MiningConfig(mode=mode, folds=3)
        p, fold = mining_scores(df, cfg, run, base, seed=0, progress=False)
        if mode == 'out-of-fold': assert set(fold[(df.split == 'train').to_numpy()]) == {0, 1, 2}
        mined = apply_mining(df, np.nan_to_num(p, nan=0.5), cfg, fold=fold)
        tr = mined[mined.split == 'train']
        flipped_pits = (tr.noise_flipped == 1) & (tr.true_label == 'pit')
        found[mode] = int((flipped_pits & (tr.mined_label == 'maybe')).sum())
        found['n'] = int(flipped_pits.sum())
    print(found)
    assert found['n'] >= 10
    assert found['in-sample'] <= found['n'] // 4, found                # memorised: in-sample mining misses them
    assert found['out-of-fold'] >= found['in-sample'] + 3, found       # out-of-fold mining surfaces them

