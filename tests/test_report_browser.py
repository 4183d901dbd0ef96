"""The two-stage report in a real browser: headless Chromium (Debian's, driven by playwright) opens report.html of a
tiny run, every section is there, the plotly figures render, and a screenshot of the new sections (calibration,
confusion matrices, training curves, artifacts) is saved to tests/artifacts/ (a test artifact) and tmp_path."""
import os
from pathlib import Path

import pytest
from cherry_nb.params import config_from
from cherry_nb.data.toys import tiny_manifest
from cherry_nb.studies.two_stage import TwoStageConfig, run_two_stage
from cherry_nb.faces.report.two_stage import two_stage_report

from test_explorer_browser import _require, CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(os.environ.get('CHERRY_TEST_ARTIFACTS', Path(__file__).parent / 'artifacts'))
SECTIONS = ('Executive Summary', 'Safety Tiers (test set, against truth)', 'Confusion Matrices (test set)',
            'Calibration', 'Training', 'Artifacts', 'Deployment Recommendation')


@pytest.mark.slow
def test_report_sections_in_chromium(tmp_path):
    _require()
    from playwright.sync_api import sync_playwright
    cfg = config_from(TwoStageConfig, dict(arch='test_resnet', image_size=32, epochs1=2, epochs2=1, batch_size=16))
    run = run_two_stage(tiny_manifest(), cfg, tmp_path / 'run', progress=False).run
    _, html = two_stage_report(run).save(run)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport=dict(width=1200, height=900))
        page.goto(html.as_uri()); page.wait_for_selector('.plotly-graph-div .main-svg', timeout=60_000)
        heads = page.locator('h2').all_inner_texts()
        for s in SECTIONS: assert s in heads, (s, heads)
        assert page.locator('.plotly-graph-div').count() == 8
        assert page.locator('table').count() >= 6
        page.locator('h2', has_text='Confusion Matrices').scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for out in (tmp_path / 'report_sections.png', ARTIFACTS / 'report_sections.png'):
            page.screenshot(path=str(out), full_page=True)
        b.close()
    assert (ARTIFACTS / 'report_sections.png').stat().st_size > 50_000
