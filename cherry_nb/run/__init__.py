"""Running work: one writer per run folder (`runlock`), the run folder's files (`runs`), jobs and their backends
(`jobs`, `ray_jobs`), tracking (`tracking`) and small fixtures for tests and notebooks (`testing`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
