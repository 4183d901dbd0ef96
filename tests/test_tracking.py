"""The MLflow view of run folders: real tiny runs logged to a local file store and read back with MLflow's client."""
import contextlib, io, subprocess, sys, tempfile, time
from dataclasses import asdict
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import cherry_nb
from cherry_nb.core import CLASSES_2, CLASSES_3, rate, sha256_file
from cherry_nb.learn.artifacts import artifact_hash, read_artifact_meta, save_artifact
from cherry_nb.learn.models import create_model
from cherry_nb.run.runs import (RunFolder, end_attempt, read_metrics, read_params, start_attempt, write_metrics,
                                write_params)
from cherry_nb.data.toys import tiny_manifest
from cherry_nb.run.tracking import KEY_TAG, MLFLOW_INSTALL, log_run, mlflow_command, run_view


def all_artifacts(c: MlflowClient, rid: str, path=None) -> set:
    "Every artifact file path of an MLflow run."
    out = set()
    for a in c.list_artifacts(rid, path):
        out |= all_artifacts(c, rid, a.path) if a.is_dir else {a.path}
    return out


def one_run(c: MlflowClient, experiment: str) -> str:
    "The id of the only MLflow run of `experiment` (fails when there are several)."
    runs = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0].info.run_id


@pytest.fixture(scope='module')
def two_stage_run(tmp_path_factory):
    "A finished tiny two-stage run with its report and record (shared: tests must not change it)."
    from cherry_nb.studies.two_stage import TwoStageConfig, run_two_stage
    from cherry_nb.faces.report.two_stage import two_stage_report
    run = RunFolder(tmp_path_factory.mktemp('two-stage') / 'run', create=True)
    cfg = TwoStageConfig(arch='test_resnet', image_size=32, epochs1=2, epochs2=1, batch_size=16, device='cpu')
    write_params(run, asdict(cfg)); start_attempt(run, 'two_stage.ipynb', 'pytest'); t0 = time.time()
    run_two_stage(tiny_manifest(), cfg, run, progress=False)
    two_stage_report(run).save(run)
    end_attempt(run, 'completed', time.time() - t0)
    return run


@pytest.mark.slow
def test_two_stage_run_in_mlflow(two_stage_run, tmp_path):
    run, uri = two_stage_run, (tmp_path / 'mlruns').as_uri()
    rid = log_run(run, uri)
    c = MlflowClient(uri); r = c.get_run(rid); tags = r.data.tags
    assert r.data.params == {k: str(v) for k, v in read_params(run).items()} and r.data.params['epochs1'] == '2'
    assert r.info.status == 'FINISHED' and tags['status'] == 'completed' and tags['workflow'] == 'two_stage'
    assert tags['cherry_nb.version'] == cherry_nb.__version__ and r.info.run_name == run.name
    # per-epoch histories, one point per epoch
    hist = read_artifact_meta(run.artifact('stage1'))['metrics']['history']
    h1 = c.get_metric_history(rid, 'stage1/val_loss')
    assert [m.step for m in h1] == [0, 1] and [m.value for m in h1] == pytest.approx(hist['val_loss'])
    assert len(c.get_metric_history(rid, 'stage1/train_loss')) == 2
    assert len(c.get_metric_history(rid, 'stage2/val_loss')) == 1
    # tier metrics: every rate with its interval and count
    pm = read_metrics(run)['production_tiers_test']['pit_miss']; m = r.data.metrics
    assert (m['production_tiers_test/pit_miss'], m['production_tiers_test/pit_miss.lo'],
            m['production_tiers_test/pit_miss.hi']) == pytest.approx((pm.rate, pm.lo, pm.hi))
    assert (m['production_tiers_test/pit_miss.k'], m['production_tiers_test/pit_miss.n']) == (pm.k, pm.n)
    assert 'tiers_test/stage 2 3-class argmax/review' in m and 'stage1_test_binary/auroc' in m
    # report, predictions and artifacts as MLflow artifacts; the copied weights are the run's
    arts = all_artifacts(c, rid)
    assert {'report.html', 'report.md', 'predictions.csv', 'metrics.json', 'run.json', 'artifacts/stage1.safetensors',
            'artifacts/stage1.json', 'artifacts/deployed.safetensors'} <= arts
    with tempfile.TemporaryDirectory() as d:
        assert sha256_file(c.download_artifacts(rid, 'artifacts/stage1.safetensors', d)) == artifact_hash(
            run.artifact('stage1'))
    # lineage digests as tags
    for n in ('stage1', 'stage2', 'deployed'):
        assert tags[f'lineage.{n}.weights_sha256'] == artifact_hash(run.artifact(n))
    h1 = artifact_hash(run.artifact('stage1'))
    assert tags['lineage.stage2.parent_hash'] == tags['lineage.deployed.stage1_hash'] == h1
    lineage = read_artifact_meta(run.artifact('deployed'))['lineage']
    mined = sha256_file(run / 'mined_manifest.csv')
    assert tags['lineage.mined_manifest.sha256'] == mined == lineage['mining_manifest_hash']
    assert tags['lineage.deployed.source_manifest_hash'] == lineage['source_manifest_hash']
    # logging twice: the same MLflow run, nothing doubled
    assert log_run(run, uri) == rid == one_run(c, 'cherry_nb-two-stage')
    assert len(c.get_metric_history(rid, 'stage1/val_loss')) == 2
    assert len(c.get_metric_history(rid, 'production_tiers_test/pit_miss')) == 1


