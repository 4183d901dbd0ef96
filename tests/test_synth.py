"""Tests of the cherry field simulator (cherry_nb.data.synth) on tiny real datasets written to tmp_path."""
import copy, hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cherry_nb.core import read_json, CLASSES_2
from cherry_nb.data.synth import (PRESETS, TRUTH_COLS, CONFOUNDERS, SynthConfig, draw_cherry, label3_from_truth,
                                  read_truth, render_cherry, render_dataset, sample_params)

TINY = dict(n_train=16, n_val=8, n_test=8, size=64, progress=False)


def _digest(root: Path) -> dict:
    "sha256 of every file under root (relative path -> hash)."
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp('synth') / 'tiny', seed=3, pit_as_clean=0.2, clean_as_pit=0.1,
                          workers=2, **TINY)


def test_render_cherry_deterministic_and_shaped():
    cfg = SynthConfig(size=48)
    a, ta = render_cherry(np.random.default_rng((5, 1)), cfg)
    b, tb = render_cherry(np.random.default_rng((5, 1)), cfg)
    c, _ = render_cherry(np.random.default_rng((5, 2)), cfg)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and ta == tb and not np.array_equal(a, c)
    assert a[..., 0].astype(int).mean() > a[..., 1].astype(int).mean()   # backlit cherries are red


def test_same_seed_identical_files_any_worker_count(tmp_path, tiny):
    again = render_dataset(tmp_path / 'again', seed=3, pit_as_clean=0.2, clean_as_pit=0.1, workers=1, **TINY)
    da, db = _digest(tiny), _digest(again)
    assert len([k for k in da if k.endswith('.png')]) == 32
    assert da == db                                   # every PNG, metadata.csv and dataset.json byte-identical
    other = render_dataset(tmp_path / 'other', seed=4, pit_as_clean=0.2, clean_as_pit=0.1, workers=2, **TINY)
    do = _digest(other)
    assert do['metadata.csv'] != da['metadata.csv']
    same = set(da) & set(do)
    assert sum(da[k] == do[k] for k in same if k.endswith('.png')) == 0


def test_images_do_not_depend_on_other_counts(tmp_path, tiny):
    small = render_dataset(tmp_path / 'small', seed=3, n_train=4, n_val=8, n_test=0, size=64, progress=False)
    a, b = read_truth(tiny), read_truth(small)
    va, vb = a[a.relpath.str.startswith('val/')], b[b.relpath.str.startswith('val/')]
    # same cherries in val (labels may differ only by the injected noise)
    assert list(va.cherry_id) == list(vb.cherry_id) and (va.visibility.values == vb.visibility.values).all()
    for ca, ra, rb in zip(va.cherry_id, va.relpath, vb.relpath):
        assert (tiny / ra).read_bytes() == (small / rb).read_bytes(), ca
    assert not (small / 'test').exists()


def test_truth_columns_and_consistency(tiny):
    df = read_truth(tiny)
    meta = read_json(tiny / 'dataset.json')
    cfg = SynthConfig(**meta['config'])
    assert list(df.columns[:len(TRUTH_COLS)]) == list(TRUTH_COLS)
    assert {'snr', 'mimic', 'pit_r', 'pit_absorb', 'exposure', 'jpeg_q', 'motion_px'} <= set(df.columns)
    # no clash with the manifest
    assert not {'label', 'split', 'path', 'sha256', 'width', 'height', 'mode'} & set(df.columns)
    parts = df.relpath.str.split('/')
    assert (parts.str[1] == df.given_label).all() and set(parts.str[0]) == {'train', 'val', 'test'}
    assert all((tiny / r).is_file() for r in df.relpath) and len(list(tiny.rglob('*.png'))) == len(df)
    assert df.cherry_id.is_unique
    assert (df.pit_present.astype(bool) == (df.pit_kind != 'none')).all()
    assert set(df.pit_kind) <= {'none', 'whole', 'fragment'}
    assert df.visibility.between(0, 1).all() and (df.visibility[df.pit_present == 0] == 0).all()
    assert (df.true_label == np.where(df.pit_present == 1, 'pit', 'clean')).all()
    assert (df.ambiguous == (df.label3 == 'maybe')).all()
    expect = [label3_from_truth(p, v, m, cfg) for p, v, m in zip(df.pit_present, df.visibility, df.mimic)]
    assert list(df.label3) == expect
    assert ((df.label3 == 'pit') <= (df.pit_present == 1)).all()
    assert ((df.label3 == 'clean') <= (df.pit_present == 0)).all()
    kept = df.noise_flipped == 0
    assert (df.given_label[kept] == df.true_label[kept]).all() and (df.given_label[~kept] != df.true_label[~kept]).all()
    for c in df.confounders[df.confounders != '']:
        assert set(c.split(';')) <= set(CONFOUNDERS)
    assert meta['generator'] == 'cherry_nb.data.synth' and meta['seed'] == 3
    assert meta['counts'] == dict(train=16, val=8, test=8)


