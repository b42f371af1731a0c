"""Cells that a spreadsheet will not run (CSV/formula injection, CWE-1236).

Excel and WPS treat a cell starting with ``=``, ``+``, ``-``, ``@`` (and a tab or carriage
return before them) as a formula: a customer name like ``=HYPERLINK("http://evil", "点此")`` in
an export or a rejected-rows file becomes a live link or a DDE command on a clerk's desktop.
Such a text cell gets a leading apostrophe (the OWASP advice; spreadsheets show the text as
typed). Numbers — ``-80.70``, ``+5`` — are left alone: they are what a negative amount looks like.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

_STARTS = r"^[=+\-@\t\r]"
_NUMBER = r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$"
_starts = re.compile(_STARTS)
_number = re.compile(_NUMBER)


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet may show it: text that would run as a formula is quoted."""
    if isinstance(value, str) and _starts.match(value) and not _number.match(value):
        return "'" + value
    return value


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column of ``frame`` through :func:`safe_cell`, as columns (no Python loop)."""
    import polars as pl

    texts = [c for c, t in frame.schema.items() if t == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_STARTS) & ~pl.col(c).str.contains(_NUMBER))
        .then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c) for c in texts)
