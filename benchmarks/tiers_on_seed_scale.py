"""Safety tiers of a trained binary model on the simulator's `seed-scale` val (calibration) and test splits.

Usage: python benchmarks/tiers_on_seed_scale.py RUN_DIR [alpha delta beta]
RUN_DIR is a finished two-stage run (its `artifacts/stage1` is the binary model). The seed-scale data is rendered
into data/seed-scale-seed0 when missing. Prints the default enhanced 2-class tiers (0.65 / 0.85) and the guaranteed
tiers (pit-miss <= alpha with probability >= 1 - delta, false-reject <= beta) on the test split, against truth.
"""
import sys
from pathlib import Path
import numpy as np
from cherry_nb.studies.two_stage import workflow_data, pit_truth
from cherry_nb.data import CachedImageDataset, make_loader, read_manifest
from cherry_nb.learn.artifacts import load_artifact
from cherry_nb.judge.evaluate import predict
from cherry_nb.judge.calibrate import TemperatureScaler
from cherry_nb.judge.tiers import enhanced_two_class, guaranteed_tiers, evaluate_policy

run = Path(sys.argv[1]); alpha, delta, beta = (map(float, sys.argv[2:5]) if len(sys.argv) > 4 else (0.01, 0.1, 0.05))
model, meta = load_artifact(run / 'artifacts' / 'stage1'); size = meta['input_size'][-1]
df, src = workflow_data(preset='seed-scale', progress=False)
seen = set(read_manifest(run / 'manifest.csv', progress=False, check='header').query("split == 'train'")['sha256'])
P = {}
for split in ('val', 'test'):
    d = df[df['split'] == split].reset_index(drop=True)
    assert not (set(d['sha256']) & seen), 'evaluation images overlap the model training images'
    P[split] = (d, predict(model, make_loader(CachedImageDataset(d, size, progress=False), 128), progress=False))
(dv, pv), (dt, pt) = P['val'], P['test']
ts = TemperatureScaler.fit(pv.logits, pv.labels)
sv, st = ts.probs(pv.logits)[:, 1], ts.probs(pt.logits)[:, 1]
yv, yt = pit_truth(dv), pit_truth(dt)
print(f"model {run.name}/stage1; calibration: {len(dv)} val cherries ({yv.sum()} pits), T = {ts.temperature:.3f}; "
      f"test: {len(dt)} ({yt.sum()} pits)")
for name, pol in (('enhanced 2-class (0.65 / 0.85)', enhanced_two_class()),
                  (f'guaranteed (alpha={alpha:g}, delta={delta:g}, beta={beta:g})',
                   guaranteed_tiers(sv, yv, alpha, delta, beta).policy)):
    m = evaluate_policy(pol, st, yt)
    print(f"{name}: thresholds {pol.to_dict().get('review')}/{pol.to_dict().get('reject')}\n  pit-miss {m.pit_miss}\n"
          f"  review {m.review}\n  false-reject {m.false_reject}")
