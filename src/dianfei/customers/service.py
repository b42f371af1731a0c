"""Entry points of the customers domain: loading a population, looking customers up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select

from dianfei.audit import service as audit
from dianfei.core.crypto import PiiCipher
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError

# public: the classes and payment modes (importers validate against them), and the account row
# for callers that lock it together with their own row in one statement (payments: an order
# and its account, FOR UPDATE)
from dianfei.customers.models import CUSTOMER_CLASSES as CUSTOMER_CLASSES
from dianfei.customers.models import PAYMENT_MODES as PAYMENT_MODES
from dianfei.customers.models import Account as Account
from dianfei.customers.models import Customer
from dianfei.db.bulk import write_frame
from dianfei.db.pii import CUSTOMER_ID_NUMBER, CUSTOMER_PHONE, PiiColumn

if TYPE_CHECKING:
    import polars as pl

CUSTOMER_COLUMNS = (
    "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
    "address", "phone", "id_number", "tariff_id", "low_income", "protected", "payment_mode",
    "opened_on",
)
METER_COLUMNS = ("meter_id", "customer_id", "multiplier", "digits", "installed_on")


def count_customers(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(Customer)).scalar_one())


def load_population(
    conn: Connection,
    cipher: PiiCipher,
    *,
    regions: pl.DataFrame,
    stations: pl.DataFrame,
    collectors: pl.DataFrame,
    customers: pl.DataFrame,
    meters: pl.DataFrame,
) -> int:
    """Store a whole population (regions → stations → collectors → customers → accounts →
    service points → meters → tariff assignments) in the caller's transaction.

    One account and one service point per customer, with the customer's id: the common case in a
    county branch. Phone and ID numbers are encrypted before they reach the database.
    """
    import polars as pl

    missing = [c for c in CUSTOMER_COLUMNS if c not in customers.columns]
    if missing:
        raise ValidationError(f"customers frame lacks columns: {', '.join(missing)}")
    bad_class = customers.filter(~pl.col("customer_class").is_in(list(CUSTOMER_CLASSES)))
    if bad_class.height:
        raise ValidationError(
            f"customer {bad_class['customer_id'][0]}: unknown customer_class "
            f"{bad_class['customer_class'][0]!r} (expected one of {', '.join(CUSTOMER_CLASSES)})"
        )
    bad_mode = customers.filter(~pl.col("payment_mode").is_in(list(PAYMENT_MODES)))
    if bad_mode.height:
        raise ValidationError(f"customer {bad_mode['customer_id'][0]}: unknown payment_mode")

    write_frame(conn, "regions", regions.select("region_id", "name"))
    write_frame(conn, "supply_stations", stations.select("station_id", "region_id", "name"))
    write_frame(conn, "collectors", collectors.select("collector_id", "name", "station_id"))
    enc = customers.with_columns(
        pl.Series("phone_enc", _sealed(cipher, CUSTOMER_PHONE, customers, "phone"), dtype=pl.String),
        pl.Series("id_number_enc", _sealed(cipher, CUSTOMER_ID_NUMBER, customers, "id_number"),
                  dtype=pl.String),
        pl.Series("phone_lookup", _lookups(cipher, customers), dtype=pl.String),
    )
    write_frame(conn, "customers", enc.select(
        "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
        "address", "phone_enc", "id_number_enc", "low_income", "protected", "payment_mode",
        "opened_on", "phone_lookup",
    ))
    write_frame(conn, "accounts", customers.select(
        pl.col("customer_id").alias("account_id"), "customer_id", "opened_on"))
    sp_cols = [pl.col("customer_id").alias("service_point_id"),
               pl.col("customer_id").alias("account_id"), "address"]
    sp_cols.append(pl.col("capacity_kva") if "capacity_kva" in customers.columns
                   else pl.lit(None, pl.Int64).alias("capacity_kva"))
    sp_cols.append(pl.col("demand_basis") if "demand_basis" in customers.columns
                   else pl.lit(None, pl.String).alias("demand_basis"))
    write_frame(conn, "service_points", customers.select(sp_cols))
    meter_cols = [
        "meter_id",
        pl.col("customer_id").alias("service_point_id"),
        pl.col("customer_id").alias("account_id"),
        pl.col("comm_address") if "comm_address" in meters.columns
        else pl.lit(None, pl.String).alias("comm_address"),
        "multiplier", "digits",
        pl.col("registers") if "registers" in meters.columns else pl.lit("total").alias("registers"),
        "installed_on",
    ]
    unknown = meters.join(customers.select("customer_id"), on="customer_id", how="anti")
    if unknown.height:
        raise ValidationError(
            f"meter {unknown['meter_id'][0]}: unknown customer {unknown['customer_id'][0]}")
    write_frame(conn, "meters", meters.select(meter_cols))
    write_frame(conn, "tariff_assignments", customers.select(
        pl.col("customer_id").alias("account_id"), "tariff_id",
        pl.col("opened_on").alias("effective_from")))
    _audit_customers(conn, enc)
    audit.record_rows(conn, "meters.added", meters.select(meter_cols), key="meter_id")
    return customers.height


def _audit_customers(conn: Connection, enc: pl.DataFrame) -> None:
    """The customer data as stored (personal data encrypted) in one audit record."""
    audit.record_rows(conn, "customers.added", enc.select(
        "customer_id", "name", "customer_class", "region_id", "address", "phone_enc",
        "low_income", "protected", "payment_mode", "opened_on", "tariff_id"), key="customer_id")


# --------------------------------------------------------------------------- file imports
# Used by ``dianfei import customers|meters`` (metering.imports): look-ups by id on the
# import's own connection, and appends. Validation and de-duplication happen in the importer.


def _in_batches(conn: Connection, sql: str, ids: list[str]) -> list[Any]:
    """Rows of ``sql`` (which has an ``IN ({ids})`` placeholder) for all ``ids``, 500 at a time."""
    from sqlalchemy import text

    rows: list[Any] = []
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        params = {f"i{j}": v for j, v in enumerate(part)}
        rows.extend(conn.execute(text(sql.format(ids=", ".join(f":{k}" for k in params))),
                                 params).fetchall())
    return rows


def region_keys(conn: Connection) -> dict[str, str]:
    """Every region id and region name → its region id (ids win over names)."""
    from sqlalchemy import text

    rows = conn.execute(text("SELECT region_id, name FROM regions")).fetchall()
    keys = {str(name): str(rid) for rid, name in rows}
    keys.update({str(rid): str(rid) for rid, _ in rows})
    return keys


def add_regions(conn: Connection, regions: pl.DataFrame) -> int:
    """Append regions (``region_id``, ``name``)."""
    return write_frame(conn, "regions", regions.select("region_id", "name"))


def customers_by_id(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Stored customers with the tariff assigned from their opening date, by customer id."""
    rows = _in_batches(conn, (
        "SELECT c.customer_id, c.name, c.customer_class, c.region_id, c.address, c.phone_enc, "
        "c.low_income, c.protected, c.payment_mode, c.opened_on, t.tariff_id "
        "FROM customers c LEFT JOIN tariff_assignments t "
        "ON t.account_id = c.customer_id AND t.effective_from = c.opened_on "
        "WHERE c.customer_id IN ({ids})"), ids)
    cols = ("customer_id", "name", "customer_class", "region_id", "address", "phone_enc",
            "low_income", "protected", "payment_mode", "opened_on", "tariff_id")
    return {str(r[0]): dict(zip(cols, r, strict=True)) for r in rows}


