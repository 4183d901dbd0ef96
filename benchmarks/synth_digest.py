"""Digest of rendered simulator output (images, truth rows, a small quick-preset dataset) as JSON.

A refactor of cherry_nb.data.synth must leave every digest unchanged: run before and after, then compare the files.
Usage: python benchmarks/synth_digest.py OUT.json
"""
import hashlib, json, sys, tempfile
from pathlib import Path
import numpy as np
from cherry_nb.data.synth import render_cherry, render_dataset, SynthConfig, sample_params
from cherry_nb.core import to_json
out = {}
for size, n in ((128, 60), (64, 300), (40, 60)):
    h = hashlib.sha256(); cfg = SynthConfig(size=size)
    for i in range(n):
        img, truth = render_cherry(np.random.default_rng([0, 1, 0, i]), cfg)
        h.update(img.tobytes()); h.update(to_json(truth, indent=None).encode())
    out[f'render_cherry_{size}'] = h.hexdigest()
h = hashlib.sha256()
for i in range(2000): h.update(to_json(sample_params(np.random.default_rng([7, i]), SynthConfig()), indent=None).encode())
out['sample_params'] = h.hexdigest()
with tempfile.TemporaryDirectory() as d:
    root = render_dataset(Path(d) / 'q', 'quick', n_train=40, n_val=20, n_test=20, size=64, workers=1, progress=False,
                          pit_as_clean=0.1)
    for p in sorted(root.rglob('*')):
        if p.is_file(): out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
json.dump(out, open(sys.argv[1], 'w'), indent=1)
print(len(out), 'hashes')
