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
answer. No Polars here: the read-only path must start fast.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

from dianfei.metering.vee.names import HELD_RULE

if TYPE_CHECKING:
    from dianfei.db.engine import Database

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


def data_state(db: Database, conn: Connection) -> str:
    """The digest of what a run reads, except stored estimates (see the module doc)."""
    from dianfei.metering.vee.config import VeeConfig

    h = hashlib.sha256()
    settings = json.dumps(VeeConfig.from_raw(db.settings.raw).as_dict(), sort_keys=True)
    for part in (code_digest(), settings, db.settings.timezone,
                 str(Path(db.settings.data_dir).resolve() / "intervals")):
        h.update(part.encode())
        h.update(b"\x1e")
    for sql in _STATE_QUERIES:
        h.update(repr(tuple(int(v) for v in conn.execute(text(sql)).one())).encode())
    for meter_id, digits, meter_class in conn.execute(text(_METERS_QUERY)):
        h.update(f"{meter_id}\x1f{digits}\x1f{meter_class}\x1e".encode())
    return h.hexdigest()


def estimates_state(conn: Connection) -> str:
    return repr(tuple(int(v) for v in conn.execute(text(_ESTIMATES_QUERY)).one()))


def fingerprint(data: str, estimates: str) -> str:
    return hashlib.sha256(f"{data}|{estimates}".encode()).hexdigest()


def current_fingerprint(db: Database, conn: Connection) -> str:
    return fingerprint(data_state(db, conn), estimates_state(conn))


#: the kept findings of the newest run
KEPT_FINDINGS = "vee_run_findings"


def replace_kept(conn: Connection) -> None:
    """Drop the kept results, in the transaction of the run that keeps its own (serialised with
    other runs doing the same): readers see the old run's results whole, or the new run's."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('dianfei.vee_results'))"))
    # SQLite: the first write below takes the database's write lock for the transaction
    conn.execute(text("UPDATE vee_runs SET fingerprint = NULL WHERE fingerprint IS NOT NULL"))
    conn.execute(text(f"DELETE FROM {KEPT_FINDINGS}"))


def keep(conn: Connection, run_id: str, print_: str, figures: dict[str, int]) -> None:
    """Make the run's results (its findings already in ``KEPT_FINDINGS``) the kept ones."""
    conn.execute(text("UPDATE vee_runs SET fingerprint = :f, figures = :g WHERE run_id = :r"),
                 {"f": print_, "g": json.dumps(figures), "r": run_id})


def _fresh_run(db: Database, conn: Connection, run_scope: str) -> tuple[str, str] | None:
    """(run_id, figures JSON) of the newest run of ``run_scope`` if nothing changed since it."""
    row = conn.execute(text(
        "SELECT run_id, fingerprint, figures FROM vee_runs WHERE scope = :s "
        "AND fingerprint IS NOT NULL ORDER BY finished_at DESC, run_id DESC LIMIT 1"),
        {"s": run_scope}).first()
    if row is None or row[1] != current_fingerprint(db, conn):
        return None
    return str(row[0]), str(row[2])


def _still_kept(conn: Connection, run_id: str) -> bool:
    """Whether the run's results are still the kept ones (a newer run saving its own drops them
    in one transaction: rows read before that commit are whole, rows read after it are not)."""
    return conn.execute(text("SELECT fingerprint FROM vee_runs WHERE run_id = :r"),
                        {"r": run_id}).scalar() is not None


def stored_figures(db: Database, day_from: date | None = None,
                   day_to: date | None = None) -> dict[str, int] | None:
    """The newest run's ``vee report`` figures for these days, or None when anything it depends
    on changed since (or no run examined exactly these days)."""
    with db.engine.connect() as conn:
        fresh = _fresh_run(db, conn, scope(day_from, day_to))
    if fresh is None:
        return None
    return {str(k): int(v) for k, v in json.loads(fresh[1]).items()}


def stored_findings(db: Database, *, rule: str | None = None, meter_id: str | None = None,
                    day_from: date | None = None,
                    day_to: date | None = None) -> list[dict[str, Any]] | None:
    """The newest run's findings for these days with the held reads of now (rule, meter_id, ts,
    ref, value_wh, detail; sorted by rule, meter, ts, ref), or None as :func:`stored_figures`."""
    from dianfei.db.types import UTCDateTime

    cols = "rule, meter_id, ts, ref, value_wh, detail"
    with db.engine.connect() as conn:
        fresh = _fresh_run(db, conn, scope(day_from, day_to))
        if fresh is None:
            return None
        run_id = fresh[0]
        params: dict[str, Any] = {"r": run_id}
        sql = f"SELECT {cols} FROM vee_run_findings WHERE run_id = :r"
        if rule is not None:
            sql += " AND rule = :rule"
            params["rule"] = rule
        if meter_id is not None:
            sql += " AND meter_id = :m"
            params["m"] = meter_id
        rows = [dict(r._mapping) for r in conn.execute(text(sql).columns(ts=UTCDateTime()),
                                                       params)]
        if rule is None or rule == HELD_RULE:
            rows += _held(conn, meter_id, day_from, day_to, db.settings.timezone)
        if not _still_kept(conn, run_id):
            return None
    # the recomputing path sorts with Polars: strings by code point (= UTF-8 bytes), as Python
    # does — not ORDER BY, whose order follows the database's collation
    rows.sort(key=lambda r: (r["rule"], r["meter_id"], r["ts"], r["ref"]))
    return rows


def _held(conn: Connection, meter_id: str | None, day_from: date | None, day_to: date | None,
          tz: str) -> list[dict[str, Any]]:
    """Stored ``implausible_read`` findings in the days (as ``plausibility.held_findings``)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from dianfei.core.clock import start_of_day
    from dianfei.db.types import UTCDateTime

    sql = ("SELECT rule, meter_id, ts, ref, value_wh, detail FROM vee_findings "
           "WHERE rule = :rule")
    params: dict[str, Any] = {"rule": HELD_RULE}
    if meter_id is not None:
        sql += " AND meter_id = :m"
        params["m"] = meter_id
    zone = ZoneInfo(tz)
    lo: datetime | None = start_of_day(day_from, zone) if day_from else None
    hi: datetime | None = start_of_day(day_to + timedelta(days=1), zone) if day_to else None
    return [dict(r._mapping) for r in conn.execute(text(sql).columns(ts=UTCDateTime()), params)
            if (lo is None or r.ts >= lo) and (hi is None or r.ts < hi)]
