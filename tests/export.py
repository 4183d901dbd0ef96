"""The export step: `nbdev_export` (notebooks -> cherry_nb/), then each packaged workflow's parameters cell and checks
file generated from its config dataclass (`cherry_nb.faces.cli.sync_workflows`). Run it after editing a notebook:
python tests/export.py   (tests/run.sh checks that it changes nothing)"""
import subprocess, sys

if __name__ == '__main__':
    subprocess.run(['nbdev_export'], check=True)
    from cherry_nb.faces.cli import sync_workflows         # imported after the export, so it is the new code
    changed = sync_workflows()
    if changed: subprocess.run(['nbdev_clean', '--fname', 'nbs/workflows'], check=True)
    print('parameters cells regenerated:', changed or 'none changed')
