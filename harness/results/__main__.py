"""``python -m harness.results``: the column table of results/README.md, generated from the schema."""

import sys

from harness.results.schema import schema_markdown

sys.stdout.write(schema_markdown())
