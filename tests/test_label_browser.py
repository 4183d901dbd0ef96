"""The labelling station in a real JupyterLab: Debian's Chromium (through playwright) opens a notebook that calls
`label(...)`, labels three cherries with key presses, undoes one, restarts the kernel, resumes and labels again; the
labels CSV is checked row by row after every step. The server is started here (127.0.0.1, a token) and stopped here.
A screenshot of the station is saved to tmp_path, and to CHERRY_SCREENSHOT when that is set (the README's picture).

Skipped when Chromium or playwright is missing, unless CHERRY_REQUIRE_BROWSER=1 (CI), where that fails."""
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cherry_nb.data import read_labels
from cherry_nb.studies.label import label_items, LabelSession

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']


def _require():
    missing = [why for ok, why in ((os.path.exists(CHROMIUM), f'{CHROMIUM} not found (apt-get install chromium)'),
                                   (importlib.util.find_spec('playwright') is not None, 'playwright not installed'),
                                   (shutil.which('jupyter-lab') or importlib.util.find_spec('jupyterlab'),
                                    'jupyterlab not installed'))
               if not ok]
    if missing:
        msg = 'browser test needs: ' + '; '.join(missing)
        if os.environ.get('CHERRY_REQUIRE_BROWSER') == '1': pytest.fail(msg + ' (CHERRY_REQUIRE_BROWSER=1)')
        pytest.skip(msg)


def write_images(root: Path, n=6) -> Path:
    "n simulator cherries, three views each, 128 px (the station shows one large and the others beside it)."
    from cherry_nb.data.synth import render_dataset
    return render_dataset(root, n_train=n, n_val=0, n_test=0, size=128, views=3, workers=1, progress=False, seed=4)


def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), JUPYTER_CONFIG_DIR=str(root / '.jc'),
               JUPYTERLAB_WORKSPACES_DIR=str(root / '.ws'))
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--LabApp.news_url=None',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--allow-root']
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=open(root / 'lab.log', 'wb'), stderr=subprocess.STDOUT)
    for _ in range(240):
        if proc.poll() is not None: break
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=2); return proc
        except OSError: time.sleep(0.5)
    proc.terminate(); raise RuntimeError('jupyter lab did not start:\n' + (root / 'lab.log').read_text()[-3000:])


def _wait_rows(csv: Path, n: int, timeout=60) -> pd.DataFrame:
    t = time.time()
    while time.time() - t < timeout:
        if csv.exists():
            df = read_labels(csv)
            if len(df) == n: return df
        time.sleep(0.2)
    raise AssertionError(f"{csv} did not reach {n} rows: {read_labels(csv) if csv.exists() else 'no file'}")


def _run_cell(page, tries=4):
    "Run the notebook's cell (Shift+Enter in it) until the station shows (a kernel still starting drops the first)."
    for _ in range(tries):
        accept = page.locator('.jp-Dialog .jp-mod-accept')          # "Select Kernel", when Lab asks
        if accept.count(): accept.first.click(); page.wait_for_timeout(2000)
        page.locator('.jp-Cell .cm-content').first.click()
        page.keyboard.press('Shift+Enter')
        try: page.locator('.cherry-label-station').first.wait_for(timeout=45_000); return
        except Exception: page.screenshot(path=str(Path(page.context.tmp) / 'not_shown.png'))
    raise AssertionError('the station did not show')


def _press(page, keys: str):
    box = page.locator('.cherry-label-station input[type=text]').first
    for k in keys:
        box.click(); box.press(k); page.wait_for_timeout(300)


def _restart(page):
    "Kernel > Restart Kernel..., accepted; then wait until the kernel is idle again."
    page.locator('.lm-MenuBar-itemLabel', has_text='Kernel').click()
    page.locator('.lm-Menu-itemLabel', has_text='Restart Kernel').first.click()
    page.locator('.jp-Dialog-button.jp-mod-accept').click()
    page.wait_for_timeout(3000)
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(timeout=60_000)


def _status(page) -> str: return page.locator('.cherry-label-station b').first.inner_text()


@pytest.mark.slow
def test_label_station_keys_undo_restart_resume(tmp_path):
    _require()
    from playwright.sync_api import sync_playwright
    imgs, csv = write_images(tmp_path / 'images'), tmp_path / 'labels.csv'
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from cherry_nb.studies.label import label\n"
                                          "label('images', out='labels.csv', annotator='tester')")]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, tmp_path / 'station.ipynb')
    order = LabelSession(label_items(imgs), tmp_path / 'probe.csv').cherries      # the station's order
    rel, n = [c.iloc[0]['relpath'] for c in order], len(order)
    files = sorted(p for p in imgs.rglob('*'))
    port, token = _free_port(), secrets.token_hex(16)
    lab = _start_lab(tmp_path, port, token)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=dict(width=1280, height=900)); page.context.tmp = tmp_path
            page.goto(f'http://127.0.0.1:{port}/lab/tree/station.ipynb?token={token}')
            page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(timeout=120_000)
            _run_cell(page)
            assert _status(page).startswith(f'0 / {n} done')
            _press(page, '1'); df = _wait_rows(csv, 1)
            _press(page, 'p'); df = _wait_rows(csv, 2)
            _press(page, '3'); df = _wait_rows(csv, 3)
            assert df[['relpath', 'label']].values.tolist() == [[rel[0], 'clean'], [rel[1], 'pit'], [rel[2], 'maybe']]
            _press(page, 'u'); df = _wait_rows(csv, 2)                     # undo: the maybe is gone
            assert df['relpath'].tolist() == rel[:2]
            shot = tmp_path / 'label_station.png'
            page.locator('.cherry-label-station').first.screenshot(path=str(shot))
            if os.environ.get('CHERRY_SCREENSHOT'): shutil.copy(shot, os.environ['CHERRY_SCREENSHOT'])
            _restart(page)
            _run_cell(page)                                                # a new session on the same file
            page.wait_for_function("() => document.querySelector('.cherry-label-station b')"
                                   f".innerText.startsWith('2 / {n} done')", timeout=60_000)
            _press(page, 'm'); df = _wait_rows(csv, 3)                     # resumed at the undone cherry
            page.locator('.cherry-label-station button', has_text='skip').click()   # a button, then a key at once:
            page.wait_for_timeout(1500); page.keyboard.press('c'); df = _wait_rows(csv, 4)  # the key box has the focus
            browser.close()
    finally:
        lab.terminate()
        try: lab.wait(20)
        except subprocess.TimeoutExpired: lab.kill()
    assert df.columns[:8].tolist() == ['relpath', 'cherry_id', 'label', 'annotator', 'time', 'blind', 'stratum',
                                       'weight']
    want = [(rel[0], 'clean'), (rel[1], 'pit'), (rel[2], 'maybe'), (rel[4], 'clean')]
    assert len(df) == len(want)
    for (_, r), (rp, lb) in zip(df.iterrows(), want):                     # row by row
        assert (r.relpath, r.label, r.annotator, r.blind, r.stratum, r.weight) == (rp, lb, 'tester', True, 'all', 1.0)
        assert r.cherry_id and rp.startswith(f'train/') and r.cherry_id in rp
        assert pd.Timestamp(r.time).tzinfo is not None and r.score_shown == ''
    assert sorted(p for p in imgs.rglob('*')) == files                     # nothing written into the images
