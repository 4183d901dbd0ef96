"""explorer in a real browser: Voila serves a notebook that calls `explore(run_dir)`, headless Chromium (Debian's,
driven by playwright) moves the review slider with the keyboard and the tier table must follow. A screenshot is saved
to tmp_path and, when CHERRY_TEST_ARTIFACTS is set, to that folder too.

Skipped when Chromium, playwright or voila is missing, unless CHERRY_REQUIRE_BROWSER=1 (CI), where that fails."""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from cherry_nb.faces.explorer import ExplorerState

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
REVIEW0, PRESSES, STEP = 0.65, 5, 0.01          # review slider start, arrow presses, slider step


def _require():
    missing = [why for ok, why in ((os.path.exists(CHROMIUM), f'{CHROMIUM} not found (apt-get install chromium)'),
                                   (importlib.util.find_spec('playwright') is not None, 'playwright not installed'),
                                   (importlib.util.find_spec('voila') is not None,
                                    'voila not installed (pip install voila)'))
               if not ok]
    if missing:
        msg = 'browser test needs: ' + '; '.join(missing)
        if os.environ.get('CHERRY_REQUIRE_BROWSER') == '1': pytest.fail(msg + ' (CHERRY_REQUIRE_BROWSER=1)')
        pytest.skip(msg)


def write_run(root: Path, n_clean=240, n_pit=80, seed=0) -> Path:
    "A run folder: predictions.csv (two models, val + test) and a small PNG per test image."
    rng = np.random.default_rng(seed); rows = []
    for split in ('val', 'test'):
        y = rng.permutation(np.r_[np.zeros(n_clean, int), np.ones(n_pit, int)])
        rel = [f"{split}/{'pit' if t else 'clean'}/{i:04d}.png" for i, t in enumerate(y)]
        for model in ('binary', 'ensemble'):
            s = np.where(y == 1, rng.beta(5, 1.5, len(y)), rng.beta(1.5, 6, len(y)))
            rows.append(pd.DataFrame(dict(model=model, split=split, relpath=rel, path=[str(root / r) for r in rel],
                                          label=np.where(y == 1, 'pit', 'clean'), y_pit=y, p_pit=s)))
        if split == 'test':
            for i, (r, t) in enumerate(zip(rel, y)):
                im = Image.new('RGB', (64, 64), (235, 235, 225)); d = ImageDraw.Draw(im)
                d.ellipse([10, 10, 54, 54], fill=(140 + i % 60, 10, 30))
                if t: d.ellipse([26, 28, 40, 38], fill=(60, 20, 10))
                (root / r).parent.mkdir(parents=True, exist_ok=True); im.save(root / r)
    pd.concat(rows, ignore_index=True).to_csv(root / 'predictions.csv', index=False)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait_for_server(url, proc, log, timeout=90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url + 'cherry-ping', timeout=2); return time.time() - t0
        except urllib.error.HTTPError: return time.time() - t0      # any HTTP answer (404 here): the server is up
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"voila did not answer on {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def accept_cell(page):
    "Text of the 'tier accept' count cell ('k/n') of the tier table."
    return page.locator('.cherry-tier-table tr', has_text='tier accept').locator('td').nth(1).inner_text()


def write_explorer_notebook(path: Path, run: Path):
    "The notebook Voila serves: one cell that shows the explorer of `run`."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"from cherry_nb.faces.explorer import explore\nexplore({str(run)!r}, review={REVIEW0}, reject=0.85)")])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, path)


def start_voila(nb_path: Path, log: Path):
    "Voila serving `nb_path` on a free local port, its output in `log`: (process, url)."
    port = free_port()
    url = f'http://127.0.0.1:{port}/'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', str(nb_path), '--no-browser',
                             f'--port={port}', '--Voila.ip=127.0.0.1', '--show_tracebacks=True'],
                            cwd=nb_path.parent, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
    return proc, url


def wait_for_explorer(page, log: Path, shot: Path):
    "Wait until the tier table and the three figures are drawn; on failure save `shot` and show page and log."
    try: page.wait_for_selector('.cherry-tier-table table', timeout=90_000)
    except Exception:
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"the explorer did not render; page text:\n{page.inner_text('body')[:2000]}\n"
                             f"voila log:\n{log.read_text()[-2000:]}\nscreenshot {shot}")
    for sel in ('.cherry-histogram .js-plotly-plot', '.cherry-risk-coverage .js-plotly-plot',
                '.cherry-cost-curve .js-plotly-plot'):
        page.wait_for_selector(sel, timeout=30_000)


def press_review_right(page, want: str):
    "Move the review slider PRESSES steps right with the keyboard; wait for the accept count `want` and the figure."
    handle = page.locator('.cherry-review .noUi-handle')
    handle.focus()
    for _ in range(PRESSES): page.keyboard.press('ArrowRight')
    page.wait_for_function(
        "want => { const r = [...document.querySelectorAll('.cherry-tier-table tr')]"
        ".find(r => r.innerText.includes('tier accept'));"
        " return r && r.querySelectorAll('td')[1].innerText === want; }", arg=want, timeout=20_000)
    page.wait_for_function(
        "() => document.querySelector('.cherry-histogram').innerText.includes('review 0.700')", timeout=20_000)


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_explorer_in_voila_moves_slider_and_table_follows(tmp_path):
    _require()
    from playwright.sync_api import sync_playwright
    run = write_run(tmp_path / 'run')
    st = ExplorerState(run)                              # expected counts, from the logic core
    before = st.update(review=REVIEW0).metrics().counts['accept']
    after = st.update(review=round(REVIEW0 + PRESSES * STEP, 2)).metrics().counts['accept']
    assert after > before                                # the data make the move visible
    write_explorer_notebook(tmp_path / 'explorer.ipynb', run)
    shots = [tmp_path / 'explorer_browser.png']
    if os.environ.get('CHERRY_TEST_ARTIFACTS'):
        shots.append(Path(os.environ['CHERRY_TEST_ARTIFACTS']) / 'explorer_browser.png')

    log = tmp_path / 'voila.log'
    proc, url = start_voila(tmp_path / 'explorer.ipynb', log)
    browser = None
    try:
        wait_for_server(url, proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=dict(width=1400, height=1700))
            errors = []; page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto(url, timeout=90_000)
            wait_for_explorer(page, log, shots[0])
            assert accept_cell(page) == f"{before}/320"
            assert page.locator('.cherry-gallery img').count() == 12
            assert 'review 0.650' in page.inner_text('.cherry-histogram')

            press_review_right(page, f"{after}/320")
            assert page.locator('.cherry-review .widget-readout').inner_text() == '0.70'
            assert int(accept_cell(page).split('/')[0]) > before          # raising review accepts more cherries
            page.wait_for_timeout(300)                                    # let plotly finish drawing
            for shot in shots:
                shot.parent.mkdir(parents=True, exist_ok=True); page.screenshot(path=str(shot), full_page=True)
            print('explorer screenshot:', *shots)
            page.locator('.cherry-mode button', has_text='guaranteed').click()  # alpha 0.01 needs 230 calibration pits
            page.wait_for_function(
                "() => document.querySelector('.cherry-tier-table').innerText.includes('needs 230 pits, has 80')",
                timeout=20_000)
            assert page.locator('.cherry-tier-table table').count() == 0
            assert not page.locator('.cherry-review').is_visible()
            assert not errors, f"page errors: {errors}"
    finally:
        if browser is not None:
            try: browser.close()
            except Exception: pass
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)
