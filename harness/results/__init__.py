"""The results contract (a leaf: imports only harness.stats): column schema and row assembly.

* :mod:`~harness.results.schema` — the columns of ``results.parquet`` (name, dtype, meaning);
* :mod:`~harness.results.rows` — a cell's outcome and its tidy rows.

The run store and the report depend on this package, never on the runner.  ``python -m harness.results`` prints
the column table of results/README.md.
"""

from __future__ import annotations

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
    "CellLike",
    "CellOutcome",
    "Column",
    "cell_rows",
    "register_columns",
    "scalar_or_nan",
    "schema_markdown",
    "undeclared",
]
