"""Run machinery: suite runs into run directories, executors (in-process, Dask), the store, progress, machine facts."""
