"""cherry_nb.data against real image files written with Pillow in tmp_path."""
import gc, logging, os, shutil, struct, warnings, zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Subset

from cherry_nb.core import sha256_file
from cherry_nb.data import (BACKGROUND, MANIFEST_COLS, CachedImageDataset, ConversionWarning, DataError, DataWarning,
                            LeakageWarning, assign_splits, check_leakage, decode_stats, make_loader, manifest_hash,
                            read_image_folder, read_manifest, save_manifest, show_grid)
from cherry_nb.data import BatchSlicer, SplitError, check_splits, group_codes, one_per_group, scan_folder

Q = dict(progress=False)


def cherry(path, pit=False, seed=0, size=(24, 24), fmt=None):
    "A red disc (with a dark blob when `pit`) on a light background, saved at `path`."
    r = np.random.default_rng(seed)
    im = Image.new('RGB', size, (235, 230, 220)); d = ImageDraw.Draw(im)
    w, h = size; red = (int(r.integers(120, 220)), int(r.integers(0, 40)), 30)
    d.ellipse([w * .15, h * .15, w * .85, h * .85], fill=red)
    if pit: d.ellipse([w * .4, h * .4, w * .6, h * .6], fill=(60, 30, 20))
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True); im.save(path, fmt)
    return path


def make_tree(root, layout):
    "layout: {split or '': {class: n}}; file names are globally numbered so contents differ."
    k = 0
    for split, classes in layout.items():
        for c, n in classes.items():
            for _ in range(n):
                cherry(Path(root, split, c, f'{k:03d}.png'), c == 'pit', k); k += 1
    return Path(root)


def snapshot(root):
    return {p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(Path(root).rglob('*')) if p.is_file()}


def tiny_png_header(w, h):
    "A PNG that claims w x h pixels (header only): enough for Pillow to open it and see the size."
    def chunk(t, data):
        return struct.pack('>I', len(data)) + t + data + struct.pack('>I', zlib.crc32(t + data) & 0xffffffff)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(b'IEND', b'')


# ---------------------------------------------------------------- reading folders

def test_read_flat_folder_with_metadata(tmp_path, caplog):
    root = make_tree(tmp_path / 'd', {'': {'clean': 3, 'pit': 2}})
    (root / 'clean' / 'notes.txt').write_text('x')
    cherry(root / 'pit' / '.hidden.png', True)
    cherry(root / '.ipynb_checkpoints' / 'pit' / 'x.png')
    pd.DataFrame(dict(relpath=['pit/003.png', 'clean/000.png'], cherry_id=[7, 8],
                      pit_kind=['whole', 'none'])).to_csv(root / 'metadata.csv', index=False)
    with caplog.at_level(logging.DEBUG, logger='cherry_nb'):
        df = read_image_folder(root, **Q)
    assert list(df.columns) == [*MANIFEST_COLS, 'cherry_id', 'pit_kind']
    assert list(df.relpath) == ['clean/000.png', 'clean/001.png', 'clean/002.png', 'pit/003.png', 'pit/004.png']
    assert list(df.label) == ['clean'] * 3 + ['pit'] * 2 and set(df.split) == {''}
    assert df.sha256[0] == sha256_file(root / 'clean/000.png') and df.path[0] == str(root / 'clean/000.png')
    assert (df.width == 24).all() and (df.height == 24).all() and set(df['mode']) == {'RGB'}
    assert df.set_index('relpath').loc['pit/003.png', 'cherry_id'] == 7 and df.pit_kind.isna().sum() == 3
    debug = ' '.join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert 'notes.txt' in debug and '.hidden.png' in debug and '.ipynb_checkpoints' in debug


def test_read_split_folder(tmp_path):
    root = make_tree(tmp_path / 'd', {'train': {'clean': 4, 'pit': 4}, 'val': {'clean': 2, 'pit': 2},
                                      'test': {'clean': 1, 'pit': 2}})
    with warnings.catch_warnings(): warnings.simplefilter('error'); df = read_image_folder(root, **Q)
    assert df.groupby('split').size().to_dict() == {'test': 3, 'train': 8, 'val': 4}
    assert (df.relpath.str.split('/').str[0] == df.split).all() and (df.relpath.str.split('/').str[1] == df.label).all()


