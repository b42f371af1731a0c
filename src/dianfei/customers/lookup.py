"""Looking customers and accounts up (客户查询): the search of the service desk and the REST API.

Search by customer or account id (prefix), name (part of it), meter number (prefix) or the last
digits of the phone. Phones are encrypted at rest with a per-row context, so there is no index
to search them by: a phone-suffix search opens the phones of the customers the other criteria
leave (all of them when it is the only criterion) — about a microsecond each, a few hundred
milliseconds for a county branch — and is therefore offered to staff only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from dianfei.core.crypto import PiiCipher, mask_id_number, mask_phone
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.db.pii import CUSTOMER_ID_NUMBER, CUSTOMER_PHONE

#: the shortest phone suffix searched for (fewer digits match half the county)
MIN_PHONE_SUFFIX = 4


@dataclass(frozen=True)
class CustomerQuery:
    customer_id: str | None = None
    name: str | None = None
    phone_suffix: str | None = None
    meter_id: str | None = None
    customer_class: str | None = None
    region_id: str | None = None

    def check(self) -> None:
        if self.phone_suffix is not None and (
                not self.phone_suffix.isdigit() or not self.phone_suffix.isascii()
                or not MIN_PHONE_SUFFIX <= len(self.phone_suffix) <= 11):
            raise ValidationError(f"{MIN_PHONE_SUFFIX} to 11 digits", where="phone_suffix")


def _like(value: str) -> str:
    """A LIKE pattern matching ``value`` literally (its % and _ escaped)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(conn: Connection, cipher: PiiCipher | None, query: CustomerQuery, *,
           limit: int, offset: int, clear_pii: bool = False) -> tuple[list[dict[str, Any]], int]:
    """The customers matching every criterion given, by customer id, one page, and how many
    match in all. ``cipher`` opens the phones (needed for a phone search and to show them)."""
    query.check()
    where, params = ["1 = 1"], {}
    if query.customer_id:
        where.append("(c.customer_id LIKE :cid ESCAPE '\\' OR EXISTS (SELECT 1 FROM accounts a "
                     "WHERE a.customer_id = c.customer_id AND a.account_id LIKE :cid ESCAPE '\\'))")
        params["cid"] = _like(query.customer_id) + "%"
    if query.name:
        where.append("c.name LIKE :name ESCAPE '\\'")
        params["name"] = "%" + _like(query.name) + "%"
    if query.meter_id:
        where.append("EXISTS (SELECT 1 FROM meters m JOIN accounts a ON a.account_id = m.account_id "
                     "WHERE a.customer_id = c.customer_id AND m.meter_id LIKE :meter ESCAPE '\\')")
        params["meter"] = _like(query.meter_id) + "%"
    if query.customer_class:
        where.append("c.customer_class = :cls")
        params["cls"] = query.customer_class
    if query.region_id:
        where.append("c.region_id = :region")
        params["region"] = query.region_id
    sql = ("SELECT c.customer_id, c.name, c.customer_class, c.region_id, c.payment_mode, "
           "c.opened_on, c.closed_on, c.phone_enc FROM customers c WHERE "
           + " AND ".join(where) + " ORDER BY c.customer_id")
    if query.phone_suffix:
        if cipher is None:
            raise ValidationError("phone search needs the personal-data key", where="phone_suffix")
        suffix = query.phone_suffix
        rows = [r for r in conn.execute(text(sql), params)
                if _phone(cipher, r[0], r[7]).endswith(suffix)]
        total = len(rows)
        rows = rows[offset:offset + limit]
    else:
        total = int(conn.execute(text(f"SELECT count(*) FROM ({sql}) q"), params).scalar_one())
        rows = list(conn.execute(text(f"{sql} LIMIT :lim OFFSET :off"),
                                 {**params, "lim": limit, "off": offset}))
    return [{"customer_id": r[0], "name": r[1], "customer_class": r[2], "region_id": r[3],
             "payment_mode": r[4], "opened_on": _iso(r[5]), "closed_on": _iso(r[6]),
             "phone": _shown(_phone(cipher, r[0], r[7]) if cipher else None, mask_phone,
                             clear_pii)}
            for r in rows], total


