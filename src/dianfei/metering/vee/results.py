"""The newest ``vee run``'s results, for ``vee report`` and ``vee findings`` while nothing changed.

Both commands evaluate the data as stored *now*. Recomputing VEE over two years of a few meters
costs a few tenths of a second and Polars' start-up; answering from the run costs a handful of
queries. A run therefore stores, with its figures and findings, a **fingerprint** of everything
its results depend on, taken *before* it read any of it:

- the interval store: ``interval_files`` (count, newest id, rows) — files are immutable once
  catalogued and only catalogued files are read, so a new import, a compaction or a removed file
  changes it;
- within-import duplicates of finished batches (count, newest id, values), register reads
  (count, newest id, values), and stored estimates (count, newest id: the ``estimated`` figure);
- the kept meter profiles (count, newest id: a rebuild replaces rows, so the id moves);
- every meter's register digits and customer class (hashed row by row: an exchange or a class
  change alters the spike and rollover rules);
- the ``[vee]`` settings, the business zone, the store's directory, and the source of the VEE
  code itself (an upgrade that changes a rule must not serve figures of the old rule).

The tables above are append-only in dianfei (nothing updates or deletes their rows); the
fingerprint still sums the values so that a hand-made change is seen too. A command compares
the fingerprint of the data now with the stored one and answers from the run only when they are
equal and the run examined the same business days (``scope``); otherwise it recomputes exactly as
before. Held reads (``implausible_read``) are judged when they arrive, not by a run: they are
read live in both paths.

Taken before reading, a fingerprint can only be older than the data the run saw, never newer:
data that arrives while a run reads makes the stored fingerprint differ from the next one
computed, so the next command recomputes — a race can cost a recomputation, never a stale
answer. No Polars here: the read-only path must start fast — and on SQLite ``vee report`` and
``vee findings`` first try the stored answer on a plain ``sqlite3`` connection
(:func:`sqlite_figures`, :func:`sqlite_findings`), without SQLAlchemy, whose import alone is
about 0.17 s of a command that otherwise answers in a tenth of a second; anything unexpected
there (not SQLite, no such file, a table missing because the schema is behind) falls back to
the ordinary path, which says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from dianfei.metering.vee.names import HELD_RULE

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dianfei.core.settings import Settings
    from dianfei.db.engine import Database

_T = TypeVar("_T")

#: what the fingerprint reads with one query each (counts, newest ids and values modulo a prime
#: — a plain sum of values could overflow SQLite's 64-bit integers)
_STATE_QUERIES = (
    "SELECT count(*), coalesce(max(id), 0), coalesce(sum(rows), 0) FROM interval_files",
    "SELECT count(*), coalesce(max(d.id), 0), coalesce(sum(d.wh % 1000003), 0), "
    "coalesce(sum(d.first_wh % 1000003), 0) FROM interval_duplicates d "
    "JOIN import_batches b ON b.batch_id = d.batch_id WHERE b.status = 'finished'",
    "SELECT count(*), coalesce(max(id), 0), coalesce(sum(value % 1000003), 0) "
    "FROM register_reads",
    # kept profiles are replaced whole (new ids), never edited
    "SELECT count(*), coalesce(max(id), 0) FROM vee_meter_profiles",
)
_ESTIMATES_QUERY = "SELECT count(*), coalesce(max(id), 0) FROM vee_estimates"
#: the meters as VEE reads them (repository.meters: digits for rollover, class for spikes)
_METERS_QUERY = ("SELECT m.meter_id, m.digits, c.customer_class FROM meters m "
                 "LEFT JOIN accounts a ON a.account_id = m.account_id "
                 "LEFT JOIN customers c ON c.customer_id = a.customer_id ORDER BY m.meter_id")

_CODE_DIGEST: list[str] = []


class _Rows:
    """The few result methods this module uses, over a sqlite3 cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def one(self) -> tuple[Any, ...]:
        row = self._cursor.fetchone()
        if row is None:
            raise LookupError("no row")
        return tuple(row)

    def first(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def scalar(self) -> Any:
        row = self._cursor.fetchone()
        return None if row is None else row[0]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return (tuple(r) for r in self._cursor)


class _SqliteReader:
    """A plain sqlite3 connection that answers ``execute(sql, params)`` like SQLAlchemy's (the
    statements here use ``:name`` parameters, which sqlite3 binds natively)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> _Rows:
        return _Rows(self.conn.execute(sql, params or {}))


Reader = Union["Connection", _SqliteReader]


def _run(conn: Reader, sql: str, params: dict[str, Any] | None = None) -> Any:
    if isinstance(conn, _SqliteReader):
        return conn.execute(sql, params)
    from sqlalchemy import text

    return conn.execute(text(sql), params or {})


def _instant(value: Any) -> datetime:
    """A stored instant (naive UTC: ``db.types.UTCDateTime``; raw text on SQLite) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_file(settings: Settings) -> Path | None:
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///"):].split("?", 1)[0])
    return path if path.name not in ("", ":memory:") and path.is_file() else None


def _on_sqlite(settings: Settings, read: Callable[[_SqliteReader], _T]) -> _T | None:
    """``read`` on a plain connection to the settings' SQLite file, in one read transaction
    (a snapshot); None when it is not a SQLite file or anything goes wrong there."""
    path = _sqlite_file(settings)
    if path is None:
        return None
    try:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")
        return read(_SqliteReader(conn))
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def scope(day_from: date | None, day_to: date | None) -> str:
    """The business days a run or a command examines: ``all`` or ``FROM..TO``."""
    if day_from is None and day_to is None:
        return "all"
    return f"{day_from or ''}..{day_to or ''}"


def code_digest() -> str:
    """sha256 of the VEE code (this package and the interval store), once per process."""
    if not _CODE_DIGEST:
        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for path in [*sorted(here.glob("*.py")), here.parent / "intervals.py"]:
            h.update(path.name.encode())
            h.update(path.read_bytes())
        _CODE_DIGEST.append(h.hexdigest())
    return _CODE_DIGEST[0]


def data_state(settings: Settings, conn: Reader) -> str:
    """The digest of what a run reads, except stored estimates (see the module doc)."""
    from dianfei.metering.vee.config import VeeConfig

    h = hashlib.sha256()
    vee = json.dumps(VeeConfig.from_raw(settings.raw).as_dict(), sort_keys=True)
    for part in (code_digest(), vee, settings.timezone,
                 str(Path(settings.data_dir).resolve() / "intervals")):
        h.update(part.encode())
        h.update(b"\x1e")
    for sql in _STATE_QUERIES:
        h.update(repr(tuple(int(v) for v in _run(conn, sql).one())).encode())
    for meter_id, digits, meter_class in _run(conn, _METERS_QUERY):
        h.update(f"{meter_id}\x1f{digits}\x1f{meter_class}\x1e".encode())
    return h.hexdigest()


def estimates_state(conn: Reader) -> str:
    return repr(tuple(int(v) for v in _run(conn, _ESTIMATES_QUERY).one()))


def fingerprint(data: str, estimates: str) -> str:
    return hashlib.sha256(f"{data}|{estimates}".encode()).hexdigest()


def current_fingerprint(settings: Settings, conn: Reader) -> str:
    return fingerprint(data_state(settings, conn), estimates_state(conn))


#: the kept findings of the newest run
KEPT_FINDINGS = "vee_run_findings"


def replace_kept(conn: Connection) -> None:
    """Drop the kept results, in the transaction of the run that keeps its own (serialised with
    other runs doing the same): readers see the old run's results whole, or the new run's."""
    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('dianfei.vee_results'))"))
    # SQLite: the first write below takes the database's write lock for the transaction
    conn.execute(text("UPDATE vee_runs SET fingerprint = NULL WHERE fingerprint IS NOT NULL"))
    conn.execute(text(f"DELETE FROM {KEPT_FINDINGS}"))