def test_every_bad_input_named_at_once(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 3, 'pit': 3}})
    (root / 'pit' / 'zero.png').write_bytes(b'')
    png = (root / 'pit' / '003.png').read_bytes(); (root / 'pit' / 'trunc.png').write_bytes(png[:len(png) // 2])
    jpg = cherry(tmp_path / 'x.jpg', size=(64, 64)).read_bytes()
    (root / 'clean' / 'trunc.jpg').write_bytes(jpg[:len(jpg) // 2])
    (root / 'clean' / 'text.png').write_text('this is not an image')
    cherry(root / 'clean' / 'bomb.png', size=(120, 100))                      # 12000 px > max_pixels below
    cherry(root / 'stones' / 's.png')                                         # unknown class folder
    (root / 'maybe').mkdir(); (root / 'maybe' / 'readme.txt').write_text('')  # empty class folder
    cherry(root / 'loose.png')                                                # image outside a class folder
    with pytest.raises(DataError) as ei: read_image_folder(root, max_pixels=5000, **Q)
    e, msg = ei.value, str(ei.value)
    want = {'pit/zero.png': 'empty file (0 bytes)', 'pit/trunc.png': 'truncated', 'clean/trunc.jpg': 'truncated',
            'clean/text.png': 'not an image',
            'clean/bomb.png': 'decompression bomb: 120x100 = 12,000 pixels > max_pixels=5,000',
            'stones': 'unknown class folder', 'maybe': 'empty class folder',
            'loose.png': 'image outside a class folder'}
    assert len(e.problems) == len(want)
    for rel, why in want.items():
        assert f'  {rel}: {why}' in msg, (rel, msg)
        assert any(p == str(root / rel) and why in r for p, r in e.problems)
    # the good files alone are fine, and the truncated files really are what made them fail
    with pytest.warns(DataWarning, match='skipped 8 bad'):
        assert read_image_folder(root, max_pixels=5000, strict=False, **Q).shape[0] == 6


def test_pil_decompression_bomb_error_is_caught(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 1, 'pit': 1}})
    (root / 'pit' / 'huge.png').write_bytes(tiny_png_header(20000, 20000))   # 4e8 px: beyond Pillow's own hard limit
    with pytest.raises(DataError) as ei: read_image_folder(root, max_pixels=1e12, **Q)
    assert ei.value.problems == [(str(root / 'pit/huge.png'), ei.value.problems[0][1])]
    assert 'decompression bomb' in ei.value.problems[0][1]
    with pytest.raises(DataError, match=r'pit/huge.png: decompression bomb \(Image size \(400000000 pixels\)'):
        read_image_folder(root, **Q)


def test_class_missing_from_split(tmp_path):
    root = make_tree(tmp_path / 'd', {'train': {'clean': 2, 'pit': 2, 'maybe': 1}, 'val': {'clean': 1, 'pit': 1},
                                      'test': {'pit': 1}})
    with pytest.raises(DataError) as ei: read_image_folder(root, **Q)
    msg = str(ei.value)
    assert len(ei.value.problems) == 3
    assert "val: class 'maybe' missing from split 'val'" in msg
    assert "test: class 'clean' missing from split 'test'" in msg
    assert "test: class 'maybe' missing from split 'test'" in msg
    with pytest.raises(DataError) as ei: read_image_folder(root, missing_ok=('maybe',), **Q)
    assert len(ei.value.problems) == 1
    only_train = make_tree(tmp_path / 'e', {'train': {'clean': 1, 'pit': 1}})   # one split: nothing to compare
    assert len(read_image_folder(only_train, **Q)) == 2


def test_strict_false_skips_and_warns_once(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 3, 'pit': 3}})
    (root / 'pit' / 'zero.png').write_bytes(b'')
    (root / 'clean' / 'text.png').write_text('nope')
    cherry(root / 'Pit' / 'x.png')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); df = read_image_folder(root, strict=False, **Q)
    assert len(df) == 6 and not df.relpath.str.contains('zero|text|Pit').any()
    sk = dict(df.attrs['skipped'])
    assert set(sk) == {str(root / 'pit/zero.png'), str(root / 'clean/text.png'), str(root / 'Pit')}
    assert sk[str(root / 'pit/zero.png')].startswith('empty file')
    assert 'not an image' in sk[str(root / 'clean/text.png')]
    dw = [x for x in w if issubclass(x.category, DataWarning)]
    assert len(dw) == 1 and 'pit/zero.png' in str(dw[0].message) and 'clean/text.png' in str(dw[0].message)


# ---------------------------------------------------------------- modes

def test_mode_conversions_and_single_report(tmp_path, caplog):
    root = tmp_path / 'd'; (root / 'clean').mkdir(parents=True); (root / 'pit').mkdir()
    S = (16, 16)
    Image.new('L', S, 100).save(root / 'clean/l.png')
    Image.new('L', S, 50).save(root / 'clean/l2.png')
    Image.fromarray(np.full(S, 65535, np.uint16)).save(root / 'clean/i16max.png')
    Image.fromarray(np.full(S, 1000, np.uint16)).save(root / 'clean/i16low.png')
    Image.fromarray(np.full(S, 40000, np.int32)).save(root / 'clean/i32.tif')
    Image.new('RGBA', S, (255, 0, 0, 0)).save(root / 'pit/rgba_clear.png')
    Image.new('RGBA', S, (0, 0, 200, 255)).save(root / 'pit/rgba_solid.png')
    Image.new('LA', S, (0, 0)).save(root / 'pit/la.png')
    p = Image.new('P', S, 0); p.putpalette([255, 0, 0, 0, 255, 0]); p.paste(1, (0, 0, 8, 16))
    p.save(root / 'pit/pal.png', transparency=0)
    Image.new('CMYK', S, (0, 255, 255, 0)).save(root / 'pit/cmyk.tif')
    Image.new('CMYK', S, (0, 255, 255, 0)).save(root / 'pit/cmyk.jpg', quality=95)
    Image.new('RGB', S, (10, 20, 30)).save(root / 'pit/rgb.png')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); df = read_image_folder(root, **Q)
    modes = dict(zip(df.relpath, df['mode']))
    assert modes['clean/i16max.png'].startswith('I;16') and modes['clean/i32.tif'] == 'I'
    assert modes['pit/pal.png'] == 'P'
    assert modes['pit/cmyk.tif'] == modes['pit/cmyk.jpg'] == 'CMYK' and modes['pit/la.png'] == 'LA'
    cw = [x for x in w if issubclass(x.category, ConversionWarning)]
    assert len(cw) == 1, [str(x.message) for x in w]
    msg = str(cw[0].message)
    assert msg.startswith('11 of 12 images are converted to RGB')
    assert 'L x2' in msg and 'CMYK x2' in msg and 'RGBA x2' in msg
    assert df.attrs['conversions'] == {'L': 2, modes['clean/i16max.png']: 2, 'I': 1, 'RGBA': 2, 'LA': 1, 'P': 1,
                                       'CMYK': 2}
    with caplog.at_level(logging.INFO, logger='cherry_nb'):
        ds = CachedImageDataset(df, size=16, **Q)
    conv = [r for r in caplog.records if 'converted to RGB' in r.getMessage()]
    assert len(conv) == 1
    px = {rel: tuple(ds.images[i, :, 4, 12].tolist()) for i, rel in enumerate(df.relpath)}
    assert px['clean/l.png'] == (100,) * 3 and px['clean/l2.png'] == (50,) * 3
    assert px['clean/i16max.png'] == (255,) * 3
    assert px['clean/i16low.png'] == (4,) * 3                # 1000/257 -> 4: scaled, not clipped
    assert px['clean/i32.tif'] == (156,) * 3                                               # 40000/257 = 155.6
    assert px['pit/rgba_clear.png'] == BACKGROUND and px['pit/rgba_solid.png'] == (0, 0, 200)
    assert px['pit/la.png'] == BACKGROUND and px['pit/pal.png'] == BACKGROUND
    assert tuple(ds.images[df.relpath.tolist().index('pit/pal.png'), :, 4, 2].tolist()) == (0, 255, 0)
    assert px['pit/cmyk.tif'] == (255, 0, 0) and np.abs(np.subtract(px['pit/cmyk.jpg'], (255, 0, 0))).max() <= 3
    assert px['pit/rgb.png'] == (10, 20, 30)


