"""The notebook runner behind tests/run.sh's notebook step and the docs site (tests/exec_nbs.py, build_docs.py): it
skips the cells nbdev_test skips, keeps the outputs of the cells it ran in an executed copy (the source unchanged),
and a notebook that fails or runs over its budget is left without outputs and named with the reason."""
import json, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
import build_docs, exec_nbs  # noqa: E402
import pytest  # noqa: E402


def _nb(path, *sources):
    cells = [dict(cell_type='code', execution_count=None, id=f'c{i}', metadata={}, outputs=[], source=s)
             for i, s in enumerate(sources)]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='Python 3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb, indent=1), encoding='utf-8')
    return path


@pytest.mark.slow
def test_runs_as_nbdev_test_and_names_failures(tmp_path):
    shutil.copy(ROOT / 'settings.ini', tmp_path)                  # nbdev reads its tst_flags (slow cuda) from here
    good = _nb(tmp_path / 'good.ipynb', "print('six', 2 * 3)", '#| slow\n1/0', '#| eval: false\n1/0', '40 + 2')
    bad = _nb(tmp_path / 'bad.ipynb', "print('before')", '1/0')
    slow = _nb(tmp_path / 'slow.ipynb', 'import time; time.sleep(120)')
    before = good.read_text(encoding='utf-8')
    ready, why = build_docs.executed_copies([good, bad, slow], tmp_path / 'work', budget=20, workers=2,
                                            log=lambda *a: None)
    assert list(ready) == [good] and set(why) == {bad, slow}, (ready, why)
    assert why[slow] == 'over its 20 s budget'
    assert why[bad].startswith('failed: ') and 'ZeroDivisionError' in why[bad], why[bad]
    assert good.read_text(encoding='utf-8') == before                 # the source notebook is unchanged
    copy = json.loads(ready[good].read_text(encoding='utf-8'))
    outs = [c['outputs'] for c in copy['cells']]
    assert ''.join(outs[0][0]['text']) == 'six 6\n'
    assert outs[1] == [] and outs[2] == []                             # slow and eval: false cells did not run
    assert outs[3][0]['data']['text/plain'] in ('42', ['42'])
    assert exec_nbs.same_cells(good, ready[good])
    assert not (tmp_path / 'work' / 'executed' / 'bad.ipynb').exists()   # no copy of a failed notebook
