"""The papermill runner and the `cherry-nb` command, on tiny workflow notebooks written by the tests."""
import json, subprocess, sys
from pathlib import Path
import nbformat, pytest
from cherry_nb.faces.cli import run_workflow, WorkflowFailed, parse_value, workflow_defaults, main, list_workflows

def write_nb(path, fail=False):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 2\nmsg = 'hi'\nout_dir = ''"); p.metadata['tags'] = ['parameters']
    body = ("import json, pathlib\nres = dict(y=x * 10, msg=msg)\n"
            "pathlib.Path(out_dir, 'metrics.json').write_text(json.dumps(res))\n"
            "pathlib.Path(out_dir, 'report.md').write_text('# ok')\n")
    if fail: body += "raise RuntimeError('boom in cell')\n"
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, str(path)); return path

def test_parse_value():
    assert parse_value('3') == 3 and parse_value('1e-3') == 1e-3 and parse_value('heavy') == 'heavy'

def test_run_record(tmp_path):
    src = write_nb(tmp_path / 'wf.ipynb'); before = src.read_bytes()
    run = run_workflow(str(src), {'x': 5}, runs_dir=tmp_path / 'runs', stream=False)
    assert run.parent == tmp_path / 'runs' and run.name.endswith('-wf')
    assert json.loads((run / 'metrics.json').read_text()) == {'y': 50, 'msg': 'hi'}
    params = json.loads((run / 'params.json').read_text())
    assert params['x'] == 5 and params['msg'] == 'hi' and Path(params['out_dir']) == run.resolve()
    rec = json.loads((run / 'run.json').read_text()); assert rec['status'] == 'completed' and rec['versions']['torch']
    executed = nbformat.read(str(run / 'wf.ipynb'), as_version=4)
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in executed.cells)
    assert src.read_bytes() == before, 'the input notebook must never change'

def test_unknown_param(tmp_path):
    src = write_nb(tmp_path / 'wf.ipynb')
    with pytest.raises(ValueError, match="no parameter.*'epochz'"):
        run_workflow(str(src), {'epochz': 1}, runs_dir=tmp_path)

def test_failed_run_leaves_partial_record(tmp_path):
    src = write_nb(tmp_path / 'bad.ipynb', fail=True)
    with pytest.raises(WorkflowFailed) as ei: run_workflow(str(src), {}, runs_dir=tmp_path / 'runs', stream=False)
    run = ei.value.run_dir
    rec = json.loads((run / 'run.json').read_text())
    assert rec['status'] == 'failed' and 'boom in cell' in rec['error']
    nb = (run / 'bad.ipynb').read_text(); assert 'boom in cell' in nb and (run / 'metrics.json').exists()
    # resume keeps the failed attempt's notebook beside the new one
    with pytest.raises(WorkflowFailed): run_workflow(str(src), {}, resume=run, stream=False)
    assert (run / 'bad.attempt1.ipynb').exists() and (run / 'bad.ipynb').exists()

@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_console_command(tmp_path):
    src = write_nb(tmp_path / 'wf.ipynb')
    exe = Path(sys.executable).parent / 'cherry-nb'
    r = subprocess.run([str(exe), 'run', str(src), '-p', 'x', '7', '--runs-dir', str(tmp_path / 'r')],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'report:' in r.stdout and json.loads(next((tmp_path / 'r').glob('*/metrics.json')).read_text())['y'] == 70
    bad = write_nb(tmp_path / 'bad.ipynb', fail=True)
    r = subprocess.run([str(exe), 'run', str(bad), '--runs-dir', str(tmp_path / 'r')], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and 'RuntimeError: boom in cell' in r.stderr and 'run folder:' in r.stderr
    r = subprocess.run([str(exe), 'run', 'no-such-workflow'], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and 'unknown workflow' in r.stderr


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
@pytest.mark.parametrize('wf', list_workflows())
def test_checks_file_matches_config(wf):
    "The quick checks (before torch is imported) are the config's own; after changing a config's checks, regenerate."
    from cherry_nb.faces.cli import checks_file, workflow_path, workflow_checks, image_size_problem
    have = json.loads(checks_file(workflow_path(wf)).read_text())
    want = workflow_checks(workflow_path(wf), archs=())        # every part but the other architectures' bisection
    stale = "stale: python -c 'from cherry_nb.faces.cli import write_workflow_checks; write_workflow_checks()'"
    assert {k: v for k, v in have.items() if k != 'arch'} == {k: v for k, v in want.items() if k != 'arch'}, stale
    assert (have['arch']['timm'], have['arch']['names']) == (want['arch']['timm'], want['arch']['names']), stale
    assert want['arch']['min_image_size'].items() <= have['arch']['min_image_size'].items(), stale
    for arch, n in have['arch']['min_image_size'].items():    # each recorded smallest side is the model's own
        ok = lambda s: image_size_problem(dict(arch=arch, image_size=s, aug='none')) is None
        assert n is None or (ok(n) and (n == 1 or not ok(n - 1))), (arch, n, stale)


def test_quick_checks_agree_with_the_config():
    "What the quick pass refuses, the config refuses too (no false refusals), and extras such as lr 'find' pass."
    from cherry_nb.faces.cli import quick_check_params, check_workflow_params
    from cherry_nb.params import ParamError
    ok = dict(lr1='find', amp=True, epochs1=2, aug='none', device='cpu')
    assert quick_check_params('two-stage', ok) == {k: v for k, v in check_workflow_params('two-stage', ok).items()}
    for bad in (dict(epochs1='abc'), dict(image_size=-5), dict(aug='strong'), dict(alpha=0), dict(epoch1=3),
                dict(image_size=2, aug='heavy')):
        with pytest.raises(ParamError): quick_check_params('two-stage', bad)
        with pytest.raises(ParamError): check_workflow_params('two-stage', bad)
