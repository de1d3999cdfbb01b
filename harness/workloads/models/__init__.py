"""The built-in workload models: every module here not starting with ``_`` is imported by the workload registry
(:func:`harness.workloads.load_builtins`) and registers its workloads; there is no list to edit."""