def keep(conn: Connection, run_id: str, print_: str, figures: dict[str, int]) -> None:
    """Make the run's results (its findings already in ``KEPT_FINDINGS``) the kept ones."""
    _run(conn, "UPDATE vee_runs SET fingerprint = :f, figures = :g WHERE run_id = :r",
         {"f": print_, "g": json.dumps(figures), "r": run_id})


def _fresh_run(settings: Settings, conn: Reader, run_scope: str) -> tuple[str, str] | None:
    """(run_id, figures JSON) of the newest run of ``run_scope`` if nothing changed since it."""
    row = _run(conn,
               "SELECT run_id, fingerprint, figures FROM vee_runs WHERE scope = :s "
               "AND fingerprint IS NOT NULL ORDER BY finished_at DESC, run_id DESC LIMIT 1",
               {"s": run_scope}).first()
    if row is None or row[1] != current_fingerprint(settings, conn):
        return None
    return str(row[0]), str(row[2])


def _still_kept(conn: Reader, run_id: str) -> bool:
    """Whether the run's results are still the kept ones (a newer run saving its own drops them
    in one transaction: rows read before that commit are whole, rows read after it are not)."""
    return _run(conn, "SELECT fingerprint FROM vee_runs WHERE run_id = :r",
                {"r": run_id}).scalar() is not None


