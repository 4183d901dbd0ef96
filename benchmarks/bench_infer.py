"""Inference speed of a decision bundle against the bare timm model, torch.compile and onnxruntime, and how many
lanes of a cherry line it serves.

Run:  python benchmarks/bench_infer.py                      # CPU: atto + tiny, 64 + 128 px, batch 1 / 32 / 256
      python benchmarks/bench_infer.py --archs convnextv2_atto --sizes 64 --batches 1 32 --modes bare bundle onnx
      python benchmarks/bench_infer.py --gpu                # GPU: AMP (bf16) + channels_last + compile, ORT CUDA/TRT
Modes (each times one forward pass on a batch already in memory, median of interleaved repetitions):
  bare     the timm model on a normalised float batch (what timm's own benchmarks time)
  bundle   the bundle's DecisionModule on uint8 pixels: normalisation + model + temperature + tiers
  compile  torch.compile of that DecisionModule (one compilation per model and size, dynamic batch; compiling on a
           CPU takes minutes, so by default only atto at batch 32 and 256 is compiled, plus the 224 px anchor)
  onnx     the exported bundle (export_onnx) in onnxruntime (CPU, or CUDA / TensorRT with --gpu)
  overhead what the bundle adds to the model, timed alone: normalising uint8 pixels, temperature, softmax, tiers
  --e2e N  end to end on N rendered images (128 px brought to 64 px, atto): a bare onnxruntime loop over the exported
           bundle (PIL decode + resize + run, one batch at a time) against `predict_folder` with engine torch and
           engine onnx (reading the folder's headers, checking the graph on 64 of its images, decoding two batches
           ahead in threads, writing the CSVs), in img/s; the ONNX export is cached before the timed runs:
           python benchmarks/bench_infer.py --e2e 2000
Random weights (speed does not depend on them). The machine is shared: the load average is printed with the table,
and modes are interleaved so that their ratios are fair even when the load drifts.
"""
import argparse, json, os, statistics, tempfile, time
from pathlib import Path
import numpy as np, torch

from cherry_nb.core import set_seed, CLASSES_2
from cherry_nb.learn.models import create_model
from cherry_nb.judge.tiers import ThresholdPolicy
from cherry_nb.line.bundle import save_bundle, load_bundle
from cherry_nb.line.onnx import export_onnx

IMG_PER_CHERRY, CHERRIES_PER_LANE_S, LANES = 30, (20, 30), 40      # the line: 40 lanes, ~30 images per cherry
TIMM_ANCHOR = 'timm: convnextv2_atto, torch.compile, batch 1, 224 px, laptop i7 CPU: 11.5 ms'


def make_bundle(arch: str, px: int, d: Path):
    set_seed(0)
    m = create_model(arch, CLASSES_2)
    return load_bundle(save_bundle(d / f'{arch}-{px}', m, ThresholdPolicy(), 'enhanced 2-class', temperature=1.3,
                                   input_size=px))


def runners(b, modes, batch, gpu, sessions, compiled):
    "name -> zero-argument callable running one batch in that mode."
    dev = torch.device('cuda' if gpu else 'cpu'); h, w = b.input_size
    x = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
    mod = b.module().to(dev)
    xd = x.to(dev); xf = mod.norm(xd)
    if gpu: xf = xf.contiguous(memory_format=torch.channels_last)
    amp = lambda: torch.autocast('cuda', dtype=torch.bfloat16, enabled=gpu)
    if gpu: mod.to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    def torch_run(f, inp):
        def run():
            with torch.inference_mode(), amp(): f(inp)
            sync()
        return run
    out = {}
    if 'bare' in modes: out['bare'] = torch_run(mod.members[0], xf)
    if 'bundle' in modes: out['bundle'] = torch_run(mod, xd)
    if 'overhead' in modes:                       # what the bundle adds to the model, timed alone
        with torch.inference_mode(), amp(): logits = mod.members[0](xf).float()
        def extra(x):
            probs = (logits / mod.temperature).softmax(1)
            return mod.tiers(probs[:, 1], probs, None), mod.norm(x)
        out['overhead'] = torch_run(extra, xd)
    if 'compile' in modes and compiled is not None: out['compile'] = torch_run(compiled, xd)
    if 'onnx' in modes and sessions is not None:
        xn = x.numpy()
        out['onnx'] = lambda: sessions.run(['p_pit', 'tier'], {'images': xn})
    return out


