"""Every console table pages on the server and exports to CSV or XLSX.

A page gives :func:`listing` its columns and a ``fetch(offset, limit)`` that answers one page
and the total; the data stays where it is (a 1,000,000-row worklist is never loaded to show 50
rows). ``?page=&size=`` choose the page, ``?format=csv|xlsx`` the export (every row matching
the page's filters, fetched in chunks, up to :data:`MAX_EXPORT`), and an htmx request that
targets the table gets the table alone, so paging does not reload the page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import polars as pl
from fastapi import HTTPException, Request
from fastapi.responses import Response

from dianfei.core.csvsafe import safe_cell
from dianfei.web.console import Console
from dianfei.web.i18n import translator

SIZES = (25, 50, 100, 200)
DEFAULT_SIZE = 50
#: an export larger than this is refused with a message (narrow the filters, or use the CLI)
MAX_EXPORT = 200_000
_CHUNK = 10_000


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # i18n key (or the text itself)
    num: bool = False
    #: the cell's link, from the row (None: plain text)
    link: Callable[[Mapping[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class Page:
    rows: Sequence[Mapping[str, Any]]
    total: int


Fetch = Callable[[int, int], Page]


def frame_fetch(frame: pl.DataFrame) -> Fetch:
    """``fetch`` over a frame already in memory (short lists)."""
    def fetch(offset: int, limit: int) -> Page:
        return Page(frame.slice(offset, limit).to_dicts(), frame.height)

    return fetch


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(status_code=422, detail=f"{name}: not a whole number: {raw!r}") from None
    if value < 1:
        raise HTTPException(status_code=422, detail=f"{name}: must be 1 or more, got {value}")
    return value


def _href(request: Request, **changes: Any) -> str:
    params = {k: v for k, v in request.query_params.items() if k not in changes}
    params.update({k: v for k, v in changes.items() if v is not None})
    return f"{request.url.path}?{urlencode(params)}"


def listing(request: Request, console: Console, *, name: str, title: str,
            columns: Sequence[Column], fetch: Fetch, template: str = "table_page.html",
            **values: Any) -> Response:
    """The page (or the table alone, or the export) of one listing."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        return export(request, console, name=name, columns=columns, fetch=fetch, fmt=fmt)
    size = _int(request, "size", DEFAULT_SIZE)
    if size not in SIZES:
        raise HTTPException(status_code=422, detail=f"size: one of {', '.join(map(str, SIZES))}")
    page = _int(request, "page", 1)
    data = fetch((page - 1) * size, size)
    pages = max(1, -(-data.total // size))
    table = {
        "id": f"table-{name}", "columns": columns, "rows": data.rows, "total": data.total,
        "page": page, "pages": pages, "size": size,
        "prev": _href(request, page=page - 1) if page > 1 else None,
        "next": _href(request, page=page + 1) if page < pages else None,
        "csv": _href(request, format="csv", page=None, size=None),
        "xlsx": _href(request, format="xlsx", page=None, size=None),
    }
    if request.headers.get("hx-target") == table["id"]:
        return console.render(request, "_table.html", table=table)
    return console.render(request, template, table=table, title=title, **values)


def _all_rows(fetch: Fetch) -> Iterator[Mapping[str, Any]]:
    first = fetch(0, _CHUNK)
    if first.total > MAX_EXPORT:
        raise HTTPException(status_code=422, detail=(
            f"the export would hold {first.total:,} rows, more than {MAX_EXPORT:,}: "
            "narrow the filters, or use the command line"))
    yield from first.rows
    offset = len(first.rows)
    while offset < first.total and first.rows:
        chunk = fetch(offset, _CHUNK)
        if not chunk.rows:
            break
        yield from chunk.rows
        offset += len(chunk.rows)


def export(request: Request, console: Console, *, name: str, columns: Sequence[Column],
           fetch: Fetch, fmt: str) -> Response:
    if fmt not in ("csv", "xlsx"):
        raise HTTPException(status_code=422, detail="format: csv or xlsx")
    t = translator(console.lang(request))
    header = [t(c.label) for c in columns]
    rows = ([safe_cell(r.get(c.key)) for c in columns] for r in _all_rows(fetch))
    if fmt == "csv":
        out = io.StringIO()
        out.write("\ufeff")  # Excel reads the Chinese as UTF-8 only with the BOM
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        return Response(out.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False,
                                     "strings_to_urls": False})
    sheet = book.add_worksheet(name[:31])
    sheet.write_row(0, 0, header)
    for i, row in enumerate(rows, start=1):
        sheet.write_row(i, 0, [v if isinstance(v, (int, str)) or v is None else str(v)
                               for v in row])
    book.close()
    return Response(buf.getvalue(),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
