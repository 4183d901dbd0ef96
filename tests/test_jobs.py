"""Training jobs: planning, failures, exact resume, and the Ray backend (a local Ray, and a real two-node cluster
started with `ray start` on this machine's loopback address; a worker process killed in the middle of a job)."""
import contextlib, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from dataclasses import replace
from pathlib import Path

import numpy as np, pytest, torch

from cherry_nb.core import CLASSES_3, sha256_file
from cherry_nb.data import read_image_folder, save_manifest
from cherry_nb.run.jobs import (TrainJob, JobsFailed, job_log_path, plan_jobs, run_job, run_jobs, torch_threads,
                            job_threads, ATTEMPT)
from cherry_nb.learn.artifacts import read_artifact_meta
import cherry_nb.run.ray_jobs   # registers the Ray backend of `run_jobs` (workers > 1, a ray_address)
from cherry_nb.data.synth import render_dataset
from cherry_nb.learn.learner import Callback

TINY = dict(batch_size=16, warmup_epochs=0)


def job(name, seed=0, epochs=1, **kw):
    "A tiny job: test_resnet at 32 px."
    return TrainJob(name, 'manifest.csv', arch='test_resnet', image_size=32, train=dict(TINY, epochs=epochs, seed=seed),
                    **kw)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = render_dataset(tmp_path_factory.mktemp('sim') / 'sim', n_train=48, n_val=24, n_test=0, size=32, workers=1,
                          progress=False)
    df = read_image_folder(root, progress=False)
    return df.assign(label3=np.where(np.arange(len(df)) % 7 == 0, 'maybe', df['label']))


def new_run(parent, df, name) -> Path:
    run = Path(parent) / name; save_manifest(df, run / 'manifest.csv'); return run


def digests(paths): return [sha256_file(p) for p in paths]


def test_plan_orders_children_after_parents_and_checks(images, tmp_path):
    run = new_run(tmp_path, images, 'run')
    a, b = job('a'), job('b', init_from='a', classes=CLASSES_3, label_col='label3')
    todo, done = plan_jobs([b, a, job('c')], run)
    assert [j.name for j in todo] == ['a', 'b', 'c'] and done == []
    for jobs, msg in (([a, a], 'unique'), ([job('x', init_from='nowhere')], 'neither a job of this list'),
                      ([job('p', init_from='q'), job('q', init_from='p')], 'cycle')):
        with pytest.raises(ValueError, match=msg): plan_jobs(jobs, run)


def test_failed_job_reported_others_go_on(images, tmp_path, capsys):
    run = new_run(tmp_path, images, 'run')
    bad, good = job('bad', train_split='nope'), job('good')
    orphan = job('orphan', init_from='bad', classes=CLASSES_3, label_col='label3', trainable='head')
    with pytest.raises(JobsFailed) as e: run_jobs([orphan, bad, good], run)
    assert set(e.value.failed) == {'bad', 'orphan'} and 'no training rows' in e.value.failed['bad']
    assert 'parent bad failed' in e.value.failed['orphan'] and str(run / 'jobs' / 'bad.log') in str(e.value)
    out = capsys.readouterr().out
    assert '[bad] FAILED: ValueError: job bad: no training rows' in out and '[good] epoch 1/1: train_loss' in out
    assert 'Traceback' in job_log_path(run, bad).read_text()
    meta = read_artifact_meta(run / 'artifacts' / 'good')
    assert meta['runner']['backend'] == 'local' and meta['runner']['threads'] == job_threads(0)
    assert meta['runner']['attempt'] == 1
    run_jobs([good], run)                                    # finished: skipped, not retrained
    assert 'already done, skipped: good' in capsys.readouterr().out


class Interrupt(Callback):
    order = 100
    def after_epoch(self):
        if self.learn.epoch == 1: raise KeyboardInterrupt('simulated crash after epoch 2')


def test_interrupted_job_resumes_exactly(images, tmp_path):
    ref = run_jobs([job('k', epochs=3)], new_run(tmp_path, images, 'ref'), progress=False)[0]
    run = new_run(tmp_path, images, 'run')
    with pytest.raises(KeyboardInterrupt), torch_threads(job_threads(0)):   # the threads run_jobs gives a job
        run_job(job('k', epochs=3), run, progress=False, callbacks=[Interrupt()])
    w = run_jobs([job('k', epochs=3)], run, progress=False)[0]
    assert read_artifact_meta(w)['runner']['resumed_after_epochs'] == 2
    assert '[k] resumed from its checkpoint after 2 of 3 epochs' in job_log_path(run, job('k')).read_text()
    assert sha256_file(w) == sha256_file(ref) and not (run / 'ckpt' / 'k').exists()


