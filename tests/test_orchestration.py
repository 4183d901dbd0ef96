"""The orchestration layer: parameters declared once (workflow cells vs config dataclasses), the run-folder module,
the method registry, and the explorer opening both kinds of run."""
import json
from dataclasses import fields
from pathlib import Path

import numpy as np, pandas as pd, pytest
from cherry_nb.core import Rate, rate
from cherry_nb.faces.cli import list_workflows, workflow_params
from cherry_nb.run.runs import (RunFolder, check_predictions, read_metrics, write_metrics, write_predictions,
                                read_predictions)
from cherry_nb.studies.config import workflow_config
from cherry_nb.params import config_defaults, config_docs, ParamError, config_from
from cherry_nb.studies.compare import METHODS, METHOD_NEEDS, CompareConfig, roles_needed, SeedScores, apply_methods
from cherry_nb.studies.two_stage import TwoStageConfig
from cherry_nb.run.testing import fake_run


@pytest.mark.parametrize('wf', list_workflows())
def test_parameters_cell_is_generated_from_the_config(wf):
    "Every workflow's parameters cell is the one the export step writes from its config dataclass (one declaration)."
    from cherry_nb.faces.cli import generated_parameters, parameters_cell, workflow_path
    cls = workflow_config(wf)
    assert cls is not None, f"{wf} has no config dataclass in config.WORKFLOW_CONFIGS"
    assert not [k for k, v in config_docs(cls).items() if '=' in v], "papermill cannot parse a comment holding '='"
    assert parameters_cell(workflow_path(wf)) == generated_parameters(workflow_path(wf)), "run python tests/export.py"
    cell = {k: v for k, v in workflow_params(wf).items() if k != 'out_dir'}
    assert {k: v['default'] for k, v in cell.items()} == config_defaults(cls)


def test_config_checks_name_the_parameter():
    for bad, name in ((dict(epochs1='abc'), 'epochs1'), (dict(image_size=-5), 'image_size'),
                      (dict(mining_mode='both'), 'mining_mode'), (dict(low=0.9), 'low')):
        with pytest.raises(ParamError, match=name): config_from(TwoStageConfig, bad)
    with pytest.raises(ParamError, match="unknown"): config_from(CompareConfig, dict(methods='magic'))


def test_metrics_round_trip(tmp_path):
    m = dict(pit_miss=rate(3, 412), nested=[dict(r=rate(0, 5))], auroc=np.float64(0.9), nan=float('nan'))
    write_metrics(tmp_path, m)
    back = read_metrics(tmp_path)
    assert back['pit_miss'] == m['pit_miss'] and isinstance(back['nested'][0]['r'], Rate) and back['nan'] is None
    json.loads((tmp_path / 'metrics.json').read_text())              # strict JSON (no NaN literal)


def test_predictions_schema_checked_where_written(tmp_path):
    run = fake_run(tmp_path / 'run')
    df = read_predictions(run)
    with pytest.raises(ValueError, match='duplicate'): write_predictions(run, pd.concat([df, df.head(2)]))
    with pytest.raises(ValueError, match='p_pit'): write_predictions(run, df.assign(p_pit=2.0))
    assert read_predictions(run).equals(df)                           # the refused writes changed nothing


def test_registry_roles():
    assert roles_needed(['enhanced 2-class']) == ['binary']
    assert roles_needed(['two-stage (out-of-fold)']) == ['binary', 'folds', 'stage2_oof']
    assert set(roles_needed(list(METHODS))) == {'binary', 'three_class', 'members', 'folds', 'stage2_is', 'stage2_oof'}
    assert all(METHODS[m].__doc__ for m in METHODS) and set(METHOD_NEEDS) == set(METHODS)


def test_unavailable_method_gives_a_row():
    "Without label3, explicit 3-class is a row that says why, not a silent omission."
    from cherry_nb.judge.evaluate import Predictions
    rng = np.random.default_rng(0); n = 300
    y = rng.integers(0, 2, n); s = np.clip(y * 0.6 + rng.normal(0.2, 0.15, n), 0, 1)
    p = np.c_[1 - s, s]; pr = Predictions(np.log(np.clip(p, 1e-6, 1)), p, y, np.zeros((n, 1)))
    d = pd.DataFrame(dict(relpath=[f'{i}.png' for i in range(n)], path='', label=np.where(y == 1, 'pit', 'clean')))
    S = SeedScores(CompareConfig(methods='explicit 3-class, enhanced 2-class'), 0, d, d,
                   {('binary', 'val'): pr, ('binary', 'test'): pr}, names=dict(binary='binary'))
    rows, preds, outs = apply_methods(S)
    assert rows[0]['method'] == 'explicit 3-class' and 'label3' in rows[0]['note'] and 'pit_miss' not in rows[0]
    assert rows[1]['pit_miss'].n == int(y.sum()) and set(outs) == {'enhanced 2-class'}


def test_explorer_opens_compare_and_two_stage_runs(tmp_path):
    from cherry_nb.faces.explorer import ExplorerState
    two = fake_run(tmp_path / 'two', {'stage1': False, 'stage2': True})
    comp = fake_run(tmp_path / 'comp', {'enhanced 2-class | seed 0': False, 'explicit 3-class | seed 0': True})
    for run in (two, comp):
        st = ExplorerState(run)
        assert st.metrics().pit_miss.n > 0 and len(st.models) == 2
    st = ExplorerState(comp, model='explicit 3-class | seed 0', mode='argmax'); assert st.three_class
