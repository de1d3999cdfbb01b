"""asv benchmarks of stochgrad (``benchmark_dir`` of asv.conf.json; see docs/notes/asv.md).

``regression.py`` generates time_, track_ and peakmem_ benchmarks from the estimator registry and
``suites/regression.toml`` (cases built in ``_cases.py``): a newly registered estimator is benchmarked
without editing this package.
"""
