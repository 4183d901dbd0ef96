"""Build the cherry_nb docs site with Sphinx + MyST-NB (pure Python, offline; no quarto, no node), with the notebooks'
outputs and plotly figures.

1. Execution (tests/exec_nbs.py): each notebook in nbs/*.ipynb and nbs/tutorials/*.ipynb (found by glob; never
   nbs/workflows/, which train full models) runs under nbdev's `test_nb`, skipping the cells flagged `slow` or `cuda`
   (settings.ini's tst_flags) as nbdev_test does, with a time budget per notebook (--budget). Its executed copy (the
   notebook as saved, plus the outputs) goes into WORK/executed; the source notebooks stay unchanged and clean.
   `--executed DIR` reuses the copies tests/exec_nbs.py wrote there (tests/run.sh runs every notebook once, for its
   test and for the site); a copy whose cells differ from the notebook's is stale and that notebook runs again.
   A notebook that fails or runs over its budget is rendered without outputs and named in the build's summary.
2. Doc processing (tests/check_docs.py): nbdev's own processors run on every notebook, as `nbdev_docs` would, and
   the build stops if one fails. It never calls nbdev's `_pre_docs`, so it never installs quarto nor runs
   `pip install -e` (what `nbdev_docs` and `nbdev_proc_nbs` do when quarto is missing).
3. Pages, written into WORK/src: the README as the home page; each processed notebook as a page (its cells, with the
   outputs of its executed copy matched by cell id; the `show_doc` output of every exported function and class:
   signature with its docments, docstring); the tutorials; an API page per module (autodoc: signatures and each
   parameter's docments comment, docs/conf.py).
   A plotly figure becomes HTML drawn by plotly.js from the site itself (_static/plotly.min.js, copied from the
   plotly package and loaded by the pages that have a figure; no CDN).
4. `sphinx-build` with docs/conf.py, into OUT (MyST-NB renders the stored outputs; it executes nothing itself).

Usage: python tests/build_docs.py [--out site] [--work build/docs] [--workers 2] [--budget 120] [--executed DIR]
                                  [--no-execute]
Where quarto is installed, `nbdev_docs` builds nbdev's own quarto site into _docs/ from the same notebooks.
"""
import argparse, json, re, shutil, subprocess, sys, time
from configparser import ConfigParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_docs import NBS, ROOT, check, describe, notebooks  # noqa: E402
import exec_nbs  # noqa: E402

_cfg = ConfigParser(delimiters=['=']); _cfg.read(ROOT/'settings.ini', encoding='utf-8')
DOC_URL = _cfg['DEFAULT']['doc_host'].rstrip('/') + _cfg['DEFAULT']['doc_baseurl'].rstrip('/') + '/'
_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_link = re.compile(r'\[([^\]]*)\]\(' + re.escape(DOC_URL) + r'([^)\s]+)\)')


def _modidx() -> dict:
    "cherry_nb's nbdev index: {'cherry_nb.core.rate': ('core.html#rate', 'cherry_nb/core.py'), ...} by module."
    import importlib
    return importlib.import_module('cherry_nb._modidx').d['syms']


def _link_targets() -> dict:
    "nbdev doc URL ('core.html#rate') -> the Python name autodoc documents ('cherry_nb.core.rate')."
    return {url: name for mod in _modidx().values() for name, (url, _) in mod.items()}


def relink(md: str, targets: dict) -> str:
    "nbdev's links to its quarto pages (`[`rate`](https://.../core.html#rate)`) become cross-references."
    def sub(m):
        text, name = m[1].strip('`'), targets.get(m[2])
        return f"{{py:obj}}`{text} <{name}>`" if name else f"`{text}`"
    parts = re.split(r'(^```.*?^```)', md, flags=re.S | re.M)          # inside code blocks a link is its text
    return ''.join(_re_link.sub(lambda m: m[1].strip('`'), p) if p.startswith('```') else _re_link.sub(sub, p)
                   for p in parts)


def _directives(src: str):
    "({directive: value}, source without the leading `#|` lines)."
    lines, d = src.splitlines(), {}
    while lines and _re_dir.match(lines[0]):
        k, v = _re_dir.match(lines[0]).groups(); d[k] = v.strip('"\''); lines.pop(0)
    return d, '\n'.join(lines)


