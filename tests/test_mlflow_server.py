"""MLflow the way its users run it: a real local `mlflow server` (sqlite backend, 127.0.0.1, a free port) receives a
run folder over HTTP, MLflow's client reads it back, and MLflow's own web UI, opened in headless Chromium, shows the
run's metrics and its report. The server is stopped at the end."""
import contextlib, os, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from cherry_nb.core import CLASSES_2, rate
from cherry_nb.learn.models import create_model
from cherry_nb.learn.artifacts import save_artifact
from cherry_nb.faces.report.core import Report
from cherry_nb.run.runs import RunFolder, end_attempt, start_attempt, write_metrics, write_params

pytest.importorskip('alembic', reason="the [mlflow] extra installs the full mlflow (its server needs alembic)")
MLFLOW = str(Path(sys.executable).parent / 'mlflow')


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path):
    "A local tracking server on a sqlite database, its artifacts served by itself; its URL while it runs."
    port = free_port(); url = f'http://127.0.0.1:{port}'
    log = open(root / 'server.log', 'w')
    p = subprocess.Popen([MLFLOW, 'server', '--backend-store-uri', f"sqlite:///{root / 'mlflow.db'}",
                          '--artifacts-destination', str(root / 'artifacts'), '--host', '127.0.0.1',
                          '--port', str(port), '--workers', '1'], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        t0 = time.time()
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(url + '/health', timeout=5).status == 200: break
            assert p.poll() is None, (root / 'server.log').read_text()[-3000:]
            assert time.time() - t0 < 240, 'the server did not start in 240 s'
            time.sleep(1)
        yield url
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()


def small_run(root: Path) -> RunFolder:
    "A finished run folder: parameters, record, metrics with a rate, a report and one real (untrained) artifact."
    run = RunFolder(root, create=True)
    write_params(run, dict(arch='test_resnet', epochs1=2)); start_attempt(run, 'two_stage.ipynb', 'pytest')
    save_artifact(create_model('test_resnet', CLASSES_2), run.artifact('stage1'),
                  dict(metrics=dict(history=dict(epoch=[0, 1], val_loss=[0.9, 0.7]))))
    write_metrics(run, dict(production_tiers_test=dict(pit_miss=rate(3, 40))))
    Report('Model Report: 2-Stage Robust Training (test_resnet)').add('Executive Summary', 'tiny').save(run)
    end_attempt(run, 'completed', 1.0)
    return run


@pytest.mark.slow
def test_run_logged_to_a_real_server_and_seen_in_its_ui(tmp_path):
    from mlflow.tracking import MlflowClient
    from cherry_nb.run.tracking import log_run
    run = small_run(tmp_path / 'runs' / 'r1')
    (tmp_path / 'srv').mkdir()
    with mlflow_server(tmp_path / 'srv') as url:
        rid = log_run(run, url, weights=False)
        c = MlflowClient(url); r = c.get_run(rid)
        assert r.info.status == 'FINISHED' and r.data.params['epochs1'] == '2'
        assert [m.value for m in c.get_metric_history(rid, 'stage1/val_loss')] == pytest.approx([0.9, 0.7])
        assert {a.path for a in c.list_artifacts(rid)} >= {'report.html', 'report.md'}
        assert (tmp_path / 'srv' / 'mlflow.db').is_file()                   # the sqlite backend holds it
        _ui_shows(url, r.info.experiment_id, rid, tmp_path)


def _ui_shows(url: str, eid: str, rid: str, tmp_path: Path):
    "MLflow's UI in headless Chromium: the run page lists its metrics, the artifacts view its report."
    from test_explorer_browser import CHROMIUM, CHROMIUM_ARGS
    if not os.path.exists(CHROMIUM): pytest.skip(f'{CHROMIUM} not found')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport=dict(width=1400, height=1000))
        page.goto(f'{url}/#/experiments/{eid}/runs/{rid}', timeout=120_000)
        page.get_by_text('stage1/val_loss').first.wait_for(timeout=120_000)
        assert page.get_by_text('production_tiers_test/pit_miss').count() >= 1
        page.screenshot(path=str(tmp_path / 'mlflow_run.png'), full_page=True)
        page.goto(f'{url}/#/experiments/{eid}/runs/{rid}/artifacts', timeout=120_000)
        page.get_by_text('report.html').first.wait_for(timeout=120_000)
        page.get_by_text('report.html').first.click()                   # MLflow previews HTML in a frame
        page.frame_locator('iframe').first.get_by_text('Executive Summary').first.wait_for(timeout=120_000)
        page.screenshot(path=str(tmp_path / 'mlflow_artifacts.png'), full_page=True)
        b.close()
