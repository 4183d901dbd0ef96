"""First contact with `cherry-nb`, as a new user meets it: every case runs the console command as a subprocess and
checks its exit code and message (issue: progress you can see, the real error, parameters checked before anything
runs, run records that tell the truth, any metadata CSV, honest reports)."""
import re, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import nbformat, numpy as np, pandas as pd, pytest
from cherry_nb.data.toys import tiny_sim

EXE = str(Path(sys.executable).parent / 'cherry-nb')
TINY = ['-p', 'arch', 'test_resnet', '-p', 'image_size', '32', '-p', 'epochs1', '1', '-p', 'epochs2', '1',
        '-p', 'batch_size', '16']


def cli(*args, cwd, timeout=600, **kw):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw)


def wait_for(p, text: str, limit: float = 240) -> str:
    "Read `p`'s stdout line by line until a line holds `text`; fail if the process ends or `limit` s pass."
    t0 = time.time()
    while time.time() - t0 < limit:
        line = p.stdout.readline()
        if text in line: return line
        if not line and p.poll() is not None: raise AssertionError(f"process ended before {text!r}")
    raise AssertionError(f"no {text!r} within {limit} s")


def slow_nb(path: Path, seconds: float = 30) -> Path:
    "A workflow that prints a line, then works for `seconds`, printing a line a second."
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(f"seconds = {seconds}  # how long to work\nout_dir = ''")
    p.metadata['tags'] = ['parameters']
    body = ("import time\nfrom cherry_nb.core import say\nsay('step 1/2: start', prefix='demo')\n"
            "for i in range(int(seconds)):\n    time.sleep(1); say(f'working {i + 1}', prefix='demo')\n"
            "say('step 2/2: done', prefix='demo')")
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, str(path)); return path


@pytest.mark.parametrize('args,names', [(['-p', 'epochs1', 'abc'], ['epochs1', "'abc'", 'an int']),
                                        (['-p', 'image_size', '-5'], ['image_size', '-5', '> 0']),
                                        (['-p', 'epochz', '3'], ['epochz', 'no parameter']),
                                        (['-p', 'aug', 'strong'], ['aug', 'heavy', 'light']),
                                        (['-p', 'low', '0.8'], ['low', 'high']),
                                        (['-p', 'arch', 'convnext_giant_xxl'], ['arch', 'timm model']),
                                        (['-p', 'epoch1', '3'], ['epoch1', "did you mean 'epochs1'"]),
                                        (['-p', 'data', '/nonexistent'], ['data', '/nonexistent', 'no such file']),
                                        (['-p', 'metadata', '/nonexistent.csv'], ['metadata', 'not found']),
                                        (['-p', 'image_size', '1'], ['image_size', "augmentation 'light'", '2 px']),
                                        (['-p', 'image_size', '16'], ['image_size', 'too small for convnextv2_atto']),
                                        (['-p', 'device', 'mps'], ['device', 'MPS'])])
def test_bad_parameters_refused_before_anything_runs(tmp_path, args, names):
    t0 = time.time()
    r = cli('run', 'two-stage', *args, '--runs-dir', tmp_path / 'runs', cwd=tmp_path, timeout=120)
    took = time.time() - t0
    assert r.returncode == 2, r.stderr
    for n in names: assert n in r.stderr, (n, r.stderr)
    assert not (tmp_path / 'runs').exists() and not (tmp_path / 'data').exists()   # nothing created, nothing rendered
    print(f"refused in {took:.1f} s: {r.stderr.strip()}")


