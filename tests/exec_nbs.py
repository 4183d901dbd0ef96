"""Run the notebooks as `nbdev_test` does, through nbdev's own `test_nb`, and keep what they output.

Each notebook runs under nbdev's `test_nb` (cells flagged with settings.ini's tst_flags, `slow` and `cuda`, and cells
with `#| eval: false` are skipped; `IN_TEST` is set; the notebook's folder is the working directory), in a worker
process that runs one notebook after another (imports stay loaded, as in nbdev_test's pool) and is killed past
--timeout seconds. With --out, each notebook that passes is written there as its executed copy: the notebook as saved,
with the outputs of the cells that ran. The docs site build renders those copies (tests/build_docs.py --executed
DIR), so tests/run.sh runs every notebook once, for its test and for the site. The source notebooks stay unchanged.

Notebooks: nbs/*.ipynb and nbs/tutorials/*.ipynb, found by glob (never nbs/workflows/, which train full models).

Usage: python tests/exec_nbs.py [NOTEBOOK ...] [--out DIR] [--workers 2] [--timeout S] [--timing]
Exits 1 naming each notebook that failed (with nbdev's traceback) or ran past the timeout.
"""
import argparse, contextlib, io, json, queue, sys, threading, time
from pathlib import Path

import nbdev.test as nt                        # imported before a worker's clock starts (the budget is the notebook's)
from execnb.nbio import nb2dict
from nbdev.config import get_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_docs import NBS, ROOT, _Worker, notebooks  # noqa: E402


def with_outputs(src, executed: dict) -> dict:
    "Notebook `src` as saved (JSON), each code cell given the outputs of its executed cell (`executed`: nb2dict)."
    nb = json.loads(Path(src).read_text(encoding='utf-8'))
    ran = {c.get('id'): c for c in executed['cells'] if c.get('cell_type') == 'code' and c.get('outputs')}
    for c in nb['cells']:
        if c['cell_type'] == 'code' and c.get('id') in ran: c['outputs'] = ran[c['id']]['outputs']
    return nb


def same_cells(a, b) -> bool:
    "Do notebooks `a` and `b` (paths) hold the same cells (type and source)? An executed copy is stale otherwise."
    cells = lambda p: [(c['cell_type'], ''.join(c['source'])) for c in
                       json.loads(Path(p).read_text(encoding='utf-8'))['cells']]
    return cells(a) == cells(b)


def nbs_rel(p) -> Path:
    "Notebook `p`'s path under nbs/ ('tutorials/colab.ipynb'); its name for a notebook elsewhere."
    p = Path(p); return p.relative_to(NBS) if p.is_relative_to(NBS) else Path(p.name)


def run_nb(src, dst=None) -> dict:
    "nbdev's `test_nb` on notebook `src`; if it passes and `dst` is given, its executed copy is written there."
    seen = []

    class _Keep(nt.NBProcessor):                   # the notebook test_nb reads and runs, to keep its outputs
        def __init__(self, *a, **kw): super().__init__(*a, **kw); seen.append(self.nb)
    cfg, orig, err, t0 = get_config(), nt.NBProcessor, io.StringIO(), time.time()
    nt.NBProcessor = _Keep
    try:
        with contextlib.redirect_stderr(err):
            ok, _ = nt.test_nb(Path(src).resolve(), skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path)
    finally: nt.NBProcessor = orig
    res = dict(notebook=str(src), ok=bool(ok), seconds=round(time.time() - t0, 1))
    if not ok: res['error'] = err.getvalue()[-6000:] or 'failed'
    if dst is not None:
        dst = Path(dst); dst.unlink(missing_ok=True)
        if ok and seen:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(with_outputs(src, nb2dict(seen[-1])), indent=1, ensure_ascii=False),
                           encoding='utf-8')
    return res


def execute(paths=None, out_dir=None, workers=2, timeout=3600, log=print) -> list:
    "Run `paths` (default: every notebook nbdev_test reads, and the tutorials); one result dict per notebook."
    paths = [Path(p).resolve() for p in (paths or notebooks())]
    todo, results = queue.Queue(), []
    for p in paths: todo.put(p)

    def drain():
        w = _Worker('exec_nbs:run_nb', 'the notebook run')
        try:
            while True:
                try: p = todo.get_nowait()
                except queue.Empty: return
                dst = None if out_dir is None else Path(out_dir).resolve()/nbs_rel(p)
                if dst is not None: dst.unlink(missing_ok=True)
                r = w.run(p, dst, timeout)
                log(f"{'ok  ' if r['ok'] else 'FAIL'} {r['seconds']:6.1f} s  {_rel(p)}")
                results.append(r)
        finally: w.close()
    threads = [threading.Thread(target=drain) for _ in range(max(1, workers))]
    for t in threads: t.start()
    for t in threads: t.join()
    return sorted(results, key=lambda r: r['notebook'])


def _rel(p):
    p = Path(p); return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: nbs/*.ipynb, nbs/tutorials/*.ipynb)')
    ap.add_argument('--out', help='write the executed copies into this folder (as nbs/ is laid out)')
    ap.add_argument('--workers', type=int, default=2, help='notebooks run at once')
    ap.add_argument('--timeout', type=int, default=3600, help='seconds one notebook may take')
    ap.add_argument('--timing', action='store_true', help='list the notebooks by time taken')
    a = ap.parse_args(argv)
    t0 = time.time()
    res = execute(a.notebooks, a.out, a.workers, a.timeout)
    if a.timing:
        for r in sorted(res, key=lambda r: -r['seconds']): print(f"{Path(r['notebook']).name}: {r['seconds']:.0f} secs")
    bad = [r for r in res if not r['ok']]
    if bad:
        for r in bad: print(f"\n{_rel(r['notebook'])}:\n{r['error']}", file=sys.stderr)
        print(f"\nFAIL: {len(bad)} of {len(res)} notebooks failed ({time.time() - t0:.0f} s):\n\t"
              + '\n\t'.join(str(_rel(r['notebook'])) for r in bad), file=sys.stderr)
        return 1
    print(f"all {len(res)} notebooks passed ({time.time() - t0:.0f} s)" + (f"; executed copies in {a.out}" if a.out
                                                                            else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
