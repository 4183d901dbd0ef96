"""The docs: every notebook processes under nbdev's doc processing (tests/check_docs.py), and the static site
(tests/build_docs.py: Sphinx + MyST-NB, pure Python) builds and reads right in a real browser. The slow test builds the
site into tmp_path, opens an API page and the Colab tutorial in headless Chromium (Debian's, driven by playwright) and
saves a screenshot of the API page to tests/artifacts/docs_api_page.png (a test artifact)."""
import json, os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
import check_docs  # noqa: E402

ARTIFACTS = Path(os.environ.get('CHERRY_TEST_ARTIFACTS', Path(__file__).parent / 'artifacts'))


def test_small_notebooks_process_cleanly(tmp_path):
    "nbdev's processors run on two small notebooks; the processed copies hold show_doc output of exported names."
    nbs = [ROOT / 'nbs' / '45_run.testing.ipynb', ROOT / 'nbs' / '35_judge.ensemble.ipynb']
    problems = check_docs.check(nbs, out_dir=tmp_path, workers=1, timeout=120, log=lambda *a: None)
    assert problems == [], '\n'.join(map(check_docs.describe, problems))
    proc = json.loads((tmp_path / '45_run.testing.ipynb').read_text(encoding='utf-8'))
    md = [''.join(o['data']['text/markdown']) for c in proc['cells'] for o in c.get('outputs', [])
          if 'text/markdown' in o.get('data', {})]
    assert any('tiny_manifest' in m for m in md), 'no show_doc output for tiny_manifest'


def test_rule_two_is_found_and_fixed(tmp_path, monkeypatch):
    "A cell doc processing runs for its import, with other code, is reported; --fix moves the import to its own cell."
    nb = json.loads((ROOT / 'nbs' / '45_run.testing.ipynb').read_text(encoding='utf-8'))
    bad = dict(cell_type='code', execution_count=None, id='badcell1', metadata={}, outputs=[],
               source=['#| slow\n', 'import time; x = 1  # training would go here\n', 'y = x + 1'])
    nb['cells'].append(bad)
    monkeypatch.chdir(ROOT)                                       # nbdev reads settings.ini from the cwd up
    p = tmp_path / 'rule2.ipynb'; p.write_text(json.dumps(nb, indent=1), encoding='utf-8')
    found = check_docs.static_problems(p)
    assert [d['id'] for d in found] == ['badcell1'] and 'cell of their own' in found[0]['error']
    assert check_docs.fix(p, log=lambda *a: None) == 1
    cells = json.loads(p.read_text(encoding='utf-8'))['cells'][-2:]
    assert [''.join(c['source']) for c in cells] == ['#| slow\nimport time',
                                                     '#| slow\nx = 1  # training would go here\ny = x + 1']
    assert check_docs.static_problems(p) == []


@pytest.mark.slow
def test_docs_site_in_chromium(tmp_path):
    from test_explorer_browser import CHROMIUM, CHROMIUM_ARGS
    if not os.path.exists(CHROMIUM): pytest.skip(f'{CHROMIUM} not found (apt-get install chromium)')
    pytest.importorskip('sphinx'); pytest.importorskip('myst_nb'); pytest.importorskip('furo')
    playwright = pytest.importorskip('playwright.sync_api')
    import build_docs
    res = build_docs.build(tmp_path / 'site', tmp_path / 'work', workers=2, log=lambda *a: None)
    site = Path(res['out'])
    assert 'tutorials/colab' in res['tutorials'] and 'cherry_nb.judge.tiers' in res['modules']
    assert 'tiers' in res['pages']
    for f in ('index.html', 'api/cherry_nb.judge.tiers.html', 'tiers.html', 'tutorials/colab.html'):
        assert (site / f).is_file(), f
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = b.new_page(viewport=dict(width=1200, height=1000))
            page.goto((site / 'api' / 'cherry_nb.judge.tiers.html').as_uri())
            sig = page.locator('dt[id="cherry_nb.judge.tiers.tier_metrics"]')
            sig.wait_for(state='visible', timeout=30_000)
            assert 'tier_metrics(tiers, y_pit' in sig.inner_text().replace('\n', '')
            entry = page.locator('dl:has(> dt[id="cherry_nb.judge.tiers.tier_metrics"]) > dd').first
            text = entry.inner_text()
            assert 'truth: 1 = pit, 0 = clean' in text and 'Pit-miss, review and false-reject rates' in text, text
            sig.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / 'docs_api_page.png'
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            page.goto((site / 'tutorials' / 'colab.html').as_uri())
            assert 'Colab' in page.locator('h1').first.inner_text()
            assert page.locator('div.cell').count() >= 5              # the notebook's code cells are rendered
            nav = page.locator('.sidebar-tree').inner_text()
            assert 'cherry_nb.judge.tiers' in nav
            assert 'api reference' in nav.lower()    # captions are upper-cased by CSS
        finally: b.close()