def time_interleaved(fns: dict, budget: float, max_reps: int) -> dict:
    "(median wall seconds, median CPU seconds of this process, reps) per call of each fn; calls interleaved."
    first = {}
    for k, f in fns.items():
        t = time.perf_counter(); f(); first[k] = time.perf_counter() - t
    spent = sum(first.values())
    reps = 1 if spent > 2 * budget else int(max(2, min(max_reps, budget / max(spent, 1e-6))))   # big batches: one rep
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time(); f()
            times[k].append((time.perf_counter() - t, time.process_time() - c))
    med = statistics.median
    return {k: (med(w for w, _ in v), med(c for _, c in v), len(v)) for k, v in times.items()}


def ort_session(path, gpu):
    import onnxruntime as ort
    so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not gpu: so.intra_op_num_threads, so.inter_op_num_threads = torch.get_num_threads(), 1
    avail = ort.get_available_providers()
    want = ['TensorrtExecutionProvider', 'CUDAExecutionProvider'] if gpu else []
    prov = [p for p in want if p in avail] + ['CPUExecutionProvider']
    return ort.InferenceSession(str(path), so, providers=prov), prov[0]


def bench_model(arch, px, a, d, rows):
    b = make_bundle(arch, px, d)
    sess = comp = None; extra = {}
    if 'onnx' in a.modes:
        t = time.perf_counter(); p = export_onnx(b, d / f'{arch}-{px}.onnx', check=True)
        sess, prov = ort_session(p, a.gpu); extra['onnx'] = f"export {time.perf_counter() - t:.0f} s, {prov}"
    if 'compile' in a.modes and arch in a.compile_archs:
        comp = torch.compile(b.module().to('cuda' if a.gpu else 'cpu'), dynamic=True)
        t = time.perf_counter()
        runners(b, ['compile'], max(2, min(a.compile_batches)), a.gpu, None, comp)['compile']()
        extra['compile'] = f"compile {time.perf_counter() - t:.0f} s (dynamic batch)"
    for batch in a.batches:
        c = comp if batch in a.compile_batches else None
        res = time_interleaved(runners(b, a.modes, batch, a.gpu, sess, c), a.budget, a.max_reps)
        for mode, (sec, cpu, n) in res.items():
            rows.append(dict(arch=arch, px=px, batch=batch, mode=mode, ms=1000 * sec, img_s=batch / sec, reps=n,
                             cpu_ms=1000 * cpu, img_cpu_s=batch / max(cpu, 1e-9)))
            print(f"  {arch:16} {px:4d} px  batch {batch:4d}  {mode:8} {batch / sec:9.0f} img/s  "
                  f"{1000 * sec:9.2f} ms/batch  {batch / max(cpu, 1e-9):9.0f} img/CPU-s  ({n} reps)", flush=True)
    for k, v in extra.items(): print(f"  {arch} {px} px {k}: {v}")


def anchor(a, d, rows):
    "Batch-1 latency of atto at 224 px (bare and compiled), next to timm's published CPU figure."
    b = make_bundle('convnextv2_atto', 224, d)
    modes = [m for m in ('bare', 'bundle', 'compile', 'onnx') if m in a.modes and m != 'onnx']
    comp = torch.compile(b.module().to('cuda' if a.gpu else 'cpu'), dynamic=False) if 'compile' in modes else None
    res = time_interleaved(runners(b, modes, 1, a.gpu, None, comp), a.budget, a.max_reps)
    for mode, (sec, cpu, n) in res.items():
        rows.append(dict(arch='convnextv2_atto', px=224, batch=1, mode=mode, ms=1000 * sec, img_s=1 / sec, reps=n,
                         cpu_ms=1000 * cpu, img_cpu_s=1 / max(cpu, 1e-9)))


