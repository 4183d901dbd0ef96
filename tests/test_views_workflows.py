"""Both workflows end to end with several views per cherry (`-p views 3` on the `tiny` simulator preset): splits keep a
cherry's views together, the tiers are per cherry and the reports state the unit."""
import json, subprocess, sys
from pathlib import Path

import pandas as pd, pytest
from cherry_nb.synth import render_dataset

EXE = str(Path(sys.executable).parent / 'cherry-nb')
TINY = ['-p', 'preset', 'tiny', '-p', 'views', '3', '-p', 'arch', 'test_resnet', '-p', 'image_size', '32',
        '-p', 'aug', 'none', '-p', 'batch_size', '16']


def run_workflow(tmp_path, workflow, *args):
    r = subprocess.run([EXE, 'run', workflow, *TINY, '-p', 'data_root', str(tmp_path / 'data'), *map(str, args),
                        '--runs-dir', str(tmp_path / 'runs')], capture_output=True, text=True, cwd=tmp_path,
                       timeout=1200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return next((tmp_path / 'runs').iterdir()), r


def _one_split_per_cherry(run):
    p = pd.read_csv(run / 'predictions.csv')
    assert 'cherry_id' in p.columns and p.groupby('cherry_id').split.nunique().max() == 1
    assert p.groupby(['model', 'cherry_id']).size().max() == 3                 # three views per cherry and model
    return p


@pytest.mark.slow
def test_two_stage_with_three_views(tmp_path):
    run, r = run_workflow(tmp_path, 'two-stage', '-p', 'epochs1', 2, '-p', 'epochs2', 1, '-p', 'rule', 'max',
                          '-p', 'view_sampling', 'one')
    assert (tmp_path / 'data' / 'tiny-seed0-views3' / 'dataset.json').exists()
    _one_split_per_cherry(run)
    s1 = json.loads((run / 'artifacts' / 'stage1.json').read_text())     # one view per cherry per epoch
    assert s1['job']['group_col'] == 'cherry_id'
    man = pd.read_csv(run / 'manifest.csv')
    assert s1['metrics']['train_images'] == man[man.split == 'train'].cherry_id.nunique() < (man.split == 'train').sum()
    m = json.loads((run / 'metrics.json').read_text())
    n_test = m['cherry_tiers_test'][0]['pit_miss']['n']
    assert m['unit'].startswith('cherry') and 0 < n_test <= 48
    au = m['automation']                         # certified and oracle accept share per cherry, not per view
    assert au['unit'] == 'cherry' and au['rule'] == 'max' and au['certified_pit_miss']['n'] == n_test
    assert n_test < au['certified_accept_share']['n'] <= 48                  # test cherries, not their views
    rep = (run / 'report.md').read_text()
    assert 'Per cherry' in rep and 'Rates count cherries' in rep
    # the default bundle decides per cherry: new views of new cherries get one tier each
    from cherry_nb.deploy import load_bundle, resolve_bundle
    assert load_bundle(resolve_bundle(run)).unit == 'cherry' and {'cherry-production', 'cherry-enhanced'} <= set(
        p.name for p in (run / 'bundles').iterdir())
    new = render_dataset(tmp_path / 'new', n_train=0, n_val=0, n_test=10, size=32, views=3, seed=11, workers=1,
                         progress=False)
    r = subprocess.run([EXE, 'predict', str(run), str(new), '--out', str(tmp_path / 'scored')], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    g = pd.read_csv(tmp_path / 'scored' / 'groups.csv')
    assert len(g) == 10 and (g.n_views == 3).all() and set(g.tier) <= {'accept', 'review', 'reject'}


@pytest.mark.slow
def test_compare_with_three_views(tmp_path):
    run, r = run_workflow(tmp_path, 'compare', '-p', 'epochs', 1, '-p', 'epochs2', 1, '-p', 'folds', 2,
                          '-p', 'members', 2, '-p', 'seeds', 1, '-p', 'rule', 'mean')
    _one_split_per_cherry(run)
    res = json.loads((run / 'results.json').read_text())
    rows = [row for row in res['rows'] if 'pit_miss' in row]
    assert rows and all(row['unit'] == 'cherry (mean of its views)' for row in rows)
    assert all(row['pit_miss']['n'] <= 48 for row in rows)          # cherries, not their 3 views
    au = json.loads((run / 'metrics.json').read_text())['automation']
    ns = {a['certified_accept_share']['n'] for a in au['methods']}
    assert au['unit'] == 'cherry' and len(ns) == 1 and 0 < ns.pop() <= 48      # test cherries, not their views
    assert 'Every rate counts **cherries (mean of its views)**' in (run / 'report.md').read_text()
    from cherry_nb.deploy import load_bundle
    units = {b.name: load_bundle(b).unit for b in (run / 'bundles').iterdir() if b.is_dir()}
    assert units and set(units.values()) == {'cherry'}, units
