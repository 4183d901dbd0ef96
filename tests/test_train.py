"""Tests of the training loop (cherry_nb.learn.learner, .callbacks, .fit_check, .lr_find and .train): the fit loop and
its callbacks, on a real ConvNeXt V2 atto at 32 px (CPU)."""
import math, re, warnings

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from cherry_nb.learn.learner import *
from cherry_nb.learn.callbacks import *
from cherry_nb.learn.fit_check import *
from cherry_nb.learn.lr_find import *
from cherry_nb.learn.train import *
from cherry_nb.learn.augment import EvalTransform


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "The 2 shared cores are contended by parallel jobs: one intra-op thread is much faster there."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy_data(n=64, size=32, seed=0):
    "uint8 images and labels; class 1 (pit) has a bright disc in the centre: an easy, separable task."
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(40, 120, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2
    x[y == 1] = torch.where(disc, torch.tensor(230, dtype=torch.uint8), x[y == 1])
    return x, y


def loaders(n=64, n_val=32, bs=16):
    return (DataLoader(TensorDataset(*toy_data(n, seed=0)), batch_size=bs, shuffle=True),
            DataLoader(TensorDataset(*toy_data(n_val, seed=1)), batch_size=bs))


def atto(seed=0):
    torch.manual_seed(seed)
    return timm.create_model('convnextv2_atto', pretrained=False, num_classes=2)


def cfg(**kw):
    return TrainConfig(**{'lr': 2e-3, 'device': 'cpu', **kw})


class Record(Callback):
    "Call `fn(learn)` at `event`, collecting the results in `out`."
    def __init__(self, event, fn, order=0):
        self.out, self.order = [], order
        setattr(self, event, lambda: self.out.append(fn(self.learn)))


def state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_learns_easy_task_history_and_plot():
    learn = fit(atto(), *loaders(), cfg(epochs=4, warmup_epochs=0.5), aug=False, progress=True)
    h = learn.history
    assert list(h.epoch) == [0, 1, 2, 3]                         # one row per epoch
    assert {'train_loss', 'val_loss', 'val_acc', 'val_pit_recall', 'val_auroc', 'lr', 'time_s'} <= set(h.columns)
    assert h.train_loss.iloc[-1] < 0.7 * h.train_loss.iloc[0]     # loss decreases
    assert h.val_acc.max() >= 0.9 and h.val_auroc.max() >= 0.95   # well above chance (0.5)
    assert learn.best_epoch == int(h.val_loss.idxmin()) and learn.best_metric == pytest.approx(h.val_loss.min())
    fig = plot_history(h)
    assert {t.name for t in fig.data} >= {'train_loss', 'val_loss', 'val_acc', 'val_auroc'}


def test_weight_decay_groups_and_layer_decay():
    model = atto()
    names = {id(p): n for n, p in model.named_parameters()}
    opt = make_optimizer(model, TrainConfig(weight_decay=0.05))
    no_wd = {names[id(p)] for g in opt.param_groups if g['weight_decay'] == 0 for p in g['params']}
    wd = {names[id(p)] for g in opt.param_groups if g['weight_decay'] == 0.05 for p in g['params']}
    grn = {n for n in names.values() if '.grn.' in n}
    assert len(grn) == 2 * 12 and grn <= no_wd                       # GRN gamma/beta of all 12 atto blocks
    assert {n for n in names.values() if n.endswith('.bias') or 'norm' in n} <= no_wd
    assert wd and all(model.get_parameter(n).ndim > 1 for n in wd) and not (wd & no_wd)
    assert len(wd) + len(no_wd) == len(names)
    # layer-wise decay: groups carry timm's lr_scale, head at 1, stem smallest; frozen params are left out
    model.stem.requires_grad_(False)
    opt = make_optimizer(model, TrainConfig(layer_decay=0.7))
    head = model.get_parameter('head.fc.weight')
    scale = {id(p): g['lr_scale'] for g in opt.param_groups for p in g['params']}
    assert scale[id(head)] == 1.0 and scale[id(model.get_parameter('stages.0.blocks.0.conv_dw.weight'))] < 0.7 ** 5
    assert id(model.get_parameter('stem.0.weight')) not in scale
    assert all(g['weight_decay'] == 0 for g in opt.param_groups if any('.grn.' in names[id(p)] for p in g['params']))


def test_warmup_cosine_lr_at_known_steps():
    c = cfg(epochs=3, lr=1e-3, warmup_epochs=1, min_lr=1e-5)
    rec = Record('before_step', lambda l: l.opt.param_groups[0]['lr'])
    fit(atto(), *loaders(n=32, bs=8), c, aug=False, callbacks=[rec], progress=False)   # 4 steps/epoch, 12 in all
    lr, lo = 1e-3, 1e-5
    expect = [lo + t * (lr - lo) / 4 for t in range(4)] + \
             [lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert np.allclose(rec.out, expect, rtol=1e-9, atol=0)
    assert rec.out[4] == pytest.approx(1e-3) and rec.out[8] == pytest.approx((lr + lo) / 2)


def test_label_smoothing_and_class_weights():
    logits, y = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1, 0, 1, 1])
    plain = make_loss(TrainConfig(label_smoothing=0))(logits, y)
    assert torch.isclose(plain, F.cross_entropy(logits, y))
    eps, logp = 0.1, F.log_softmax(logits, 1)
    expect = ((1 - eps) * -logp[torch.arange(6), y] - eps * logp.mean(1)).mean()
    assert torch.isclose(make_loss(TrainConfig(label_smoothing=eps))(logits, y), expect)
    w = torch.tensor([2., 0.5]); nll = -logp[torch.arange(6), y]
    weighted = make_loss(TrainConfig(label_smoothing=0, class_weights=(2, 0.5)))(logits, y)
    assert torch.isclose(weighted, (w[y] * nll).sum() / w[y].sum()) and not torch.isclose(weighted, plain)
    bal = make_loss(TrainConfig(class_weights='balanced'), labels=y, num_classes=2)
    assert torch.allclose(bal.weight, torch.tensor([6 / 4, 6 / 8]))
    with pytest.raises(ValueError, match='no training examples'):
        make_loss(TrainConfig(class_weights='balanced'), labels=torch.zeros(4, dtype=torch.long), num_classes=2)
    # fit builds the loss from the config ('balanced' read from the training set's labels)
    xs, ys = toy_data(24); ys[:18] = 0                                  # 21 clean, 3 pit
    rec = Record('after_loss', lambda l: (l.loss_func.weight.clone(), l.loss_func.label_smoothing))
    fit(atto(), DataLoader(TensorDataset(xs, ys), batch_size=24), None, cfg(epochs=1, class_weights='balanced',
        label_smoothing=0.2, monitor='train_loss'), aug=False, callbacks=[rec], progress=False)
    wt, ls = rec.out[0]
    assert torch.allclose(wt, torch.tensor([24 / 42, 24 / 6])) and ls == 0.2


