"""The shape of the package: no import cycles, and no module imports one of a higher layer (DESIGN.md's map).

The import graph is read from the source (`ast`), imports inside functions included, relative and absolute, and
`importlib.import_module('cherry_nb....')` with a literal name too: a cycle closed inside a function is still one.

The counts behind it (modules per layer, cycles, upward imports, largest module and notebook cell, default
declarations of alpha / image_size / seed / arch): `python tests/test_architecture.py`."""
import ast
from pathlib import Path

import pytest

import cherry_nb

# The parts of DESIGN.md's map, from the bottom up: a module may import its own layer and the layers below it.
LAYERS = ('core', 'data', 'learn', 'judge', 'run', 'line', 'studies', 'faces')
LAYER_OF = {   # the package's parts are its subpackages (two core modules stay at the top)
    'core': 'core', 'params': 'core', 'data': 'data', 'learn': 'learn', 'judge': 'judge', 'run': 'run',
    'line': 'line', 'studies': 'studies', 'faces': 'faces',
}

# Cycles known and being removed (none left: deploy <-> watch went with the CLI-layer line commands):
# `deploy` <-> `watch` goes when the command handlers leave deploy.py and watch.py (branch `line`).
KNOWN_CYCLES_TO_REMOVE: set = set()

PKG = Path(cherry_nb.__file__).parent


def module_files(root: Path) -> dict:
    "{dotted module name relative to the package ('data.images'; '' for the package itself): file}."
    out = {}
    for p in sorted(root.rglob('*.py')):
        if p.name == '_modidx.py': continue
        parts = p.relative_to(root).with_suffix('').parts
        out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = p
    return out