# ---------------------------------------------------------------- metadata and CSV manifests

def test_metadata_errors_all_named(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 2, 'pit': 2}})
    pd.DataFrame(dict(relpath=['clean/000.png', './clean/001.png', 'pit/002.png', 'pit/002.png', 'pit/999.png'],
                      label=['clean', 'clean', 'pit', 'pit', 'pit'],
                      visibility=[.1, .2, .3, .3, .4])).to_csv(root / 'metadata.csv', index=False)
    with pytest.raises(DataError) as ei: read_image_folder(root, **Q)
    msg = str(ei.value)
    assert len(ei.value.problems) == 2
    assert 'pit/002.png: duplicate relpath in metadata.csv (lines 4, 5)' in msg
    assert 'pit/999.png: listed in metadata.csv (line 6) but the file does not exist' in msg
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always'); df = read_image_folder(root, strict=False, **Q)
    assert list(df.relpath) == ['clean/000.png', 'clean/001.png', 'pit/003.png']    # the ambiguous image is dropped
    assert list(df.visibility[:2]) == [.1, .2] and np.isnan(df.visibility[2])
    assert list(df.meta_label[:2]) == ['clean', 'clean']
    (root / 'metadata.csv').unlink()
    with pytest.raises(FileNotFoundError, match='other.csv'): read_image_folder(root, metadata='other.csv', **Q)


def test_read_manifest_roundtrip_and_errors(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 3, 'pit': 3}})
    other = cherry(tmp_path / 'elsewhere' / 'far.png', True, 50)
    m = pd.DataFrame(dict(relpath=['clean/000.png', 'pit/003.png', 'pit/004.png'], label=['clean', 'pit', 'pit'],
                          split=['train', 'train', ''], cherry_id=[1, 2, 3]))
    m.to_csv(root / 'm.csv', index=False)
    df = read_manifest(root / 'm.csv', **Q)
    assert list(df.columns) == [*MANIFEST_COLS, 'cherry_id'] and list(df.split) == ['train', 'train', '']
    assert df.path[1] == str(root / 'pit/003.png') and df.sha256[1] == sha256_file(root / 'pit/003.png')
    pd.DataFrame(dict(path=['pit/003.png', str(other)], label=['pit', 'pit'])).to_csv(root / 'abs.csv', index=False)
    df2 = read_manifest(root / 'abs.csv', **Q)
    assert set(df2.path) == {str(root / 'pit/003.png'), str(other)} and str(other) in set(df2.relpath)
    # save -> read gives the same manifest, wherever the CSV lives
    full = read_image_folder(root, **Q)
    for where in (root / 'manifest.csv', tmp_path / 'out' / 'manifest.csv'):
        back = read_manifest(save_manifest(full, where), **Q)
        assert manifest_hash(back) == manifest_hash(full) and list(back.path) == list(full.path)
    assert manifest_hash(full.assign(label=full.label[::-1].values)) != manifest_hash(full)
    # every problem of a bad CSV, at once
    (root / 'clean' / 'text.png').write_text('no')
    bad = pd.DataFrame(dict(relpath=['clean/000.png', 'clean/000.png', 'gone.png', 'pit/004.png', 'pit/005.png',
                                     'clean/text.png'],
                            label=['clean', 'clean', 'pit', 'stone', 'pit', 'clean'],
                            split=['train', 'train', 'val', 'val', 'final', 'val']))
    bad.to_csv(root / 'bad.csv', index=False)
    with pytest.raises(DataError) as ei: read_manifest(root / 'bad.csv', **Q)
    msg = str(ei.value)
    for line in ["clean/000.png: listed twice in bad.csv (lines 2, 3)", 'gone.png: file not found',
                 "pit/004.png: unknown label 'stone'",
                 "pit/005.png: unknown split 'final'", 'clean/text.png: not an image']:
        assert line in msg, (line, msg)
    # a file that changed after the manifest was written
    save_manifest(full, root / 'manifest.csv')
    cherry(root / 'pit' / '005.png', True, 77)
    with pytest.raises(DataError, match=r'pit/005.png: content changed since the manifest was written'):
        read_manifest(root / 'manifest.csv', **Q)
    pd.DataFrame(dict(relpath=['clean/000.png'])).to_csv(root / 'nolabel.csv', index=False)
    with pytest.raises(DataError, match="needs a 'label' column"): read_manifest(root / 'nolabel.csv', **Q)


# ---------------------------------------------------------------- splits and leakage

