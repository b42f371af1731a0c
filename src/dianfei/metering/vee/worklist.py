"""The VEE worklist (抄表数据待复核): per meter and reason, the slots VEE flagged (a finding of a
rule) or estimated, and how many still await review — a slot with no manual edit yet
(``vee edit`` reviews it: the edit is the person's word on the value). Paged in SQL, filtered
by reason and station, for the console; each row names the meter's account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.db.types import UTCDateTime
from dianfei.metering.vee.rules import RULES

#: the reasons a row can carry: a validation rule, or ``estimated`` (an estimated slot)
REASONS = (*RULES, "estimated")

_ITEMS = """
SELECT f.rule AS reason, f.meter_id AS meter_id, f.ts AS ts,
       CASE WHEN EXISTS (SELECT 1 FROM vee_edits e WHERE e.meter_id = f.meter_id AND e.ts = f.ts)
            THEN 0 ELSE 1 END AS awaiting
  FROM vee_findings f
UNION ALL
SELECT 'estimated', v.meter_id, v.ts,
       CASE WHEN EXISTS (SELECT 1 FROM vee_edits e WHERE e.meter_id = v.meter_id AND e.ts = v.ts)
            THEN 0 ELSE 1 END
  FROM vee_estimates v
"""

_GROUPED = """
SELECT i.reason, i.meter_id, m.account_id, c.station_id, COUNT(*) AS slots,
       SUM(i.awaiting) AS awaiting, MIN(i.ts) AS first_ts, MAX(i.ts) AS last_ts
  FROM ({items}) i
  LEFT JOIN meters m ON m.meter_id = i.meter_id
  LEFT JOIN accounts a ON a.account_id = m.account_id
  LEFT JOIN customers c ON c.customer_id = a.customer_id
 WHERE {where}
 GROUP BY i.reason, i.meter_id, m.account_id, c.station_id
"""


def _local(at: datetime | None) -> str | None:
    return at.astimezone(BUSINESS_TZ).isoformat(timespec="minutes") if at else None


def page(db: Database, offset: int, limit: int, *, reason: str | None = None,
         station: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of the worklist — rows awaiting review first, then by reason and meter — and
    how many rows match: reason, meter_id, account_id, station_id, slots, awaiting (slots not
    reviewed yet), first and last slot (local time)."""
    if reason is not None and reason not in REASONS:
        raise ValidationError(f"unknown reason {reason!r} (known: {', '.join(REASONS)})",
                              where="reason")
    # the filters are bound values; only which of them apply shapes the statement
    where: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if reason is not None:
        where.append("i.reason = :reason")
        params["reason"] = reason
    if station:
        where.append("c.station_id = :station")
        params["station"] = station
    grouped = _GROUPED.format(items=_ITEMS, where=" AND ".join(where))
    with db.engine.connect() as conn:
        total = conn.execute(text(f"SELECT COUNT(*) FROM ({grouped}) g"), params).scalar_one()
        rows = conn.execute(
            text(f"SELECT * FROM ({grouped}) g ORDER BY (CASE WHEN g.awaiting > 0 THEN 0 "
                 "ELSE 1 END), g.reason, g.meter_id LIMIT :limit OFFSET :offset")
            .columns(first_ts=UTCDateTime(), last_ts=UTCDateTime()),
            {**params, "limit": limit, "offset": offset}).mappings().all()
    return [{"reason": r["reason"], "meter_id": r["meter_id"], "account_id": r["account_id"],
             "station_id": r["station_id"], "slots": int(r["slots"]),
             "awaiting": int(r["awaiting"] or 0), "first_ts": _local(r["first_ts"]),
             "last_ts": _local(r["last_ts"])} for r in rows], int(total)


def stations(db: Database) -> list[str]:
    """The stations that have meters (the filter's choices)."""
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT DISTINCT station_id FROM customers WHERE station_id IS NOT NULL "
            "ORDER BY station_id"))]
