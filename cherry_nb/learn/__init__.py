"""Learning: augmentations (`augment`), timm models (`models`), model artifacts (`artifacts`), weight sources
(`weights`) and training: the loop (`learner`), its callbacks (`callbacks`), the fit check (`fit_check`), the
learning-rate sweep (`lr_find`) and the one call `fit` (`train`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
