"""`cherry-nb sweep`: grids, resumable cells, the table of certified accept share, on real workflow runs."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat, numpy as np, pytest
from cherry_nb.core import rate, jsonable, atomic_write_json, read_json
from cherry_nb.run.runs import RunFolder, read_record
from cherry_nb.faces.sweep import parse_grid, grid_cells, plan_sweep, sweep_table, write_sweep_report, cell_state

EXE = str(Path(sys.executable).parent / 'cherry-nb')

def toy(path, sleep=0.0):
    "A workflow notebook that sleeps, then writes an `automation` entry from scores drawn with `strength`."
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(f"strength = 2.0\nsleep = {sleep}\nout_dir = ''"); p.metadata['tags'] = ['parameters']
    body = ("import json, pathlib, time, numpy as np\nfrom cherry_nb.core import rate, jsonable\n"
            "time.sleep(sleep); rng = np.random.default_rng(0); n = 2000; y = rng.random(n) < 0.5\n"
            "s = rng.normal(0, 1, n) + strength * y\n"
            "auto = dict(alpha=0.02, delta=0.1, unit='image', certified_accept_share=rate((s < 0).sum(), n),\n"
            "            oracle_accept_share=rate((s < 0.5).sum(), n),\n"
            "            certified_pit_miss=rate((s[y] < 0).sum(), y.sum()))\n"
            "pathlib.Path(out_dir, 'metrics.json').write_text(json.dumps(jsonable(dict(automation=auto))))\n")
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, str(path)); return str(path)

def test_grid_and_plan(tmp_path):
    wf = toy(tmp_path / 'toy.ipynb')
    g = parse_grid(wf, [('strength', '1,2.5'), ('sleep', '0')])
    assert g == dict(strength=[1, 2.5], sleep=[0])
    assert [c['name'] for c in grid_cells(g)] == ['strength-1', 'strength-2.5']
    root, cells = plan_sweep(wf, g, tmp_path / 'runs')
    assert cells[1]['params'] == dict(strength=2.5, sleep=0)
    assert plan_sweep(wf, g, tmp_path / 'runs')[0] == root                     # the same grid: the same folder
    with pytest.raises(ValueError, match='another sweep'):
        plan_sweep(wf, dict(strength=[3]), tmp_path / 'runs', root.name)
    with pytest.raises(ValueError, match='sweep cell epochs1-0.*epochs1'):
        plan_sweep('two-stage', dict(epochs1=[0, 1]), tmp_path / 'runs')    # refused before anything runs
    with pytest.raises(ValueError, match='given twice'): parse_grid(wf, [('strength', '1'), ('strength', '2')])

def test_table_reads_automation_and_says_na(tmp_path):
    wf = toy(tmp_path / 'toy.ipynb')
    root, _ = plan_sweep(wf, dict(strength=[1, 2, 3]), tmp_path, name='s')
    a = RunFolder(root / 'strength-1', create=True); RunFolder(root / 'strength-2', create=True)
    auto = dict(alpha=0.01, delta=0.1, unit='cherry', certified_accept_share=rate(12, 300),
                oracle_accept_share=rate(45, 300), certified_pit_miss=rate(0, 150))
    atomic_write_json(a / 'metrics.json', jsonable(dict(automation=auto, stage1_test_binary=dict(auroc=0.8))))
    atomic_write_json(a / 'sweep_cost.json', dict(wall_s=12.5, cpu_s=20.0, attempts=[]))
    (root / 'strength-2' / 'metrics.json').write_text('{"automation": "not a dict"}')
    t = sweep_table(root)
    assert list(t.cell) == ['strength-1', 'strength-2', 'strength-3'] and list(t.strength) == [1, 2, 3]
    assert t.certified_accept_share[0] == f"4.0% ({100 * auto['certified_accept_share'].lo:.1f}-" \
                                          f"{100 * auto['certified_accept_share'].hi:.1f})"
    assert t.oracle_accept_share[0].startswith('15.0%') and t.certified_pit_miss[0].startswith('0.0%')
    assert t.unit[0] == 'cherry' and t.wall_s[0] == 12.5 and t.auroc[0] == 0.8
    assert (t.certified_accept_share[1:] == 'n/a').all() and np.isnan(t.certified_accept_share_rate[1:]).all()
    out = write_sweep_report(root)
    md = Path(out['md']).read_text()
    assert '| strength-1 | 1 | todo | 0.8 |' in md and 'n/a' in md and '_rate' not in md
    assert 'certified' in Path(out['html']).read_text()

@pytest.mark.slow
def test_interrupted_sweep_resumes(tmp_path):
    "A sweep stopped by SIGTERM mid-cell resumes that cell and skips the completed one."
    wf = toy(tmp_path / 'toy.ipynb', sleep=0)
    cmd = [EXE, 'sweep', wf, '-p', 'strength', '1,3', '-p', 'sleep', '30,0', '--runs-dir', str(tmp_path / 'runs'),
           '--name', 's']
    root = tmp_path / 'runs' / 's'
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(root.glob('*/toy.ipynb')) or cell_state(root / 'strength-1_sleep-30') != 'running':
        assert time.time() - t0 < 240 and p.poll() is None, 'the first cell never started'
        time.sleep(0.5)
    time.sleep(8); p.send_signal(signal.SIGTERM); out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    states = {c.name: cell_state(c) for c in root.iterdir() if c.is_dir()}
    assert states.get('strength-1_sleep-30') == 'unfinished', states
    r = subprocess.run(cmd[:8] + ['30,1'] + cmd[9:], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and 'another sweep' in r.stderr          # another grid under the same name: refused
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert '1 to resume' in r.stdout and 'table:' in r.stdout
    a = [x['status'] for x in read_record(root / 'strength-1_sleep-30')['attempts']]
    assert a == ['interrupted', 'completed'], a
    t = sweep_table(root)
    assert len(t) == 4 and (t.status == 'completed').all() and (t.certified_accept_share != 'n/a').all()
    assert (t.cpu_s > 0).all() and (t.wall_s[t.sleep == 30] > 30).all()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and '4 completed (skipped)' in r.stdout

@pytest.mark.slow
def test_two_stage_sweep_end_to_end(tmp_path):
    "Two real two-stage runs (tiny preset, 1 epoch each stage) as a sweep: run folders, table and figure."
    r = subprocess.run([EXE, 'sweep', 'two-stage', '-p', 'preset', 'tiny', '-p', 'epochs1', '1', '-p', 'epochs2', '1',
                        '-p', 'seed', '0,1', '--runs-dir', str(tmp_path / 'runs')], capture_output=True, text=True,
                       cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    root = next((tmp_path / 'runs').glob('sweep-two-stage-*'))
    for c in ('seed-0', 'seed-1'):
        assert read_record(root / c)['status'] == 'completed' and (root / c / 'report.md').is_file()
        assert read_json(root / c / 'params.json')['seed'] == int(c[-1])
    assert len(list((tmp_path / 'data').glob('tiny-seed0'))) == 1            # one copy of the data for both cells
    t = sweep_table(root)
    assert list(t.cell) == ['seed-0', 'seed-1'] and t.auroc.between(0, 1).all() and (t.cpu_s > 0).all()
    assert (root / 'table.csv').is_file() and (root / 'figure.html').is_file()

@pytest.mark.slow
def test_sweep_on_ray(tmp_path):
    "The same grid as Ray tasks (a local Ray, two cells at once): each cell's output in its sweep.log, one table."
    pytest.importorskip('ray')
    wf = toy(tmp_path / 'toy.ipynb')
    r = subprocess.run([EXE, 'sweep', wf, '-p', 'strength', '0.5,2', '--runs-dir', str(tmp_path / 'runs'),
                        '--backend', 'ray', '--workers', '2'], capture_output=True, text=True, cwd=tmp_path,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'cells on Ray (local' in r.stdout
    root = next((tmp_path / 'runs').glob('sweep-toy-*'))
    for c in ('strength-0.5', 'strength-2'):
        assert read_record(root / c)['status'] == 'completed' and (root / c / 'sweep.log').is_file()
    t = sweep_table(root)
    assert (t.certified_accept_share != 'n/a').all() and (t.cpu_s > 0).all() and list(t.status) == ['completed'] * 2