def add_customers(conn: Connection, cipher: PiiCipher, customers: pl.DataFrame) -> int:
    """Append customers, each with an account and a service point of the same id and a tariff
    assignment effective from the opening date (the county-branch case, as ``load_population``).

    Columns: customer_id, name, customer_class, region_id, address, phone, tariff_id,
    low_income, protected, payment_mode, opened_on. Phones are encrypted here.
    """
    import polars as pl

    if customers.height == 0:
        return 0
    enc = customers.with_columns(
        pl.Series("phone_enc", _sealed(cipher, CUSTOMER_PHONE, customers, "phone"), dtype=pl.String),
        pl.lit(None, pl.String).alias("id_number_enc"),
        pl.lit(None, pl.String).alias("station_id"),
        pl.lit(None, pl.String).alias("collector_id"),
        pl.Series("phone_lookup", _lookups(cipher, customers), dtype=pl.String),
    )
    write_frame(conn, "customers", enc.select(
        "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
        "address", "phone_enc", "id_number_enc", "low_income", "protected", "payment_mode",
        "opened_on", "phone_lookup"))
    write_frame(conn, "accounts", customers.select(
        pl.col("customer_id").alias("account_id"), "customer_id", "opened_on"))
    write_frame(conn, "service_points", customers.select(
        pl.col("customer_id").alias("service_point_id"),
        pl.col("customer_id").alias("account_id"), "address"))
    write_frame(conn, "tariff_assignments", customers.select(
        pl.col("customer_id").alias("account_id"), "tariff_id",
        pl.col("opened_on").alias("effective_from")))
    _audit_customers(conn, enc)
    return customers.height