def synthetic_manifest(n=600, pit_frac=0.3, seed=0):
    r = np.random.default_rng(seed)
    lab = np.where(r.random(n) < pit_frac, 'pit', 'clean')
    return pd.DataFrame(dict(relpath=[f'img{i:04d}.png' for i in range(n)], label=lab, split='',
                             sha256=[f'{i:064x}' for i in range(n)], cherry_id=np.arange(n) // 3))


def test_assign_splits_deterministic_stratified():
    df = synthetic_manifest()
    a, b, c = assign_splits(df, seed=0), assign_splits(df, seed=0), assign_splits(df, seed=1)
    assert (a.split == b.split).all() and (a.split != c.split).mean() > 0.3
    assert df.split.eq('').all()                                  # input untouched
    n = df.label.value_counts()
    for lab in ('clean', 'pit'):
        got = a[a.label == lab].split.value_counts()
        for s, f in (('train', .6), ('val', .2), ('test', .2)): assert abs(got[s] - f * n[lab]) <= 1, (lab, s, got[s])
    # row order of the input does not change the assignment
    sh = assign_splits(df.sample(frac=1, random_state=5), seed=0).sort_values('relpath')
    assert (sh.split.values == a.sort_values('relpath').split.values).all()
    two = assign_splits(df, fracs={'train': .8, 'val': .2}, seed=0)
    assert set(two.split) == {'train', 'val'} and abs((two.split == 'val').mean() - .2) < .01
    with pytest.raises(ValueError): assign_splits(df, fracs={'train': .5, 'holdout': .5})


def test_assign_splits_groups_and_duplicates():
    df = synthetic_manifest(300)
    df.loc[df.cherry_id == 5, 'label'] = ['pit', 'pit', 'clean']      # majority pit
    df.loc[[10, 200], 'sha256'] = 'f' * 64                            # identical content in two different groups
    out = assign_splits(df, seed=3, group_col='cherry_id')
    assert (out.groupby('cherry_id').split.nunique() == 1).all()
    assert out.split[10] == out.split[200] and len(check_leakage(out, group_col='cherry_id', warn=False)) == 0
    # stratified at group level by majority label
    major = out.groupby('cherry_id').label.agg(lambda s: s.value_counts().index[0])
    gs = out.groupby('cherry_id').split.first()
    for lab in ('clean', 'pit'):
        frac = gs[major == lab].value_counts(normalize=True)
        assert abs(frac['train'] - .6) < .05 and abs(frac['val'] - .2) < .05 and abs(frac['test'] - .2) < .05
    with pytest.raises(KeyError, match='cherry'): assign_splits(df, group_col='cherry')


def test_every_class_in_every_split_when_possible():
    df = pd.DataFrame(dict(relpath=[f'{i}.png' for i in range(8)], label=['clean'] * 5 + ['pit'] * 3,
                           sha256=[str(i) for i in range(8)]))
    for seed in range(5):
        out = assign_splits(df, seed=seed)
        assert (pd.crosstab(out.label, out.split) > 0).all().all()


def test_leakage_warning_names_files(tmp_path):
    root = make_tree(tmp_path / 'd', {'train': {'clean': 2, 'pit': 2}, 'test': {'clean': 1, 'pit': 1}})
    shutil.copy(root / 'train/pit/002.png', root / 'test/pit/copy.png')
    with pytest.warns(LeakageWarning) as w: df = read_image_folder(root, **Q)
    msg = str(w[0].message)
    assert 'train/pit/002.png [train]' in msg and 'test/pit/copy.png [test]' in msg
    leaks = check_leakage(df, warn=False)
    assert sorted(leaks.relpath) == ['test/pit/copy.png', 'train/pit/002.png'] and set(leaks.kind) == {'sha256'}
    assert sorted(r[3] for r in df.attrs['leakage']) == sorted(leaks.relpath)


# ---------------------------------------------------------------- sources are never touched

def test_source_tree_unchanged(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 4, 'pit': 4}})
    (root / 'pit' / 'zero.png').write_bytes(b''); (root / 'clean' / 'text.png').write_text('x')
    Image.new('RGBA', (20, 20), (1, 2, 3, 100)).save(root / 'pit' / 'rgba.png')
    pd.DataFrame(dict(relpath=['clean/000.png'], note=['a'])).to_csv(root / 'metadata.csv', index=False)
    before = snapshot(root)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        df = read_image_folder(root, strict=False, **Q)
        df = assign_splits(df, seed=0)
        read_manifest(save_manifest(df, tmp_path / 'out' / 'm.csv'), **Q)
        ds = CachedImageDataset(df, size=16, cache_dir=tmp_path / 'cache', **Q)
        for _ in make_loader(ds, 4, shuffle=True): pass
        show_grid(df, n=4, size=16); show_grid(ds, n=4)
    assert snapshot(root) == before


# ---------------------------------------------------------------- cached dataset and loader

def test_cache_decodes_once_and_survives_deleted_sources(tmp_path):
    src = make_tree(tmp_path / 'd', {'': {'clean': 5, 'pit': 5}})
    df = read_image_folder(src, **Q)
    cache = tmp_path / 'cache'
    n0 = decode_stats['decoded']
    ds = CachedImageDataset(df, size=20, cache_dir=cache, **Q)
    assert decode_stats['decoded'] - n0 == 10 and ds.source == {'decoded': 10}
    assert sorted(p.name for p in cache.iterdir()) == sorted(f'{h}_20.npy' for h in df.sha256)
    assert ds.images.shape == (10, 3, 20, 20) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0] * 5 + [1] * 5
    ref = ds.images.clone()
    same = CachedImageDataset(df, size=20, **Q)                     # same files, same process: shares the tensor
    assert same.source == {'memory': 10} and same.images.data_ptr() == ds.images.data_ptr()
    del ds, same; gc.collect()
    shutil.rmtree(src)                                             # sources gone: only the disk cache can serve them
    n1 = decode_stats['decoded']
    again = CachedImageDataset(df, size=20, cache_dir=cache, **Q)
    assert again.source == {'disk': 10} and decode_stats['decoded'] == n1 and torch.equal(again.images, ref)
    sub = CachedImageDataset(df.iloc[[1, 7]], size=20, cache_dir=cache, **Q)   # a subset (another stage) reuses them
    assert sub.source == {'disk': 2} and torch.equal(sub.images, ref[[1, 7]])
    del again, sub; gc.collect()
    with pytest.raises(DataError, match='unreadable'):                         # another size: must decode
        CachedImageDataset(df, size=24, cache_dir=cache, **Q)


def test_dataset_refuses_changed_files_and_unknown_labels(tmp_path):
    src = make_tree(tmp_path / 'd', {'': {'clean': 2, 'pit': 2, 'maybe': 1}})
    df = read_image_folder(src, **Q)
    with pytest.raises(DataError, match=r"004.png: label 'maybe' not in classes"): CachedImageDataset(df, size=8, **Q)
    ds = CachedImageDataset(df, size=8, unknown_label='ignore', **Q)
    assert ds.labels.tolist() == [0, 0, -1, 1, 1] and ds[2][1].item() == -1
    assert CachedImageDataset(df, size=8, classes=('clean', 'pit', 'maybe'), **Q).labels.tolist() == [0, 0, 2, 1, 1]
    cherry(src / 'pit' / '003.png', True, 99)
    with pytest.raises(DataError, match=r'003.png: content changed since the manifest'):
        CachedImageDataset(df, size=9, classes=('clean', 'pit', 'maybe'), **Q)


def test_resize_and_crop(tmp_path):
    im = Image.new('RGB', (80, 40), (0, 0, 255)); im.paste((255, 0, 0), (20, 0, 60, 40))   # red centre, blue sides
    root = tmp_path / 'd'; (root / 'clean').mkdir(parents=True); im.save(root / 'clean' / 'wide.png')
    cherry(root / 'pit' / 'p.png', True)
    ds = CachedImageDataset(read_image_folder(root, **Q), size=16, **Q)
    x = ds.images[0]
    assert x.shape == (3, 16, 16)
    assert x[:, :, 1:-1].float().sub(torch.tensor([255., 0, 0])[:, None, None]).abs().max() <= 8