def _show_doc_md(md: str) -> str:
    "show_doc's markdown for Sphinx: no rule before the entry, no quarto attributes on the source link."
    md = re.sub(r'^\s*---\s*\n', '', md)
    return re.sub(r'(\[source\]\([^)]*\))\{[^}]*\}', r'\1', md)


def _md_cell(src): return dict(cell_type='markdown', metadata={}, source=src)


def page_cells(nb: dict, targets: dict) -> list:
    "The cells of a processed notebook as MyST-NB renders them (quarto cell options turned into what they mean)."
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw' and src.startswith('---'):           # nbdev's frontmatter: title and summary
            import yaml
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            out.append(_md_cell(f"# {fm.get('title', '')}\n\n" + (f"> {fm['description']}\n" if fm.get('description')
                                                                     else ''))); continue
        if c['cell_type'] == 'markdown': out.append(_md_cell(relink(src, targets))); continue
        if c['cell_type'] != 'code': continue
        d, code = _directives(src)
        if d.get('include') == 'false': continue
        outputs = c.get('outputs', [])
        if d.get('output') == 'asis':                                     # show_doc: its markdown is the page text
            if d.get('echo') != 'false' and code.strip(): out.append(dict(c, source=code, outputs=[]))
            for o in outputs:
                md = ''.join((o.get('data') or {}).get('text/markdown', []))
                if md: out.append(_md_cell(relink(_show_doc_md(md), targets)))
            continue
        if not code.strip(): continue
        tags = ['remove-input'] if d.get('echo') == 'false' else []
        if d.get('output') == 'false': tags.append('remove-output')
        meta = dict(c.get('metadata', {}), tags=tags) if tags else {k: v for k, v in c.get('metadata', {}).items()
                                                                      if k != 'language'}
        out.append(dict(c, source=code, metadata=meta, outputs=web_outputs(outputs)))
    return out


PLOTLY = 'application/vnd.plotly.v1+json'


def _plotly_html(fig) -> str:
    """A plotly figure (its JSON) as a <div> that the page's plotly.js draws: no plotly.js, no MathJax, no CDN in it.
    Its script waits for DOMContentLoaded, as the theme loads the page's scripts (plotly.js) at the end of <body>."""
    import plotly.io as pio
    fig = json.loads(fig) if isinstance(fig, str) else fig
    html = pio.to_html(fig, include_plotlyjs=False, include_mathjax=False, full_html=False, validate=False,
                       default_height='525px')
    return re.sub(r'<script[^>]*>(.*?)</script>',
                  lambda m: f"<script>window.addEventListener('DOMContentLoaded', function () {{{m[1]}}});</script>",
                  html, flags=re.S)


def web_outputs(outputs: list) -> list:
    """A code cell's outputs for its page: each plotly figure as HTML (`_plotly_html`); plotly's notebook loader (a
    copy of plotly.js, 4.8 MB, in the first figure's cell) and empty results dropped."""
    out = []
    for o in outputs:
        d = o.get('data') or {}
        if o.get('output_type') in ('display_data', 'execute_result') and not d: continue
        html = ''.join(d.get('text/html', ''))
        if 'window.PlotlyConfig' in html and 'plotly-graph-div' not in html: continue
        if PLOTLY in d: o = dict(o, data={'text/html': _plotly_html(d[PLOTLY])})
        out.append(o)
    return out


def add_outputs(nb: dict, executed) -> dict:
    """Processed notebook `nb` with the outputs of its executed copy (path): each code cell that doc processing left
    without outputs gets those of the executed cell with its id (the cells nbdev adds for show_doc have none)."""
    ran = {c.get('id'): c.get('outputs') for c in json.loads(Path(executed).read_text(encoding='utf-8'))['cells']
           if c['cell_type'] == 'code' and c.get('outputs')}
    nb['cells'] = [dict(c, outputs=ran[c.get('id')]) if c['cell_type'] == 'code' and not c.get('outputs')
                   and c.get('id') in ran else c for c in nb['cells']]
    return nb


