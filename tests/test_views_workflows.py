"""Both workflows end to end with several views per cherry (`-p views 3` on the `tiny` simulator preset): splits keep a
cherry's views together, the tiers are per cherry and the reports state the unit."""
import json, subprocess, sys
from pathlib import Path

import pandas as pd, pytest
from cherry_nb.data.synth import render_dataset

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
    from cherry_nb.line.bundle import load_bundle, resolve_bundle
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
    from cherry_nb.line.bundle import load_bundle
    units = {b.name: load_bundle(b).unit for b in (run / 'bundles').iterdir() if b.is_dir()}
    assert units and set(units.values()) == {'cherry'}, units


# A user's folder of views: `<label>/<cherry>_v<k>.png`, no split folders and no metadata: only the file names say which
# images are views of one cherry (issue 22). Both workflows must group by them exactly as by a `cherry_id` column.
NAMED = ['-p', 'arch', 'test_resnet', '-p', 'image_size', '32', '-p', 'aug', 'none', '-p', 'batch_size', '32',
         '-p', 'alpha', '0.2', '-p', 'delta', '0.2', '-p', 'beta', '0.2']


def named_folder(tmp_path) -> Path:
    import shutil
    sim = render_dataset(tmp_path / 'sim', preset='tiny', views=3, workers=1, progress=False)
    out = tmp_path / 'named'
    for p in sim.glob('*/*/*.png'):
        (out / p.parent.name).mkdir(parents=True, exist_ok=True); shutil.move(p, out / p.parent.name / p.name)
    shutil.rmtree(sim)
    assert not list(out.glob('*.csv')) and len(list(out.glob('*/*_v2.png'))) == 176
    return out


def run_named(tmp_path, workflow, *args):
    src = named_folder(tmp_path)
    r = subprocess.run([EXE, 'run', workflow, '-p', 'data', str(src), *NAMED, *map(str, args),
                        '--runs-dir', str(tmp_path / 'runs')], capture_output=True, text=True, cwd=tmp_path,
                       timeout=1200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert 'views grouped by file names <cherry>_v<k>' in r.stdout
    return next((tmp_path / 'runs').iterdir())


def _whole_cherries(run) -> pd.DataFrame:
    "The manifest's cherries come from the names, and each lies in one split."
    man = pd.read_csv(run / 'manifest.csv' if (run / 'manifest.csv').exists() else run / 'seed0' / 'manifest.csv')
    assert (man.cherry_id == man.relpath.str.extract(r'([^/]+)_v\d+\.png$')[0]).all()
    assert man.groupby('cherry_id').split.nunique().max() == 1 and man.groupby('cherry_id').size().eq(3).all()
    p = _one_split_per_cherry(run)
    assert set(p.cherry_id) <= set(man.cherry_id)
    return man


@pytest.mark.slow
def test_two_stage_on_named_views(tmp_path):
    run = run_named(tmp_path, 'two-stage', '-p', 'epochs1', 2, '-p', 'epochs2', 1)
    man = _whole_cherries(run)
    m = json.loads((run / 'metrics.json').read_text())
    val = man[man.split == 'val']
    assert 'error' in m['guaranteed'] and 'cherry' in m['guaranteed']['error']   # no per-image certificate on views
    cg = m['cherry_guaranteed']
    assert 'error' not in cg, cg
    assert cg['n_cherries'] == val.cherry_id.nunique() and cg['n_views'] == len(val) == 3 * cg['n_cherries']
    bundles = {p.name for p in (run / 'bundles').iterdir() if p.is_dir()}
    assert {'cherry-production', 'cherry-enhanced', 'cherry-guaranteed'} <= bundles and 'guaranteed' not in bundles
    from cherry_nb.line.bundle import load_bundle, resolve_bundle
    assert load_bundle(resolve_bundle(run)).unit == 'cherry' and load_bundle(run / 'bundles/cherry-guaranteed').unit \
        == 'cherry'
    assert 'Rates count cherries' in (run / 'report.md').read_text()


@pytest.mark.slow
def test_compare_on_named_views(tmp_path):
    run = run_named(tmp_path, 'compare', '-p', 'epochs', 1, '-p', 'seeds', 1,
                    '-p', 'methods', 'enhanced 2-class,guaranteed 2-class')
    man = _whole_cherries(run)
    res = json.loads((run / 'results.json').read_text())
    assert all(row['unit'] == 'cherry (max of its views)' for row in res['rows'] if 'pit_miss' in row)
    cert = res['guaranteed'][0]
    n_val = man[man.split == 'val'].cherry_id.nunique()
    assert cert['unit'] == 'cherry' and cert['n_cherries'] == n_val and cert['n_views'] == 3 * n_val
    assert f'per cherry (max of its views; {n_val} calibration cherries)' in (run / 'report.md').read_text()
    from cherry_nb.line.bundle import load_bundle
    units = {b.name: load_bundle(b).unit for b in (run / 'bundles').iterdir() if b.is_dir()}
    assert set(units) == {'enhanced-2-class', 'guaranteed-2-class'} and set(units.values()) == {'cherry'}, units


def test_views_refused_on_ungrouped_data(tmp_path):
    "-p views N on a folder that names no cherry is refused before a run folder exists, naming the parameter."
    from cherry_nb.faces.cli import run_workflow
    from cherry_nb.params import ParamError
    src = render_dataset(tmp_path / 'flat', n_train=4, n_val=4, n_test=4, size=32, workers=1, progress=False)
    (src / 'metadata.csv').unlink()
    for wf in ('two-stage', 'compare'):
        with pytest.raises(ParamError, match=r"views = 3 needs several views.*<cherry>_v<k>.*cherry_id"):
            run_workflow(wf, dict(data=str(src), views=3), runs_dir=tmp_path / 'runs')
    assert not (tmp_path / 'runs').exists()
