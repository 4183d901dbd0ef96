"""evaluate: predict alignment / TTA / embeddings, Predictions helpers, sklearn agreement, confusion matrix,
top losses."""
import numpy as np, pandas as pd, pytest, torch
from torch.utils.data import DataLoader, TensorDataset
from sklearn.metrics import (classification_report as sk_report, confusion_matrix as sk_cm,
                             precision_recall_fscore_support)
from cherry_nb.core import CLASSES_2, CLASSES_3, set_seed
from cherry_nb.learn.augment import EvalTransform
from cherry_nb.learn.models import create_model, grow_head
from cherry_nb.judge.evaluate import (Predictions, predict, class_report, report_markdown, confusion_table,
                                      confusion_counts, plot_confusion, top_losses, plot_top_losses)

@pytest.fixture(scope='module')
def setup():
    set_seed(0)
    imgs = torch.randint(0, 256, (11, 3, 32, 32), dtype=torch.uint8)
    ys = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1])
    return create_model('convnextv2_atto', CLASSES_2), imgs, ys

def reference(model, imgs):
    "Each image alone through the model: logits and pooled pre-logits features."
    tf = EvalTransform.from_model(model); model.eval()
    with torch.no_grad():
        outs = [(model(tf(x[None]))[0], model.forward_head(model.forward_features(tf(x[None])), pre_logits=True)[0])
                for x in imgs]
    return torch.stack([o[0] for o in outs]).numpy(), torch.stack([o[1] for o in outs]).numpy()

def test_predict_alignment_and_embeddings(setup):
    model, imgs, ys = setup
    ref_logits, ref_emb = reference(model, imgs)
    model.train()
    pr = predict(model, DataLoader(TensorDataset(imgs, ys), batch_size=4, shuffle=False), device='cpu', progress=False)
    assert model.training                                          # the caller's mode is restored
    assert isinstance(pr, Predictions) and pr.classes == CLASSES_2 and len(pr) == 11
    assert pr.logits.shape == (11, 2) and pr.emb.shape == (11, 320) and pr.logits.dtype == np.float32
    np.testing.assert_allclose(pr.logits, ref_logits, atol=1e-4)   # row i is image i
    np.testing.assert_allclose(pr.emb, ref_emb, atol=1e-4)
    np.testing.assert_allclose(pr.probs, torch.tensor(pr.logits).softmax(1).numpy(), atol=1e-6)
    assert (pr.labels == ys.numpy()).all() and (pr.preds == ref_logits.argmax(1)).all()
    np.testing.assert_allclose(pr.pit_score, pr.probs[:, 1])
    # a Dataset directly gives the same rows; a reversed dataset gives reversed rows
    pr2 = predict(model, TensorDataset(imgs, ys), batch_size=5, device='cpu', progress=False)
    np.testing.assert_allclose(pr2.logits, pr.logits, atol=1e-4)
    pr3 = predict(model, TensorDataset(imgs.flip(0), ys.flip(0)), batch_size=5, device='cpu', progress=False)
    np.testing.assert_allclose(pr3.logits[::-1], pr.logits, atol=1e-4); assert (pr3.labels[::-1] == pr.labels).all()
    with pytest.raises(ValueError, match='shuffle=False'):
        predict(model, DataLoader(TensorDataset(imgs, ys), batch_size=4, shuffle=True), device='cpu', progress=False)

def test_predict_tta_float_inputs_and_unknown_labels(setup):
    model, imgs, ys = setup
    pr = predict(model, TensorDataset(imgs, ys), device='cpu', tta=True, progress=False)
    flips = [imgs, imgs.flip(-1), imgs.flip(-2), imgs.flip(-1, -2)]
    mean = np.mean([predict(model, TensorDataset(v, ys), device='cpu', progress=False).logits for v in flips], 0)
    np.testing.assert_allclose(pr.logits, mean, atol=1e-4)
    x = EvalTransform.from_model(model)(imgs)                     # float batches are taken as already normalised
    pf = predict(model, TensorDataset(x), device='cpu', progress=False)
    np.testing.assert_allclose(pf.logits, predict(model, TensorDataset(imgs, ys), device='cpu', progress=False).logits,
                               atol=1e-4)
    assert (pf.labels == -1).all() and np.isnan(pf.loss).all()
    g = grow_head(create_model('convnextv2_atto', CLASSES_2), CLASSES_2, CLASSES_3)
    assert predict(g, TensorDataset(imgs, ys), device='cpu', progress=False).classes == CLASSES_3

def test_predictions_frame_loss_and_save(setup, tmp_path):
    model, imgs, ys = setup
    pr = predict(model, TensorDataset(imgs, ys), device='cpu', progress=False)
    df = pd.DataFrame(dict(relpath=[f'train/x/{i:03d}.png' for i in range(11)]), index=range(100, 111))
    fr = pr.to_frame(df)
    assert list(fr.relpath) == list(df.relpath) and fr.loc[3, 'y_true'] == CLASSES_2[ys[3]]
    assert np.allclose(fr.p_pit, pr.probs[:, 1]) and np.allclose(fr.pit_score, pr.pit_score)
    ce = torch.nn.functional.cross_entropy(torch.tensor(pr.logits), ys, reduction='none').numpy()
    np.testing.assert_allclose(fr.loss, ce, rtol=1e-5); assert (fr.correct == (pr.preds == ys.numpy())).all()
    with pytest.raises(ValueError, match='manifest has 3 rows but there are 11'): pr.to_frame(df.head(3))
    with pytest.raises(ValueError, match='already has columns'): pr.to_frame(fr)
    back = Predictions.load(pr.save(tmp_path / 'p.npz'))
    assert back.classes == pr.classes
    assert all(np.array_equal(getattr(back, k), getattr(pr, k)) for k in ('logits', 'probs', 'labels', 'emb'))
    sub = pr[pr.labels == 1]; assert len(sub) == int(ys.sum()) and (sub.labels == 1).all()

