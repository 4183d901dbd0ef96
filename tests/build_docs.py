"""Build the cherry_nb docs site with Sphinx + MyST-NB (pure Python, offline; no quarto, no node).

1. Doc processing (tests/check_docs.py): nbdev's own processors run on every notebook, as `nbdev_docs` would, and
   the build stops if one fails. It never calls nbdev's `_pre_docs`, so it never installs quarto nor runs
   `pip install -e` (what `nbdev_docs` and `nbdev_proc_nbs` do when quarto is missing).
2. Pages, written into WORK/src: the README as the home page; each processed notebook as a page (the `show_doc`
   output of every exported function and class: signature with its docments, docstring); the tutorials; an API
   page per module (autodoc: signatures and each parameter's docments comment, docs/conf.py).
3. `sphinx-build` with docs/conf.py, into OUT. Nothing is executed: notebooks show their stored outputs.

Usage: python tests/build_docs.py [--out site] [--work build/docs] [--workers 2]
Where quarto is installed, `nbdev_docs` builds nbdev's own quarto site into _docs/ from the same notebooks.
"""
import argparse, json, re, shutil, subprocess, sys, time
from configparser import ConfigParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_docs import NBS, ROOT, check, describe, notebooks  # noqa: E402

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
        out.append(dict(c, source=code, metadata=meta, outputs=outputs))
    return out


def write_page(proc_nb: Path, dest: Path, targets: dict):
    "One processed notebook as a page notebook at `dest`."
    nb = json.loads(proc_nb.read_text(encoding='utf-8'))
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


def write_sources(proc: Path, src: Path) -> dict:
    "Every page of the site into `src`; what was written ({'pages', 'tutorials', 'modules'})."
    if src.exists(): shutil.rmtree(src)
    (src/'api').mkdir(parents=True)
    targets, pages, tutorials = _link_targets(), [], []
    for nb in sorted(proc.rglob('*.ipynb')):
        rel = nb.relative_to(proc)
        if rel == Path('index.ipynb'): continue                             # the home page is README.md
        name = f"tutorials/{rel.stem}" if rel.parts[0] == 'tutorials' else _page_name(nb)
        write_page(nb, src/f"{name}.ipynb", targets)
        (tutorials if name.startswith('tutorials/') else pages).append(name)
    mods = sorted(_modidx())
    page_of = _pages_of_modules()
    for m in mods: (src/'api'/f'{m}.rst').write_text(api_page(m, page_of.get(m) if page_of.get(m) in pages else None))
    (src/'index.md').write_text(home_page(mods, pages, tutorials), encoding='utf-8')
    return dict(pages=pages, tutorials=tutorials, modules=mods)


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


def build(out='site', work='build/docs', workers=2, log=print) -> dict:
    "Doc processing, pages, Sphinx: the site in `out` (index.html); a summary dict. Raises on any failure."
    out, work, t0 = Path(out).resolve(), Path(work).resolve(), time.time()
    proc = work/'proc'
    if proc.exists(): shutil.rmtree(proc)
    problems = check(notebooks(), proc, workers, log=log)
    if problems:
        raise SystemExit("FAIL: doc processing:\n" + '\n'.join(describe(p) for p in problems))
    t1 = time.time()
    made = write_sources(proc, work/'src')
    if out.exists(): shutil.rmtree(out)
    warns = sphinx(work/'src', out, work/'doctrees', jobs=workers, log=log)
    res = dict(made, out=str(out), warnings=len(warns), process_s=round(t1 - t0, 1),
               sphinx_s=round(time.time() - t1, 1), total_s=round(time.time() - t0, 1))
    log(f"docs site: {out/'index.html'} ({len(made['pages'])} notebook pages, {len(made['tutorials'])} tutorials, "
        f"{len(made['modules'])} API pages; doc processing {res['process_s']} s, sphinx {res['sphinx_s']} s)")
    return res


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'site'), help='where the HTML site goes')
    ap.add_argument('--work', default=str(ROOT/'build'/'docs'), help='processed notebooks and page sources')
    ap.add_argument('--workers', type=int, default=2, help='notebooks processed at once, sphinx jobs')
    a = ap.parse_args()
    build(a.out, a.work, a.workers)