def test_noise_rates_exact(tmp_path):
    root = render_dataset(tmp_path / 'noisy', seed=1, n_train=300, n_val=100, n_test=0, size=32, pit_as_clean=0.15,
                          clean_as_pit=0.05, progress=False)
    df = read_truth(root)
    df['split'] = df.relpath.str.split('/').str[0]
    for split, d in df.groupby('split'):
        pits, cleans = d[d.true_label == 'pit'], d[d.true_label == 'clean']
        assert (pits.given_label == 'clean').sum() == round(0.15 * len(pits)), split
        assert (cleans.given_label == 'pit').sum() == round(0.05 * len(cleans)), split
    assert df.noise_flipped.sum() == (df.given_label != df.true_label).sum() > 0
    tr = df[df.split == 'train']
    assert abs(tr.pit_present.mean() - 0.5) < 0.1              # class balance of the truth
    with pytest.raises(ValueError):
        render_dataset(tmp_path / 'bad', n_train=4, n_val=0, n_test=0, size=32, pit_as_clean=1.5, progress=False)


def test_default_difficulty_ambiguity_and_visibility():
    "About 5-10% genuinely ambiguous; visibility measures how much the pit changes the pixels."
    cfg = SynthConfig(size=64)
    rows, diffs, vis = [], [], []
    for i in range(400):
        rng = np.random.default_rng((11, i))
        p = sample_params(rng, cfg)
        if p['pit_present'] and len(vis) < 80:
            r2 = copy.deepcopy(rng)
            img, v = draw_cherry(p, cfg, rng)
            ref, _ = draw_cherry({**p, 'pit_present': 0}, cfg, r2)   # same cherry, same noise, no pit
            diffs.append(np.abs(img.astype(float) - ref).sum()); vis.append(v['visibility'])
        rows.append(render_cherry(np.random.default_rng((11, i)), cfg)[1])
    df = pd.DataFrame(rows)
    assert 0.03 <= df.ambiguous.mean() <= 0.13, df.ambiguous.mean()
    assert (df.label3[df.pit_present == 1] == 'maybe').mean() > 0.02
    assert (df.label3[df.pit_present == 0] == 'maybe').mean() > 0.01
    frag, whole = df.visibility[df.pit_kind == 'fragment'], df.visibility[df.pit_kind == 'whole']
    assert frag.median() < whole.median()
    rho = pd.Series(vis).rank().corr(pd.Series(diffs).rank())
    assert rho > 0.6, rho


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_presets_counts(tmp_path):
    assert PRESETS['seed-scale'] == dict(n_train=3676, n_val=1226, n_test=1226)
    assert PRESETS['quick'] == dict(n_train=600, n_val=600, n_test=400)
    root = render_dataset(tmp_path / 'quick', 'quick', size=16, progress=False)
    df = read_truth(root)
    assert df.relpath.str.split('/').str[0].value_counts().to_dict() == dict(train=600, val=600, test=400)
    assert read_json(root / 'dataset.json')['config']['size'] == 16
    with pytest.raises(ValueError, match='unknown preset'):
        render_dataset(tmp_path / 'x', 'huge', progress=False)


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / 'ds'
    render_dataset(out, n_train=6, n_val=0, n_test=0, size=32, progress=False)
    before = _digest(out)
    with pytest.raises(FileExistsError, match='not empty'):
        render_dataset(out, n_train=6, n_val=0, n_test=0, size=32, seed=1, progress=False)
    assert _digest(out) == before
    (out / 'notes.txt').write_text('mine')
    render_dataset(out, n_train=5, n_val=2, n_test=0, size=32, seed=1, overwrite=True, progress=False)
    assert (out / 'notes.txt').read_text() == 'mine'                   # only its own output is replaced
    assert len(list(out.rglob('*.png'))) == 7 and read_json(out / 'dataset.json')['seed'] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temporary folders left behind
    foreign = tmp_path / 'foreign'; (foreign / 'train' / 'pit').mkdir(parents=True)
    (foreign / 'train' / 'pit' / 'x.png').write_bytes(b'not ours')
    with pytest.raises(FileExistsError, match='not written by'):
        render_dataset(foreign, n_train=4, n_val=0, n_test=0, size=32, overwrite=True, progress=False)
    assert (foreign / 'train' / 'pit' / 'x.png').read_bytes() == b'not ours'
    (tmp_path / 'empty').mkdir()
    assert len(list(render_dataset(tmp_path / 'empty', n_train=3, n_val=0, n_test=0, size=32,
                                   progress=False).rglob('*.png'))) == 3