def test_loader_batches_and_determinism(tmp_path):
    src = make_tree(tmp_path / 'd', {'': {'clean': 12, 'pit': 11}})
    ds = CachedImageDataset(read_image_folder(src, **Q), size=12, **Q)
    dl = make_loader(ds, batch_size=5)
    batches = list(dl)
    assert len(dl) == 5 and [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x, y = batches[0]
    assert x.shape == (5, 3, 12, 12) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.images)
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.labels)
    assert len(make_loader(ds, 5, drop_last=True)) == 4
    assert [len(y) for _, y in make_loader(ds, 5, drop_last=True)] == [5] * 4

    def idx_order(loader): return torch.cat(list(loader.sampler))
    l1, l2, l3 = make_loader(ds, 5, True, seed=1), make_loader(ds, 5, True, seed=1), make_loader(ds, 5, True, seed=2)
    e1a, e1b = idx_order(l1), idx_order(l1)                       # two epochs of the same loader
    assert torch.equal(e1a, idx_order(l2)) and torch.equal(e1b, idx_order(l2))   # same seed: same sequence of epochs
    assert not torch.equal(e1a, e1b) and not torch.equal(e1a, idx_order(l3))
    assert sorted(e1a.tolist()) == list(range(23))
    l1.sampler.set_epoch(0); assert torch.equal(idx_order(l1), e1a)
    xs, ys = zip(*make_loader(ds, 5, True, seed=1))
    assert torch.equal(torch.cat(ys), ds.labels[e1a]) and torch.equal(torch.cat(xs), ds.images[e1a])
    sub = make_loader(Subset(ds, [3, 1, 20]), batch_size=2)
    assert torch.equal(torch.cat([y for _, y in sub]), ds.labels[[3, 1, 20]])
    plain = make_loader(list(zip(ds.images, ds.labels)), batch_size=4, shuffle=True, seed=0)   # any other dataset
    xb, yb = next(iter(plain)); assert xb.shape == (4, 3, 12, 12) and yb.dtype == torch.int64


def test_show_grid(tmp_path):
    src = make_tree(tmp_path / 'd', {'train': {'clean': 4, 'pit': 4}, 'val': {'clean': 2, 'pit': 2}})
    df = read_image_folder(src, **Q)
    fig = show_grid(df, n=6, cols=3, size=20)
    texts = [a.text for a in fig.layout.annotations]
    assert len(fig.data) == 6 and sum(t.startswith('pit<br>') for t in texts) == 3
    assert all(t.split('<br>')[1] in set(Path(r).name for r in df.relpath) for t in texts)
    fig2 = show_grid(CachedImageDataset(df, size=12, **Q), n=4, cols=2, by='split')
    assert len(fig2.data) == 4 and sum('split=val' in a.text for a in fig2.layout.annotations) == 2


