"""The comparison's training jobs: in this process vs on Ray, Ray's overhead per job, and a projection to GPUs.

CPU part (the default). Renders a small simulator set, takes one seed's stage-1 training jobs of the comparison
from `compare.seed_jobs` (binary, 3-class, M-1 ensemble members, K out-of-fold models: all independent; the two
stage-2 jobs need the mining step in between and are left out) and runs them four times, each in a fresh run
folder over one shared, pre-filled image cache, each job with one torch thread (`cpus_per_job=1`):
  1. in this process, one after another (`workers=1`);
  2. on a local Ray with 2 workers (`backend='ray'`), their worker processes started cold;
  3. on the same Ray with 1 worker, its worker process already running;
  4. on the same Ray with 2 workers, both already running.
Ray is started once beforehand and its start-up time is reported on its own. Each job's own time (from loading
its data to writing its artifact) is read from its log; the rest of a run's wall time is spent outside the jobs
(scheduling, starting them). Ray's overhead per job is that outside time per job in run 3 minus the same in
run 1, as a share of the mean job time (target < 5%); measured this way it holds on a CPU shared with other
work, where plain wall times swing by tens of percent. Starting worker processes (importing torch in them) is
reported apart, run 2 - run 4: it is paid once per run_jobs call. The weights of all four runs
must be identical. Then a projection table: the full comparison (seed-scale preset, 5 seeds, 128 px,
20 epochs; jobs counted with `seed_jobs`) on 1, 4 and 16 GPUs, from the measured CPU time per image and epoch
and an ASSUMED GPU speed-up per job (`--gpu-speedup`), printed as such.

GPU part (`--gpu`, needs CUDA): jobs/hour on one GPU for convnextv2_atto and convnextv2_tiny at 128 px with
`gpus_per_job` 1, 0.5 and 0.25 (so 1, 2 and 4 jobs share the GPU), and the packing speed-up over 1.

    python benchmarks/bench_jobs.py [--n-train 240] [--n-val 80] [--size 64] [--epochs 2] [--members 3] [--folds 3]
                                    [--gpu-speedup 100]
    python benchmarks/bench_jobs.py --gpu [--gpu-jobs 4] [--gpu-epochs 3] [--gpu-n-train 2048]
"""
import argparse, heapq, os, re, shutil, tempfile, time
from dataclasses import replace
from pathlib import Path

from cherry_nb.core import sha256_file
from cherry_nb.studies.compare import CompareConfig, seed_jobs
from cherry_nb.data import read_image_folder, save_manifest
from cherry_nb.run.jobs import TrainJob, run_jobs
from cherry_nb.learn.artifacts import read_artifact_meta
from cherry_nb.run.ray_jobs import ray_session
from cherry_nb.data.synth import PRESETS, render_dataset
from cherry_nb.studies.two_stage import assign_folds


def make_data(root: Path, n_train: int, n_val: int, size: int, workers: int = 2):
    src = render_dataset(root / 'sim', n_train=n_train, n_val=n_val, n_test=0, size=size, workers=workers,
                         progress=False)
    return read_image_folder(src, progress=False)


def new_run(root: Path, name: str, df, folds: int) -> Path:
    run = root / name
    save_manifest(df, run / 'manifest.csv'); save_manifest(assign_folds(df, folds, 0), run / 'manifest_folds.csv')
    return run


def timed_run(jobs, run, cache, **kw) -> tuple[float, float]:
    "(wall time of `run_jobs`, sum of the jobs' own times from their logs' 'done in' lines)."
    t = time.perf_counter(); run_jobs(jobs, run, cache_dir=cache, progress=False, **kw)
    wall = time.perf_counter() - t
    own = [re.search(r'\] done in ([0-9.]+) s', (run / 'jobs' / f'{j.name}.log').read_text()) for j in jobs]
    return wall, sum(float(m.group(1)) for m in own)


def weights(run, jobs) -> tuple: return tuple(sha256_file(run / 'artifacts' / f'{j.name}.safetensors') for j in jobs)


def makespan(durations, g: int) -> float:
    "Wall time of jobs run in the given order on `g` slots, each job taking the next free slot."
    slots = [0.0] * g
    for d in durations: heapq.heappush(slots, heapq.heappop(slots) + d)
    return max(slots)


