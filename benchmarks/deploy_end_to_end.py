"""End to end: a short two-stage run, its decisions as bundles, `cherry-nb predict` on a NEW simulator folder,
`cherry-nb export`, and the checks of issue 11: the bundle reproduces the run's own test predictions; the torch
bundle, `predict` (predictions.csv) and onnxruntime give the same tier on every image; the pit-miss rate on the
new folder is compared with the run's test-split figure.

The bundles are built here from the run's parts the way the two-stage workflow will write them (until it does):
production mapping on the deployed stage-2 artifact; enhanced and guaranteed tiers on stage 1 with its temperature.

Run: python benchmarks/deploy_end_to_end.py [--work /tmp/e2e] [--epochs1 3] [--epochs2 1] [--alpha 0.05]
(its numbers were measured when the quick preset's validation split had 200 images, ~96 pits: enough to certify
alpha 0.05 at delta 0.1, not 0.01; it now has 600, ~290 pits, enough for alpha 0.01)
"""
import argparse, json, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from cherry_nb.core import read_json
from cherry_nb.data.synth import render_dataset
from cherry_nb.data import manifest_hash
from cherry_nb.studies.two_stage import TwoStageConfig, run_two_stage, workflow_data
from cherry_nb.learn.artifacts import read_artifact_meta
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.judge.tiers import ProductionPolicy, enhanced_two_class, guaranteed_tiers, tier_metrics
from cherry_nb.line.bundle import save_bundle, load_bundle
from cherry_nb.line.onnx import validate_onnx


def bundles(run: Path, cfg: TwoStageConfig, alpha: float, delta: float, beta: float):
    "The run's three decisions as bundles in <run>/bundles/, guaranteed tiers as the default."
    m, art = read_json(run / 'metrics.json'), run / 'artifacts'
    preds = pd.read_csv(run / 'predictions.csv'); val = pd.read_csv(run / 'manifest.csv').query("split == 'val'")
    s1v = preds.query("model == 'stage1' and split == 'val'")
    ts = TemperatureScaler.from_meta(m['temperature'])
    cal = dict(p_pit=s1v.p_pit.to_numpy(), y_pit=s1v.y_pit.to_numpy(), manifest_hash=manifest_hash(val), split='val')
    lin = read_artifact_meta(art / 'deployed')['lineage']
    keep = ('stage1_hash', 'stage2_hash', 'mining_manifest_hash', 'source_manifest_hash')
    kw = dict(lineage={k: lin[k] for k in keep}, run=run.name, overwrite=True)
    g = guaranteed_tiers(cal['p_pit'], cal['y_pit'], alpha, delta, beta)
    bd = run / 'bundles'
    prod = ProductionPolicy(cfg.prod_review, cfg.prod_reject)
    save_bundle(bd / 'production', art / 'deployed', prod, 'two-stage (seed)', **kw)
    save_bundle(bd / 'enhanced', art / 'stage1', enhanced_two_class(), 'enhanced 2-class', temperature=ts,
                calibration=cal, **kw)
    save_bundle(bd / 'guaranteed', art / 'stage1', g, 'guaranteed 2-class', temperature=ts, calibration=cal, **kw)
    (bd / 'default').write_text('guaranteed\n')
    return g, preds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='/tmp/cherry_e2e'); ap.add_argument('--epochs1', type=int, default=3)
    ap.add_argument('--epochs2', type=int, default=1); ap.add_argument('--alpha', type=float, default=0.05)
    ap.add_argument('--n-new', type=int, default=1200)
    a = ap.parse_args(); W = Path(a.work); run = W / 'run'; t0 = time.time()
    df, _ = workflow_data('', 'quick', 0, W / 'data', progress=False)
    cfg = TwoStageConfig(epochs1=a.epochs1, epochs2=a.epochs2, device='cpu')
    if not (run / 'metrics.json').exists(): run_two_stage(df, cfg, run, progress=False)
    print(f"two-stage run in {run}: {time.time() - t0:.0f} s")
    g, preds = bundles(run, cfg, a.alpha, 0.1, 0.05)
    test = df[df.split == 'test'].reset_index(drop=True)
    for name, model in (('enhanced', 'stage1'), ('production', 'stage2')):
        sc = load_bundle(run / 'bundles' / name).predict(list(test.path))
        ref = preds.query(f"model == '{model}' and split == 'test'").set_index('relpath').loc[test.relpath]
        print(f"{name} bundle vs the run's own predictions.csv on its {len(test)} test images: "
              f"max |dp| {np.abs(sc.p_pit - ref.p_pit.to_numpy()).max():.2e}")
    new = W / 'new'
    if not new.exists(): render_dataset(new, n_train=0, n_val=0, n_test=a.n_new, seed=7, progress=False)
    exe = str(Path(sys.executable).parent / 'cherry-nb')
    for cmd in (['predict', str(run), str(new), '--out', str(W / 'scored')],
                ['export', str(run), '--onnx', str(W / 'guaranteed.onnx'), '--check', str(new)]):
        r = subprocess.run([exe, *cmd], capture_output=True, text=True)
        print(f"$ cherry-nb {' '.join(cmd)}\n{r.stdout.strip()}")
        if r.returncode: sys.exit(r.stderr[-3000:])
    b = load_bundle(run / 'bundles' / 'guaranteed'); out = pd.read_csv(W / 'scored' / 'predictions.csv')
    sc = b.predict(list(out.path)); v = validate_onnx(b, W / 'guaranteed.onnx', list(out.path))
    print(f"torch bundle vs predictions.csv: tiers agree {(sc.tiers == out.tier.to_numpy()).sum()}/{len(out)}, "
          f"max |dp| {np.abs(sc.p_pit - out.p_pit.to_numpy()).max():.2e}; onnxruntime vs torch: tiers agree "
          f"{v['tiers_agree']}/{v['n']}, max |dp| {v['max_abs_diff']:.2e}, disagreements {v['disagreements']}")
    s1t = preds.query("model == 'stage1' and split == 'test'")
    run_m = tier_metrics(g.policy(s1t.p_pit.to_numpy()), s1t.y_pit.to_numpy()).pit_miss
    new_m = json.loads((W / 'scored' / 'summary.json').read_text())['metrics']['pit_miss']
    print(f"guaranteed tiers (alpha {a.alpha}, delta 0.1) pit-miss: the run's test split {run_m}; the new folder "
          f"{new_m['k']}/{new_m['n']} ({100 * new_m['rate']:.1f}%, "
          f"95% CI {100 * new_m['lo']:.1f}-{100 * new_m['hi']:.1f}%)")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == '__main__': main()
