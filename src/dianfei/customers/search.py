"""Finding a customer from what a caller says (户号、户名、表号) and who the customer is: what the
console's search box and its customer 360 page read of the customers package.

Search matches a customer id, an account id or a meter number exactly (indexed lookups), else a
part of the name (a scan of the customers).
A phone number cannot be searched: phones are stored encrypted (db/pii.py) with no keyed hash or
last-four index beside them, so finding one would mean decrypting every customer's phone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

from dianfei.core.errors import NotFoundError, ValidationError

#: the longest search text accepted (the header box allows 64 characters too)
MAX_QUERY = 64

_COLUMNS = ("SELECT a.account_id, c.customer_id, c.name, c.customer_class, c.region_id, "
            "c.station_id, c.collector_id, a.closed_on ")
_JOIN = "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
#: the exact matches, each an indexed lookup (primary keys, accounts.customer_id, meters' key)
_EXACT = (f"{_COLUMNS}{_JOIN}WHERE a.account_id = :q UNION "
          f"{_COLUMNS}{_JOIN}WHERE c.customer_id = :q UNION "
          f"{_COLUMNS}{_JOIN}JOIN meters m ON m.account_id = a.account_id WHERE m.meter_id = :q")
#: the names scanned alone first (one pass over customers), their accounts found by index after:
#: a join scanned account by account looking each customer up costs five times more
_BY_NAME = (f"{_JOIN}WHERE a.customer_id IN "
            "(SELECT customer_id FROM customers WHERE name LIKE :like ESCAPE '\\')")


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def clean_query(q: str | None) -> str:
    """The search text trimmed; refused when empty or longer than :data:`MAX_QUERY`."""
    q = (q or "").strip()
    if not q:
        raise ValidationError("q: give a customer id, account id, meter number or part of a name")
    if len(q) > MAX_QUERY:
        raise ValidationError(f"q: at most {MAX_QUERY} characters, got {len(q)}")
    return q


def find_accounts(engine: Engine, q: str, offset: int, limit: int
                  ) -> tuple[list[dict[str, Any]], int]:
    """One page of the accounts matching ``q`` (account id order) and how many match in all:
    account_id, customer_id, name, customer_class, region_id, station_id, collector_id,
    closed_on. An id or meter number that matches exactly answers alone (indexed lookups);
    only when nothing does is ``q`` looked for inside the names (a scan of the customers)."""
    q = clean_query(q)
    with engine.connect() as conn:
        exact = [dict(r) for r in conn.execute(text(_EXACT), {"q": q}).mappings()]
        if exact:
            exact.sort(key=lambda r: str(r["account_id"]))
            return exact[offset:offset + limit], len(exact)
        params = {"like": _like(q), "offset": offset, "limit": limit}
        total = int(conn.execute(text(f"SELECT COUNT(*) {_BY_NAME}"), params).scalar_one())
        rows = conn.execute(text(
            f"{_COLUMNS}{_BY_NAME} ORDER BY a.account_id LIMIT :limit OFFSET :offset"),
            params).mappings().all()
    return [dict(r) for r in rows], total


def customer_profile(conn: Connection, customer_id: str) -> dict[str, Any]:
    """Who the customer is: customer_id, name, customer_class, region (id and name), station
    (id and name), collector (id and name), address, payment_mode, low_income, protected,
    opened_on, closed_on, phone_enc, id_number_enc (still sealed: the caller decides whether to
    show them) and ``accounts`` (account ids, oldest first). NotFoundError when unknown."""
    row = conn.execute(text(
        "SELECT c.customer_id, c.name, c.customer_class, c.region_id, r.name AS region_name, "
        "c.station_id, s.name AS station_name, c.collector_id, k.name AS collector_name, "
        "c.address, c.payment_mode, c.low_income, c.protected, c.opened_on, c.closed_on, "
        "c.phone_enc, c.id_number_enc FROM customers c "
        "LEFT JOIN regions r ON r.region_id = c.region_id "
        "LEFT JOIN supply_stations s ON s.station_id = c.station_id "
        "LEFT JOIN collectors k ON k.collector_id = c.collector_id "
        "WHERE c.customer_id = :c"), {"c": customer_id}).mappings().first()
    if row is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    accounts = conn.execute(text(
        "SELECT account_id FROM accounts WHERE customer_id = :c ORDER BY opened_on, account_id"),
        {"c": customer_id}).scalars().all()
    return {**dict(row), "accounts": [str(a) for a in accounts]}


def regions(conn: Connection) -> list[dict[str, str]]:
    """Every region: region_id, name (the dashboard's filter)."""
    return [{"region_id": str(r[0]), "name": str(r[1])} for r in conn.execute(text(
        "SELECT region_id, name FROM regions ORDER BY region_id"))]
