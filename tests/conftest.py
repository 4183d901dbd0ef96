"""Shared pytest set-up: tests run against the installed package, offline, on the CPU."""
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
