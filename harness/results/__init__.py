"""The results contract (a leaf: imports only harness.stats): column schema, row assembly, atomic file writes.

* :mod:`~harness.results.schema` — the columns of ``results.parquet`` (name, dtype, meaning);
* :mod:`~harness.results.rows` — a cell's outcome and its tidy rows;
* :mod:`~harness.results.files` — atomic writes of every file the harness produces.

The run store and the report depend on this package, never on the runner.  ``python -m harness.results`` prints
the column table of results/README.md.
"""

from __future__ import annotations

from harness.results.files import TMP_SUFFIX, atomic_write_bytes, atomic_write_json, atomic_write_parquet, file_mode
from harness.results.rows import CellLike, CellOutcome, cell_rows, scalar_or_nan
from harness.results.schema import (
    COLUMN_ORDER,
    COLUMNS,
    PREFIX_COLUMNS,
    SCHEMA,
    SORT_KEYS,
    Column,
    register_columns,
    schema_markdown,
    undeclared,
)

__all__ = [
    "COLUMNS",
    "COLUMN_ORDER",
    "PREFIX_COLUMNS",
    "SCHEMA",
    "SORT_KEYS",
    "TMP_SUFFIX",
    "CellLike",
    "CellOutcome",
    "Column",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "cell_rows",
    "file_mode",
    "register_columns",
    "scalar_or_nan",
    "schema_markdown",
    "undeclared",
]