def table(rows) -> str:
    bare = {(r['arch'], r['px'], r['batch']): r['img_s'] for r in rows if r['mode'] == 'bare'}
    eager = {(r['arch'], r['px'], r['batch']): r['img_s'] for r in rows if r['mode'] == 'bundle'}
    out = ['| model | px | batch | mode | img/s | ms / batch | img / CPU-s | vs bare | vs eager bundle |',
           '|---' * 9 + '|']
    for r in rows:
        k = (r['arch'], r['px'], r['batch'])
        vb = f"{r['img_s'] / bare[k]:.2f}" if k in bare else ''
        if r['mode'] == 'overhead' and k in bare: vb = f"{100 * bare[k] / r['img_s']:.2f}% of bare's time"
        ve = f"{r['img_s'] / eager[k]:.2f}" if k in eager and r['mode'] != 'overhead' else ''
        cs = f"{r['img_cpu_s']:.0f}" if 'img_cpu_s' in r else ''
        out.append(f"| {r['arch']} | {r['px']} | {r['batch']} | {r['mode']} | {r['img_s']:.0f} | {r['ms']:.2f} | {cs} "
                   f"| {vb} | {ve} |")
    return '\n'.join(out)


def line_rate(rows) -> str:
    lo, hi = (IMG_PER_CHERRY * c for c in CHERRIES_PER_LANE_S)
    out = [f"line: {LANES} lanes x {IMG_PER_CHERRY} images/cherry x {CHERRIES_PER_LANE_S[0]}-{CHERRIES_PER_LANE_S[1]} "
           f"cherries/lane/s = {LANES * lo / 1000:.0f}k-{LANES * hi / 1000:.0f}k images/s; "
           f"one lane needs {lo}-{hi} images/s"]
    for arch in dict.fromkeys(r['arch'] for r in rows):
        for px in sorted({r['px'] for r in rows if r['arch'] == arch}):
            best = max((r for r in rows if r['arch'] == arch and r['px'] == px and r['mode'] != 'overhead'),
                       key=lambda r: r['img_s'])
            s = best['img_s']
            out.append(f"  {arch} {px} px: best {s:.0f} img/s ({best['mode']}, batch {best['batch']}) serves "
                       f"{s / hi:.2f}-{s / lo:.2f} lanes "
                       f"({100 * s / (LANES * hi):.1f}-{100 * s / (LANES * lo):.1f}% of the line)")
            if 'img_cpu_s' in best:
                c = best['img_cpu_s'] * (os.cpu_count() or 1)
                out.append(f"    with all {os.cpu_count()} cores to itself (img per CPU-second x cores): "
                           f"about {c:.0f} img/s, {c / hi:.2f}-{c / lo:.2f} lanes")
    return '\n'.join(out)


