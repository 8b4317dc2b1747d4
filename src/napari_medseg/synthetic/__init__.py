"""Deterministic synthetic data for tests, the demo, benchmarks and training the
default models: abdomen phantoms (:mod:`.phantom`, built from the analytic shapes of
:mod:`.shapes`) and DICOM series written from a volume (:mod:`.dicom_series`)."""
