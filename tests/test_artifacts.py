"""Artifacts: the weights file (and so `weights_sha256`) is the same for the same tensors in every process."""
import json, subprocess, sys
import pytest
from cherry_nb.learn.artifacts import load_artifact, read_artifact_meta

PROG = """
import sys, torch
from cherry_nb.core import set_seed, CLASSES_2
from cherry_nb.learn.models import create_model
from cherry_nb.learn.artifacts import save_artifact
set_seed(0)
save_artifact(create_model('test_resnet', CLASSES_2), sys.argv[1], dict(input_size=(3, 32, 32), notes=sys.argv[1]))
"""

@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_weights_sha256_is_reproducible_across_processes(tmp_path):
    for name in ('a', 'b', 'c'):
        subprocess.run([sys.executable, '-c', PROG, str(tmp_path / name)], check=True, capture_output=True, timeout=300)
    metas = [read_artifact_meta(tmp_path / n) for n in ('a', 'b', 'c')]
    assert len({m['weights_sha256'] for m in metas}) == 1
    assert len({(tmp_path / f'{n}.safetensors').read_bytes() for n in ('a', 'b', 'c')}) == 1
    model, meta = load_artifact(tmp_path / 'a')
    assert model.pretrained_cfg['input_size'] == (3, 32, 32) and model.pretrained_cfg['fixed_input_size']
