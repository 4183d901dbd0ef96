"""Report building blocks without a training run: the HTML contents list and the training table read from artifact
metadata files written on disk (epochs counted from 1 where a person reads them)."""
import json
from cherry_nb.faces.report.core import Report, training_table


def test_html_has_a_contents_list_linking_every_section():
    rep = Report('R', {'Date': 'today'}).add('Executive Summary', 'x').add('Calibration', '| a |\n|---|\n| 1 |')
    html = rep.to_html()
    assert html.index('<nav class="contents">') < html.index('<h2 id="section-1">Executive Summary</h2>')
    assert '<a href="#section-2">Calibration</a>' in html and '<h2 id="section-2">Calibration</h2>' in html


def test_training_table_counts_epochs_from_one(tmp_path):
    (tmp_path / 'artifacts').mkdir()
    hist = [dict(epoch=e, train_loss=1.0 - 0.1 * e, val_loss=0.9 - 0.05 * e, val_auroc=0.6 + 0.1 * e) for e in range(3)]
    (tmp_path / 'artifacts' / 'stage1.json').write_text(json.dumps(dict(metrics=dict(history=hist, best_epoch=1))))
    t = training_table(tmp_path)
    assert t.to_dict('records') == [{'Job': 'stage1', 'Epochs': 3, 'Kept epoch': 2, 'Train loss': 0.9,
                                     'Val loss': 0.85, 'Val AUROC': 0.7}]