def test_read_with_data_layer(tiny):
    data = pytest.importorskip('cherry_nb.data')
    m = data.read_image_folder(tiny, progress=False)
    truth = read_truth(tiny)
    assert len(m) == len(truth) == 32
    assert set(m.label) <= set(CLASSES_2) and (m.label == m.given_label).all()
    assert (m.split == m.relpath.str.split('/').str[0]).all() and set(m.split) == {'train', 'val', 'test'}
    assert (m.width == 64).all() and (m.height == 64).all() and (m['mode'] == 'RGB').all()
    j = m.merge(truth, on='relpath', suffixes=('', '_t'))
    assert (j.pit_kind == j.pit_kind_t).all() and np.allclose(j.visibility, j.visibility_t)


def test_shift_family_presets(tmp_path):
    "Each preset of the shift family renders with truth, records its settings, and changes what it says it changes."
    from cherry_nb.data.synth import PRESET_FAMILIES, preset_config, config_record
    fam = PRESET_FAMILIES['shift']
    assert {'shift-light', 'shift-lens', 'shift-fruit', 'shift-pit', 'shift-size', 'shift-confound'} <= set(fam)
    base = SynthConfig()
    for name in fam:
        root = render_dataset(tmp_path / name, name, n_train=12, n_val=4, n_test=4, workers=1, progress=False)
        meta, df = read_json(root / 'dataset.json'), read_truth(root)
        assert meta['preset'] == name and SynthConfig(**meta['config']) == preset_config(name)
        assert len(df) == 20 and df.true_label.isin(CLASSES_2).all() and df.visibility.between(0, 1).all()
        assert preset_config(name) != base
    assert 'p_speck' not in config_record(preset_config('hard'))          # earlier presets keep their record
    ps = [sample_params(np.random.default_rng([2, i]), preset_config('shift-confound')) for i in range(300)]
    clean_specks = [p for p in ps if p['speck'] and not p['pit_present']]
    assert len(clean_specks) > 30 and np.median([p['mimic'] for p in clean_specks]) > base.maybe_mimic
    same = [sample_params(np.random.default_rng([2, i]), base)['pit_present'] for i in range(300)]
    assert [p['pit_present'] for p in ps] == same                          # the same cherries hold pits
    img, t = render_cherry(np.random.default_rng(1), preset_config('shift-size'))
    assert img.shape == (48, 48, 3)
