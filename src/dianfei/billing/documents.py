"""A bill as a document: every line with how it was computed, the reads it rests on, the
customer's own history and a comparison with peers (same class and region)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from dianfei.core.clock import Period
from dianfei.core.errors import NotFoundError
from dianfei.core.money import fmt_price, fmt_qty, fmt_yuan


def _instant(value: Any) -> str | None:
    if value is None:
        return None
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    from dianfei.core.clock import BUSINESS_TZ

    return str(value.astimezone(BUSINESS_TZ).isoformat())


def bill_document(engine: Engine, account_id: str, period: Period) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT b.*, c.name, c.customer_class, c.region_id, c.address FROM bills b "
            "JOIN customers c ON c.customer_id = b.customer_id "
            "WHERE b.account_id = :a AND b.period = :p ORDER BY (b.status = 'issued') DESC, "
            "b.version DESC"), {"a": account_id, "p": str(period)}).mappings().first()
        if row is None:
            raise NotFoundError(f"no bill for account {account_id} in {period}")
        lines = conn.execute(text(
            "SELECT * FROM bill_lines WHERE bill_id = :b ORDER BY line_no"),
            {"b": row["bill_id"]}).mappings().all()
        bill_meters = conn.execute(text(
            "SELECT * FROM bill_meters WHERE bill_id = :b ORDER BY meter_id"),
            {"b": row["bill_id"]}).mappings().all()
        history = conn.execute(text(
            "SELECT period, kwh, amount FROM bills WHERE account_id = :a AND status = 'issued' "
            "AND period <= :p ORDER BY period DESC LIMIT 13"),
            {"a": account_id, "p": str(period)}).mappings().all()
        peer = conn.execute(text(
            "SELECT count(*) AS n, avg(b.kwh) AS kwh FROM bills b JOIN customers c "
            "ON c.customer_id = b.customer_id WHERE b.period = :p AND b.status = 'issued' "
            "AND c.customer_class = :cls AND c.region_id = :r"),
            {"p": str(period), "cls": row["customer_class"], "r": row["region_id"]}).mappings().one()
    doc_lines = []
    for ln in lines:
        item: dict[str, Any] = {
            "line_no": ln["line_no"], "code": ln["code"], "description": ln["description"],
            "quantity": fmt_qty(ln["quantity"]), "unit": ln["unit"],
            "unit_price": fmt_price(ln["unit_price"]), "amount": fmt_yuan(ln["amount"]),
        }
        if ln["power_factor"] is not None:
            item["power_factor"] = f"{ln['power_factor'] / 100:.2f}"
            item["percent"] = fmt_qty(ln["percent"])
        item["meter_id"] = ln["meter_id"]
        doc_lines.append(item)
    # one group per meter (its reads, kWh and the energy lines rated on it), then the account's
    # own lines (tiers on the total, basic charge, power factor, funds, allowance) once
    sources: list[Any] = list(bill_meters) or ([row] if row["meter_id"] else [])
    meter_groups = []
    for m in sources:
        own = [ln for ln, raw in zip(doc_lines, lines, strict=True)
               if raw["meter_id"] == m["meter_id"]]
        meter_groups.append({
            "meter_id": m["meter_id"],
            "multiplier": m["multiplier"],
            "read_from": fmt_qty(m["read_from"]) if m["read_from"] is not None else None,
            "read_from_at": _instant(m["read_from_at"]),
            "read_to": fmt_qty(m["read_to"]) if m["read_to"] is not None else None,
            "read_to_at": _instant(m["read_to_at"]),
            "kwh": fmt_qty(m["kwh"]),
            "estimated": bool(m["estimated"]),
            "lines": own,
            "amount": fmt_yuan(sum(raw["amount"] for raw in lines
                                   if raw["meter_id"] == m["meter_id"])),
        })
    account_lines = [ln for ln, raw in zip(doc_lines, lines, strict=True)
                     if raw["meter_id"] is None]
    peer_kwh = round(peer["kwh"]) if peer["kwh"] is not None else None
    return {
        "bill_id": row["bill_id"],
        "account": row["account_id"],
        "customer_id": row["customer_id"],
        "customer_name": row["name"],
        "customer_class": row["customer_class"],
        "address": row["address"],
        "period": row["period"],
        "issued_on": str(row["issued_on"])[:10],
        "due_on": str(row["due_on"])[:10],
        "status": row["status"],
        "estimated": bool(row["estimated"]),
        "tariff": row["tariff_id"],
        "tariff_version": row["tariff_version"],
        # the bill's own meter (null meter_id on a bill on several meters: see "meters")
        "meter": {
            "meter_id": row["meter_id"],
            "multiplier": row["multiplier"],
            "read_from": fmt_qty(row["read_from"]) if row["read_from"] is not None else None,
            "read_from_at": _instant(row["read_from_at"]),
            "read_to": fmt_qty(row["read_to"]) if row["read_to"] is not None else None,
            "read_to_at": _instant(row["read_to_at"]),
        },
        "kwh": fmt_qty(row["kwh"]),
        "meters": meter_groups,
        "lines": doc_lines,
        "account_lines": account_lines,
        "total": fmt_yuan(row["amount"]),
        "replaces_bill_id": row["replaces_bill_id"],
        "cancel_reason": row["cancel_reason"],
        "history": [{"period": h["period"], "kwh": fmt_qty(h["kwh"]),
                     "amount": fmt_yuan(h["amount"])} for h in history],
        "peer_comparison": {
            "group": f"{row['customer_class']} / {row['region_id']}",
            "accounts": peer["n"],
            "average_kwh": fmt_qty(peer_kwh) if peer_kwh is not None else None,
        },
    }