def test_header_check_defers_decoding_errors_to_the_dataset(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 2, 'pit': 2}})
    for name in ('pit/002.png', 'clean/000.png'):
        b = (root / name).read_bytes(); (root / name).write_bytes(b[:len(b) // 2])
    with pytest.raises(DataError): read_image_folder(root, **Q)
    df = read_image_folder(root, check='header', **Q)              # sizes and modes only: the truncation is not seen
    assert len(df) == 4
    with pytest.raises(DataError) as ei: CachedImageDataset(df, size=8, **Q)
    assert sorted(p for p, _ in ei.value.problems) == [str(root / 'clean/000.png'), str(root / 'pit/002.png')]
    assert all(r.startswith('cannot decode') for _, r in ei.value.problems)
    assert 'clean/000.png: cannot decode' in str(ei.value)


# ---------------------------------------------------------------- the package split

def test_data_package_keeps_every_name():
    import cherry_nb.data as data
    from cherry_nb.data import images, loader, manifest
    old = ['IMAGE_EXTS', 'SPLITS', 'MAX_PIXELS', 'BACKGROUND', 'MANIFEST_COLS', 'decode_stats', 'DataWarning',
           'ConversionWarning', 'LeakageWarning', 'DataError', 'probe_image', 'to_rgb', 'conversion_summary',
           'load_image', 'check_leakage', 'read_image_folder', 'save_manifest', 'read_manifest', 'manifest_hash',
           'assign_splits', 'CachedImageDataset', 'BatchSlicer', 'make_loader', 'show_grid']
    assert set(old) <= set(data.__all__) and all(hasattr(data, n) for n in data.__all__)
    assert data.decode_stats is images.decode_stats and data.read_image_folder is manifest.read_image_folder
    assert data.CachedImageDataset is loader.CachedImageDataset and issubclass(data.SplitError, data.DataError)


# ---------------------------------------------------------------- unlabelled folders

def test_unlabelled_folder_flat_and_nested(tmp_path):
    root = tmp_path / 'belt'
    for i, rel in enumerate(['a.png', 'b.jpg', 'cam1/c.png', 'cam1/deep/d.png', 'cam2/e.png']):
        cherry(root / rel, i % 2 == 1, i)
    (root / 'cam2' / 'zero.png').write_bytes(b''); (root / 'notes.txt').write_text('x')
    cherry(root / '.hidden' / 'h.png')
    for labels in ('auto', False):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always'); df = read_image_folder(root, labels=labels, strict=False, **Q)
        assert list(df.relpath) == ['a.png', 'b.jpg', 'cam1/c.png', 'cam1/deep/d.png', 'cam2/e.png']
        assert set(df.label) == set(df.split) == {''} and df.attrs['labelled'] is False
        assert df.sha256[2] == sha256_file(root / 'cam1/c.png') and df.path[3] == str(root / 'cam1/deep/d.png')
        assert df.attrs['skipped'] == [(str(root / 'cam2/zero.png'), 'empty file (0 bytes)')]
        assert [str(x.message).splitlines()[1] for x in w if issubclass(x.category, DataWarning)] == [
            '  cam2/zero.png: empty file (0 bytes)']
    with pytest.raises(DataError, match='cam2/zero.png: empty file'): read_image_folder(root, labels='auto', **Q)
    with pytest.raises(DataError) as ei: read_image_folder(root, **Q)          # labels=True: one problem, not five
    assert len(ei.value.problems) == 1 and 'no class folders (folders there: cam1, cam2)' in str(ei.value)
    assert "pass labels=False (or labels='auto')" in str(ei.value)
    with pytest.raises(ValueError, match='labels must be'): read_image_folder(root, labels='yes', **Q)
    flat = tmp_path / 'flat'; cherry(flat / 'x.png'); cherry(flat / 'y.png', True, 1)
    assert list(read_image_folder(flat, labels='auto', **Q).relpath) == ['x.png', 'y.png']
    (tmp_path / 'none').mkdir(); (tmp_path / 'none' / 'a.txt').write_text('')
    with pytest.raises(DataError, match=r'no images found \(expected <root>/\*\*/<image>\)'):
        read_image_folder(tmp_path / 'none', labels=False, **Q)


def test_auto_labels_detects_class_folders(tmp_path):
    root = make_tree(tmp_path / 'd', {'train': {'clean': 2, 'pit': 2}, 'val': {'clean': 1, 'pit': 1}})
    auto = read_image_folder(root, labels='auto', **Q)
    assert auto.attrs['labelled'] and manifest_hash(auto) == manifest_hash(read_image_folder(root, **Q))
    off = read_image_folder(root, labels=False, **Q)                  # folder names are not read at all
    assert list(off.relpath) == list(auto.relpath) and set(off.label) == set(off.split) == {''}
    cherry(root / 'val' / 'loose.png')                                 # labelled: still a layout error under 'auto'
    with pytest.raises(DataError, match='val/loose.png: image outside a class folder'):
        read_image_folder(root, labels='auto', **Q)
    s = scan_folder(tmp_path / 'd', labels='auto')
    assert s.labelled and s.root == root.absolute() and len(s.records) == 6


def test_unlabelled_images_need_ignore_in_the_dataset(tmp_path):
    root = tmp_path / 'u'
    for i in range(3): cherry(root / f'{i}.png', seed=i)
    df = read_image_folder(root, labels='auto', **Q)
    with pytest.raises(DataError, match=r"0.png: no label \(an unlabelled image; pass unknown_label='ignore'"):
        CachedImageDataset(df, size=8, **Q)
    ds = CachedImageDataset(df, size=8, unknown_label='ignore', **Q)
    assert ds.labels.tolist() == [-1, -1, -1] and ds.images.shape == (3, 3, 8, 8)
    assert len(list(make_loader(ds, 2))) == 2


# ---------------------------------------------------------------- any metadata CSV

def test_metadata_csv_by_relpath_path_or_file(tmp_path):
    root = make_tree(tmp_path / 'd', {'': {'clean': 2, 'pit': 2}})
    rels = ['clean/000.png', 'clean/001.png', 'pit/002.png', 'pit/003.png']
    truth = pd.DataFrame(dict(relpath=rels[:3] + ['pit/999.png'], weight=[1, 2, 3, 4]))
    truth.drop(columns='relpath').assign(file=['000.png', '001.png', '002.png', '999.png']).to_csv(root / 'truth.csv',
                                                                                                  index=False)
    with pytest.warns(DataWarning, match=r"truth.csv\) but none is joined.*metadata=<file>") as w:
        df = read_image_folder(root, **Q)
    assert 'weight' not in df and len([x for x in w if issubclass(x.category, DataWarning)]) == 1
    with pytest.warns(DataWarning) as w: df = read_image_folder(root, metadata='truth.csv', **Q)
    msg = str(w[0].message)
    assert msg == ('metadata truth.csv joined by file: 1 of 4 rows match no image (999.png); '
                   '1 of 4 images have no row (pit/003.png)')
    assert list(df.weight[:3]) == [1, 2, 3] and np.isnan(df.weight[3]) and 'file' not in df
    rep = df.attrs['metadata']
    assert (rep['key'], rep['rows'], rep['images']) == ('file', 4, 4)
    assert (rep['unmatched_rows'], rep['unmatched_images']) == (1, 1)
    assert rep['examples'] == dict(rows=['999.png'], images=['pit/003.png']) and rep['file'] == str(root / 'truth.csv')
    # by path: absolute, or relative to the CSV's own folder (here one level above the images)
    pd.DataFrame(dict(path=[str(root / 'pit/003.png'), 'd/clean/000.png'], label=['pit', 'clean'],
                      split=['test', 'train'])).to_csv(tmp_path / 'paths.csv', index=False)
    with pytest.warns(DataWarning, match=r"columns label, split clash with the manifest's, kept as meta_label, meta_"):
        df = read_image_folder(root, metadata=tmp_path / 'paths.csv', **Q)
    assert list(df.meta_label.fillna('-')) == ['clean', '-', '-', 'pit'] and set(df.split) == {''}
    assert df.attrs['metadata']['renamed'] == {'label': 'meta_label', 'split': 'meta_split'}
    # by relpath, every image matched: no warning at all
    pd.DataFrame(dict(relpath=['./' + r for r in rels], cherry_id=[5, 6, 7, 8])).to_csv(root / 'ids.csv', index=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error'); df = read_image_folder(root, metadata='ids.csv', **Q)
    assert list(df.cherry_id) == [5, 6, 7, 8] and df.attrs['metadata']['key'] == 'relpath'


def test_metadata_refusals(tmp_path, monkeypatch):
    root = make_tree(tmp_path / 'd', {'train': {'clean': 1, 'pit': 1}, 'val': {'clean': 1, 'pit': 1}})
    shutil.copy(root / 'train/clean/000.png', tmp_path / 'x.png')
    os.replace(root / 'val/clean/002.png', root / 'val/clean/000.png')     # same file name in two splits
    pd.DataFrame(dict(file=['000.png', '001.png'], w=[1, 2])).to_csv(root / 'byname.csv', index=False)
    with pytest.raises(DataError) as ei: read_image_folder(root, metadata='byname.csv', strict=False, **Q)
    assert "000.png: file name in byname.csv matches 2 images (train/clean/000.png, val/clean/000.png)" in str(ei.value)
    assert 'give a relpath or path column instead' in str(ei.value) and len(ei.value.problems) == 1
    pd.DataFrame(dict(name=['a'], w=[1])).to_csv(root / 'nokey.csv', index=False)
    with pytest.raises(DataError, match=r"nokey.csv: no 'relpath', 'path', 'file' column to join by \(columns: name"):
        read_image_folder(root, metadata='nokey.csv', **Q)
    with pytest.raises(FileNotFoundError, match='metadata file not found: .*gone.csv'):
        read_image_folder(root, metadata='gone.csv', **Q)
    pd.DataFrame(dict(relpath=['train/pit/001.png'], w=[3])).to_csv(root / 'metadata.csv', index=False)
    with pytest.warns(DataWarning, match='3 of 4 images have no row'):                 # '': the default metadata.csv
        assert read_image_folder(root, metadata='', **Q).w.notna().sum() == 1
    (root / 'metadata.csv').unlink()
    pd.DataFrame(dict(file=['001.png', '001.png'], w=[1, 2])).to_csv(tmp_path / 'dup.csv', index=False)
    monkeypatch.chdir(tmp_path)                                        # a name not in the folder: the working folder
    with pytest.raises(DataError, match=r'train/pit/001.png: duplicate file in dup.csv \(lines 2, 3\)'):
        read_image_folder(root, metadata='dup.csv', **Q)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always'); df = read_image_folder(root, metadata='dup.csv', strict=False, **Q)
    assert 'train/pit/001.png' not in set(df.relpath) and len(df) == 3


def test_read_manifest_metadata_and_labels(tmp_path):
    root = tmp_path / 'imgs'
    for i in range(3): cherry(root / f'{i}.png', i == 1, i)
    pd.DataFrame(dict(path=['imgs/0.png', 'imgs/1.png', 'imgs/2.png'], cherry_id=[1, 1, 2])).to_csv(tmp_path / 'm.csv',
                                                                                                 index=False)
    pd.DataFrame(dict(file=['0.png', '1.png', '2.png'], label=['clean', 'pit', 'clean'],
                      cherry_id=[9, 9, 9])).to_csv(tmp_path / 'truth.csv', index=False)
    with pytest.raises(DataError, match="needs a 'label' column"): read_manifest(tmp_path / 'm.csv', **Q)
    with pytest.warns(DataWarning, match='columns label, cherry_id clash'):
        df = read_manifest(tmp_path / 'm.csv', labels='auto', metadata='truth.csv', **Q)
    assert list(df.label) == [''] * 3 and list(df.meta_label) == ['clean', 'pit', 'clean'] and not df.attrs['labelled']
    assert list(df.cherry_id) == [1, 1, 2] and list(df.meta_cherry_id) == [9, 9, 9]
    pd.DataFrame(dict(relpath=['0.png', '1.png'], label=['clean', 'stone'])).to_csv(root / 'l.csv', index=False)
    with pytest.raises(DataError, match="unknown label 'stone'"): read_manifest(root / 'l.csv', labels='auto', **Q)
    off = read_manifest(root / 'l.csv', labels=False, **Q)
    assert list(off.label) == ['', ''] and list(off.meta_label) == ['clean', 'stone']
    with pytest.raises(ValueError, match='labels must be'): read_manifest(root / 'l.csv', labels=None, **Q)


def test_simulator_metadata_joins_without_warnings(tmp_path):
    from cherry_nb.data.synth import render_dataset
    root = render_dataset(tmp_path / 's', n_train=4, n_val=2, n_test=2, size=32, workers=1, progress=False)
    with warnings.catch_warnings(): warnings.simplefilter('error'); df = read_image_folder(root, **Q)
    rep = df.attrs['metadata']
    assert (rep['key'], rep['unmatched_rows'], rep['unmatched_images'], rep['renamed']) == ('relpath', 0, 0, {})
    assert df.cherry_id.notna().all() and (df.label == df.given_label).all()


# ---------------------------------------------------------------- split checks

def test_check_splits_names_every_shortfall():
    df = synthetic_manifest(60, seed=1).pipe(assign_splits, seed=0)
    counts = check_splits(df)
    assert counts.index.tolist() == ['train', 'val', 'test'] and counts.columns.tolist() == ['clean', 'pit']
    assert counts.values.sum() == 60 and counts.loc['val', 'pit'] == ((df.split == 'val') & (df.label == 'pit')).sum()
    short = df[~((df.split == 'val') & (df.label == 'pit'))]
    short = short.drop(short.index[(short.split == 'test') & (short.label == 'clean')][1:])
    with pytest.raises(SplitError) as ei: check_splits(short, min_per_class=2)
    msg = str(ei.value)
    assert msg.startswith("split 'val' has no 'pit' images; split 'test' has 1 'clean' image (needs >= 2)\n")
    assert 'images per split and class' in msg and ei.value.counts.loc['test', 'clean'] == 1
    assert ei.value.problems == [('val', "split 'val' has no 'pit' images"),
                                 ('test', "split 'test' has 1 'clean' image (needs >= 2)")]
    with pytest.raises(SplitError, match=r"^split 'test' has no images"): check_splits(df[df.split != 'test'])
    with pytest.raises(SplitError, match=r"^only one class \('clean'\): training needs two or more"):
        check_splits(df[df.label == 'clean'])
    three = df.assign(label=np.where(np.arange(60) % 10 == 0, 'maybe', df.label))
    with pytest.raises(SplitError, match=r"^6 image\(s\) have label 'maybe', not one of clean, pit"):
        check_splits(three, classes=('clean', 'pit'))
    with pytest.raises(SplitError, match=r"^the manifest has no labels"): check_splits(df.assign(label=''))
    with pytest.raises(SplitError, match=r"^2 image\(s\) have no label"):
        check_splits(df.assign(label=np.where(np.arange(60) < 2, '', df.label)))
    assert check_splits(df, splits=('train',), min_per_class={'train': 5}).shape == (1, 2)


def test_check_splits_counts_groups():
    df = synthetic_manifest(90, seed=2)                                # 3 views per cherry, one label per cherry
    df = df.assign(label=df.groupby('cherry_id').label.transform('first')).pipe(assign_splits, group_col='cherry_id')
    by_cherry = check_splits(df, group_col='cherry_id')
    assert (by_cherry * 3 == check_splits(df)).all().all()
    need = int(by_cherry.loc['val'].min()) + 1
    with pytest.raises(SplitError, match=rf"split 'val' has \d+ '(clean|pit)' cherry_ids? \(needs >= {need}\)"):
        check_splits(df, group_col='cherry_id', min_per_class={'val': need})


# ---------------------------------------------------------------- several views per cherry

def views_manifest(n_cherries=60, seed=0):
    "Like a multi-view simulator set: 1..8 views per cherry, one label per cherry, every view its own file."
    r = np.random.default_rng(seed)
    nv = r.integers(1, 9, n_cherries); pit = r.random(n_cherries) < .35
    rel = [f'c{c:03d}_v{v}.png' for c in range(n_cherries) for v in range(nv[c])]
    return pd.DataFrame(dict(relpath=rel, label=np.repeat(np.where(pit, 'pit', 'clean'), nv), split='',
                             sha256=[f'{i:064x}' for i in range(len(rel))],
                             cherry_id=np.repeat(np.arange(n_cherries), nv)))


def test_assign_splits_keeps_views_together():
    df = views_manifest()
    per = df.drop_duplicates('cherry_id').label.value_counts()
    for seed in range(10):
        out = assign_splits(df, seed=seed, group_col='cherry_id')
        assert (out.groupby('cherry_id').split.nunique() == 1).all()
        assert len(check_leakage(out, group_col='cherry_id', warn=False)) == 0
        cherries = out.drop_duplicates('cherry_id')
        for lab in ('clean', 'pit'):                                   # stratified in cherries, not in images
            got = cherries[cherries.label == lab].split.value_counts()
            for s, f in (('train', .6), ('val', .2), ('test', .2)): assert abs(got[s] - f * per[lab]) <= 1
    a, b = assign_splits(df, seed=4, group_col='cherry_id'), assign_splits(df[::-1], seed=4, group_col='cherry_id')
    assert (a.split == b.sort_index().split).all()
    ungrouped = assign_splits(df, seed=0)                               # without the group column views straddle
    assert (ungrouped.groupby('cherry_id').split.nunique() > 1).any()


def test_loader_one_view_per_cherry(tmp_path):
    src = make_tree(tmp_path / 'd', {'': {'clean': 9, 'pit': 8}})
    df = read_image_folder(src, **Q).assign(cherry_id=[0, 0, 0, 0, 1, 2, 2, 3, 3, 3, 4, 5, 5, 6, 6, 6, 6])
    ds = CachedImageDataset(df, size=8, **Q)
    groups = df.cherry_id.to_numpy()

    def epochs(loader, n):
        return [torch.cat(list(loader.sampler)) for _ in range(n)]
    dl = make_loader(ds, batch_size=3, shuffle=True, seed=5, group_col='cherry_id')
    assert len(dl) == 3
    e = epochs(dl, 200)
    assert all(sorted(groups[ep.numpy()].tolist()) == list(range(7)) for ep in e)     # one view of every cherry
    picks = torch.stack([ep[np.argsort(groups[ep.numpy()])] for ep in e])          # [epoch, cherry] -> row
    assert set(picks[:, 0].tolist()) == {0, 1, 2, 3} and set(picks[:, 6].tolist()) == {13, 14, 15, 16}
    share = np.bincount(picks[:, 0].numpy(), minlength=4) / 200
    assert np.abs(share - .25).max() < .1                                            # uniform over the views
    again = epochs(make_loader(ds, batch_size=3, shuffle=True, seed=5, group_col='cherry_id'), 200)
    assert all(torch.equal(x, y) for x, y in zip(e, again))                          # deterministic for a seed
    other = epochs(make_loader(ds, batch_size=3, shuffle=True, seed=6, group_col='cherry_id'), 3)
    assert not all(torch.equal(x, y) for x, y in zip(e, other))
    dl.sampler.set_epoch(7); assert torch.equal(epochs(dl, 1)[0], e[7])             # resumable
    xb, yb = next(iter(make_loader(ds, 3, True, seed=5, group_col='cherry_id')))
    assert torch.equal(yb, ds.labels[e[0][:3]]) and torch.equal(xb, ds.images[e[0][:3]])
    sub = make_loader(Subset(ds, [4, 5, 6, 7, 8]), batch_size=10, group_col='cherry_id')   # cherries 1, 2, 3
    got = epochs(sub, 1)[0].tolist()
    assert len(got) == 3 and got[0] == 4 and got[1] in (5, 6) and got[2] in (7, 8)
    assert len(make_loader(ds, 2, drop_last=True, group_col='cherry_id')) == 3
    with pytest.raises(KeyError, match='cherry'): make_loader(ds, 2, group_col='cherry')
    with pytest.raises(ValueError, match='group_col needs a CachedImageDataset'):
        make_loader(list(zip(ds.images, ds.labels)), 2, group_col='cherry_id')


def test_loader_without_groups_draws_as_before(tmp_path):
    ds = CachedImageDataset(read_image_folder(make_tree(tmp_path / 'd', {'': {'clean': 6, 'pit': 5}}), **Q), 8, **Q)
    sampler = make_loader(ds, 4, shuffle=True, seed=3).sampler
    for epoch in range(3):                                           # the permutation of (seed, epoch), unchanged
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([3, epoch]).generate_state(1)[0]))
        assert torch.equal(torch.cat(list(sampler)), torch.randperm(11, generator=g))
    assert torch.equal(torch.cat(list(make_loader(ds, 4).sampler)), torch.arange(11))


def test_group_codes_and_one_per_group():
    assert group_codes(['b', 'b', '', 'a', None, np.nan, 'b']).tolist() == [0, 0, 2, 1, 3, 4, 0]
    assert group_codes([3, 1, 3]).tolist() == [0, 1, 0]
    codes = group_codes(['x', 'y', 'x', 'z', 'y'])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = one_per_group(codes, g)
        assert len(p) == 3 and p[0] in (0, 2) and p[1] in (1, 4) and p[2] == 3
    assert len(one_per_group(np.array([], dtype=np.int64), g)) == 0
    with pytest.raises(ValueError, match='groups has 2 entries for 3 indices'): BatchSlicer(3, groups=[0, 1])
