"""Sphinx configuration of the cherry_nb docs site (built by `python tests/build_docs.py`, which writes the pages).

Sphinx + MyST-NB + furo, all pure Python: the notebooks are rendered from nbdev's doc processing of their executed
copies (the build runs them first; Sphinx executes nothing); a page with a plotly figure loads plotly.js from the
site (_static/plotly.min.js, the plotly package's own copy; no CDN); the API pages come from autodoc, with each
parameter's docments comment (nbdev style: one trailing comment per argument) added as a `:param:` field."""
from configparser import ConfigParser
from pathlib import Path

_cfg = ConfigParser(delimiters=['=']); _cfg.read(Path(__file__).resolve().parents[1]/'settings.ini', encoding='utf-8')
_d = _cfg['DEFAULT']

project = _d['lib_name']
author = _d['author']
copyright = _d['copyright']
release = version = _d['version']
html_title = f"{project} {version}"

extensions = ['myst_nb', 'sphinx.ext.autodoc']
root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']
nb_execution_mode = 'off'                # render the stored outputs (tests/build_docs.py ran the notebooks)
nb_merge_streams = True
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3
default_role = 'code'                    # nbdev docstrings write `name` for code
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True         # show `CLASSES_3`, not the tuple it holds
autodoc_mock_imports = []
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'myst.xref_missing', 'docutils',
                     'autodoc.import_object']
html_theme = 'furo'
html_show_sourcelink = False


def add_docments(app, what, name, obj, options, lines):
    "autodoc-process-docstring: one `:param name: comment` line per documented argument (fastcore docments)."
    if what not in ('function', 'method', 'class'): return
    try:
        from fastcore.docments import docments
        d = docments(obj, full=True)
    except Exception: return
    fields = [f":param {k}: {v['docment']}" for k, v in d.items() if k != 'return' and v.get('docment')]
    if (d.get('return') or {}).get('docment'): fields.append(f":returns: {d['return']['docment']}")
    if fields and lines and lines[-1].strip(): lines.append('')
    lines.extend(fields)


PLOTLY_JS = 'plotly.min.js'


def copy_plotly_js(app):
    "builder-inited: plotly.js from the installed plotly package into the site's _static (pages load it locally)."
    import shutil, plotly
    static = Path(app.outdir)/'_static'; static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent/'package_data'/PLOTLY_JS, static/PLOTLY_JS)


def plotly_js_on_figure_pages(app, pagename, templatename, context, doctree):
    "html-page-context: a page with a plotly figure loads _static/plotly.min.js (in <head>, before its figures)."
    if 'plotly-graph-div' in context.get('body', ''): app.add_js_file(PLOTLY_JS)


def setup(app):
    app.connect('autodoc-process-docstring', add_docments)
    app.connect('builder-inited', copy_plotly_js)
    app.connect('html-page-context', plotly_js_on_figure_pages)
    return dict(parallel_read_safe=True)
