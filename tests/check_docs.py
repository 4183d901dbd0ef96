"""Every notebook processes cleanly under nbdev's doc processing (what `nbdev_docs` and `nbdev_proc_nbs` do first).

For each notebook this runs nbdev's own processors (`nbdev.processors.FilterDefaults`: frontmatter, `add_show_docs`,
`exec_show_docs`, `rm_export`, ...) in a process of its own, as `nbdev.serve_drv` does, but without nbdev's
`_pre_docs`, which installs quarto when it is missing (and with it `pip install -e` the repository). Doc processing
executes, in one IPython shell per notebook, every code cell that
- carries `#| export`, `#| exporti`, `#| exports` or `#| exec_doc`, or
- has an `import` statement anywhere, or
- calls `show_doc(...)` at its top level, and the `show_doc` cells nbdev adds after exported definitions,
unless the cell carries `#| eval: false` (which `nbdev_test` honours too). Test flags (`#| slow`, `#| cuda`) do NOT
stop it, so two rules keep training and data rendering out of it:
1. it must run without error (a cell it runs must not read a name from a cell it skips);
2. a cell it runs for its imports holds imports and `show_doc` calls only: other code goes into a cell of its own.
Checks every notebook in nbs/ and nbs/tutorials/ (not nbs/workflows/, which papermill runs and nbdev skips).

Usage: python tests/check_docs.py [NOTEBOOK ...] [--out DIR] [--workers N] [--timeout S]
  --out DIR: also write the processed notebooks there (tests/build_docs.py builds the site from them).
       python tests/check_docs.py --fix NOTEBOOK ...   splits rule 2's imports into a cell of their own before each
       cell it names (then run nbdev_clean and nbdev_test on the notebook).
Exits 1 naming each failing notebook, cell (index in the notebook as saved, and id) and error.
"""
import argparse, ast, hashlib, json, os, queue, re, subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
EXEC_DIRECTIVES = {'export', 'exports', 'exporti', 'exec_doc'}


def notebooks(root=NBS) -> list:
    "The notebooks doc processing reads: nbs/*.ipynb and nbs/tutorials/*.ipynb."
    return sorted(root.glob('*.ipynb')) + sorted((root/'tutorials').glob('*.ipynb'))


def _is_show_doc(stmt) -> bool:
    f = getattr(getattr(stmt, 'value', None), 'func', None)
    return isinstance(stmt, ast.Expr) and isinstance(f, ast.Name) and f.id == 'show_doc'


def _docs_nb(nb_path):
    "The notebook as doc processing sees it: (cells as saved, with directives_, has_docs, skip_showdoc)."
    from execnb.nbio import read_nb
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    from nbdev.processors import add_show_docs, populate_language
    nb = read_nb(nb_path); cells = list(nb.cells)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        NBProcessor(nb=nb, procs=[FrontmatterProc, populate_language, add_show_docs], rm_directives=False).process()
    fm = getattr(nb, 'frontmatter_', {}) or {}
    return cells, bool(nb.has_docs_), str(fm.get('skip_showdoc', '')).lower() in ('true', '1', 'yes')


