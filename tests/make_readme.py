"""Generate README.md from nbs/index.ipynb (nbdev_readme needs quarto, which cannot be installed offline).

Runs the notebook with execnb (nbdev's executor), drops `#| hide` cells and directive lines, and writes
markdown cells as they are and code cells as python blocks followed by their text output.
Usage: python tests/make_readme.py [--check]   (--check: fail if README.md would change)
"""
import re, sys
from pathlib import Path
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = read_nb(nb_path)
    CaptureShell(path=nb_path.parent).run_all(nb)
    parts = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'markdown': parts.append(src.strip()); continue
        lines = src.splitlines()
        if any(re.match(r'#\|\s*hide\b', l) for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if not code: continue
        parts.append(f"```python\n{code}\n```")
        out = ''.join(''.join(o.get('text', '')) if o.get('output_type') == 'stream'
                      else ''.join(o.get('data', {}).get('text/plain', '')) for o in c.get('outputs', []))
        if out.strip(): parts.append('    ' + out.strip().replace('\n', '\n    '))
    return ("<!-- generated from nbs/index.ipynb by tests/make_readme.py: edit the notebook, not this file -->\n\n"
            + '\n\n'.join(parts) + '\n')

if __name__ == '__main__':
    text = render(); dest = ROOT/'README.md'
    if '--check' in sys.argv:
        if not dest.exists() or dest.read_text() != text:
            sys.exit("FAIL: README.md is out of date with nbs/index.ipynb: run `python tests/make_readme.py`")
        print('README.md matches nbs/index.ipynb')
    else:
        dest.write_text(text); print(f'wrote {dest}')
