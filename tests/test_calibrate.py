"""calibrate: temperature scaling (fit, degenerate inputs, artifact meta) and ECE against torchmetrics."""
import math

import numpy as np
import pytest
import torch
from scipy import special
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from cherry_nb.judge.calibrate import (TemperatureScaler, calibration_bins, ece, fit_temperature, nll,
                                       reliability_diagram, softmax_t)
from cherry_nb.core import atomic_write_json, read_json


def overconfident(n, n_classes, sharpness, seed):
    "Labels drawn from softmax(true logits); the model's logits are `sharpness` times too sharp."
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, n_classes))
    p = special.softmax(z, 1)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return sharpness * z, y


@pytest.mark.parametrize('n_classes,sharpness', [(2, 2.5), (3, 0.5), (3, 3.0)])
def test_temperature_recovers_sharpness_and_minimises_nll(n_classes, sharpness):
    z, y = overconfident(6000, n_classes, sharpness, seed=n_classes)
    ts = TemperatureScaler.fit(z, y)
    assert abs(ts.temperature / sharpness - 1) < 0.1, ts
    assert ts.n_classes == n_classes and ts.n_cal == 6000 and ts.nll_after < ts.nll_before
    assert abs(ts.nll_before - nll(z, y)) < 1e-12 and abs(ts.nll_after - nll(z, y, ts.temperature)) < 1e-12
    # the optimum: no temperature on a fine grid does better, and the derivative vanishes
    grid = ts.temperature * np.exp(np.linspace(-0.3, 0.3, 121))
    assert ts.nll_after <= min(nll(z, y, t) for t in grid) + 1e-10
    h = 1e-4
    assert abs(nll(z, y, ts.temperature * math.exp(h)) - nll(z, y, ts.temperature * math.exp(-h))) / (2 * h) < 1e-5
    # argmax (accuracy) unchanged, probabilities are softmax(z / T)
    p = ts.probs(z)
    assert np.array_equal(p.argmax(1), z.argmax(1)) and np.allclose(p, special.softmax(z / ts.temperature, 1))


def test_single_logit_column_matches_two_logits_and_torch():
    z2, y = overconfident(3000, 2, 2.0, seed=7)
    d = z2[:, 1] - z2[:, 0]                      # single logit: p(pit) = sigmoid(d)
    t1, t2 = fit_temperature(d, y), fit_temperature(z2, y)
    t1b = fit_temperature(d[:, None], y)
    assert abs(t1.temperature - t2.temperature) < 1e-5 and abs(t1b.temperature - t1.temperature) < 1e-9
    assert np.allclose(t1.probs(d), t2.probs(z2)[:, 1]) and t1.probs(d).shape == (3000,)
    # independent check of the objective with torch's BCE on float64
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(d / t1.temperature),
                                                               torch.tensor(y, dtype=torch.float64))
    assert abs(float(bce) - t1.nll_after) < 1e-10


def test_degenerate_inputs_raise_clear_errors():
    z, _ = overconfident(50, 2, 1.0, seed=0)
    with pytest.raises(ValueError, match='at least two classes'):
        TemperatureScaler.fit(z, np.ones(50, int))
    with pytest.raises(ValueError, match='at least two classes'):
        TemperatureScaler.fit(z[:, 1], np.zeros(50, int))
    with pytest.raises(ValueError, match=r'labels must lie in 0\.\.1'):
        TemperatureScaler.fit(z, np.arange(50) % 3)
    with pytest.raises(ValueError, match='shape'):
        TemperatureScaler.fit(z, np.zeros(49, int))
    bad = z.copy(); bad[3, 0] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        TemperatureScaler.fit(bad, np.arange(50) % 2)


def test_meta_round_trip_through_json(tmp_path):
    z, y = overconfident(1000, 3, 2.0, seed=3)
    ts = fit_temperature(z, y)
    meta = dict(arch='convnextv2_atto', classes=['clean', 'pit', 'maybe'], temperature=ts.to_meta())
    back = read_json(atomic_write_json(tmp_path / 'model.json', meta))
    for m in (back, back['temperature']):
        t2 = TemperatureScaler.from_meta(m)
        assert t2 == ts and np.allclose(t2.probs(z), ts.probs(z))
    assert TemperatureScaler.from_meta(1.7).temperature == 1.7
    assert TemperatureScaler.from_meta(dict(arch='x', temperature=1.3)).temperature == 1.3
    with pytest.raises(ValueError, match='positive'):
        TemperatureScaler.from_meta(dict(temperature=-1.0))


def _tm_binary(p, y, n_bins=15):
    return float(binary_calibration_error(torch.as_tensor(p), torch.as_tensor(y), n_bins=n_bins, norm='l1'))


def _tm_multi(p, y, n_bins=15):
    return float(multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y), num_classes=p.shape[1],
                                              n_bins=n_bins, norm='l1'))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_ece_matches_torchmetrics(dtype):
    rng = np.random.default_rng(11)
    for trial in range(5):
        n = int(rng.integers(20, 3000))
        # binary: p(positive) vs labels, incl. exact 0, 1 and bin edges
        p = rng.beta(0.7, 0.7, n).astype(dtype)
        p[:6] = np.array([0, 1, 1, 0.5, 1 / 3, 14 / 15], dtype=dtype)
        y = (rng.random(n) < p ** 1.5).astype(np.int64)
        for n_bins in (15, 7):
            assert abs(ece(p, y, n_bins) - _tm_binary(p, y, n_bins)) < 1e-6
        # multiclass, top-label confidence
        z, yk = overconfident(n, 3, 3.0, seed=trial)
        pk = special.softmax(z, 1).astype(dtype)
        assert abs(ece(pk, yk) - _tm_multi(pk, yk)) < 1e-6
        assert abs(ece(pk[:, :2] / pk[:, :2].sum(1, keepdims=True), (yk > 0).astype(int))
                   - _tm_multi(pk[:, :2] / pk[:, :2].sum(1, keepdims=True), (yk > 0).astype(int))) < 1e-6
    # a perfectly confident, always-right model has zero ECE; always-wrong has ECE 1
    one_hot = np.eye(3)[[0, 1, 2, 1]]
    assert ece(one_hot, [0, 1, 2, 1]) == 0 and ece(one_hot, [1, 2, 0, 0]) == 1


def test_temperature_scaling_reduces_ece_and_diagram():
    z, y = overconfident(8000, 2, 3.0, seed=5)
    ts = fit_temperature(z[:4000], y[:4000])
    before, after = softmax_t(z[4000:]), ts.probs(z[4000:])
    e0, e1 = ece(before, y[4000:]), ece(after, y[4000:])
    assert e0 > 0.08 and e1 < 0.02 and abs(e1 - _tm_multi(after, y[4000:])) < 1e-6
    b = calibration_bins(after[:, 1], y[4000:])
    assert b['count'].sum() == 4000 and np.all(np.diff(b.lo) > 0)
    assert abs((b.gap.abs() * b.weight).sum() - ece(after[:, 1], y[4000:])) < 1e-12
    fig = reliability_diagram(before, y[4000:], probs_after=after)
    assert [tr.type for tr in fig.data] == ['bar', 'bar', 'scatter']
    assert f"{e0:.4f}" in fig.layout.title.text and f"{e1:.4f}" in fig.layout.title.text
    assert sum(fig.data[0].text) == 4000 and sum(fig.data[1].text) == 4000
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        ece(z[:10], y[:10])                   # logits are not probabilities
