"""Shared pytest set-up: tests run against the installed package, offline, on the CPU.

Tests marked `slow` (end-to-end workflows, clusters, browsers, long simulations) run in CI and by default;
`bash tests/run.sh --fast` (pytest `-m "not slow"`) skips them for quick iteration."""
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end or long test; skipped by `tests/run.sh --fast`')