def write_page(proc_nb: Path, dest: Path, targets: dict, executed=None):
    "One processed notebook as a page notebook at `dest`, with the outputs of its `executed` copy if there is one."
    nb = json.loads(proc_nb.read_text(encoding='utf-8'))
    if executed: nb = add_outputs(nb, executed)
    nb['cells'] = [dict(c, id=f"c{i}") for i, c in enumerate(page_cells(nb, targets))]
    nb['metadata'] = {k: v for k, v in nb['metadata'].items() if k in ('kernelspec', 'language_info')}
    nb['nbformat'], nb['nbformat_minor'] = 4, 5
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')


def _page_name(proc_nb: Path) -> str:
    "nbdev's page name ('core' for 00_core.ipynb): its frontmatter's output-file, or the file name."
    nb = json.loads(proc_nb.read_text(encoding='utf-8'))
    raw = next((''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'raw'), '')
    m = re.search(r'^output-file:\s*(\S+)\.html\s*$', raw, re.M)
    return m[1] if m else re.sub(r'^\d+[a-z]?_', '', proc_nb.stem)


def home_page(modules, pages, tutorials) -> str:
    "README.md (generated from nbs/index.ipynb) as the home page, with the site's tables of contents."
    md = re.sub(r'^<!--.*?-->\s*', '', (ROOT/'README.md').read_text(encoding='utf-8'), flags=re.S)
    md = md.replace('](nbs/tutorials/', '](tutorials/')
    toc = lambda cap, items: (f"\n```{{toctree}}\n:caption: {cap}\n:maxdepth: 1\n:hidden:\n\n" + '\n'.join(items)
                              + '\n```\n')
    return (md + toc('Tutorials', tutorials) + toc('Modules (notebooks)', pages)
            + toc('API reference', [f'api/{m}' for m in modules]))


def api_page(mod: str, page: str | None) -> str:
    "An autodoc page (reST) for module `mod`: every name of its `__all__`, with signatures and docments."
    see = f"The notebook that defines it, with examples: :doc:`../{page}`.\n\n" if page else ''
    return f"{mod}\n{'=' * len(mod)}\n\n{see}.. automodule:: {mod}\n   :members:\n"


def _pages_of_modules() -> dict:
    "Module -> the page of the notebook that exports it ('cherry_nb.run.ray_jobs' -> 'ray'), from nbdev's index."
    return {m: next(iter(syms.values()))[0].split('.html')[0] for m, syms in _modidx().items() if syms}


def write_sources(proc: Path, src: Path, executed=None) -> dict:
    """Every page of the site into `src`, each notebook with the outputs of its executed copy (`executed`: {path
    under nbs/: copy}); what was written ({'pages', 'tutorials', 'modules', 'nb_pages'})."""
    executed = executed or {}
    if src.exists(): shutil.rmtree(src)
    (src/'api').mkdir(parents=True)
    targets, pages, tutorials, nb_pages = _link_targets(), [], [], {}
    for nb in sorted(proc.rglob('*.ipynb')):
        rel = nb.relative_to(proc)
        if rel == Path('index.ipynb'): continue                             # the home page is README.md
        name = f"tutorials/{rel.stem}" if rel.parts[0] == 'tutorials' else _page_name(nb)
        write_page(nb, src/f"{name}.ipynb", targets, executed.get(rel.as_posix()))
        (tutorials if name.startswith('tutorials/') else pages).append(name)
        nb_pages[rel.as_posix()] = name
    mods = sorted(_modidx())
    page_of = _pages_of_modules()
    for m in mods: (src/'api'/f'{m}.rst').write_text(api_page(m, page_of.get(m) if page_of.get(m) in pages else None))
    (src/'index.md').write_text(home_page(mods, pages, tutorials), encoding='utf-8')
    return dict(pages=pages, tutorials=tutorials, modules=mods, nb_pages=nb_pages)


