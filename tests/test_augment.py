"""Tests of cherry_nb.learn.augment: the batched field simulator, the eval transform and model_norm."""
import numpy as np, pytest, timm, torch
from PIL import Image
from cherry_nb.core import set_seed
from cherry_nb.learn.augment import (AugConfig, EvalTransform, FieldSimulator, IMAGENET_MEAN, IMAGENET_STD, AUG_PRESETS,
                               aug_config, check_images, denormalise, model_norm)

def cherries(n=8, size=48, seed=0):
    "Red shaded discs (some with a dark pit blob) on a light belt, uint8 [n,3,size,size]."
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing='ij')
    out = []
    for i in range(n):
        cx, cy = (torch.rand(2, generator=g) * .3 - .15).tolist()
        d = ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() / .6
        img = torch.where(d < 1, torch.tensor([150., 20., 35.]).view(3, 1, 1) * (1.1 - .4 * d ** 2),
                          torch.tensor([230., 225., 205.]).view(3, 1, 1))
        if i % 2: img = torch.where(((xx - cx) ** 2 / .06 + (yy - cy) ** 2 / .03) < 1, img * .4, img)
        out.append(img)
    return torch.stack(out).round().to(torch.uint8)

X = cherries()
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])

@pytest.mark.parametrize('device', DEVICES)
def test_shape_dtype_device_and_input_untouched(device):
    x = X.to(device); x0 = x.clone()
    for m in (FieldSimulator('heavy'), FieldSimulator('light'), EvalTransform()):
        y = m(x)
        assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
        assert torch.isfinite(y).all()
    assert torch.equal(x, x0)                        # the source batch is never modified
    assert FieldSimulator()(x[:0]).shape == (0, 3, 48, 48)

def test_changes_images_with_independent_parameters_per_image():
    x = X[:1].repeat(6, 1, 1, 1)                     # six identical cherries in one batch
    aug = FieldSimulator('heavy')
    y = denormalise(aug(x, seed=0)).float()
    change = (y - x.float()).abs().mean((1, 2, 3))
    assert (change > 3).all()                        # every image changed (mean |diff| in 0..255 units)
    pair = (y[:, None] - y[None]).abs().mean((2, 3, 4))
    assert pair[~torch.eye(6, dtype=bool)].min() > 1  # ... and differently from every other copy
    p = aug.last_params
    assert p['affine']['angle'].unique().numel() == 6 and p['blur']['sigma'].unique().numel() == 6
    assert p['color']['brightness_factor'].unique().numel() == 6

def test_seed_reproducibility():
    aug = FieldSimulator('heavy')
    state = torch.get_rng_state()
    a, b, c = aug(X, seed=7), aug(X, seed=7), aug(X, seed=8)
    assert torch.equal(torch.get_rng_state(), state)     # seeded calls leave the global stream alone
    assert torch.equal(a, b) and (a - c).abs().mean() > 0.05
    assert torch.equal(FieldSimulator('heavy')(X, seed=7), a)   # a fresh module gives the same output
    g = lambda: torch.Generator().manual_seed(1)
    g1 = g(); s1 = [aug(X, g1) for _ in range(2)]
    g2 = g(); s2 = [aug(X, g2) for _ in range(2)]
    assert all(torch.equal(u, v) for u, v in zip(s1, s2)) and not torch.equal(*s1)   # a reproducible sequence
    m1, m2 = FieldSimulator(seed=3), FieldSimulator(seed=3)
    assert torch.equal(m1(X), m2(X)) and torch.equal(m1(X), m2(X)) and not torch.equal(m1(X), FieldSimulator(seed=4)(X))
    m1.manual_seed(3); assert torch.equal(m1(X), FieldSimulator(seed=3)(X))
    set_seed(5); u = aug(X); set_seed(5); v = aug(X)         # unseeded calls follow the global RNG
    assert torch.equal(u, v) and not torch.equal(u, aug(X))