def test_gradient_clipping_caps_norm():
    def norm_after(l):
        norms = [p.grad.norm() for p in l.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms)).item()
    rec = Record('before_step', lambda l: (l.grad_norm.item(), norm_after(l)), order=15)  # after GradClipCB (10)
    fit(atto(), *loaders(n=32), cfg(epochs=1, clip_grad=0.05), aug=False, callbacks=[rec], progress=False)
    before, after = zip(*rec.out)
    assert min(before) > 0.05                                   # the raw norm was above the cap ...
    assert max(after) <= 0.05 * (1 + 1e-4)                      # ... and was clipped to it
    assert after == pytest.approx([0.05] * len(after), rel=1e-3)


def test_ema_used_for_validation_and_kept():
    train_dl, val_dl = loaders(n=32)
    ev = EvalTransform.from_model(atto())

    def check(l):
        x, y = val_dl.dataset.tensors
        with torch.no_grad():
            m_ema = classification_metrics(l.eval_model.eval()(ev(x)), y)['val_loss']
            m_raw = classification_metrics(l.model.eval()(ev(x)), y)['val_loss']
        diff = max((a - b).abs().max().item() for a, b in zip(l.model.parameters(), l.eval_model.parameters()))
        return l.metrics['val_loss'], m_ema, m_raw, diff, {k: v.clone() for k, v in l.eval_model.state_dict().items()}
    rec = Record('after_epoch', check, order=55)
    learn = fit(atto(), train_dl, val_dl, cfg(epochs=2, ema_decay=0.99), aug=False, callbacks=[rec], progress=False)
    for logged, m_ema, m_raw, diff, _ in rec.out:
        assert logged == pytest.approx(m_ema, rel=1e-5) and abs(m_raw - m_ema) > 1e-4 and diff > 1e-5
    assert learn.get_cb(EMACB).ema.module is not learn.model
    assert state_equal(learn.model.state_dict(), rec.out[learn.best_epoch][-1])   # best EMA weights left in the model


