"""What `nbdev_test` cannot see in the tutorials: the Colab notebook's GPU and Colab-only cells are guarded (a CPU run
never executes them), its install cell and badge come from settings.ini, the tutorials are tested at all (settings.ini
has `recursive = False`), and a run folder copied away without its image cache (as the notebook saves it to Drive)
still knows its finished jobs, which is what resuming from Drive relies on."""
import ast, configparser, re, shutil
from pathlib import Path

import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / 'nbs' / 'tutorials' / 'colab.ipynb'


def settings() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    return cfg['DEFAULT']


def code_cells() -> list:
    return [c.source for c in nbformat.read(str(NB), as_version=4).cells if c.cell_type == 'code']


def flags(src: str) -> set:
    "The `#| flag` directives of a cell (nbdev reads them from the cell's first lines)."
    return {m.group(1) for m in re.finditer(r'^#\|\s*(\w+)\s*$', src, flags=re.M)}


def calls(tree: ast.AST) -> list:
    "Dotted names of the functions called in `tree` (`run_workflow`, `drive.mount`, `subprocess.run`, ...)."
    return [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]


def guarded_calls(src: str, guard: str) -> set:
    "Calls that sit inside an `if` whose test names `guard` (e.g. `IN_COLAB`, `GPU`)."
    tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.startswith('#|')))
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and guard in ast.unparse(n.test):
            out |= {c for part in (n.body, n.orelse) for s in part for c in calls(s)}
    return out


def test_full_run_is_flagged_cuda_and_guarded():
    cells = code_cells()
    full = [s for s in cells if re.search(r"run_workflow\('two-stage', FULL", s)]
    assert len(full) == 1, 'one cell runs the full-size workflow'
    assert full[0].splitlines()[0] == '#| cuda' and "FULL = dict(" not in full[0]
    assert 'run_workflow' in guarded_calls(full[0], 'GPU')
    assert [s for s in cells if 'cuda' in flags(s)] == full, 'only the full-size run carries the cuda flag'
    setup = next(s for s in cells if 'FULL = dict(' in s)
    assert "device='cuda'" in setup and "arch='convnextv2_tiny'" in setup and "preset='seed-scale'" in setup
    assert 'check_workflow_params(' in setup and not flags(setup), 'the full-size parameters are checked on the CPU'
    tiny = next(s for s in cells if 'TINY = dict(' in s)
    assert not flags(tiny) and "device='cpu'" in tiny and "arch='test_resnet'" in tiny


def test_colab_only_cells_are_guarded():
    cells = code_cells()
    needs_colab = ('subprocess.run', 'drive.mount', 'output.enable_custom_widget_manager')
    for name in needs_colab:
        using = [s for s in cells if any(c == name for c in calls(ast.parse(
            '\n'.join(l for l in s.splitlines() if not l.startswith('#|')))))]
        assert using, f'the notebook calls {name}'
        for s in using: assert name in guarded_calls(s, 'IN_COLAB'), f'{name} runs only on Colab'
    assert any("IN_COLAB = 'google.colab' in sys.modules" in s for s in cells)


def test_install_and_badge_come_from_settings():
    s = settings()
    install = next(s for s in code_cells() if 'INSTALL = ' in s)
    assert f"GIT_URL = '{s['git_url']}'" in install and "f'cherry_nb @ git+{GIT_URL}'" in install
    title = nbformat.read(str(NB), as_version=4).cells[0].source
    badge = (f"https://colab.research.google.com/github/{s['user']}/{s['repo']}/blob/{s['branch']}/"
             f"{NB.relative_to(ROOT).as_posix()}")
    assert f'({badge})' in title and 'colab-badge.svg' in title
    assert f'({badge})' in (ROOT / 'README.md').read_text(), 'the README links the tutorial'
    nb = nbformat.read(str(NB), as_version=4)
    assert nb.metadata.get('accelerator') == 'GPU', 'Colab opens the notebook on a GPU runtime'
    assert set(s['allowed_metadata_keys'].split()) >= {'accelerator', 'colab'}, 'nbdev_clean keeps that metadata'


def test_tutorials_are_tested_and_workflows_are_not(monkeypatch):
    """`nbdev_test` alone reads nbs/ only (recursive = False): run.sh's notebook step (tests/exec_nbs.py) adds
    nbs/tutorials/, and nbs/workflows/ (full training runs at their defaults) stays out of both."""
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    monkeypatch.chdir(ROOT)                                      # nbglob reads settings.ini from the working folder
    assert get_config().recursive is False
    found = [Path(p).relative_to(ROOT / 'nbs').as_posix() for p in nbglob(ROOT / 'nbs')]
    assert found and not [p for p in found if '/' in p], 'nbdev_test without --path stays in nbs/'
    tut = [Path(p).name for p in nbglob(ROOT / 'nbs' / 'tutorials')]
    assert tut == ['colab.ipynb']
    assert re.search(r'python tests/exec_nbs.py --out \S+ --timing;', (ROOT / 'tests' / 'run.sh').read_text())
    import sys; sys.path.insert(0, str(ROOT / 'tests')); import check_docs
    runs = [p.relative_to(ROOT / 'nbs').as_posix() for p in check_docs.notebooks()]   # what exec_nbs runs by default
    assert 'tutorials/colab.ipynb' in runs and not [p for p in runs if p.startswith('workflows/')]


def test_run_folder_copied_without_cache_keeps_its_finished_jobs(tmp_path):
    "The tutorial saves a run to Drive without `.cache` and copies it back to resume: no finished job retrains."
    from cherry_nb.data import save_manifest
    from cherry_nb.run.jobs import job_done, run_job
    from cherry_nb.run.testing import tiny_job
    from cherry_nb.data.toys import tiny_manifest
    run = tmp_path / 'runs' / 'r1'
    save_manifest(tiny_manifest(root=tmp_path / 'sim'), run / 'manifest.csv')
    job = tiny_job('stage1')
    run_job(job, run, progress=False)
    assert job_done(job, run)      # (.cache holds decoded images unless this process already had them in memory)
    drive = tmp_path / 'drive' / 'r1'
    shutil.copytree(run, drive, ignore=shutil.ignore_patterns('.cache'))
    back = tmp_path / 'fresh' / 'r1'
    shutil.copytree(drive, back)
    assert not (back / '.cache').exists() and job_done(job, back)
    (back / 'manifest.csv').write_text((back / 'manifest.csv').read_text() + '\n')   # other data: not done
    assert not job_done(job, back)