def customer(conn: Connection, cipher: PiiCipher | None, customer_id: str, *,
             clear_pii: bool = False) -> dict[str, Any]:
    """One customer with their accounts; phone and ID number masked unless ``clear_pii``."""
    r = conn.execute(text(
        "SELECT customer_id, name, customer_class, region_id, station_id, collector_id, address, "
        "phone_enc, id_number_enc, low_income, protected, payment_mode, opened_on, closed_on, "
        "language FROM customers WHERE customer_id = :c"), {"c": customer_id}).first()
    if r is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    accounts = [{"account_id": a[0], "opened_on": _iso(a[1]), "closed_on": _iso(a[2]),
                 "status": "closed" if a[2] else "open"} for a in conn.execute(text(
                     "SELECT account_id, opened_on, closed_on FROM accounts WHERE customer_id = :c "
                     "ORDER BY account_id"), {"c": customer_id})]
    phone = _open(cipher, r[7], CUSTOMER_PHONE.context(customer_id))
    id_number = _open(cipher, r[8], CUSTOMER_ID_NUMBER.context(customer_id))
    return {"customer_id": r[0], "name": r[1], "customer_class": r[2], "region_id": r[3],
            "station_id": r[4], "collector_id": r[5], "address": r[6],
            "phone": _shown(phone, mask_phone, clear_pii),
            "id_number": _shown(id_number, mask_id_number, clear_pii),
            "pii": "clear" if clear_pii else "masked",
            "low_income": bool(r[9]), "protected": bool(r[10]), "payment_mode": r[11],
            "opened_on": _iso(r[12]), "closed_on": _iso(r[13]), "language": r[14],
            "accounts": accounts}


def account(conn: Connection, account_id: str) -> dict[str, Any]:
    """One account: its customer, dates, status, meters and tariff assignments (the money is
    the ledger's: the caller adds the balance)."""
    r = conn.execute(text("SELECT account_id, customer_id, opened_on, closed_on FROM accounts "
                          "WHERE account_id = :a"), {"a": account_id}).first()
    if r is None:
        raise NotFoundError(f"account {account_id} does not exist")
    meters = [{"meter_id": m[0], "service_point_id": m[1], "multiplier": int(m[2]),
               "installed_on": _iso(m[3]), "removed_on": _iso(m[4]),
               "status": "removed" if m[4] else "active"} for m in conn.execute(text(
                   "SELECT meter_id, service_point_id, multiplier, installed_on, removed_on "
                   "FROM meters WHERE account_id = :a ORDER BY meter_id"), {"a": account_id})]
    tariffs = [{"tariff_id": t[0], "effective_from": _iso(t[1]), "effective_to": _iso(t[2])}
               for t in conn.execute(text(
                   "SELECT tariff_id, effective_from, effective_to FROM tariff_assignments "
                   "WHERE account_id = :a ORDER BY effective_from"), {"a": account_id})]
    return {"account_id": r[0], "customer_id": r[1], "opened_on": _iso(r[2]),
            "closed_on": _iso(r[3]), "status": "closed" if r[3] else "open",
            "meters": meters, "tariffs": tariffs}


def customer_accounts(conn: Connection, customer_id: str) -> list[str]:
    return [str(a) for a in conn.execute(text(
        "SELECT account_id FROM accounts WHERE customer_id = :c ORDER BY account_id"),
        {"c": customer_id}).scalars()]


def _iso(v: Any) -> str | None:
    """A stored date as YYYY-MM-DD (SQLite's driver gives the text, PostgreSQL's a date)."""
    if v is None:
        return None
    return v.isoformat() if hasattr(v, "isoformat") else str(v)[:10]


def _open(cipher: PiiCipher | None, token: str | None, context: str) -> str | None:
    if token is None or cipher is None:
        return None
    return cipher.decrypt(token, context)


def _phone(cipher: PiiCipher, customer_id: str, token: str | None) -> str:
    return _open(cipher, token, CUSTOMER_PHONE.context(customer_id)) or ""


def _shown(value: str | None, mask: Any, clear: bool) -> str | None:
    if value is None or value == "":
        return None
    return value if clear else mask(value)
