#!/usr/bin/env bash
# The whole cherry_nb test suite, from a fresh clone: virtual environment, install, nbdev sync and
# cleanliness checks, the notebooks' own tests (nbdev_test) and the pytest layer against the installed package.
# Any failing part fails the run; pytest finding no tests is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
# --fast: skip what is marked slow (pytest -m "not slow"; notebook cells flagged `slow` are skipped by nbdev_test anyway)
FAST=0; ARGS=()
for a in "$@"; do if [ "$a" = --fast ]; then FAST=1; else ARGS+=("$a"); fi; done
VENV=${CHERRY_VENV:-.venv}
t0=$SECONDS
step() { echo; echo "=== $* ($((SECONDS - t0)) s)"; }

step "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q -e '.[dev]'
export PATH="$PWD/$VENV/bin:$PATH"
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

step "doc processing: every notebook processes cleanly (nbdev's processors, no training or rendering)"
python tests/check_docs.py

step "nbdev_test (every notebook cell runs as a test)"
nbdev_test --n_workers 2 --timing

# settings.ini has recursive = False, so the step above reads nbs/*.ipynb only: the tutorials get a step of their own
# (recursive = True would also run nbs/workflows/, whose notebooks train full models at their default parameters)
step "nbdev_test on the tutorials (nbs/tutorials/; cells flagged cuda are skipped)"
nbdev_test --path nbs/tutorials --timing

step "pytest against the installed package"
if [ $FAST = 1 ]; then
  python -m pytest -q -p no:cacheprovider -m "not slow" --durations=15 tests ${ARGS[@]+"${ARGS[@]}"}
else
  python -m pytest -q -p no:cacheprovider --durations=25 tests ${ARGS[@]+"${ARGS[@]}"}
fi
step "all passed"