def test_early_stopping_restores_best():
    script = [1.0, 0.5, 0.7, 0.8, 0.9, 0.4]            # best at epoch 1; 2 epochs without improvement -> stop
    def fake(l):
        l.metrics['val_fake'] = script[l.epoch]
        return {k: v.clone() for k, v in l.model.state_dict().items()}
    rec = Record('after_epoch', fake)                   # order 0: before HistoryCB (50) and BestModelCB (60)
    learn = fit(atto(), *loaders(n=16, n_val=16), cfg(epochs=6, monitor='val_fake', mode='min', early_stop_patience=2),
                aug=False, callbacks=[rec], progress=False)
    assert list(learn.history.epoch) == [0, 1, 2, 3] and list(learn.history.val_fake) == script[:4]
    assert learn.best_epoch == 1 and learn.best_metric == 0.5
    assert state_equal(learn.model.state_dict(), rec.out[1]) and not state_equal(rec.out[1], rec.out[3])
    mx = fit(atto(), *loaders(n=16, n_val=16), cfg(epochs=3, monitor='val_acc', early_stop_patience=5), aug=False,
             progress=False)
    assert mx.cfg.goal == 'max' and mx.best_metric == mx.history.val_acc.max()


def test_nan_loss_raises_clear_error(tmp_path):
    class Poison(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1:
                self.learn.xb[0, 0, 0, 0] = float('nan')
    with pytest.raises(FloatingPointError, match=r'non-finite training loss \(nan\) at epoch 2, batch 2'):  # 1-based
        fit(atto(), *loaders(n=32), cfg(epochs=3), aug=False, callbacks=[Poison()], ckpt_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / 'last.pt')['epoch'] == 0         # the last good epoch is kept
    with pytest.raises(FloatingPointError, match='epoch 1, batch 1'):                  # 1-based
        fit(atto(), *loaders(n=16), cfg(epochs=1, lr=float('inf')), aug=False, progress=False)


class Interrupt(Callback):
    order = 85                                          # after CheckpointCB (80) wrote last.pt
    def __init__(self, at): self.at = at
    def after_epoch(self):
        if self.learn.epoch == self.at: raise KeyboardInterrupt


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_resume_equals_uninterrupted(tmp_path):
    # default augmentation (field simulator, global RNG), EMA, shuffled loader: all must be restored exactly
    c = cfg(epochs=3, ema_decay=0.99, warmup_epochs=0.5)
    ref = fit(atto(), *loaders(n=32), c, progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(atto(), *loaders(n=32), c, ckpt_dir=tmp_path, callbacks=[Interrupt(1)], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['best.pt', 'last.pt']     # no temp files left
    ck = torch.load(tmp_path / 'last.pt', map_location='cpu', weights_only=True)
    assert ck['epoch'] == 1 and ck['shuffle_epoch'] == 2 and ck['train_iter'] == 4
    assert {'model', 'opt', 'cbs', 'rng'} <= set(ck)
    assert {'EMACB', 'HistoryCB', 'BestModelCB', 'SchedulerCB'} <= set(ck['cbs'])
    best = torch.load(tmp_path / 'best.pt', map_location='cpu', weights_only=True)
    assert set(best) == {'model', 'epoch', 'monitor', 'metric'} and best['monitor'] == 'val_loss'
    steps = Record('after_step', lambda l: l.epoch)
    res = fit(atto(seed=7), *loaders(n=32), c, ckpt_dir=tmp_path, callbacks=[steps], progress=False)
    assert steps.out == [2, 2]                                              # only epoch 2 was trained
    assert state_equal(ref.model.state_dict(), res.model.state_dict())      # bit-identical weights
    assert ref.history.drop(columns='time_s').equals(res.history.drop(columns='time_s'))
    assert (ref.best_epoch, ref.best_metric) == (res.best_epoch, res.best_metric)
    # a finished run resumes to its end state without training
    steps2 = Record('after_step', lambda l: 1)
    again = fit(atto(seed=8), *loaders(n=32), c, ckpt_dir=tmp_path, callbacks=[steps2], progress=False)
    assert steps2.out == [] and state_equal(again.model.state_dict(), ref.model.state_dict())
    # another config: 'auto' warns and starts afresh, True refuses
    with pytest.raises(ValueError, match='another run'):
        fit(atto(), *loaders(n=32), replace_cfg(c, lr=1e-3), ckpt_dir=tmp_path, resume=True, progress=False)
    with pytest.warns(UserWarning, match='starting afresh'):
        fresh = fit(atto(), *loaders(n=32), replace_cfg(c, epochs=1), ckpt_dir=tmp_path, progress=False)
    assert len(fresh.history) == 1 and load_checkpoint(tmp_path / 'last.pt')['key']['epochs'] == 1
    with pytest.raises(FileNotFoundError):
        fit(atto(), *loaders(n=32), c, ckpt_dir=tmp_path / 'none', resume=True, progress=False)


def replace_cfg(c, **kw):
    from dataclasses import replace
    return replace(c, **kw)


def test_mixed_precision_and_channels_last_on_cpu():
    x, y = toy_data(16)
    dl = DataLoader(TensorDataset(x, y), batch_size=16)
    for amp in ('bf16', 'fp16'):                        # fp16 brings in the GradScaler path (unscale before clipping)
        dtypes = Record('after_loss', lambda l: (l.pred.dtype, l.xb.is_contiguous(memory_format=torch.channels_last)))
        learn = fit(atto(), dl, dl, cfg(epochs=1, amp=amp, channels_last=True), aug=False, callbacks=[dtypes],
                    progress=False)
        want = torch.bfloat16 if amp == 'bf16' else torch.float16
        assert all(d == (want, True) for d in dtypes.out) and math.isfinite(learn.history.train_loss[0])
        assert learn.scaler.is_enabled() == (amp == 'fp16') and next(learn.model.parameters()).dtype == torch.float32
        assert learn.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert amp_dtype('cpu', 'auto') is None and resolve_auto('auto', 'cpu') is False


def test_shuffle_order_depends_only_on_seed_and_epoch():
    dl = DataLoader(TensorDataset(torch.arange(20)), batch_size=20, shuffle=True)
    def order(seed, epoch):
        torch.rand(7)                                   # unrelated use of the global RNG must not matter
        assert set_loader_epoch(dl, seed, epoch) == 'generator'
        return next(iter(dl))[0].tolist()
    a = [order(0, e) for e in range(3)]
    assert [order(0, e) for e in (2, 0, 1)] == [a[2], a[0], a[1]]
    assert a[0] != a[1] and order(1, 0) != a[0] and sorted(a[0]) == list(range(20))


# ---------------------------------------------------------------- fit check
def test_constant_loss_is_the_entropy_of_the_prior():
    prior = torch.tensor([30, 10])
    H = float(-(prior / 40 * (prior / 40).log()).sum())
    assert constant_loss(make_loss(TrainConfig(label_smoothing=0)), prior) == pytest.approx(H, abs=1e-6)
    smooth = make_loss(TrainConfig(label_smoothing=0.1)); y = torch.repeat_interleave(torch.arange(2), prior)
    q = torch.tensor([0.725, 0.275])                       # the best constant predicts the smoothed prior
    assert constant_loss(smooth, prior) == pytest.approx(smooth(q.log().expand(40, 2), y).item(), abs=1e-6)
    bal = make_loss(TrainConfig(label_smoothing=0, class_weights='balanced'), labels=y, num_classes=2)
    assert constant_loss(bal, prior) == pytest.approx(math.log(2), abs=1e-6)
    assert constant_loss(smooth, [0, 0]) != constant_loss(smooth, [0, 0])    # no labels: NaN


def shuffled_loaders(seed=1):
    "Toy images with their labels shuffled at random (training and validation): nothing to learn."
    g = torch.Generator().manual_seed(seed)
    (xt, yt), (xv, yv) = toy_data(64, seed=0), toy_data(32, seed=1)
    return [DataLoader(TensorDataset(x, y[torch.randperm(len(y), generator=g)]), batch_size=16, shuffle=s)
            for x, y, s in ((xt, yt, True), (xv, yv, False))]


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_fit_check_stops_shuffled_labels_with_numbers_and_advice():
    with pytest.raises(NotLearning) as e:
        fit(atto(), *shuffled_loaders(), cfg(epochs=20, warmup_epochs=0.5, fit_check_epochs=3), aug=False,
            progress=False, name='stage1')
    v, msg = e.value.verdict, str(e.value)
    n = len(e.value.history)                 # judged from epoch 3 on; stopped once the train loss stopped falling
    assert v['learned'] is False and v['stuck'] and not v['loss_falling'] and 3 <= n < 20 and v['checked_at'] == n - 1
    assert v['val_auroc'] <= v['auroc_chance'] and v['base_loss'] == pytest.approx(math.log(2), abs=1e-4)
    assert msg.startswith(f'stage1: the model is not learning after {n} epochs: validation AUROC')
    assert f"{v['val_auroc']:.3f}" in msg and f"{v['base_loss']:.4f}" in msg
    for advice in ('lower learning rate', "lr='find'", 'pretrained weights', 'fit_check=False'):
        assert advice in msg
    assert 'less augmentation' not in msg                      # it trained without augmentation already


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_fit_check_passes_a_learnable_task_and_records_the_verdict():
    learn = fit(atto(), *loaders(), cfg(epochs=3, warmup_epochs=0.5, fit_check_epochs=3), aug=False, progress=False)
    assert learn.records['fit_check']['learned'] and learn.records['fit_verdict']['learned']
    assert np.allclose(learn.history.base_loss, math.log(2)) and 'val_auroc_chance' in learn.history
    meta = dict(metrics=dict(history=learn.history.to_dict(orient='list')), train_config=vars(learn.cfg))
    assert fit_verdict(meta)['learned'] and fit_verdict(meta)['kept_epoch'] == learn.best_epoch
    # without validation the loss criterion judges; a margin no run can meet says not learned
    no_val = {k: v for k, v in meta['metrics']['history'].items() if not k.startswith('val_')}
    assert fit_verdict(no_val)['learned'] and fit_verdict(no_val, margin=0.99)['learned'] is False
    # runs shorter than fit_check_epochs are not stopped, but their verdict is recorded
    short = fit(atto(), *shuffled_loaders(), cfg(epochs=2, warmup_epochs=0.5), aug=False, progress=False)
    assert 'fit_check' not in short.records and short.records['fit_verdict']['learned'] is False
    off = fit(atto(), *shuffled_loaders(), cfg(epochs=3, fit_check=False, fit_check_epochs=3), aug=False,
              progress=False)
    assert len(off.history) == 3 and off.get_cb(FitCheckCB) is None


# ---------------------------------------------------------------- LR finder
@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_lr_find_suggests_a_good_rate_and_restores_everything():
    torch.manual_seed(0)
    model = timm.create_model('test_resnet', num_classes=2)              # has BatchNorm buffers
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    found = lr_find(model, loaders()[0], cfg(), aug=False, num_it=20, progress=False)
    assert state_equal(before, model.state_dict()) and torch.equal(rng, torch.get_rng_state())
    assert 10 <= len(found.lrs) <= 20 and found.lrs == sorted(found.lrs) and found.rule == 'minimum / 10'
    assert found.lr == pytest.approx(found.at_min / 10) and found.stopped in ('num_it', 'diverged')
    fig = found.plot()
    assert [t.name for t in fig.data] == ['loss', 'smoothed'] and fig.layout.xaxis.type == 'log'
    toy = lr_find(atto(), loaders()[0], cfg(), aug=False, progress=False)
    assert 1e-4 <= toy.lr <= 2e-3, toy.lr               # the toy task's good range (28_learn.train, measured)


def test_lr_finder_callback_restores_optimizer_state():
    model = atto(); train_dl = loaders(n=32)[0]
    opt = make_optimizer(model, cfg())
    fit_once = Learner(model, train_dl, None, nn_ce(), opt, [DeviceCB(False)]).fit(1)     # Adam moments exist
    opt_before = {k: v.clone() for k, v in opt.state[opt.param_groups[0]['params'][0]].items()}
    w_before = {k: v.clone() for k, v in model.state_dict().items()}
    finder = LRFinderCB(1e-5, 1e-1, num_it=6)
    Learner(model, train_dl, None, nn_ce(), opt, [DeviceCB(False), finder]).fit(3)   # 2 batches per epoch
    assert len(finder.raw) == 6 and state_equal(w_before, model.state_dict())
    after = opt.state[opt.param_groups[0]['params'][0]]
    assert all(torch.equal(opt_before[k], after[k]) for k in opt_before) and fit_once.train_iter == 2


def nn_ce():
    return torch.nn.CrossEntropyLoss()


@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_fit_with_lr_find_trains_like_the_found_rate():
    c = cfg(epochs=2, warmup_epochs=0.5, lr='find')
    a = fit(atto(), *loaders(n=32), c, aug=False, progress=False)
    rec = a.records['lr_find']
    assert a.cfg.lr == rec['lr'] and len(rec['lrs']) == len(rec['losses']) and rec['rule'] == 'minimum / 10'
    b = fit(atto(), *loaders(n=32), replace_cfg(c, lr=rec['lr']), aug=False, progress=False)
    assert state_equal(a.model.state_dict(), b.model.state_dict())
    assert a.history.drop(columns='time_s').equals(b.history.drop(columns='time_s'))


# ---------------------------------------------------------------- progress lines
@pytest.mark.slow   # over 2.5 s on an idle 2-core machine: the full suite runs it, --fast skips it
def test_progress_lines_work_piped(tmp_path):
    import subprocess, sys, textwrap
    script = tmp_path / 'train.py'
    script.write_text(textwrap.dedent('''
        import torch, timm
        from torch.utils.data import DataLoader, TensorDataset
        from cherry_nb.learn.learner import TrainConfig
        from cherry_nb.learn.train import fit
        torch.set_num_threads(1); torch.manual_seed(0)
        x, y = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16) % 2
        dl = DataLoader(TensorDataset(x, y), batch_size=8)
        fit(timm.create_model('test_resnet', num_classes=2), dl, dl, TrainConfig(epochs=2, device='cpu'),
            aug=False, progress=True, name='job7')
        print('done', flush=True)
    '''))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()                     # bars go to stderr; one plain line per epoch on stdout
    assert len(lines) == 3 and lines[-1] == 'done', r.stdout
    for i, line in enumerate(lines[:2], 1):
        assert re.fullmatch(rf'job7  epoch {i}/2  train_loss \d\.\d{{4}}  val_loss \d\.\d{{4}}  val_auroc \d\.\d{{3}}  '
                            r'\d+\.\ds', line), line


def test_config_accepts_find_and_names_bad_values():
    assert TrainConfig(lr='find').lr == 'find'
    with pytest.raises(ValueError, match=r"lr='fast' must be > 0 or 'find'.*aug='wild' must be one of"):
        TrainConfig(lr='fast', aug='wild')
    with pytest.raises(ValueError, match='fit_check_margin=1.5'): TrainConfig(fit_check_margin=1.5)
    assert resume_key(TrainConfig(fit_check=False)) == resume_key(TrainConfig())   # checking does not change weights


def test_lr_suggestion_needs_a_descent():
    rng = np.random.default_rng(0); lrs = np.geomspace(1e-6, 1, 100)
    flat = 0.69 + 0.03 * rng.standard_normal(100)                    # noise: nothing learned at any rate
    s = suggest_lr(lrs, flat, fallback=5e-4)
    assert not s['descended'] and s['lr'] == 5e-4 and s['rule'] == 'no descent: the default 0.0005'
    dip = 0.69 - 0.3 * np.exp(-((np.log10(lrs) + 3) ** 2)) + 0.01 * rng.standard_normal(100)
    s = suggest_lr(lrs, dip)
    assert s['descended'] and s['rule'] == 'minimum / 10' and s['lr'] == pytest.approx(s['at_min'] / 10)
    assert 5e-4 < s['at_min'] < 2e-3 and s['steep'] < s['at_min'] and len(s['losses']) == 100
    # a sweep with nothing to learn (identical images, labels half and half, a linear model starting at zero)
    blank = DataLoader(TensorDataset(torch.zeros(64, 3, 8, 8, dtype=torch.uint8), torch.arange(64) % 2),
                       batch_size=16, shuffle=True)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    torch.nn.init.zeros_(lin[1].weight); torch.nn.init.zeros_(lin[1].bias)
    with pytest.warns(UserWarning, match='the loss did not fall'):
        found = lr_find(lin, blank, cfg(), aug=False, progress=False)
    assert found.lr == 2e-3 and not found.descended and found.rule == 'no descent: the default 0.002'


# The fit check on recorded histories (issue 22): measured on user data, a late learner started at epoch ~8-11 and a
# pretrained stage 2 was stopped while its train loss fell from 4.27 to 0.81 (validation flat). Neither may be stopped;
# a run that is flat in every sign still is. `Replay` feeds the callback a recorded history, epoch by epoch.
class Replay(Callback):
    order = 52                                           # after HistoryCB would have written the epoch
    def __init__(self, h): self.h = h
    def after_epoch(self): self.learn.history = self.h.iloc[:self.learn.epoch + 1].reset_index(drop=True)


def replay(h, **kw):
    "The epoch (1-based) at which `FitCheckCB(**kw)` stops the recorded history `h`, or None; and the learner."
    (x, y), = [toy_data(8)]
    learn = Learner(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2)),
                    DataLoader(TensorDataset(x.float() / 255, y), batch_size=8), cbs=[Replay(h), FitCheckCB(**kw)],
                    name='job')
    try: learn.fit(len(h)); return None, learn
    except NotLearning: return learn.epoch + 1, learn


def history(train_loss, val_auroc, base=0.6931, chance=0.58):
    n = len(train_loss)
    return pd.DataFrame(dict(epoch=range(n), train_loss=train_loss, base_loss=base, val_auroc=val_auroc,
                             val_auroc_chance=chance))


FLAT = [0.70, 0.694, 0.693, 0.694, 0.693, 0.693, 0.694, 0.693, 0.693, 0.694, 0.693, 0.693, 0.694, 0.693]
LATE = FLAT[:8] + [0.68, 0.65, 0.61, 0.57, 0.52, 0.48]                  # falls from epoch 9 (1-based) on
LATE_AUC = [0.5, 0.52, 0.49, 0.5, 0.51, 0.5, 0.49, 0.52, 0.55, 0.57, 0.62, 0.68, 0.72, 0.75]


def test_fit_check_waits_for_a_late_learner():
    at, learn = replay(history(LATE, LATE_AUC))
    v = learn.records['fit_check']                       # judged at epoch 10: its loss has left the base loss
    assert at is None and not v['stuck'] and v['loss_falling'] and v['checked_at'] == 9
    assert replay(history(LATE, LATE_AUC), epochs=5)[0] == 5       # the old fixed check at epoch 5 stopped it


def test_fit_check_never_stops_a_falling_train_loss():
    "A stage 2 whose train loss falls 4.27 -> 0.81 while validation stays at chance and above the base loss."
    loss = list(np.geomspace(4.27, 0.81, 12))
    at, learn = replay(history(loss, [0.5] * 12, base=0.75), epochs=3)
    v = learn.records['fit_check']
    assert at is None and v['stuck'] and v['loss_falling'] and not v['stop'] and v['checked_at'] == 11


def test_fit_check_stops_a_flat_run_with_advice_for_what_it_does_not_use():
    at, learn = replay(history(FLAT, [0.5] * len(FLAT)))
    v = learn.records['fit_check']
    assert at == 10 and v['stop'] and not v['loss_falling'] and abs(v['loss_drop']) < 0.02
    used = dict(v, lr=3e-4, lr_found=True, pretrained='efficientnet_lite0.imagenet-pypi', aug='light')
    msg = not_learning_message(used)
    assert "lr='find'" not in msg and 'pretrained weights' not in msg and "lighter preset than 'light'" in msg
    assert 'fit_check_epochs, now 10' in msg and '-p fit_check false' in msg
    assert 'pretrained weights' in not_learning_message(dict(used, pretrained=None))
    assert "or lr='find'" in not_learning_message(dict(used, lr_found=False))


def test_loss_trend():
    assert loss_trend([0.9, 0.8, 0.7, 0.6])['falling'] and not loss_trend(FLAT)['falling']
    assert not loss_trend([0.6, 0.7, 0.8])['falling'] and not loss_trend([0.5])['falling']
    assert not loss_trend([0.7, float('nan'), 0.5])['falling']