@pytest.mark.slow
def test_cli_logs_a_run(two_stage_run, tmp_path):
    uri = (tmp_path / 'mlruns').as_uri()
    exe = Path(sys.executable).parent / 'cherry-nb'
    r = subprocess.run([str(exe), 'mlflow', str(two_stage_run.root), '--uri', uri, '--experiment', 'plant A'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rid = r.stdout.split()[-1]
    c = MlflowClient(uri)
    assert one_run(c, 'plant A') == rid and c.get_run(rid).data.metrics['stage1/val_loss'] > 0
    assert c.get_run(rid).data.tags[KEY_TAG] == run_view(two_stage_run)['key']


def toy_run(root) -> RunFolder:
    "A run folder whose workflow is still in its last cell: record, parameters, two real (untrained) artifacts."
    run = RunFolder(root, create=True)
    write_params(run, dict(arch='test_resnet', lr1=0.001))
    start_attempt(run, 'two_stage.ipynb', 'pytest')
    save_artifact(create_model('test_resnet', CLASSES_2), run.artifact('stage1'),
                  dict(metrics=dict(history=dict(epoch=[0, 1, 2], val_loss=[0.9, 0.8, float('nan')]))))
    save_artifact(create_model('test_resnet', CLASSES_3), run.artifact('stage2'), dict(parent=run.artifact('stage1')))
    return run


def test_logged_while_running_then_closed(tmp_path):
    run, uri = toy_run(tmp_path / 'run'), (tmp_path / 'mlruns').as_uri()
    rid = log_run(run, uri, weights=False)                    # no metrics.json yet: the run is still running
    c = MlflowClient(uri); r = c.get_run(rid)
    assert r.info.status == 'RUNNING' and r.data.tags['status'] == 'running'
    h = c.get_metric_history(rid, 'stage1/val_loss')
    assert [(m.step, m.value) for m in h] == [(0, 0.9), (1, 0.8)]                      # the NaN is left out
    assert r.data.tags['lineage.stage2.parent_hash'] == artifact_hash(run.artifact('stage1'))
    arts = all_artifacts(c, rid)
    assert 'artifacts/stage1.json' in arts and 'artifacts/stage1.safetensors' not in arts   # weights=False
    write_metrics(run, dict(tiers_test=[dict(name='enhanced (0.65/0.85)', pit_miss=rate(1, 10))]))
    assert log_run(run, uri, weights=False) == rid            # metrics written, record still running: completed
    r = c.get_run(rid)
    assert r.info.status == 'FINISHED' and r.data.tags['status'] == 'completed'
    assert r.data.metrics['tiers_test/enhanced 0.65-0.85/pit_miss'] == 0.1
    write_params(run, dict(arch='test_resnet', lr1=0.01))      # a resume with another learning rate
    end_attempt(run, 'failed', error='RuntimeError: boom')
    assert log_run(run, uri, weights=False) == rid == one_run(c, 'cherry_nb-two-stage')
    r = c.get_run(rid)
    assert r.info.status == 'FAILED' and r.data.tags['status'] == 'failed'
    assert r.data.tags['error'] == 'RuntimeError: boom'
    assert r.data.params['lr1'] == '0.001' and r.data.tags['params_changed'] == 'lr1'
    assert len(c.get_metric_history(rid, 'stage1/val_loss')) == 2
    assert len(c.get_metric_history(rid, 'tiers_test/enhanced 0.65-0.85/pit_miss.n')) == 1


def test_without_mlflow(tmp_path, monkeypatch, capsys):
    run = RunFolder(tmp_path / 'run', create=True); write_params(run, dict(x=1))
    assert log_run(run, '') is None and not (tmp_path / 'mlruns').exists()   # a workflow's mlflow_uri = '': off
    for k in [k for k in sys.modules if k == 'mlflow' or k.startswith('mlflow.')]: monkeypatch.delitem(sys.modules, k)
    monkeypatch.setitem(sys.modules, 'mlflow', None)
    with pytest.raises(ImportError, match=r"cherry_nb\[mlflow\]"): log_run(run, (tmp_path / 'mlruns').as_uri())
    assert mlflow_command(run.root, (tmp_path / 'mlruns').as_uri()) == 2
    assert MLFLOW_INSTALL in capsys.readouterr().err
    with pytest.raises(ValueError, match='not a run folder'): log_run(tmp_path, 'file:./mlruns')


@pytest.mark.slow
def test_comparison_run_in_mlflow(tmp_path):
    from cherry_nb.studies.compare import CompareConfig, run_compare, read_results
    from cherry_nb.faces.report.compare import compare_report
    run = RunFolder(tmp_path / 'compare', create=True)
    cfg = CompareConfig(arch='test_resnet', image_size=32, epochs=2, batch_size=16, device='cpu', seeds=1,
                        methods='enhanced 2-class')
    write_params(run, asdict(cfg)); start_attempt(run, 'compare.ipynb', 'pytest')
    run_compare(tiny_manifest(), cfg, run, progress=False); compare_report(run).save(run)
    end_attempt(run, 'completed', 1.0)
    uri = (tmp_path / 'mlruns').as_uri()
    with contextlib.redirect_stdout(io.StringIO()): rid = log_run(run, uri)
    c = MlflowClient(uri); r = c.get_run(rid); m = r.data.metrics
    assert one_run(c, 'cherry_nb-compare') == rid and r.data.tags['workflow'] == 'compare'
    assert [h.step for h in c.get_metric_history(rid, 'seed0/binary/val_loss')] == [0, 1]
    s = read_results(run)['summary'].set_index('method').loc['enhanced 2-class']
    for col in ('pit_miss', 'review', 'false_reject'):
        key = f'summary/enhanced 2-class/{col}'
        assert (m[key], m[key + '.lo'], m[key + '.hi'], m[key + '.n']) == pytest.approx(
            (s[col].rate, s[col].lo, s[col].hi, s[col].n))
    assert r.data.tags['lineage.seed0/binary.weights_sha256'] == artifact_hash(run / 'seed0' / 'artifacts' / 'binary')
    assert {'results.json', 'comparison.csv', 'report.html', 'predictions.csv',
            'seed0/artifacts/binary.safetensors'} <= all_artifacts(c, rid)