def projection(cost: float, speedup: float, size: int):
    "The full comparison's jobs and wall time on 1, 4 and 16 GPUs from `cost` CPU s per image-epoch at `size` px."
    full = CompareConfig(image_size=128, epochs=20, seeds=5)
    n_tr, n_va = PRESETS['seed-scale']['n_train'], PRESETS['seed-scale']['n_val']
    px = (full.image_size / size) ** 2
    def t(job: TrainJob) -> float:   # seconds on one GPU (ASSUMED speed-up over one CPU thread of this machine)
        frac = 1 - 1 / full.folds if job.exclude_fold is not None else 1.0
        head_only = job.trainable == 'head'   # stage 2: ASSUMED 1/3 of the cost per image (no backbone backward)
        e = job.train['epochs']
        return cost * px * (n_tr * frac + n_va / 3) * e * (1 / 3 if head_only else 1) / speedup
    J = seed_jobs(full, 0)
    s1 = [J['binary'], J['three_class'], *J['members'], *J['folds']]; s2 = [J['stage2_is'], J['stage2_oof']]
    d1, d2 = [t(j) for j in s1], [t(j) for j in s2]
    print(f"\nPROJECTION: full comparison = seed-scale preset ({n_tr} train / {n_va} val images), {full.seeds} seeds, "
          f"{full.image_size} px, {full.epochs} epochs (stage 2: {full.epochs2}), K={full.folds} folds, "
          f"M={full.members} members")
    print(f"  jobs per seed: {len(s1)} stage-1 (independent) + {len(s2)} stage-2 = {len(s1) + len(s2)}; "
          f"{full.seeds} seeds: {full.seeds * (len(s1) + len(s2))} jobs")
    print(f"  ASSUMPTION: one job on one GPU runs {speedup:g}x faster than on one CPU thread of this machine "
          f"(--gpu-speedup; replace it with the jobs/hour of --gpu); one job per GPU (gpus_per_job 1)")
    print(f"  measured: {cost * 1000:.2f} ms CPU per image-epoch at {size} px -> x{px:g} pixels at {full.image_size} "
          f"px; per job on a GPU: binary {d1[0] / 60:.1f} min, fold {d1[-1] / 60:.1f} min, "
          f"stage 2 {d2[0] / 60:.1f} min")
    head = ('as compare runs today (per seed: stage 1, then 2)', 'all seeds stage 1 in one call')
    print(f"  {'GPUs':>5} | {head[0]:>50} | {head[1]:>30}")
    for g in (1, 4, 16):
        today = full.seeds * (makespan(d1, g) + makespan(d2, g))
        pooled = makespan(d1 * full.seeds, g) + makespan(d2 * full.seeds, g)
        print(f"  {g:>5} | {today / 3600:>47.2f} h | {pooled / 3600:>27.2f} h")
    print("  (job time only: mining and evaluation between the stages add to both columns)")


def cpu_part(a):
    root = a.root
    t = time.perf_counter(); df = make_data(root, a.n_train, a.n_val, a.size); t_data = time.perf_counter() - t
    cfg = CompareConfig(image_size=a.size, epochs=a.epochs, folds=a.folds, members=a.members, batch_size=32,
                        device='cpu', arch=a.arch)
    J = seed_jobs(cfg, 0); jobs = [J['binary'], J['three_class'], *J['members'], *J['folds']]
    cache = root / 'cache'
    print(f"data: {len(df)} images at {a.size} px rendered in {t_data:.0f} s; {len(jobs)} stage-1 jobs of one seed "
          f"({a.arch}, {a.epochs} epochs, batch 32, 1 torch thread each): {', '.join(j.name for j in jobs)}")
    run_jobs([replace(jobs[0], name='warm', train={**jobs[0].train, 'epochs': 1})], new_run(root, 'warm', df, a.folds),
             cache_dir=cache, progress=False)           # fills the decoded-image cache (and warms this process)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    runs = {'seq': dict()}
    t = time.perf_counter()
    runs.update(ray2=dict(workers=2, backend='ray'), ray1w=dict(workers=1, backend='ray'),
                ray2w=dict(workers=2, backend='ray'))  # ray2 starts Ray's two worker processes; the rest reuse them
    with ray_session(num_cpus=2):                        # one local Ray for the three Ray runs
        t_ray = time.perf_counter() - t
        res = {k: timed_run(jobs, new_run(root, k, df, a.folds), cache, **kw) for k, kw in runs.items()}
    same = len({weights(root / k, jobs) for k in runs}) == 1
    per_job = [read_artifact_meta(root / 'seq' / 'artifacts' / j.name)['metrics']['train_seconds'] for j in jobs]
    n = len(jobs); mean = res['seq'][1] / n
    out = {k: (w - s) / n for k, (w, s) in res.items()}   # time per job outside the jobs themselves
    over, cold = out['ray1w'] - out['seq'], res['ray2'][0] - res['ray2w'][0]
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"per job (fit time, in this process): " + ', '.join(f"{j.name} {s:.1f} s" for j, s in zip(jobs, per_job)))
    print(f"RESULT local Ray start-up (once per run_jobs call with ray_address=''): {t_ray:.1f} s")
    for k, what in (('seq', 'in this process'), ('ray2', 'Ray, 2 workers (started cold)'),
                    ('ray1w', 'Ray, 1 worker (running)'), ('ray2w', 'Ray, 2 workers (running)')):
        print(f"RESULT {n} jobs {what}: wall {res[k][0]:.1f} s, the jobs' own time {res[k][1]:.1f} s, "
              f"outside the jobs {out[k]:+.2f} s per job")
    print(f"RESULT Ray overhead per job (outside-the-job time, Ray 1 worker running - in this process): {over:+.2f} s "
          f"= {100 * over / mean:+.1f}% of the mean job time {mean:.1f} s (target < 5%: "
          f"{'OK' if over / mean < 0.05 else 'MISSED'}); starting two worker processes once: {cold:.1f} s")
    print(f"RESULT 2 workers vs this process: {res['seq'][0] / res['ray2w'][0]:.2f}x faster on this 2-core machine; "
          f"identical weights in all four runs: {same}")
    cost = sum(per_job) / sum((a.n_train * (1 - 1 / a.folds if j.exclude_fold is not None else 1) + a.n_val / 3)
                              * a.epochs for j in jobs)
    projection(cost, a.gpu_speedup, a.size)


