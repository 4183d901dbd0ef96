"""Benchmark: start-up of `cherry-nb` for help, `list` and refused parameters (the minimum of a few runs each).

Goal: under 1.5 s on a 2-core machine for help, list and every refusal that needs no torch (the last three
cases import the workflow code); a refusal must also leave no run folder.
Run: python benchmarks/bench_cli.py [--repeat 3] [--src DIR]   (--src: the checkout whose cherry_nb is timed,
e.g. an older one for a before/after table; default: this checkout)
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

CASES = [('help', ['--help'], 0), ('list', ['list'], 0), ('run two-stage --help', ['run', 'two-stage', '--help'], 0),
         ('run (no workflow)', ['run'], 2),
         ('unknown name -p epoch1 3', ['run', 'two-stage', '-p', 'epoch1', '3'], 2),
         ('missing -p data /nonexistent', ['run', 'two-stage', '-p', 'data', '/nonexistent'], 2),
         ('missing -p metadata /nonexistent.csv', ['run', 'two-stage', '-p', 'metadata', '/nonexistent.csv'], 2),
         ('no GPU -p device cuda', ['run', 'two-stage', '-p', 'device', 'cuda'], 2),
         ('no GPU -p device mps', ['run', 'two-stage', '-p', 'device', 'mps'], 2),
         ('type -p epochs1 abc', ['run', 'two-stage', '-p', 'epochs1', 'abc'], 2),
         ('range -p image_size -5', ['run', 'two-stage', '-p', 'image_size', '-5'], 2),
         ('choice -p aug strong', ['run', 'two-stage', '-p', 'aug', 'strong'], 2),
         ('too small -p image_size 1', ['run', 'two-stage', '-p', 'image_size', '1'], 2),
         # these need the workflow's code (torch, timm): a predicate, a cross-parameter check, the model's strides
         ('predicate -p arch convnext_giant_xxl', ['run', 'two-stage', '-p', 'arch', 'convnext_giant_xxl'], 2),
         ('cross -p low 0.8', ['run', 'two-stage', '-p', 'low', '0.8'], 2),
         ('model -p image_size 16', ['run', 'two-stage', '-p', 'image_size', '16'], 2)]


def once(args, src, cwd) -> tuple:
    env = {**os.environ, 'PYTHONPATH': str(src)}
    exe = str(Path(sys.executable).parent / 'cherry-nb')          # the console script, as a user runs it
    t = time.perf_counter()
    r = subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, env=env)
    return time.perf_counter() - t, r


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--src', default=str(Path(__file__).resolve().parents[1]), help='checkout whose cherry_nb to time')
    ap.add_argument('--only', default='', help='run only the cases whose label holds this text')
    a = ap.parse_args()
    print(f"{'case':40} {'min s':>6}  exit  {'first line of the message'}")
    for label, args, want in CASES:
        if a.only not in label: continue
        with tempfile.TemporaryDirectory() as d:
            times, r = [], None
            for _ in range(a.repeat): dt, r = once(args, a.src, d); times.append(dt)
            made = sorted(p.name for p in Path(d).iterdir())
        msg = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or [''])[-1][:90]
        flag = '' if r.returncode == want and not made else f"  UNEXPECTED (exit {r.returncode}, made {made})"
        ok = 'OK' if min(times) < 1.5 else 'SLOW'
        print(f"{label:40} {min(times):6.2f}  {r.returncode:>4}  {ok:4} {msg}{flag}", flush=True)
