#!/usr/bin/env bash
# The whole cherry_nb test suite, from a fresh clone: virtual environment, install, nbdev sync and
# cleanliness checks, the notebooks' own tests (nbdev's test_nb), the docs site and the pytest layer against the
# installed package.
# Any failing part fails the run; pytest finding no tests is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
# --fast (the developer's loop, under 5 minutes): skip what is marked slow (pytest -m "not slow"; notebook cells flagged
# `slow` are skipped in both modes) and the docs (doc processing and the site)
FAST=0; ARGS=()
for a in "$@"; do if [ "$a" = --fast ]; then FAST=1; else ARGS+=("$a"); fi; done
VENV=${CHERRY_VENV:-.venv}
t0=$SECONDS
step() { echo; echo "=== $* ($((SECONDS - t0)) s)"; }

step "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q -e '.[dev]'
case "$VENV" in /*) VBIN="$VENV/bin" ;; *) VBIN="$PWD/$VENV/bin" ;; esac   # CHERRY_VENV may be absolute
export PATH="$VBIN:$PATH"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} MPLBACKEND=Agg PYTHONHASHSEED=0
python -c "import cherry_nb, torch, timm; print('cherry_nb', cherry_nb.__version__, '| torch', torch.__version__, '| timm', timm.__version__)"

snap() { find cherry_nb nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha256sum; }

step "the export step changes nothing (notebooks, cherry_nb/ and the workflows' generated parameters cells in sync)"
before=$(snap); python tests/export.py >/dev/null; after=$(snap)
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") || true
  echo "FAIL: python tests/export.py changed the files above: run it and commit." >&2; exit 1
fi

step "nbdev_clean changes nothing (notebooks are clean)"
before=$(snap); nbdev_clean; nbdev_clean --fname nbs/workflows; after=$(snap)
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") || true
  echo "FAIL: nbdev_clean changed the notebooks above: run nbdev_clean and commit." >&2; exit 1
fi

step "README.md is generated from nbs/index.ipynb"
python tests/make_readme.py --check

# Every notebook runs once, for its test and for the docs site: nbdev's own test_nb (what nbdev_test runs; cells flagged
# slow or cuda are skipped) on nbs/*.ipynb and nbs/tutorials/*.ipynb, keeping each notebook's outputs in an executed
# copy under build/docs/executed (the notebooks in nbs/ stay clean). settings.ini has recursive = False and the runner
# globs nbs/ and nbs/tutorials/ only: nbs/workflows/ trains full models at their default parameters.
step "nbdev_test: every notebook cell runs as a test (nbs/, nbs/tutorials/; outputs kept for the docs site)"
if [ $FAST = 1 ]; then python tests/exec_nbs.py --out build/docs/executed --timing nbs/*.ipynb   # the tutorials: full suite
else python tests/exec_nbs.py --out build/docs/executed --timing; fi

if [ $FAST = 1 ]; then
  step "docs: only the source rules by --fast (the full suite processes every notebook and builds the site)"
  python tests/check_docs.py --static
else
  step "docs site: doc processing of every notebook (nbdev's processors), Sphinx, with the outputs above"
  python tests/build_docs.py --executed build/docs/executed --no-execute --out build/docs/site
  export CHERRY_DOCS_SITE="$PWD/build/docs/site"     # the docs browser tests open this site instead of building one
fi

step "pytest against the installed package"
if [ $FAST = 1 ]; then
  python -m pytest -q -p no:cacheprovider -m "not slow" --durations=15 tests ${ARGS[@]+"${ARGS[@]}"}
else
  python -m pytest -q -p no:cacheprovider --durations=25 tests ${ARGS[@]+"${ARGS[@]}"}
fi
step "all passed"