def gpu_part(a):
    import torch
    cuda = a.device.startswith('cuda')
    if cuda and not torch.cuda.is_available(): raise SystemExit("--gpu needs a CUDA GPU")
    root = a.root
    df = make_data(root, a.gpu_n_train, a.gpu_n_train // 4, 128, workers=min(8, os.cpu_count() or 1))
    cache = root / 'cache'
    print(f"GPU: {torch.cuda.get_device_name(0) if cuda else a.device}; {len(df)} images at 128 px; "
          f"{a.gpu_jobs} jobs per setting, {a.gpu_epochs} epochs, batch 32, from scratch")
    with ray_session():
        for arch in ('convnextv2_atto', 'convnextv2_tiny'):
            base = TrainJob('j', 'manifest.csv', arch=arch, image_size=128,
                            train=dict(epochs=a.gpu_epochs, batch_size=32, device=a.device))
            run_jobs([replace(base, name='warm', train={**base.train, 'epochs': 1})],
                     new_run(root, f'warm_{arch}', df, 3), cache_dir=cache, progress=False)
            rates = {}
            for g in (1.0, 0.5, 0.25):
                jobs = [replace(base, name=f'j{i}', train={**base.train, 'seed': i}) for i in range(a.gpu_jobs)]
                wall, _ = timed_run(jobs, new_run(root, f'{arch}_{g}', df, 3), cache, workers=0, backend='ray',
                                    gpus_per_job=g, cpus_per_job=2)
                rates[g] = 3600 * len(jobs) / wall
                print(f"RESULT {arch} 128 px, gpus_per_job {g:g} ({int(round(1 / g))} at once): {wall:.0f} s for "
                      f"{len(jobs)} jobs = {rates[g]:.0f} jobs/hour (packing speed-up {rates[g] / rates[1.0]:.2f}x)")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-train', type=int, default=240); p.add_argument('--n-val', type=int, default=80)
    p.add_argument('--size', type=int, default=64); p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--members', type=int, default=3); p.add_argument('--folds', type=int, default=3)
    p.add_argument('--arch', default='convnextv2_atto')
    p.add_argument('--gpu-speedup', type=float, default=100.0,
                   help='ASSUMED speed-up of one job on one GPU over one CPU thread of this machine (projection)')
    p.add_argument('--gpu', action='store_true', help='measure jobs/hour on one GPU (atto, tiny; 128 px)')
    p.add_argument('--gpu-jobs', type=int, default=4); p.add_argument('--gpu-epochs', type=int, default=3)
    p.add_argument('--gpu-n-train', type=int, default=2048); p.add_argument('--device', default='cuda')
    p.add_argument('--keep', action='store_true', help='keep the temporary data and run folders')
    a = p.parse_args()
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
    a.root = Path(tempfile.mkdtemp(prefix='bench_jobs_'))
    try: gpu_part(a) if a.gpu else cpu_part(a)
    finally:
        if a.keep: print(f"kept {a.root}")
        else: shutil.rmtree(a.root, ignore_errors=True)
