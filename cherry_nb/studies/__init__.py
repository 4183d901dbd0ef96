"""Studies: job recipes and shared configuration (`recipes`), the two-stage workflow (`two_stage`), the comparison
experiment (`compare`) and labelling (`label`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