def end_to_end(a):
    "img/s of a bare onnxruntime loop and of predict_folder (torch, onnx) on rendered 128 px images, 64 px bundle."
    from cherry_nb.data.synth import render_dataset
    from cherry_nb.data import load_image
    from cherry_nb.line.onnx import engine_graph, ort_session
    from cherry_nb.line.score import predict_folder
    rows, load0 = {}, os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as td:
        d = Path(td); b = make_bundle('convnextv2_atto', 64, d)
        root = render_dataset(d / 'imgs', n_train=0, n_val=0, n_test=a.e2e, size=128, workers=2, progress=False)
        paths = sorted(str(p) for p in Path(root).rglob('*.png'))
        sess = ort_session(engine_graph(b))              # also warms the cache predict_folder uses
        def bare():
            for i in range(0, len(paths), 64):
                x = np.stack([load_image(p, 64) for p in paths[i:i + 64]]).transpose(0, 3, 1, 2)
                sess.run(['p_pit', 'tier'], {'images': np.ascontiguousarray(x)})
        runs = {'bare onnxruntime loop': bare,
                'predict, engine torch': lambda: predict_folder(b, root, d / 'o1', engine='torch', progress=False,
                                                                verbose=False),
                'predict, engine onnx': lambda: predict_folder(b, root, d / 'o2', engine='onnx', progress=False,
                                                               verbose=False),
                "predict, engine onnx, check='decode' (decodes twice)": lambda: predict_folder(
                    b, root, d / 'o3', engine='onnx', check='decode', progress=False, verbose=False)}
        for rep in range(a.e2e_reps):              # interleaved repetitions: the load drifts on a shared machine
            for k, f in runs.items():
                t = time.perf_counter(); f(); rows.setdefault(k, []).append(len(paths) / (time.perf_counter() - t))
    bare_v = statistics.median(rows['bare onnxruntime loop'])
    print(f"end to end, {a.e2e} images 128 px -> 64 px, convnextv2_atto, CPU ({os.cpu_count()} cores), load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared machine: measured under load)")
    print('| run | img/s (median of %d) | vs bare onnxruntime loop |\n|---|---|---|' % a.e2e_reps)
    for k, v in rows.items(): print(f"| {k} | {statistics.median(v):.0f} | {statistics.median(v) / bare_v:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--archs', nargs='+', default=['convnextv2_atto', 'convnextv2_tiny'])
    ap.add_argument('--sizes', nargs='+', type=int, default=[64, 128])
    ap.add_argument('--batches', nargs='+', type=int, default=[1, 32, 256])
    ap.add_argument('--modes', nargs='+', default=['bare', 'bundle', 'compile', 'onnx', 'overhead'])
    ap.add_argument('--compile-archs', nargs='+', default=['convnextv2_atto'], help='models timed in compile mode')
    ap.add_argument('--compile-batches', nargs='+', type=int, default=[32, 256], help='batches timed in compile mode')
    ap.add_argument('--threads', type=int, default=None, help='torch and onnxruntime threads (default: torch default)')
    ap.add_argument('--budget', type=float, default=8.0, help='seconds of timed repetitions per (model, size, batch)')
    ap.add_argument('--max-reps', type=int, default=50)
    ap.add_argument('--no-anchor', action='store_true', help="skip atto at 224 px, batch 1 (timm's CPU anchor)")
    ap.add_argument('--gpu', action='store_true', help='CUDA: bf16 autocast, channels_last, compile, ORT CUDA/TensorRT')
    ap.add_argument('--json', default=None, help='also write the rows to this JSON file')
    ap.add_argument('--e2e', type=int, default=0, help='end to end on this many rendered images (see above), only')
    ap.add_argument('--e2e-reps', type=int, default=3, help='interleaved repetitions of the end-to-end runs')
    a = ap.parse_args()
    if a.e2e: return end_to_end(a)
    if a.gpu and not torch.cuda.is_available(): raise SystemExit('--gpu: no CUDA device here')
    if a.threads: torch.set_num_threads(a.threads)
    t0, load0 = time.time(), os.getloadavg()
    threads = f"torch and onnxruntime {torch.get_num_threads()} thread(s)"
    dev = (torch.cuda.get_device_name() if a.gpu
           else f"CPU ({os.cpu_count()} cores), {threads}")
    print(f"bench_infer on {dev}; load average {load0[0]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for arch in a.archs:
            for px in a.sizes: bench_model(arch, px, a, Path(td), rows)
        if not a.no_anchor: anchor(a, Path(td), rows)
    print(f"\n{dev}; load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"{time.time() - t0:.0f} s in all\n")
    print(table(rows)); print(); print(line_rate([r for r in rows if r['px'] != 224]))
    one = [r for r in rows if r['batch'] == 1 and r['arch'] == 'convnextv2_atto' and r['mode'] != 'overhead']
    print('\nbatch-1 latency (atto): ' + '; '.join(f"{r['px']} px {r['mode']} {r['ms']:.1f} ms" for r in one))
    print(f"published anchor: {TIMM_ANCHOR}")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(device=dev, load=[load0[0], os.getloadavg()[0]], rows=rows), indent=1))


if __name__ == '__main__': main()