def static_problems(nb_path) -> list:
    "Rule 2: cells that doc processing runs for their imports or `show_doc` and that do other work too (dicts)."
    from nbdev.processors import _do_eval
    cells, has_docs, skip = _docs_nb(nb_path)
    if not has_docs or skip: return []          # exec_show_docs runs nothing in such a notebook
    out = []
    for i, cell in enumerate(cells):
        if cell.cell_type != 'code' or cell.directives_.keys() & EXEC_DIRECTIVES: continue
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if not _do_eval(cell): continue
        tree = cell.parsed_()
        other = [s for s in tree if not isinstance(s, (ast.Import, ast.ImportFrom)) and not _is_show_doc(s)]
        nested = [n for s in other for n in ast.walk(s) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if not other: continue
        why = ('an import inside other code' if nested else 'imports') if not any(map(_is_show_doc, tree)) \
            else 'show_doc'
        fix = ('move the import out of the code (to a cell of imports)' if nested else
               'put the imports in a cell of their own (tests/check_docs.py --fix NOTEBOOK does this)'
               if why == 'imports' else 'put the show_doc calls in a cell of their own')
        out.append(dict(cell=i, id=cell.get('id'), source=cell.source,
                        error=f"doc processing runs this cell ({why}) and so runs its other code too (line "
                              f"{other[0].lineno}): {fix}"))
    return out


def _split_source(src: str):
    "(imports, rest) of a cell whose top-level imports can move into a cell before it; None if they cannot."
    lines = src.splitlines(keepends=True)
    n_dir = next((i for i, l in enumerate(lines) if not re.match(r'\s*#\|', l)), len(lines))
    dirs, body = ''.join(lines[:n_dir]), lines[n_dir:]
    tree = ast.parse(''.join(body))
    imps = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    if not imps or any(isinstance(n, (ast.Import, ast.ImportFrom)) for s in tree.body if s not in imps
                       for n in ast.walk(s)): return None
    take, cuts = set(), {}
    for s in imps:
        rows = range(s.lineno - 1, s.end_lineno)
        shared = [o for o in tree.body if o is not s and o.lineno - 1 <= rows[-1] and o.end_lineno - 1 >= rows[0]]
        if not shared: take.update(rows)
        elif s.lineno == s.end_lineno: cuts.setdefault(s.lineno - 1, []).append((s.col_offset, s.end_col_offset))
        else: return None
    imp_lines, rest = [], []
    for i, l in enumerate(body):
        if i in take: imp_lines.append(l); continue
        lb = l.encode()                                # ast offsets count UTF-8 bytes
        imp_lines += [lb[a:b].decode() + '\n' for a, b in sorted(cuts.get(i, []))]
        for a, b in sorted(cuts.get(i, []), reverse=True): lb = lb[:a] + lb[b:]
        l = lb.decode()
        if i in cuts:                                  # drop the `;` the cut left behind
            l = re.sub(r';\s*;', ';', l.rstrip('\n'))
            l = re.sub(r'^(\s*);\s*', r'\1', l)
            l = re.sub(r'\s*;\s*(#.*)?$', lambda m: '  ' + m[1] if m[1] else '', l) + '\n'
            if not l.strip(): continue
        rest.append(l)
    while rest and not rest[0].strip(): rest.pop(0)
    imports = dirs + ''.join(imp_lines).rstrip('\n')
    return imports, (dirs + ''.join(rest)).rstrip('\n')


def fix(nb_path, log=print) -> int:
    "Split the imports of the cells rule 2 names into a cell of their own just before each; how many were split."
    nb_path = Path(nb_path); nb = json.loads(nb_path.read_text(encoding='utf-8'))
    ids = {d['id']: d for d in static_problems(nb_path)}
    cells, n = [], 0
    for c in nb['cells']:
        d = ids.get(c.get('id'))
        parts = _split_source(''.join(c['source'])) if d else None
        if d and parts is None: log(f"  not split (fix by hand): {describe(dict(notebook=str(nb_path), **d))}")
        if parts:
            new_id = hashlib.sha1(f"{c['id']}:imports".encode()).hexdigest()[:8]
            cells.append(dict(cell_type='code', execution_count=None, id=new_id, metadata={}, outputs=[],
                              source=parts[0].splitlines(keepends=True)))
            c = dict(c, source=parts[1].splitlines(keepends=True)); n += 1
        cells.append(c)
    if n:
        nb['cells'] = cells
        nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    log(f"{nb_path}: split the imports out of {n} cell(s)")
    return n


def process(src, dst=None) -> dict:
    "Run nbdev's doc processors on notebook `src` in this process; write the result to `dst`. A result dict."
    from execnb.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults, exec_show_docs

    class _Exec(exec_show_docs):               # nbdev's executor, remembering which cell failed
        def __call__(self, cell):
            try: return super().__call__(cell)
            except Exception as e: raise _CellError(cell) from (e.__cause__ or e)

    class _CellError(Exception):
        def __init__(self, cell): super().__init__(); self.cell = cell

    src = Path(src); nb = read_nb(src)
    saved = {id(c): (i, c.get('id')) for i, c in enumerate(nb.cells)}
    procs = [_Exec if p is exec_show_docs else p for p in FilterDefaults().procs()]
    os.environ['IN_TEST'] = '1'                 # as nbdev.serve_drv sets it
    t0, res = time.time(), dict(notebook=str(src), ok=True)
    try:
        from nbdev.process import NBProcessor
        NBProcessor(nb=nb, procs=procs).process()
    except _CellError as e:
        c, exc = e.cell, e.__cause__
        i, cid = saved.get(id(c), (None, None))
        where = dict(cell=i, id=cid) if i is not None else dict(cell=None, id=None, added='show_doc cell nbdev adds')
        res.update(ok=False, **where, source=c.source, error=f"{type(exc).__name__}: {exc}")
    except Exception as e:
        res.update(ok=False, cell=None, id=None, source='', error=f"{type(e).__name__}: {e}")
    res['seconds'] = round(time.time() - t0, 1)
    if dst is not None and res['ok']:
        Path(dst).parent.mkdir(parents=True, exist_ok=True); write_nb(nb, dst)
    return res


_WORKER = ("import importlib, json, os, sys; sys.path.insert(0, sys.argv[1])\n"
           "f = getattr(importlib.import_module(sys.argv[2]), sys.argv[3]); print('@@READY@@', flush=True)\n"
           "for line in sys.stdin:\n"
           "    src, dst, cwd = json.loads(line); os.chdir(cwd)\n"
           "    print('@@RESULT@@' + json.dumps(f(src, dst)), flush=True)\n")


class _Worker:
    """A Python process that runs `func(src, dst)` (default: process()) on one notebook after another (imports stay
    loaded, as in nbdev's pool); `func` is 'module:name' of a module in tests/, returning a result dict."""
    def __init__(self, func='check_docs:process', what='doc processing'):
        self.p, self.func, self.what = None, func, what

    def _start(self):
        self.err = tempfile.TemporaryFile(mode='w+')
        env = dict(os.environ, PYTHONHASHSEED='0', MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
        self.p = subprocess.Popen([sys.executable, '-c', _WORKER, str(Path(__file__).parent), *self.func.split(':')],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=lambda out, q: [q.put(l) for l in out] + [q.put(None)],
                         args=(self.p.stdout, self.lines), daemon=True).start()
        while (line := self.lines.get(timeout=600)) is not None and not line.startswith('@@READY@@'): pass
        if line is None: self.lines.put(None)           # it died starting: run() reports it

    def run(self, nb: Path, dst, timeout) -> dict:
        "func(nb, dst) in this worker, in nb's folder; a failed result if it takes over `timeout` s or the worker dies."
        if self.p is None: self._start()
        t0, fail = time.time(), dict(notebook=str(nb), ok=False, cell=None, id=None, source='')
        job = [str(nb), None if dst is None else str(dst), str(Path(nb).parent)]
        self.p.stdin.write(json.dumps(job) + '\n'); self.p.stdin.flush()
        while True:
            try: line = self.lines.get(timeout=max(0.1, t0 + timeout - time.time()))
            except queue.Empty:
                self.close()
                why = ' (a cell it runs trains, renders data or hangs)' if self.what == 'doc processing' else ''
                return dict(fail, seconds=timeout, timed_out=True,
                            error=f"{self.what} did not finish within {timeout} s{why}")
            if line is None:
                rc = self.p.wait(); self.err.seek(0); tail = self.err.read()[-2000:]; self.close()
                return dict(fail, seconds=round(time.time() - t0, 1),
                            error=f"the {self.what} process died (exit {rc}):\n{tail}")
            if line.startswith('@@RESULT@@'): return json.loads(line[len('@@RESULT@@'):])

    def close(self):
        if self.p is not None:
            if self.p.poll() is None: self.p.kill()
            self.p.wait(); self.p = None


def check(paths=None, out_dir=None, workers=2, timeout=300, log=print) -> list:
    """Check `paths` (default: every notebook); a list of problems (dicts), each naming notebook, cell and error.
    A notebook that breaks rule 2 is not processed (it would train or render data): fix that first."""
    paths = [Path(p).resolve() for p in (paths or notebooks())]
    problems, todo = [], queue.Queue()
    for p in paths:
        static = [dict(notebook=str(p), **d) for d in static_problems(p)]
        problems += static
        if static: log(f"FAIL         {p.relative_to(ROOT)}: not processed, {len(static)} cell(s) break rule 2")
        else: todo.put(p)

    def drain():
        w = _Worker()
        try:
            while True:
                try: p = todo.get_nowait()
                except queue.Empty: return
                r = w.run(p, None if out_dir is None else Path(out_dir)/p.relative_to(NBS), timeout)
                log(f"{'ok  ' if r['ok'] else 'FAIL'} {r['seconds']:6.1f} s  {p.relative_to(ROOT)}")
                if not r['ok']: problems.append(r)
        finally: w.close()
    threads = [threading.Thread(target=drain) for _ in range(max(1, workers))]
    for t in threads: t.start()
    for t in threads: t.join()
    return sorted(problems, key=lambda d: (d['notebook'], d.get('cell') if d.get('cell') is not None else -1))


def describe(p: dict) -> str:
    "One problem as text: notebook, cell index and id, error, the cell's first lines."
    nb = Path(p['notebook']); nb = nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb
    where = f"cell {p['cell']} (id {p['id']})" if p.get('cell') is not None else p.get('added', 'notebook')
    src = '\n'.join('    | ' + l for l in (p.get('source') or '').splitlines()[:6])
    return f"{nb} {where}: {p['error']}" + (f"\n{src}" if src else '')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to check (default: nbs/*.ipynb, nbs/tutorials/*.ipynb)')
    ap.add_argument('--out', help='write the processed notebooks into this folder')
    ap.add_argument('--workers', type=int, default=2, help='notebooks processed at once')
    ap.add_argument('--timeout', type=int, default=300, help='seconds one notebook may take')
    ap.add_argument('--fix', action='store_true',
                    help="split rule 2's imports into cells of their own in the NOTEBOOKs named (no check)")
    ap.add_argument('--static', action='store_true',
                    help="only the rules read from the source (rule 2: imports in a cell of their own); no processing")
    a = ap.parse_args(argv)
    if a.static:
        bad = [(p, d) for p in (a.notebooks or notebooks()) for d in static_problems(p)]
        for p, d in bad: print(f"FAIL {p}: cell {d['id']}: {d['error']}", file=sys.stderr)
        return 1 if bad else 0
    if a.fix:
        if not a.notebooks: ap.error('--fix needs the notebooks to change')
        for nb in a.notebooks: fix(nb)
        return 0
    t0 = time.time()
    problems = check(a.notebooks, a.out, a.workers, a.timeout)
    n = len(a.notebooks or notebooks())
    if problems:
        print(f"\nFAIL: doc processing: {len(problems)} problem(s) in {len({p['notebook'] for p in problems})} of "
              f"{n} notebooks ({time.time()-t0:.0f} s):", file=sys.stderr)
        for p in problems: print(describe(p), file=sys.stderr)
        return 1
    print(f"doc processing: all {n} notebooks clean ({time.time()-t0:.0f} s)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