def test_eval_transform_deterministic_and_only_normalises():
    tf = EvalTransform((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    y = tf(X)
    assert torch.equal(y, tf(X))
    assert torch.allclose(y * tf.std + tf.mean, X.float() / 255, atol=1e-6)
    assert torch.equal(denormalise(y, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), X)
    r = EvalTransform(size=24)(X)
    assert r.shape == (8, 3, 24, 24)
    # the resize is Pillow's antialiased bilinear resize
    pil = torch.stack([torch.from_numpy(np.array(Image.fromarray(x.permute(1, 2, 0).numpy())
                                                 .resize((24, 24), Image.BILINEAR)))
                       .permute(2, 0, 1) for x in X])
    assert (denormalise(r).int() - pil.int()).abs().max() <= 2
    assert torch.equal(EvalTransform(size=48)(X), EvalTransform()(X))   # same size: no resampling

@pytest.mark.parametrize('kw', [dict(affine_p=0, color_p=0, blur_p=0),
                                dict(degrees=0, translate=0, scale=1, shear=0, brightness=0, contrast=0,
                                     saturation=0, hue=0, blur_p=0)])
def test_everything_off_equals_eval_transform(kw):
    aug = FieldSimulator('heavy', mean=(.4, .4, .4), std=(.3, .3, .3), **kw)
    assert len(aug.steps) == 0
    assert torch.equal(aug(X, seed=0), EvalTransform((.4, .4, .4), (.3, .3, .3))(X))

def test_overrides_take_effect():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    rot = FieldSimulator('heavy', degrees=(90, 90), translate=0, scale=1, shear=0, color_p=0, blur_p=0)
    assert torch.equal(denormalise(rot(x)), torch.rot90(x, -1, (2, 3)))          # exactly a quarter turn
    bright = FieldSimulator('heavy', affine_p=0, blur_p=0, brightness=0.5, contrast=0, saturation=0, hue=0)
    y = denormalise(bright(X, seed=0)).float()
    f = bright.last_params['color']['brightness_factor']
    assert ((f >= 0.5) & (f <= 1.5)).all() and f.std() > 0.05
    dark = X.float() * f.view(-1, 1, 1, 1)            # brightness multiplies the image (then clips)
    assert (y - dark.clamp(0, 255)).abs().max() <= 1
    blur = FieldSimulator('heavy', affine_p=0, color_p=0, blur_p=1, blur_sigma=(1.5, 2))
    tv = lambda z: (z[..., 1:, :] - z[..., :-1, :]).pow(2).mean()
    assert tv(denormalise(blur(X)).float()) < 0.8 * tv(X.float())                # blur lowers the edge energy
    assert FieldSimulator('light', hue=0.1).cfg == aug_config('light', hue=0.1) and AUG_PRESETS['light'].hue == 0.02

def test_padding_keeps_belt_colour_in_corners():
    x = X[:4]; corner = lambda y: y[..., :2, :2].float().mean((1, 2, 3))
    kw = dict(degrees=(45, 45), translate=0, scale=1, shear=0, color_p=0, blur_p=0)
    border = denormalise(FieldSimulator('heavy', **kw)(x))
    zeros = denormalise(FieldSimulator('heavy', padding_mode='zeros', **kw)(x))
    assert (corner(border) > 180).all() and (corner(zeros) < 5).all()
    assert AugConfig().padding_mode == 'border'

def test_heavy_changes_more_than_light():
    x = cherries(32, 48, seed=1)
    change = {p: (denormalise(FieldSimulator(p)(x, seed=s)).float() - x.float()).abs().mean().item()
              for p in ('light', 'heavy') for s in (0,)}
    assert change['heavy'] > 1.3 * change['light'] > 0, change

def test_model_norm_from_timm_models():
    m = timm.create_model('convnextv2_atto', pretrained=False)
    mean, std, size = model_norm(m)
    assert mean == tuple(m.pretrained_cfg['mean']) == IMAGENET_MEAN and std == tuple(m.pretrained_cfg['std'])
    assert size == (3, 224, 224)
    m5 = timm.create_model('convnextv2_atto', pretrained=False,
                           pretrained_cfg_overlay=dict(mean=(.5, .5, .5), std=(.25, .25, .25),
                                                       input_size=(3, 160, 160)))
    assert model_norm(m5) == ((.5, .5, .5), (.25, .25, .25), (3, 160, 160))
    assert model_norm(torch.nn.Sequential(torch.nn.Linear(2, 2))) == (IMAGENET_MEAN, IMAGENET_STD, (3, 224, 224))
    assert model_norm(dict(mean=(.1, .2, .3), std=(.4, .5, .6), input_size=(3, 64, 64)))[2] == (3, 64, 64)
    tf, aug = EvalTransform.from_model(m5, size='model'), FieldSimulator.from_model(m5, 'light')
    assert tf.size == (160, 160) and torch.allclose(tf.mean.flatten(), torch.tensor([.5] * 3))
    assert torch.allclose(aug.norm.std.flatten(), torch.tensor([.25] * 3))
    y = tf(X[:2])
    assert y.shape == (2, 3, 160, 160)
    with torch.no_grad(): assert m5(y).shape == (2, 1000)

@pytest.mark.parametrize('bad,err,msg', [
    (X.float(), TypeError, 'uint8'), (X[0], ValueError, r'\[B,3,H,W\].*batch dimension'),
    (X[:, :1], ValueError, r'\(8, 1, 48, 48\)'), (X.numpy(), TypeError, 'torch.Tensor')])
def test_input_validation(bad, err, msg):
    for m in (FieldSimulator(), EvalTransform()):
        with pytest.raises(err, match=msg): m(bad)
    with pytest.raises(err, match=type(FieldSimulator()).__name__): FieldSimulator()(bad)

@pytest.mark.parametrize('kw', [dict(blur_kernel=4), dict(scale=(1.2, 0.8)), dict(padding_mode='black'),
                                dict(affine_p=1.5), dict(hue=0.7), dict(degres=90), dict(translate=(0.1, 0.1, 0.1)),
                                dict(shear=(1, 2)), dict(degrees=(10, -10))])
def test_bad_config(kw):
    with pytest.raises((ValueError, TypeError)): FieldSimulator('heavy', **kw)
    with pytest.raises(ValueError, match='unknown preset'): FieldSimulator('medium')
    with pytest.raises(ValueError, match='std'): EvalTransform(std=(0, 1, 1))


@pytest.mark.parametrize('preset', ['heavy', 'light'])
def test_min_size_is_what_the_simulator_needs(preset):
    "`AugConfig.min_size` (what `cherry-nb run` checks image_size against) is exactly where the blur starts to work."
    from cherry_nb.learn.augment import AUG_PRESETS
    n = AUG_PRESETS[preset].min_size
    sim = FieldSimulator(preset, blur_p=1.0, seed=0)
    assert sim(torch.zeros(2, 3, n, n, dtype=torch.uint8)).shape == (2, 3, n, n)
    with pytest.raises(ValueError, match='cannot filter an image this small'):
        sim(torch.zeros(2, 3, n - 1, n - 1, dtype=torch.uint8))