def _imported(node, pkg: str, top: str) -> list:
    "Dotted names (relative to the package `top`) that an import node, or an import_module('...') call, names."
    if isinstance(node, ast.Import): names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
            b = pkg.split('.') if pkg else []
            b = b[:len(b) - (node.level - 1)] if node.level > 1 else b
            base = '.'.join([top, *b, *([base] if base else [])])
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    elif (isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', '')) == 'import_module'
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        names = [node.args[0].value]
    else: return []
    return [n[len(top) + 1:] if n.startswith(top + '.') else '' if n == top else None for n in names]


def import_graph(root: Path) -> dict:
    "{module: {imported module: line of its first import}} over the package at `root` (the package itself left out)."
    mods, top = module_files(root), root.name
    def target(n):
        while n and n not in mods: n = n.rpartition('.')[0]
        return n
    edges = {m: {} for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == '__init__.py' else m.rpartition('.')[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            for x in _imported(node, pkg, top):
                t = target(x) if x else None
                if t and t != m: edges[m].setdefault(t, node.lineno)
    return edges


def cycles(edges: dict) -> list:
    "Strongly connected components with more than one module (Tarjan, iterative), each a sorted list."
    idx, low, stack, on, out, n = {}, {}, [], set(), [], 0
    for root in edges:
        if root in idx: continue
        work = [(root, iter(edges[root]))]; idx[root] = low[root] = n; n += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in idx:
                    idx[w] = low[w] = n; n += 1; stack.append(w); on.add(w); work.append((w, iter(edges[w])))
                elif w in on: low[v] = min(low[v], idx[w])
                continue
            work.pop()
            if work: low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == idx[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v: break
                if len(comp) > 1: out.append(sorted(comp))
    return out


def layer(m: str) -> str | None:
    "The layer of module `m` (a subpackage's modules take the subpackage's layer); None when not declared."
    return LAYER_OF.get(m.split('.')[0])


def upward(edges: dict) -> list:
    "'a -> b (line n)' for every import of a module in a higher layer."
    rank = {l: i for i, l in enumerate(LAYERS)}
    return [f"{m} ({layer(m)}) -> {t} ({layer(t)}), line {ln}" for m, ts in sorted(edges.items()) if m
            for t, ln in sorted(ts.items()) if layer(m) and layer(t) and rank[layer(t)] > rank[layer(m)]]


@pytest.fixture(scope='module')
def graph(): return import_graph(PKG)


def test_every_module_lives_in_its_part(graph):
    "Every module but the two core ones sits in a subpackage named after its layer (data/, learn/, ... faces/)."
    flat = [m for m in graph if m and '.' not in m and m not in ('core', 'params') and m not in LAYERS]
    assert not flat, f"modules at the top of the package: {flat}; move each into the subpackage of its layer"


def test_every_module_has_a_layer(graph):
    assert set(LAYER_OF.values()) <= set(LAYERS)
    unknown = [m for m in graph if m and layer(m) is None]
    assert not unknown, (f"modules without a layer: {unknown}. Add each to LAYER_OF in tests/test_architecture.py "
                         f"(one of {LAYERS}, as in /work/shared/DESIGN.md's map) and import only from its layer "
                         f"and the ones below.")


def test_no_import_cycles(graph):
    found = {frozenset(c) for c in cycles(graph)}
    new = [sorted(c) for c in found - KNOWN_CYCLES_TO_REMOVE]
    assert not new, (f"import cycles (imports inside functions included): {new}. Break them with a registry: the "
                     f"lower module keeps a dict and a decorator, the higher one registers itself "
                     f"(tiers.register_policy).")
    gone = [sorted(c) for c in KNOWN_CYCLES_TO_REMOVE - found]
    assert not gone, f"cycles gone: remove them from KNOWN_CYCLES_TO_REMOVE in tests/test_architecture.py: {gone}"


def test_no_upward_imports(graph):
    up = upward(graph)
    assert not up, "imports of a higher layer (LAYERS in tests/test_architecture.py):\n  " + '\n  '.join(up)


def test_the_graph_sees_cycles_inside_functions_and_relative_imports(tmp_path):
    "The checker on a small real package: a cycle closed by a function-level relative import is found."
    pkg = tmp_path / 'pk'; (pkg / 'sub').mkdir(parents=True)
    for f, src in {'__init__.py': '', 'a.py': 'from .b import x\n', 'b.py': 'def f():\n    from . import a\nx = 1\n',
                   'c.py': 'import pk.sub.d\n', 'sub/__init__.py': '', 'sub/d.py': 'from ..c import y\n',
                   'e.py': 'import importlib\ndef g(): return importlib.import_module("pk.a")\n'}.items():
        (pkg / f).write_text(src)
    g = import_graph(pkg)
    assert g['a'] == {'b': 1} and g['b'] == {'a': 2} and g['e'] == {'a': 2}
    assert sorted(cycles(g)) == [['a', 'b'], ['c', 'sub.d']]


def _lit(node) -> str:
    "'=<value>' when a default is written as a literal, '' when it names a constant declared elsewhere."
    return f"={node.value!r}" if isinstance(node, ast.Constant) else ''


def _defaults(names=('alpha', 'image_size', 'seed', 'arch')) -> dict:
    "{name: ['file:line', ...]} where the library declares a default for the parameter (an argument or a field)."
    out = {n: [] for n in names}
    for m, p in module_files(PKG).items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pairs = [*zip((a.posonlyargs + a.args)[::-1], a.defaults[::-1]), *zip(a.kwonlyargs, a.kw_defaults)]
                for x, d in pairs:
                    if d is not None and x.arg in out: out[x.arg].append(f"{p.name}:{x.lineno}{_lit(d)}")
            elif isinstance(node, ast.ClassDef):
                for s in node.body:
                    if isinstance(s, ast.AnnAssign) and s.value is not None and getattr(s.target, 'id', '') in out:
                        out[s.target.id].append(f"{p.name}:{s.lineno}{_lit(s.value)}")
    return out


if __name__ == '__main__':   # the counts of the architecture: python tests/test_architecture.py
    import json
    g = import_graph(PKG)
    per = {l: sorted(m for m in g if m and layer(m) == l) for l in LAYERS}
    print('modules per layer:', {l: len(v) for l, v in per.items()},
          '| no layer:', [m for m in g if m and not layer(m)])
    print('import cycles:', cycles(g))
    print('upward imports:', len(upward(g)), upward(g))
    size = {m: len(p.read_text().splitlines()) for m, p in module_files(PKG).items()}
    print('largest module:', max(size, key=size.get), max(size.values()), 'lines')
    cells = [(len(''.join(c['source']).splitlines()), f"{nb.name} cell {c.get('id')}")
             for nb in sorted((PKG.parent / 'nbs').rglob('*.ipynb'))
             for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    print('largest notebook cell:', max(cells))
    for n, where in _defaults().items():
        lit = [w for w in where if '=' in w]
        print(f"defaults of {n}: {len(where)} arguments or fields, {len(lit)} written as a literal:", ' '.join(lit))


def _exported_by() -> dict:
    "{module (relative to the package): the notebook exporting it}, from each notebook's `#| default_exp`."
    import json, re
    out = {}
    for nb in sorted((PKG.parent / 'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
            if m: out[m.group(1)] = nb.name
    return out


def test_notebooks_are_numbered_in_dependency_order(graph):
    "A module imports only modules exported by notebooks numbered before its own (parts in order, and within them)."
    exp = _exported_by()
    def nb(m):
        while m and m not in exp: m = m.rpartition('.')[0]
        return exp.get(m)
    later = [f"{m} ({nb(m)}) -> {t} ({nb(t)})" for m, ts in graph.items() if nb(m)
             for t in ts if nb(t) and nb(t) > nb(m)]
    assert not later, "imports of a later notebook's module (renumber the notebooks):\n  " + '\n  '.join(later)
