"""Judging scores: evaluation (`evaluate`), temperature calibration (`calibrate`), tiers and certificates (`tiers`),
views of one cherry (`views`), the certified accept share (`automation`), ensembles (`ensemble`) and mining
(`mining`). These compute on scores; none of them runs a job.

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
