"""The docs: every notebook processes under nbdev's doc processing (tests/check_docs.py), and the static site
(tests/build_docs.py: Sphinx + MyST-NB, pure Python) builds and reads right in a real browser, with the notebooks'
outputs and plotly figures. The slow tests use the site tests/run.sh built (CHERRY_DOCS_SITE, from the notebooks its
test step ran), or else build one into a temporary folder, running only the tiers notebook (the others are rendered
without outputs); they open pages in headless Chromium (Debian's, driven by playwright) and save screenshots to
tests/artifacts/ (test artifacts). Without Chromium or playwright they skip, unless CHERRY_REQUIRE_BROWSER=1 (CI)."""
import importlib.util, json, os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
import check_docs  # noqa: E402

ARTIFACTS = Path(os.environ.get('CHERRY_TEST_ARTIFACTS', Path(__file__).parent / 'artifacts'))


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_small_notebooks_process_cleanly(tmp_path):
    "nbdev's processors run on two small notebooks; the processed copies hold show_doc output of exported names."
    nbs = [ROOT / 'nbs' / '15_data.toys.ipynb', ROOT / 'nbs' / '35_judge.ensemble.ipynb']
    problems = check_docs.check(nbs, out_dir=tmp_path, workers=1, timeout=120, log=lambda *a: None)
    assert problems == [], '\n'.join(map(check_docs.describe, problems))
    proc = json.loads((tmp_path / '15_data.toys.ipynb').read_text(encoding='utf-8'))
    md = [''.join(o['data']['text/markdown']) for c in proc['cells'] for o in c.get('outputs', [])
          if 'text/markdown' in o.get('data', {})]
    assert any('tiny_manifest' in m for m in md), 'no show_doc output for tiny_manifest'


def test_rule_two_is_found_and_fixed(tmp_path, monkeypatch):
    "A cell doc processing runs for its import, with other code, is reported; --fix moves the import to its own cell."
    nb = json.loads((ROOT / 'nbs' / '15_data.toys.ipynb').read_text(encoding='utf-8'))
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


def _require_browser():
    "Skip (fail where CHERRY_REQUIRE_BROWSER=1, as in CI) when the browser or the site builder is missing."
    from test_explorer_browser import CHROMIUM
    need = [(os.path.exists(CHROMIUM), f'{CHROMIUM} not found (apt-get install chromium)')] + [
        (importlib.util.find_spec(m) is not None, f'{m} not installed') for m in ('playwright', 'sphinx', 'myst_nb',
                                                                                 'furo')]
    missing = [why for ok, why in need if not ok]
    if missing:
        msg = 'docs browser test needs: ' + '; '.join(missing)
        if os.environ.get('CHERRY_REQUIRE_BROWSER') == '1': pytest.fail(msg + ' (CHERRY_REQUIRE_BROWSER=1)')
        pytest.skip(msg)


def _tiers_notebooks():
    import build_docs
    return [p for p in check_docs.notebooks() if build_docs._page_name(p) == 'judge.tiers']


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "(site folder, build summary): the one tests/run.sh built, else a fresh build that runs the tiers notebook only."
    _require_browser()
    reuse = os.environ.get('CHERRY_DOCS_SITE')
    if reuse and (Path(reuse) / '_build.json').is_file():
        return Path(reuse), json.loads((Path(reuse) / '_build.json').read_text(encoding='utf-8'))
    import build_docs
    tmp = tmp_path_factory.mktemp('docs')
    res = build_docs.build(tmp / 'site', tmp / 'work', workers=2, log=lambda *a: None, execute=_tiers_notebooks())
    return Path(res['out']), res


def _browser(pw):
    from test_explorer_browser import CHROMIUM, CHROMIUM_ARGS
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.mark.slow
def test_docs_site_in_chromium(site):
    "The API page of cherry_nb.judge.tiers shows a signature with its docments; the Colab tutorial, the sidebar render."
    from playwright.sync_api import sync_playwright
    site, res = site
    assert 'tutorials/colab' in res['tutorials'] and 'cherry_nb.judge.tiers' in res['modules']
    assert 'judge.tiers' in res['pages']
    for f in ('index.html', 'api/cherry_nb.judge.tiers.html', 'judge.tiers.html', 'tutorials/colab.html'):
        assert (site / f).is_file(), f
    with sync_playwright() as pw:
        b = _browser(pw)
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


def _stream_texts(nb_path) -> list:
    "The stream (printed) outputs of an executed notebook, one string per output."
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    return [''.join(o['text']) for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])
            if o.get('output_type') == 'stream' and ''.join(o['text']).strip()]


@pytest.mark.slow
def test_docs_page_shows_outputs_and_plotly_figures(site):
    """The tiers notebook's page shows what its cells printed when the build ran it, and draws every plotly figure
    (plotly.js from the site's _static, no network): an SVG with data traces in each figure."""
    from playwright.sync_api import sync_playwright
    site, res = site
    nb = next(p.relative_to(check_docs.NBS).as_posix() for p in _tiers_notebooks())
    assert nb in res['with_outputs'], (nb, res['no_outputs'])
    printed = _stream_texts(res['with_outputs'][nb])
    assert printed, 'the executed tiers notebook printed nothing'
    page_file = site / f"{res['nb_pages'][nb]}.html"
    html = page_file.read_text(encoding='utf-8')
    assert '_static/plotly.min.js' in html and (site / '_static' / 'plotly.min.js').stat().st_size > 1_000_000
    assert 'cdn' not in ' '.join(l for l in html.lower().split('<script')[1:] if 'src=' in l.split('>')[0]), \
        'a script is loaded from a CDN'
    with sync_playwright() as pw:
        b = _browser(pw)
        try:
            page = b.new_page(viewport=dict(width=1200, height=1000))
            offsite = []
            page.on('request', lambda r: offsite.append(r.url) if not r.url.startswith(('file:', 'data:')) else None)
            page.goto(page_file.as_uri())
            page.wait_for_selector('.plotly-graph-div .main-svg', timeout=60_000)
            drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => [
                (g.data || []).length,
                g.querySelectorAll('.main-svg g.trace, .main-svg g.hm, .main-svg image').length])""")
            assert drawn and all(n_data > 0 and n_svg > 0 for n_data, n_svg in drawn), drawn
            outputs = page.locator('div.cell_output').all_inner_texts()
            shown = '\n'.join(outputs)
            first = printed[0].strip().splitlines()[0].strip()
            assert first and first in shown, (first, shown[:2000])
            assert 'Traceback' not in shown
            assert offsite == [], offsite
            page.locator('.plotly-graph-div').first.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / 'docs_plotly_page.png'
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
        finally: b.close()