def meters_by_id(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = _in_batches(conn, (
        "SELECT meter_id, account_id, multiplier, digits, installed_on, registers, comm_address "
        "FROM meters WHERE meter_id IN ({ids})"), ids)
    cols = ("meter_id", "account_id", "multiplier", "digits", "installed_on", "registers",
            "comm_address")
    return {str(r[0]): dict(zip(cols, r, strict=True)) for r in rows}


def service_points_of(conn: Connection, account_ids: list[str]) -> dict[str, str]:
    """account id → its first service point (by id)."""
    rows = _in_batches(conn, (
        "SELECT account_id, min(service_point_id) FROM service_points "
        "WHERE account_id IN ({ids}) GROUP BY account_id"), account_ids)
    return {str(a): str(sp) for a, sp in rows}


def add_meters(conn: Connection, meters: pl.DataFrame) -> int:
    """Append meters: meter_id, service_point_id, account_id, comm_address, multiplier, digits,
    registers, installed_on."""
    rows = meters.select(
        "meter_id", "service_point_id", "account_id", "comm_address", "multiplier", "digits",
        "registers", "installed_on")
    audit.record_rows(conn, "meters.added", rows, key="meter_id")
    return write_frame(conn, "meters", rows)


# --------------------------------------------------------------------------- reads for others
# What other packages (collections, notify) read about customers, accounts and meters. Set-based
# where they work on many accounts at once; the SQL is in ``customers.repository``.


def open_account_facts(engine: Engine, accounts: Sequence[str] | None = None, *,
                       names: bool = True) -> pl.DataFrame:
    """account_id, customer_id, name, customer_class, low_income, protected, payment_mode of
    every open account, or of the open ones among ``accounts`` (one read); ``names=False``
    leaves the name out (a faster read where only the facts are wanted)."""
    from dianfei.customers import repository

    return repository.open_account_facts(engine, accounts, names=names)


def customer_dimensions(engine: Engine) -> pl.DataFrame:
    """Who each customer is for reporting: customer_id, customer_class, region_id, station_id,
    collector_id (the customer's assigned collector, 催费员), opened_on, closed_on (one read)."""
    from dianfei.customers import repository

    return repository.customer_dimensions(engine)


def open_customer_count(engine: Engine, day: date) -> int:
    """How many customers were open on ``day``: opened on or before it and not closed on or
    before it (the complaint rate's denominator; one COUNT instead of every customer's row)."""
    from dianfei.customers import repository

    return repository.open_customer_count(engine, day)


def collectors(engine: Engine) -> pl.DataFrame:
    """The collectors (催费员): collector_id, name, station_id."""
    from dianfei.customers import repository

    return repository.collectors(engine)


def assignment_facts(engine: Engine, accounts: Sequence[str]) -> pl.DataFrame:
    """account_id, customer_id, customer_class, region_id, station_id, collector_id (the
    customer's own collector), language of the open ones among ``accounts``: what the daily
    worklists assign a collector by (one read)."""
    from dianfei.customers import repository

    return repository.assignment_facts(engine, accounts)
def collector(conn: Connection, collector_id: str) -> dict[str, Any]:
    """One collector (催费员): collector_id, name, station_id; NotFoundError when unknown.
    (The register keeps no inactive flag: a collector who left is removed from it.)"""
    from dianfei.customers import repository

    found = repository.collector(conn, collector_id)
    if found is None:
        raise NotFoundError(f"collector {collector_id!r} is not in the collectors register")
    return found


def bill_facts(engine: Engine, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """account_id, customer_id, name, customer_class, region_id, region_name, address,
    low_income, payment_mode, capacity_kva (0.01 kVA, null when unknown) of ``accounts`` (all
    accounts when None): what a bill document prints and how similar households are grouped."""
    from dianfei.customers import repository

    return repository.bill_facts(engine, accounts)


def open_accounts_of_mode(engine: Engine, payment_mode: str, day: date, *,
                          names: bool = True) -> pl.DataFrame:
    """Open accounts of ``payment_mode`` customers with their active meter and the tariff
    assignments that could be in force on ``day``: account_id, customer_id, name,
    customer_class, low_income, protected, meter_id, multiplier, digits, tariff_id, tariff_from.
    ``names`` False: without ``name`` (free text: the read of every prepaid account each day is
    then parsed in bulk; the caller asks :func:`customer_names` for the few it writes to)."""
    from dianfei.customers import repository

    return repository.open_accounts_of_mode(engine, payment_mode, day, names=names)


def protected_customers(conn: Connection, customer_ids: Sequence[str]) -> set[str]:
    """Which of ``customer_ids`` are protected (never disconnected)."""
    from dianfei.customers import repository

    return repository.protected_customers(conn, customer_ids)


def customer_of_account(conn: Connection, account_id: str) -> str:
    """The customer of ``account_id``; NotFoundError when there is no such account."""
    from dianfei.customers import repository

    found = repository.customer_of_account(conn, account_id)
    if found is None:
        raise NotFoundError(f"account {account_id} does not exist")
    return found


def lock_accounts(conn: Connection, account_ids: Sequence[str]) -> dict[str, str]:
    """The customer of each of ``account_ids`` that exists, its account row locked until the
    commit on PostgreSQL (in account order, so that two callers never wait on each other in a
    circle): what a caller that must change an account's history one transaction at a time
    takes first. Unknown accounts are left out."""
    from dianfei.customers import repository

    return repository.lock_accounts(conn, account_ids)


def active_meter(conn: Connection, account_id: str, *, remote: bool = False) -> str | None:
    """The account's first active meter; ``remote``: the first with a communication address."""
    from dianfei.customers import repository

    return repository.active_meter(conn, account_id, remote=remote)


def active_meters(conn: Connection, account_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """:func:`active_meter` for many accounts at once: account id → (first active meter, first
    remote-capable one or None); an account without an active meter is not in the result."""
    from dianfei.customers import repository

    return repository.active_meters(conn, account_ids)


def contacts(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """For (customer_id, account_id) pairs: customer id → customer_id, name, address (the
    customer's, else the account's first service point's: where the electricity — and so a
    letter — goes), phone_enc. Two reads, whatever the number of customers."""
    from dianfei.customers import repository

    wanted = dict(pairs)  # customer → account (one account per customer is enough)
    if not wanted:
        return {}
    found = {str(r[0]): r for r in repository.contact_rows(conn, list(wanted))}
    homeless = [wanted[c] for c, r in found.items() if not r[2]]
    sp_address = repository.first_service_point_addresses(conn, homeless) if homeless else {}
    return {c: {"customer_id": c, "name": r[1], "address": r[2] or sp_address.get(wanted[c]),
                "phone_enc": r[3]} for c, r in found.items()}


def customer_names(conn: Connection, customer_ids: Sequence[str]) -> dict[str, str]:
    """customer id → name."""
    from dianfei.customers import repository

    return {str(r[0]): str(r[1]) for r in repository.contact_rows(conn, customer_ids)}


def _sealed(cipher: PiiCipher, column: PiiColumn, customers: pl.DataFrame, field: str) -> list[str | None]:
    """The field's values encrypted, each bound to its customer's row (db/pii.py)."""
    return [cipher.encrypt(v, column.context(cid)) for cid, v in
            zip(customers["customer_id"].to_list(), customers[field].to_list(), strict=True)]


def known_stations(conn: Connection, station_ids: Sequence[str]) -> set[str]:
    """The supply stations among ``station_ids`` that exist (one read, the list as one
    parameter)."""
    from sqlalchemy import text

    from dianfei.db.lists import any_of

    if not station_ids:
        return set()
    member, params = any_of(conn, "station_id", "stations", sorted(set(station_ids)))
    return {str(r[0]) for r in conn.execute(
        text(f"SELECT station_id FROM supply_stations WHERE {member}"), params)}


def accounts_of_customers(conn: Connection, customer_ids: Sequence[str]) -> dict[str, str]:
    """customer_id → its billing account (the lowest account id when a customer has several) for
    those of ``customer_ids`` that exist: history imports name customers, the ledger accounts."""
    from sqlalchemy import text

    from dianfei.db.lists import any_of

    if not customer_ids:
        return {}
    member, params = any_of(conn, "customer_id", "ids", sorted(set(customer_ids)))
    out: dict[str, str] = {}
    for cust, acct in conn.execute(text(
            f"SELECT customer_id, account_id FROM accounts WHERE {member} "
            "ORDER BY customer_id, account_id"), params):
        out.setdefault(str(cust), str(acct))
    return out


def account_profiles(engine: Engine) -> pl.DataFrame:
    """account_id, customer_id, customer_class, region_id, station_id, low_income, protected,
    payment_mode, opened_on, closed_on of every account (one read): the customer facts of the
    risk features and of its fairness report."""
    from dianfei.customers import repository

    return repository.account_profiles(engine)


# -- contact data (collections' contact-quality checks) ----------------------------------------------

#: a mainland mobile (11 digits from 1) or a landline with its area code (0xx[x]-xxxxxxx[x])
_PHONE = r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$"


def contact_facts(engine: Engine, accounts: Sequence[str] | None = None, *,
                  gaps_or_classes: Sequence[str] | None = None) -> pl.DataFrame:
    """account_id, customer_id, customer_class, station_id, has_phone of every open account (or
    the open ones among ``accounts``; with ``gaps_or_classes``, only those without a phone on
    file or of one of these classes): whether a phone is on file, never the number."""
    from dianfei.customers import repository

    return repository.contact_facts(engine, accounts, gaps_or_classes=gaps_or_classes)


def set_phone(session: Any, *, customer_id: str, phone: str, cipher: PiiCipher | None = None) -> None:
    """Record the customer's verified phone (encrypted at rest, bound to the customer's row)."""
    import re

    from dianfei.core.settings import load_settings
    from dianfei.db.pii import encrypted_rows_exist

    phone = phone.strip().replace(" ", "")
    if not re.match(_PHONE, phone):
        raise ValidationError(f"customer {customer_id}: phone {phone[:3]}… is not a mainland mobile "
                              "(11 digits from 1) or a landline with its area code (0xx-xxxxxxx)")
    conn = session.connection()
    if cipher is None:
        cipher = PiiCipher.from_environment(load_settings().data_dir,
                                            may_create=lambda: not encrypted_rows_exist(conn))
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    customer.phone_enc = cipher.encrypt(phone, CUSTOMER_PHONE.context(customer_id))
    customer.phone_lookup = phone_lookup(cipher, phone)
    session.flush()
    audit.record(conn, "customer.phone_updated", customer_id, {})


# --------------------------------------------------------------------------- phone look-up
# A phone is stored encrypted with its row as context, so it cannot be searched; the keyed hash
# in ``customers.phone_lookup`` can (the portal's sign-in by phone).


def normalise_phone(phone: str | None) -> str | None:
    """The digits of a phone number as the look-up hashes it: spaces, dashes and brackets go,
    a mainland mobile loses its +86 / 0086 / 86 prefix. None for no digits."""
    import re

    if phone is None:
        return None
    digits = re.sub(r"\D", "", phone)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11 \
                and digits[len(prefix)] == "1":
            digits = digits[len(prefix):]
    return digits or None


def phone_lookup(cipher: PiiCipher, phone: str | None) -> str | None:
    """The stored look-up hash of ``phone`` (active key), None for no phone."""
    digits = normalise_phone(phone)
    return cipher.lookup_hash(digits) if digits else None


def _lookups(cipher: PiiCipher, customers: pl.DataFrame) -> list[str | None]:
    if "phone" not in customers.columns:
        return [None] * customers.height
    return [phone_lookup(cipher, p) for p in customers["phone"].to_list()]


def customers_by_phone(conn: Connection, cipher: PiiCipher, phone: str) -> list[str]:
    """The open customers whose phone is ``phone`` (any format of the same digits), by the
    keyed look-up hash under every key of the keyring. Usually one; a shared family phone may
    give several."""
    from sqlalchemy import text

    digits = normalise_phone(phone)
    if not digits:
        return []
    hashes = cipher.lookup_hashes(digits)
    params = {f"h{i}": h for i, h in enumerate(hashes)}
    rows = conn.execute(text(
        "SELECT customer_id FROM customers WHERE closed_on IS NULL AND phone_lookup IN ("
        + ", ".join(f":{k}" for k in params) + ") ORDER BY customer_id"), params).scalars()
    return [str(r) for r in rows]


def index_phones(engine: Engine, cipher: PiiCipher, *, batch: int = 5_000,
                 only_missing: bool = False) -> int:
    """(Re)compute ``phone_lookup`` from the encrypted phones, a batch per transaction: after
    the migration that added the column (``only_missing``) and after a key rotation (every row
    then hashes under the active key). Returns the rows written."""
    from sqlalchemy import text

    done = 0
    after = ""
    prefix = cipher.lookup_hash("", cipher.active).partition(":")[0] + ":"
    while True:
        with engine.begin() as conn:
            rows = conn.execute(text(
                "SELECT customer_id, phone_enc, phone_lookup FROM customers "
                "WHERE phone_enc IS NOT NULL AND customer_id > :after "
                "ORDER BY customer_id LIMIT :n"), {"after": after, "n": batch}).all()
            if not rows:
                return done
            after = str(rows[-1][0])
            updates = []
            for cid, enc, have in rows:
                if have is not None and (only_missing or str(have).startswith(prefix)):
                    continue
                plain = cipher.decrypt(enc, CUSTOMER_PHONE.context(cid))
                updates.append({"c": cid, "v": phone_lookup(cipher, plain)})
            if updates:
                conn.execute(text("UPDATE customers SET phone_lookup = :v WHERE customer_id = :c"),
                             updates)
            done += len(updates)


# -- supply interruptions (停电 … 复电): see models.SupplyInterruption ---------------------------

from dianfei.customers.models import INTERRUPTION_REASONS as INTERRUPTION_REASONS  # noqa: E402


def supply_off(conn: Connection, key: str, account_id: str, reason: str, at: Any) -> None:
    """The account's supply was cut at ``at`` (``reason``: arrears or prepayment; ``key``: what
    cut it, unique — ``stop_case:{case_id}``), in the caller's transaction. Recording it again
    changes nothing."""
    from dianfei.customers import repository

    if reason not in INTERRUPTION_REASONS:
        raise ValidationError(f"a supply interruption's reason is one of "
                              f"{', '.join(INTERRUPTION_REASONS)}, got {reason!r}")
    repository.supply_off(conn, key, account_id, reason, at)


def supply_restored(conn: Connection, key: str, at: Any) -> None:
    """The supply cut by ``key`` was restored at ``at`` (caller's transaction). A restoration
    of a supply not recorded as off is refused: it would leave the span open for ever."""
    from dianfei.customers import repository

    if repository.supply_on(conn, key, at) == 0:
        raise NotFoundError(f"no open supply interruption {key!r} to close")


def account_state(conn: Connection, account_id: str) -> dict[str, Any] | None:
    """account_id, customer_id, closed_on (None while open), payment_mode of one account; None
    when there is no such account."""
    from dianfei.customers import repository

    row = repository.account_state(conn, account_id)
    if row is None:
        return None
    closed = row[2]
    if isinstance(closed, str):
        closed = date.fromisoformat(closed[:10])
    return {"account_id": str(row[0]), "customer_id": str(row[1]), "closed_on": closed,
            "payment_mode": str(row[3])}


def closed_accounts(conn: Connection) -> set[str]:
    """The accounts closed (销户), whenever."""
    from sqlalchemy import text

    return {str(r[0]) for r in conn.execute(text(
        "SELECT account_id FROM accounts WHERE closed_on IS NOT NULL"))}


def close_account(conn: Connection, account_id: str, on: Any) -> bool:
    """Close the account on ``on`` (销户: no more bills, reads or collections from the next
    day), in the caller's transaction; the customer too when it was their last open account.
    Returns whether the customer was closed. An account closed already is refused."""
    from dianfei.customers import repository

    state = account_state(conn, account_id)
    if state is None:
        raise NotFoundError(f"account {account_id} does not exist")
    if state["closed_on"] is not None:
        raise ConflictError(f"account {account_id} is closed already (since {state['closed_on']})")
    return repository.close_account(conn, account_id, on)


def off_since(conn: Connection, account_id: str) -> Any:
    """When the account's supply went off (UTC instant), if it is off now; else None."""
    from dianfei.customers import repository

    return repository.off_since(conn, account_id)


def supply_interruptions(engine: Engine | Connection, *,
                         since: Any | None = None) -> pl.DataFrame:
    """key, account_id, reason, off_at, on_at (UTC; on_at null while still off) of every
    interruption, or of those still open at the instant ``since`` or begun after it."""
    from dianfei.customers import repository

    return repository.supply_interruptions(engine, since)


def interrupted_periods(engine: Engine | Connection, first: Any, last: Any) -> pl.DataFrame:
    """account_id, period (``YYYY-MM``) of every account and calendar month from ``first`` to
    ``last`` (Periods) in which its supply was off at some time (business time, Asia/Shanghai):
    what it used that month is no measure of its usual use."""
    import polars as pl

    from dianfei.core.clock import BUSINESS_TZ, start_of_day

    spans = supply_interruptions(engine, since=start_of_day(first.first_day)).filter(
        pl.col("off_at") < start_of_day(last.end_date))
    tz = str(BUSINESS_TZ)
    months = spans.select(
        "account_id",
        pl.date_ranges(
            pl.col("off_at").dt.convert_time_zone(tz).dt.date().dt.truncate("1mo"),
            pl.when(pl.col("on_at").is_null()).then(pl.lit(last.first_day))
            .otherwise((pl.col("on_at").dt.convert_time_zone(tz) - pl.duration(microseconds=1))
                       .dt.date().dt.truncate("1mo")),
            "1mo").alias("month")).explode("month")
    return (months.filter(pl.col("month").is_between(pl.lit(first.first_day),
                                                     pl.lit(last.first_day)))
            .select("account_id", pl.col("month").dt.strftime("%Y-%m").alias("period"))
            .unique().sort("account_id", "period"))