def test_list_and_help_show_meaning(tmp_path):
    r = cli('list', cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and 'epochs1 (int, default 20)' in r.stdout and 'stage-1 epochs' in r.stdout
    assert 'methods (str' in r.stdout                                    # the compare workflow too
    r = cli('run', '--help', cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and 'two-stage' in r.stdout and 'compare' in r.stdout
    r = cli('run', 'compare', '--help', cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and 'members (int, default 3)' in r.stdout and 'ensemble size M' in r.stdout


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_real_error_on_failure(tmp_path):
    (tmp_path / 'empty').mkdir()                                      # exists, so only the workflow can tell
    r = cli('run', 'two-stage', '-p', 'data', tmp_path / 'empty', '--runs-dir', tmp_path / 'runs', cwd=tmp_path)
    assert r.returncode == 1
    assert 'no images found' in r.stderr and 'in cell' in r.stderr and 'run folder:' in r.stderr, r.stderr
    run = next((tmp_path / 'runs').iterdir())
    rec = json.loads((run / 'run.json').read_text())
    assert rec['status'] == 'failed' and 'no images found' in rec['attempts'][0]['error']
    assert 'Traceback' in (run / 'error.txt').read_text() or 'FileNotFoundError' in (run / 'error.txt').read_text()
    assert oct((run / 'run.json').stat().st_mode & 0o044) == oct(0o044 & ~_umask())   # readable like any file


def _umask():
    m = os.umask(0o022); os.umask(m); return m


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_one_class_folder_fails_in_the_data_step(tmp_path):
    src = tiny_sim()
    one = tmp_path / 'one'; shutil.copytree(src, one)
    for split in ('train', 'val', 'test'): shutil.rmtree(one / split / 'pit')
    meta = pd.read_csv(one / 'metadata.csv'); meta[~meta.relpath.str.contains('/pit/')].to_csv(one / 'metadata.csv')
    t0 = time.time()
    r = cli('run', 'two-stage', '-p', 'data', one, *TINY, '--runs-dir', tmp_path / 'runs', cwd=tmp_path)
    assert r.returncode == 1 and "split 'val' has no 'pit' images" in r.stderr, r.stderr
    run = next((tmp_path / 'runs').iterdir())
    assert not (run / 'artifacts').exists()                               # nothing was trained
    print(f"refused after {time.time() - t0:.0f} s")


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_streamed_progress_and_interrupt_record(tmp_path):
    "Lines arrive while the run works (piped); SIGTERM records the attempt as interrupted; resume adds an attempt."
    nb = slow_nb(tmp_path / 'slow.ipynb', 60)
    p = subprocess.Popen([EXE, 'run', str(nb), '--runs-dir', str(tmp_path / 'runs')], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = wait_for(p, '[demo]'); wait_for(p, 'working 2')
    assert '[demo] step 1/2: start' in first and p.poll() is None        # streamed while running
    p.send_signal(signal.SIGTERM); out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'interrupted' in err, err
    run = next((tmp_path / 'runs').iterdir())
    rec = json.loads((run / 'run.json').read_text()); assert rec['status'] == 'interrupted'
    r = cli('run', nb, '--resume', run, '-p', 'seconds', '1', cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and '[demo] step 2/2: done' in r.stdout
    rec = json.loads((run / 'run.json').read_text())
    assert [a['status'] for a in rec['attempts']] == ['interrupted', 'completed']
    assert rec['started'] == rec['attempts'][0]['started'] and all('command' in a for a in rec['attempts'])


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_killed_run_is_not_left_running(tmp_path):
    nb = slow_nb(tmp_path / 'slow.ipynb', 60)
    p = subprocess.Popen([EXE, 'run', str(nb), '--runs-dir', str(tmp_path / 'runs')], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, start_new_session=True)
    wait_for(p, 'working 1')
    os.killpg(p.pid, signal.SIGKILL); p.wait(timeout=60)
    from cherry_nb.run.runs import read_record
    run = next((tmp_path / 'runs').iterdir())
    assert json.loads((run / 'run.json').read_text())['status'] == 'running'    # nobody could write anything ...
    assert read_record(run)['status'] == 'died'                               # ... and the reader says what happened


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
@pytest.mark.skipif(shutil.which('script') is None, reason='script (util-linux) not installed')
def test_progress_under_a_pseudo_terminal(tmp_path):
    nb = slow_nb(tmp_path / 'slow.ipynb', 2)
    cmd = f"{EXE} run {nb} --runs-dir {tmp_path / 'runs'}"
    r = subprocess.run(['script', '-qec', cmd, '/dev/null'], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in ('[demo] step 1/2: start', '[demo] working 2', '[demo] step 2/2: done', 'run record:'):
        assert line in r.stdout, (line, r.stdout)


@pytest.mark.slow
def test_metadata_csv_and_degenerate_mining_report(tmp_path):
    """A truth file with any name is joined with `-p metadata`; a run whose mining moved everything says so
    instead of a headline (here forced with the band 0 < p(pit) < 1, which every image falls in)."""
    data = tmp_path / 'data'; shutil.copytree(tiny_sim(), data)
    (data / 'metadata.csv').rename(data / 'truth.csv')
    r = cli('run', 'two-stage', '-p', 'data', data, '-p', 'metadata', 'truth.csv', '-p', 'low', '0', '-p', 'high', '1',
            *TINY, '--runs-dir', tmp_path / 'runs', cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '[two-stage] train stage 1' in r.stdout and '[two-stage] mine (in-sample)' in r.stdout
    assert 'WARNING (degenerate mining)' in r.stdout
    run = next((tmp_path / 'runs').iterdir())
    p = pd.read_csv(run / 'predictions.csv'); assert {'true_label', 'label3', 'ambiguous'} <= set(p.columns)
    rep = (run / 'report.md').read_text()
    assert 'Warning (degenerate mining)' in rep and 'is **not a result**' in rep and 'accuracy**' not in rep


def _shuffled_folder(src: Path, dst: Path, seed: int = 0) -> Path:
    "The images of `src` under random class folders: labels that say nothing about the images."
    rng = np.random.default_rng(seed)
    for split in ('train', 'val', 'test'):
        files = sorted((src / split).rglob('*.png'))
        for f, lab in zip(files, rng.permutation(np.arange(len(files)) % 2)):
            out = dst / split / ('clean', 'pit')[lab]; out.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out / f.name)
    return dst


@pytest.mark.slow
def test_fit_check_stops_a_workflow_that_learns_nothing(tmp_path):
    """Labels shuffled at random: stage 1 cannot learn; the fit check (from epoch `-p fit_check_epochs 4` on) stops
    the run once its train loss has stopped falling, with its message; the run is recorded as failed with that
    message, and no report with a headline is written."""
    data = _shuffled_folder(tiny_sim(n_train=48, n_val=24, n_test=16), tmp_path / 'data')
    r = cli('run', 'two-stage', '-p', 'data', data, *TINY, '-p', 'epochs1', '12', '-p', 'fit_check_epochs', '4',
            '--runs-dir', tmp_path / 'runs', cwd=tmp_path, timeout=900)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    n = int(re.search(r'not learning after (\d+) epochs', r.stderr).group(1))
    assert 'NotLearning' in r.stderr and 4 <= n < 12 and 'fit_check_epochs, now 4' in r.stderr
    assert 'Try: a lower learning' in r.stderr
    run = next((tmp_path / 'runs').iterdir())
    rec = json.loads((run / 'run.json').read_text())
    assert rec['status'] == 'failed' and 'not learning' in (run / 'error.txt').read_text()
    assert not (run / 'report.md').exists() and not (run / 'bundles').exists()


@pytest.mark.skipif(Path('/proc/driver/nvidia/version').exists(), reason='this machine has CUDA')
def test_cuda_on_a_machine_without_it_names_the_parameter(tmp_path):
    t0 = time.time()
    r = cli('run', 'two-stage', '-p', 'device', 'cuda', '--runs-dir', tmp_path / 'runs', cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "parameter device = 'cuda'" in r.stderr and 'CUDA' in r.stderr, r.stderr
    assert not (tmp_path / 'runs').exists(); print(f"refused in {time.time() - t0:.1f} s")


def test_run_needs_a_workflow_or_a_run_folder(tmp_path):
    r = cli('run', cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and 'name a WORKFLOW, or give --resume RUN_DIR' in r.stderr
    assert len(r.stderr.splitlines()) < 6                                # a short usage, not the whole help
    r = cli('run', '--resume', tmp_path / 'nope', cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and 'not a run folder' in r.stderr, r.stderr


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_concurrent_resume_refused_then_killed_run_resumes(tmp_path):
    """A second `--resume` of a live run is refused with the holder's pid (exit 2) and writes nothing; once the
    holder is killed its lock is stale and `--resume RUN_DIR` alone (the workflow read from the folder) goes on."""
    nb = slow_nb(tmp_path / 'slow.ipynb', 60)
    p = subprocess.Popen([EXE, 'run', str(nb), '--runs-dir', str(tmp_path / 'runs')], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, start_new_session=True)
    try:
        wait_for(p, 'working 1')
        run = next((tmp_path / 'runs').iterdir()); before = (run / 'run.json').read_bytes()
        r = cli('run', '--resume', run, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and 'is in use by' in r.stderr and f'pid {p.pid}' in r.stderr, r.stderr
        assert (run / 'run.json').read_bytes() == before and not (run / 'slow.attempt1.ipynb').exists()
        assert p.poll() is None                                           # the holder was not disturbed
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait(timeout=60)
    from cherry_nb.run.runs import read_record
    assert (run / '.lock').exists() and read_record(run)['status'] == 'died'   # the lock is stale: its pid is gone
    r = cli('run', '--resume', run, '-p', 'seconds', '1', cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and '[demo] step 2/2: done' in r.stdout, r.stderr
    rec = json.loads((run / 'run.json').read_text())
    assert [a['status'] for a in rec['attempts']] == ['died', 'completed'] and not (run / '.lock').exists()


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_lock_of_another_machine_goes_stale_by_its_heartbeat(tmp_path):
    """A lock written on another host (a recycled Colab VM) is respected while its heartbeat is fresh and taken
    over once it is older than its `stale_s`; the attempt it held reads `running`, then `died`."""
    from cherry_nb.run.runs import read_record
    nb = slow_nb(tmp_path / 'slow.ipynb', 1)
    r = cli('run', nb, '--runs-dir', tmp_path / 'runs', cwd=tmp_path, timeout=300); assert r.returncode == 0
    run = next((tmp_path / 'runs').iterdir())
    rec = json.loads((run / 'run.json').read_text())
    rec['attempts'].append(dict(started='2026-01-01T00:00:00', command='cherry-nb run ...', host='colab-vm-gone',
                                pid=4242, status='running', lock='remote-token'))
    (run / 'run.json').write_text(json.dumps(rec))
    lock = dict(token='remote-token', pid=4242, host='colab-vm-gone', started='2026-01-01T00:00:00', stale_s=30)
    (run / '.lock').write_text(json.dumps(lock))
    assert read_record(run)['status'] == 'running'
    r = cli('run', '--resume', run, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and 'colab-vm-gone' in r.stderr, r.stderr
    old = time.time() - 120; os.utime(run / '.lock', (old, old))            # no heartbeat for two minutes
    assert read_record(run)['status'] == 'died'
    r = cli('run', '--resume', run, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [a['status'] for a in json.loads((run / 'run.json').read_text())['attempts']] == \
        ['completed', 'died', 'completed']