def test_cpus_per_job_sets_threads_and_restores(images, tmp_path):
    n = torch.get_num_threads()
    w = run_jobs([job('t')], new_run(tmp_path, images, 'run'), progress=False, cpus_per_job=2)[0]
    assert read_artifact_meta(w)['runner']['threads'] == 2 and torch.get_num_threads() == n
    with pytest.raises(ValueError, match='cpus_per_job'): run_jobs([job('t')], tmp_path / 'run', cpus_per_job=-1)


def test_run_folder_check_names_folder_and_node(tmp_path):
    from cherry_nb.run.ray_jobs import check_run_dir, RunFolderNotVisible
    with pytest.raises(RunFolderNotVisible, match=r"Ray node 12ab \(host-b\): the run folder /no/such/run does not"):
        check_run_dir('/no/such/run', where='Ray node 12ab (host-b)')
    with pytest.raises(RunFolderNotVisible, match='has no manifest manifest.csv'): check_run_dir(tmp_path, job('x'))


# ---------------------------------------------------------------- Ray

@pytest.mark.slow
def test_local_ray_two_workers_matches_sequential(images, tmp_path, capsys):
    "workers=2 starts a local Ray, runs a child after its parent, gives bit-identical weights, and stops Ray."
    ray = pytest.importorskip('ray')
    jobs = [job('child', init_from='a', classes=CLASSES_3, label_col='label3', trainable='head', epochs=2),
            job('a', epochs=2), job('b', seed=1, epochs=2)]
    seq = run_jobs(jobs, new_run(tmp_path, images, 'seq'), progress=False)
    capsys.readouterr()
    par = run_jobs(jobs, new_run(tmp_path, images, 'ray'), workers=2)
    out = capsys.readouterr().out
    assert digests(seq) == digests(par)
    assert not ray.is_initialized()                       # the local Ray it started is shut down
    metas = [read_artifact_meta(p) for p in par]
    assert all(m['runner']['backend'] == 'ray' and m['runner']['threads'] == job_threads(0) for m in metas)
    assert 'to run on Ray (local' in out and '[b] epoch 2/2: train_loss' in out and 'jobs: 3 done, 0 running' in out
    assert out.index('[a] done in') < out.index('[child] attempt 1')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _node_ports() -> list:
    "Free ports for every service of a node (two nodes share this machine, and other Ray users may run here)."
    names = ('node-manager', 'object-manager', 'dashboard-agent-listen', 'dashboard-agent-grpc', 'metrics-export',
             'runtime-env-agent')
    return [a for n in names for a in (f'--{n}-port', str(_free_port()))]


def _stop_processes(mark: str):
    "Terminate (then kill) the processes whose command line holds `mark`, and all their descendants."
    import psutil
    procs = {}
    for p in psutil.process_iter(['cmdline']):
        if p.pid != os.getpid() and mark in ' '.join(p.info['cmdline'] or []):
            procs[p.pid] = p
            try: procs.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.NoSuchProcess: pass
    for p in procs.values():
        try: p.terminate()
        except psutil.NoSuchProcess: pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=5)
    for p in alive:
        try: p.kill()
        except psutil.NoSuchProcess: pass