def stored_figures(db: Database, day_from: date | None = None,
                   day_to: date | None = None) -> dict[str, int] | None:
    """The newest run's ``vee report`` figures for these days, or None when anything it depends
    on changed since (or no run examined exactly these days)."""
    with db.engine.connect() as conn:
        return _figures(db.settings, conn, day_from, day_to)


def sqlite_figures(settings: Settings, day_from: date | None = None,
                   day_to: date | None = None) -> dict[str, int] | None:
    """:func:`stored_figures` on a plain sqlite3 connection (see the module doc); None also when
    the database is not a SQLite file or cannot answer so."""
    return _on_sqlite(settings, lambda conn: _figures(settings, conn, day_from, day_to))


def _figures(settings: Settings, conn: Reader, day_from: date | None,
             day_to: date | None) -> dict[str, int] | None:
    fresh = _fresh_run(settings, conn, scope(day_from, day_to))
    if fresh is None:
        return None
    return {str(k): int(v) for k, v in json.loads(fresh[1]).items()}


def stored_findings(db: Database, *, rule: str | None = None, meter_id: str | None = None,
                    day_from: date | None = None,
                    day_to: date | None = None) -> list[dict[str, Any]] | None:
    """The newest run's findings for these days with the held reads of now (rule, meter_id, ts,
    ref, value_wh, detail; sorted by rule, meter, ts, ref), or None as :func:`stored_figures`."""
    with db.engine.connect() as conn:
        return _findings(db.settings, conn, rule, meter_id, day_from, day_to)


def sqlite_findings(settings: Settings, *, rule: str | None = None, meter_id: str | None = None,
                    day_from: date | None = None,
                    day_to: date | None = None) -> list[dict[str, Any]] | None:
    """:func:`stored_findings` on a plain sqlite3 connection (see :func:`sqlite_figures`)."""
    return _on_sqlite(settings, lambda conn: _findings(settings, conn, rule, meter_id, day_from,
                                                       day_to))


_FINDING_COLS = ("rule", "meter_id", "ts", "ref", "value_wh", "detail")


def _finding(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_FINDING_COLS, row, strict=True))
    out["ts"] = _instant(out["ts"])
    return out


def _findings(settings: Settings, conn: Reader, rule: str | None, meter_id: str | None,
              day_from: date | None, day_to: date | None) -> list[dict[str, Any]] | None:
    fresh = _fresh_run(settings, conn, scope(day_from, day_to))
    if fresh is None:
        return None
    run_id = fresh[0]
    params: dict[str, Any] = {"r": run_id}
    sql = f"SELECT {', '.join(_FINDING_COLS)} FROM vee_run_findings WHERE run_id = :r"
    if rule is not None:
        sql += " AND rule = :rule"
        params["rule"] = rule
    if meter_id is not None:
        sql += " AND meter_id = :m"
        params["m"] = meter_id
    rows = [_finding(r) for r in _run(conn, sql, params)]
    if rule is None or rule == HELD_RULE:
        rows += _held(conn, meter_id, day_from, day_to, settings.timezone)
    if not _still_kept(conn, run_id):
        return None
    # the recomputing path sorts with Polars: strings by code point (= UTF-8 bytes), as Python
    # does — not ORDER BY, whose order follows the database's collation
    rows.sort(key=lambda r: (r["rule"], r["meter_id"], r["ts"], r["ref"]))
    return rows


def _held(conn: Reader, meter_id: str | None, day_from: date | None, day_to: date | None,
          tz: str) -> list[dict[str, Any]]:
    """Stored ``implausible_read`` findings in the days (as ``plausibility.held_findings``)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from dianfei.core.clock import start_of_day

    sql = (f"SELECT {', '.join(_FINDING_COLS)} FROM vee_findings WHERE rule = :rule")
    params: dict[str, Any] = {"rule": HELD_RULE}
    if meter_id is not None:
        sql += " AND meter_id = :m"
        params["m"] = meter_id
    zone = ZoneInfo(tz)
    lo: datetime | None = start_of_day(day_from, zone) if day_from else None
    hi: datetime | None = start_of_day(day_to + timedelta(days=1), zone) if day_to else None
    rows = [_finding(r) for r in _run(conn, sql, params)]
    return [r for r in rows if (lo is None or r["ts"] >= lo) and (hi is None or r["ts"] < hi)]