def sphinx(src: Path, out: Path, doctrees: Path, jobs: int = 1, log=print):
    "sphinx-build -b html with docs/conf.py; raises with its output when it fails."
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-c', str(ROOT/'docs'), '-d', str(doctrees),
           '-j', str(jobs), str(src), str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    warns = [l for l in p.stderr.splitlines() if 'WARNING' in l or 'ERROR' in l]
    for w in warns[:40]: log(w)
    if p.returncode:
        raise RuntimeError(f"sphinx-build failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return warns


def executed_copies(nbs: list, work: Path, executed=None, execute=True, budget=120, workers=2,
                    log=print) -> tuple:
    """Step 1: ({notebook: its executed copy}, {notebook: why it has no outputs}). Copies in `executed` whose cells
    match the notebook's are reused; the other notebooks in `execute` (True: all) run under `budget` s each."""
    ready, why, todo = {}, {}, []
    sel = set(nbs) if execute is True else {Path(p).resolve() for p in (execute or [])}
    for nb in nbs:
        copy = Path(executed).resolve()/exec_nbs.nbs_rel(nb) if executed else None
        if copy is not None and copy.is_file() and exec_nbs.same_cells(nb, copy): ready[nb] = copy
        elif nb in sel: todo.append(nb)
        else: why[nb] = 'not executed (' + ('its executed copy is stale' if copy and copy.is_file() else
                                            'not selected' if execute else '--no-execute') + ')'
    if todo:
        dst = work/'executed'
        for r in exec_nbs.execute(todo, dst, workers, budget, log=log):
            nb = Path(r['notebook'])
            if r['ok']: ready[nb] = dst/exec_nbs.nbs_rel(nb); continue
            why[nb] = (f"over its {budget} s budget" if r.get('timed_out') else
                       'failed: ' + (r['error'].strip().splitlines() or ['?'])[-1][:200])
    return ready, why


def build(out='site', work='build/docs', workers=2, log=print, executed=None, execute=True, budget=120) -> dict:
    """Execution, doc processing, pages, Sphinx: the site in `out` (index.html); a summary dict (also in
    `out`/_build.json). Raises on a doc processing or Sphinx failure; a notebook that fails or runs over `budget` s
    is named in `no_outputs`."""
    out, work, t0 = Path(out).resolve(), Path(work).resolve(), time.time()
    nbs = [p.resolve() for p in notebooks()]
    ready, why = executed_copies(nbs, work, executed, execute, budget, workers, log)
    t1 = time.time()
    proc = work/'proc'
    if proc.exists(): shutil.rmtree(proc)
    problems = check(nbs, proc, workers, log=log)
    if problems:
        raise SystemExit("FAIL: doc processing:\n" + '\n'.join(describe(p) for p in problems))
    t2 = time.time()
    rel = lambda p: exec_nbs.nbs_rel(p).as_posix()
    made = write_sources(proc, work/'src', {rel(p): c for p, c in ready.items()})
    if out.exists(): shutil.rmtree(out)
    warns = sphinx(work/'src', out, work/'doctrees', jobs=workers, log=log)
    res = dict(made, out=str(out), warnings=len(warns), with_outputs={rel(p): str(c) for p, c in sorted(ready.items())},
               no_outputs={rel(p): w for p, w in sorted(why.items())}, execute_s=round(t1 - t0, 1),
               process_s=round(t2 - t1, 1), sphinx_s=round(time.time() - t2, 1), total_s=round(time.time() - t0, 1))
    (out/'_build.json').write_text(json.dumps(res, indent=1), encoding='utf-8')     # the summary, for the tests
    log(f"docs site: {out/'index.html'} ({len(made['pages'])} notebook pages, {len(made['tutorials'])} tutorials, "
        f"{len(made['modules'])} API pages; execution {res['execute_s']} s, doc processing {res['process_s']} s, "
        f"sphinx {res['sphinx_s']} s)")
    log(f"notebooks with their outputs: {len(ready)} of {len(nbs)}" + ''.join(
        f"\n  without outputs: {n}: {w}" for n, w in res['no_outputs'].items()))
    return res


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'site'), help='where the HTML site goes')
    ap.add_argument('--work', default=str(ROOT/'build'/'docs'), help='processed notebooks and page sources')
    ap.add_argument('--workers', type=int, default=2, help='notebooks run and processed at once, sphinx jobs')
    ap.add_argument('--budget', type=int, default=120, help='seconds each notebook may run')
    ap.add_argument('--executed', help="reuse the executed copies tests/exec_nbs.py --out wrote into this folder")
    ap.add_argument('--no-execute', action='store_true', help='run no notebook (only reused copies have outputs)')
    a = ap.parse_args()
    build(a.out, a.work, a.workers, executed=a.executed, execute=not a.no_execute, budget=a.budget)
