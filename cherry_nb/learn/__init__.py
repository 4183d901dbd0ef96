"""Learning: augmentations (`augment`), timm models (`models`), model artifacts (`artifacts`), weight sources
(`weights`) and the training loop (`train`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
