"""Cohorts: one model over many scans (``medseg batch``), on Dask, resumable.

Modules: :mod:`.cases` (the cases of a folder or CSV manifest; ``--part`` shards),
:mod:`.case_run` (one case: segment, save, measure, ``done.json``), :mod:`.engine` (in
this process, or on Dask distributed: a LocalCluster, a scheduler, SLURM), :mod:`.batch`
(a run: outcomes, ``failures.jsonl``, summary) and :mod:`.table` (``cohort.csv``).
"""
