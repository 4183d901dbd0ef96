"""The data layer: image files (`images`), manifests and splits (`manifest`), the cached loader (`loader`).

Written by hand (nbdev exports the three modules, not this file): it re-exports their public names, so that
`from cherry_nb.data import X` works for every X of the three."""
from . import images, manifest, loader
from .images import *
from .manifest import *
from .loader import *

__all__ = [*images.__all__, *manifest.__all__, *loader.__all__]
