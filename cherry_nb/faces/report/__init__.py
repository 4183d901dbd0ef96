"""Reports of runs: the shared building blocks (`report.core`) and one report per workflow (`report.two_stage`,
`report.compare`). The package's namespace holds the building blocks."""
from .core import *