def _start_node(args: list, temp_dir: Path, env: dict, tries: int = 3):
    "`ray start` a node; on a busy machine its raylet can miss Ray's fixed 30 s start-up window: clean up, retry."
    ray_cli = str(Path(sys.executable).parent / 'ray')
    common = ['--node-ip-address', '127.0.0.1', '--num-cpus', '1', '--num-gpus', '0', '--disable-usage-stats']
    for attempt in range(tries):
        tmp = temp_dir / f'try{attempt}'
        r = subprocess.run([ray_cli, 'start', *args, '--temp-dir', str(tmp), *common, *_node_ports()], env=env,
                           capture_output=True, text=True, timeout=240)
        if r.returncode == 0: return
        _stop_processes(str(tmp))
    raise AssertionError(f"ray start {' '.join(args)} failed {tries} times:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def _reset_ray_auth():
    "Make Ray re-read RAY_AUTH_* (it caches them; Ray versions without token authentication have nothing to reset)."
    try: from ray._private.authentication_test_utils import reset_auth_token_state
    except ImportError: return
    reset_auth_token_state()


@contextlib.contextmanager
def _token_auth(token: str):
    "Token authentication (Ray >= 2.5x) with `token` in this process and the nodes it starts; restored after."
    keys = ('RAY_AUTH_MODE', 'RAY_AUTH_TOKEN', 'RAY_AUTH_TOKEN_PATH')
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(RAY_AUTH_MODE='token', RAY_AUTH_TOKEN=token); os.environ.pop('RAY_AUTH_TOKEN_PATH', None)
    _reset_ray_auth()
    try: yield
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
        _reset_ray_auth()


@pytest.fixture(scope='module')
def cluster():
    "A real Ray cluster on this machine (a head and a second node, 1 CPU each, token-protected), stopped at the end."
    pytest.importorskip('ray')
    tmp = Path(tempfile.mkdtemp(prefix='rt', dir='/tmp'))    # short: Ray's socket paths must stay under 108 bytes
    port = _free_port(); address = f'127.0.0.1:{port}'
    with contextlib.ExitStack() as stack:
        stack.enter_context(_token_auth(secrets.token_hex(32)))
        env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0'}
        env.pop('RAY_ADDRESS', None)
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        stack.callback(_stop_processes, str(tmp))
        _start_node(['--head', '--port', str(port), '--include-dashboard', 'false', '--dashboard-host', '127.0.0.1',
                     '--dashboard-port', str(_free_port()), '--ray-client-server-port', str(_free_port()),
                     '--resources', '{"head_node": 1}'], tmp / 'head', env)
        _start_node(['--address', address, '--resources', '{"second_node": 1}'], tmp / 'node2', env)
        yield address


@pytest.mark.slow
def test_cluster_runs_jobs_on_both_nodes(images, tmp_path, cluster, capsys):
    "Jobs through an existing connection land on both nodes; a node that cannot see the run folder fails at once."
    ray = pytest.importorskip('ray')
    from cherry_nb.run.ray_jobs import ray_job
    ray.init(address=cluster, log_to_driver=False)
    try:
        ws = run_jobs([job(f'j{i}', seed=i) for i in range(4)], new_run(tmp_path, images, 'run'), workers=2,
                      ray_address=cluster)
        assert 'to run on Ray (existing: 2 nodes, 2 CPUs, 0 GPUs)' in capsys.readouterr().out
        assert len({read_artifact_meta(w)['runner']['node_id'] for w in ws}) == 2 and ray.is_initialized()
        task = ray.remote(num_cpus=1, max_retries=0)(ray_job)
        msg = r"Ray node [0-9a-f]{12} \(.*\): the run folder /no/such/run does not exist"
        with pytest.raises(Exception, match=msg):
            ray.get(task.remote(job('x').to_dict(), '/no/such/run'), timeout=120)
    finally: ray.shutdown()


def _kill_after_first_checkpoint(run: Path, name: str, killed: list, timeout: float = 300):
    "SIGKILL the worker process running job `name` once its first epoch's checkpoint exists."
    log, ckpt, t0 = run / 'jobs' / f'{name}.log', run / 'ckpt' / name / 'last.pt', time.time()
    while time.time() - t0 < timeout:
        m = re.search(r'\] attempt 1 on .*\(pid (\d+)', log.read_text()) if log.exists() else None
        if m and ckpt.exists():
            os.kill(int(m.group(1)), signal.SIGKILL); killed.append(int(m.group(1))); return
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_bit_identical(images, tmp_path, cluster):
    jobs = [job('k', epochs=5), job('other', seed=1, epochs=2)]
    seq = run_jobs(jobs, new_run(tmp_path, images, 'seq'), progress=False)
    run, killed = new_run(tmp_path, images, 'ray'), []
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(run, 'k', killed), daemon=True)
    killer.start()
    par = run_jobs(jobs, run, workers=2, ray_address=cluster)   # joins the cluster, disconnects after
    killer.join(5)
    assert not pytest.importorskip('ray').is_initialized()
    assert killed, 'the worker was not killed'
    runner = read_artifact_meta(par[0])['runner']
    assert runner['attempt'] == 2 and runner['resumed_after_epochs'] >= 1 and runner['pid'] != killed[0]
    log = (run / 'jobs' / 'k.log').read_text()
    assert log.count(ATTEMPT) == 2 and 'resumed from its checkpoint after' in log
    assert digests(seq) == digests(par)