@pytest.mark.parametrize('zd', [0.0, 1.0, np.nan])
def test_class_report_matches_sklearn(zd):
    rng = np.random.default_rng(0)
    # class 2 (maybe) is never true; class 3 (extra) is never predicted; one class is in neither
    classes = ('clean', 'pit', 'maybe', 'extra', 'none')
    yt = rng.choice([0, 1, 3], size=200, p=[.5, .4, .1]); yp = rng.choice([0, 1, 2], size=200, p=[.5, .4, .1])
    yp[:120] = yt[:120] % 3
    rep = class_report(yt, yp, classes, zero_division=zd)
    labels = list(range(len(classes)))
    sk = sk_report(yt, yp, labels=labels, target_names=list(classes), output_dict=True, zero_division=zd)
    for c in classes + ('macro avg', 'weighted avg'):
        got = rep.loc[c, ['precision', 'recall', 'f1']].to_numpy(float)
        np.testing.assert_allclose(got, [sk[c]['precision'], sk[c]['recall'], sk[c]['f1-score']], atol=1e-12,
                                   equal_nan=True)
        assert rep.loc[c, 'support'] == sk[c]['support']
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=zd)
    np.testing.assert_allclose(rep.loc[list(classes), 'f1'].to_numpy(float), f, equal_nan=True)
    assert rep.loc['accuracy', 'f1'] == pytest.approx((yt == yp).mean()) and rep.loc['accuracy', 'support'] == 200
    assert rep.loc['maybe', 'recall'] == zd or (np.isnan(zd) and np.isnan(rep.loc['maybe', 'recall']))
    assert rep.loc['extra', 'precision'] == zd or (np.isnan(zd) and np.isnan(rep.loc['extra', 'precision']))

def test_class_report_names_ignore_and_errors():
    yt = np.array(['clean', 'pit', 'pit', 'clean']); yp = np.array(['clean', 'pit', 'clean', 'clean'])
    a = class_report(yt, yp, CLASSES_2)
    b = class_report([0, 1, 1, 0, -1], [0, 1, 0, 0, 1], CLASSES_2)          # -1 = unknown label, left out
    pd.testing.assert_frame_equal(a, b)
    assert a.loc['pit', 'recall'] == 0.5 and a.loc['clean', 'precision'] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"unknown class names \['stone'\]"):
        class_report(['stone'], ['pit'], CLASSES_2)
    with pytest.raises(ValueError, match='out of range'): class_report([0, 2], [0, 1], CLASSES_2)
    with pytest.raises(ValueError, match='no images with a known label'): class_report([-1], [0], CLASSES_2)

def test_report_markdown_seed_form():
    yt = [0] * 20 + [1] * 20 + [2] * 10; yp = [0] * 19 + [1] + [1] * 19 + [0] + [2] * 5 + [0] * 5
    md = report_markdown(class_report(yt, yp, CLASSES_3), support=False).splitlines()
    assert md[0] == '| Class | Precision | Recall | F1-Score |' and md[1].startswith('|---')
    assert md[2:5] == ['| **Clean** | 0.76 | 0.95 | 0.84 |', '| **Pit** | 0.95 | 0.95 | 0.95 |',
                       '| **Maybe** | 1.00 | 0.50 | 0.67 |']
    assert md[-1].startswith('**Accuracy:** 43/50 (86.0%, 95% CI')

def test_confusion_table_matches_sklearn_and_plot():
    rng = np.random.default_rng(1); yt = rng.integers(0, 2, 60); yp = rng.integers(0, 3, 60)
    ct = confusion_table(yt, yp, CLASSES_3)
    assert (ct.to_numpy() == sk_cm(yt, yp, labels=[0, 1, 2])).all()
    assert ct.index.name == 'true' and list(ct.columns) == list(CLASSES_3)
    for norm in ('true', 'pred', 'all'):
        np.testing.assert_allclose(confusion_table(yt, yp, CLASSES_3, normalize=norm),
                                   sk_cm(yt, yp, labels=[0, 1, 2], normalize=norm))
    fig = plot_confusion(ct)
    z = np.asarray(fig.data[0].z); assert z.shape == (3, 3) and np.allclose(z[:2].sum(1), 1) and (z[2] == 0).all()
    assert fig.data[0].text[0][0].startswith(f"{ct.iloc[0, 0]}<br>")

def test_top_losses_gallery(setup):
    model, imgs, ys = setup
    ds = TensorDataset(imgs, ys)
    pr = predict(model, ds, device='cpu', progress=False)
    idx = top_losses(pr, 4)
    assert (pr.loss[idx] == np.sort(pr.loss)[::-1][:4]).all()
    wrong = top_losses(pr, 20, only_wrong=True)
    assert set(wrong) == set(np.flatnonzero(pr.preds != pr.labels))
    fig = plot_top_losses(pr, ds, k=4, ncols=2, names=[f'img{i}' for i in range(11)])
    assert len(fig.data) == 4
    for tr, i in zip(fig.data, idx): assert np.array_equal(np.asarray(tr.z), imgs[i].permute(1, 2, 0).numpy())
    t = fig.layout.annotations[0].text
    assert t.startswith(f"#{idx[0]} {CLASSES_2[ys[idx[0]]]} → {CLASSES_2[pr.preds[idx[0]]]}")
    assert f"loss {pr.loss[idx[0]]:.2f}" in t
    assert len(plot_top_losses(pr, imgs, k=3).data) == 3                  # a plain uint8 tensor works too
