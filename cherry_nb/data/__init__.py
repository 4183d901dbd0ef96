"""The data layer: image files (`images`), manifests and splits (`manifest`), the loader (`loader`), labels (`labels`).

Written by hand (nbdev exports the four modules, not this file): it re-exports their public names, so that
`from cherry_nb.data import X` works for every X of the four."""
from . import images, manifest, loader, labels
from .images import *
from .manifest import *
from .loader import *
from .labels import *

__all__ = [*images.__all__, *manifest.__all__, *loader.__all__, *labels.__all__]
