"""A bill as a document (电费账单): one data model that both renderers (HTML for the web and the
portal, PDF for e-mail and print) take, so the two can never disagree.

What a document holds and why (docs/bills.md has the customer-facing reasoning):

- the meter reads the bill rests on, each estimated read marked (估抄) — a customer who sees
  an estimate knows to expect a correction when the meter is read;
- every line as quantity × unit price = amount (half-up to the fen; the total is the sum);
- the tier split and where the account stands in the year's tiers (kWh left before the next
  tier), the time-of-use split, the funds and surcharges by name, allowances applied and the
  policies the customer may be entitled to;
- what the account owes now: this bill, earlier arrears, late fees, credit, the amount due and
  the due date;
- 13 months of usage, the comparison with similar households (same class, region and size),
  the next-bill forecast when a forecaster is given, and every way to pay (online channels with
  a QR payload).

Documents are built for many accounts at once (a bill run renders 100,000): every query takes
the whole list of accounts, and what is the same for the whole period (peer groups, tariffs)
is computed once in a :class:`PeriodContext`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from sqlalchemy import Connection, Engine, text

from dianfei.core.clock import BUSINESS_TZ, Period
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import fmt_price, fmt_qty, fmt_yuan
from dianfei.core.rules import rule_cache

if TYPE_CHECKING:
    from dianfei.db.engine import Database

if TYPE_CHECKING:
    import polars as pl

#: the forecast hook: (engine, accounts, period of the bill) → per account the next bill's
#: forecast as strings: {"period": "YYYY-MM", "kwh": "123.00", "amount": "66.17", and optionally
#: "low", "high" (yuan) and "method"}. dianfei.risk provides it when its forecaster exists
#: (``risk.service.bill_document_forecast``); without one a bill shows no forecast — never a guess.
ForecastProvider = Callable[[Engine, Sequence[str], Period], Mapping[str, Mapping[str, str]]]

#: the hook's import path, looked up by the entry points (billing cannot import risk)
FORECAST_HOOK = "dianfei.risk.service:bill_document_forecast"

#: the instalment hook: (engine, accounts, period of the bill) → per account the payment-plan
#: instalments that fall due with that period's bill (分期: "instalment due with this bill"),
#: each {"plan_id", "instalment", "of", "amount" (yuan)}. dianfei.collections provides it
#: (``collections.service.bill_document_instalments``); billing sits below collections, so the
#: entry points look it up as they do the forecaster. The bill's own ``amount`` never includes it.
InstalmentProvider = Callable[[Engine, Sequence[str], Period],
                              Mapping[str, Sequence[Mapping[str, Any]]]]
INSTALMENT_HOOK = "dianfei.collections.service:bill_document_instalments"
#: the good-payer rating hook (信用等级), same shape: (engine, accounts, period) → per account
#: {"grade": "A", "points": "85", "as_of": "YYYY-MM-DD"}; collections provides it (billing sits
#: below collections and cannot import it); without it a bill shows no rating
RATING_HOOK = "dianfei.collections.service:bill_document_ratings"

TOU_ORDER = ("sharp", "peak", "flat", "valley")
#: contracted capacity bands (0.01 kVA upper bounds) that make "households of the same size"
SIZE_BANDS: tuple[tuple[int, str], ...] = ((400, "≤4kVA"), (800, "4–8kVA"), (1600, "8–16kVA"))
POLICY_FILE = Path(__file__).with_name("templates") / "policies.toml"


def size_band(capacity_kva: int | None) -> str:
    """The household size used for peer groups: the contracted capacity band, or "unknown"
    when no capacity is recorded (the group is then class and region alone)."""
    if capacity_kva is None:
        return "unknown"
    for upto, name in SIZE_BANDS:
        if capacity_kva <= upto:
            return name
    return ">16kVA"


def _instant(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(BUSINESS_TZ).isoformat())


def _qty(v: int | None) -> str | None:
    return fmt_qty(int(v)) if v is not None else None


@rule_cache(maxsize=1)
def policies() -> dict[str, dict[str, Any]]:
    """The policies a bill tells customers about (templates/policies.toml): rules as data."""
    with POLICY_FILE.open("rb") as fh:
        return dict(tomllib.load(fh))


@dataclass(frozen=True)
class Links:
    """Where the customer sees the bill online and pays it (``[billing] bill_url``, ``pay_url``)."""

    bill_url: str = "https://95598.example.cn/bills"
    pay_url: str = "https://pay.example.cn/dianfei"

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any]) -> Links:
        cfg = raw.get("billing", {}) or {}
        return cls(bill_url=str(cfg.get("bill_url", cls.bill_url)).rstrip("/"),
                   pay_url=str(cfg.get("pay_url", cls.pay_url)))

    def bill_link(self, account: str, period: str) -> str:
        return f"{self.bill_url}/{account}/{period}"

    def pay_payload(self, channel: str, account: str, bill_id: str, amount: str) -> str:
        """The QR payload of an online channel: the payment page with what to pay. The page
        creates the channel order when the customer scans (an order made at print time would
        expire long before the bill arrives)."""
        query = urlencode({"channel": channel, "account": account, "bill": bill_id,
                           "amount": amount})
        return f"{self.pay_url}?{query}"


#: every way to pay, in the order a bill lists them (codes; words in bill_words.toml)
PAY_CHANNELS: tuple[tuple[str, bool], ...] = (
    ("alipay", True), ("wechatpay", True), ("counter", False), ("bank_debit", False),
    ("app", False))


@dataclass
class PeriodContext:
    """What every document of a period shares: the peer groups, the tariffs, the links."""

    period: Period
    #: account_id, kwh, group key columns, peers_n, peers_avg, peers_median, peers_p25, below
    peers: pl.DataFrame
    links: Links
    tariff_dir: Path | None = None


def period_context(engine: Engine, period: Period, *, links: Links | None = None,
                   tariff_dir: Path | None = None) -> PeriodContext:
    """Peer statistics of a period, computed once for all its documents (columns, not loops):
    every live bill of the period joined to its household's class, region and size band."""
    import polars as pl

    from dianfei.billing import repository
    from dianfei.customers.service import bill_facts

    bills = repository.period_kwh(engine, period)
    facts = bill_facts(engine).select("account_id", "customer_class", "region_id", "capacity_kva")
    cap = pl.col("capacity_kva")
    band: Any = pl.when(cap.is_null()).then(pl.lit("unknown"))
    for upto, name in SIZE_BANDS:
        band = band.when(cap <= upto).then(pl.lit(name))
    frame = bills.join(facts, on="account_id", how="left").with_columns(
        band.otherwise(pl.lit(">16kVA")).alias("size_band"))  # as size_band() says
    group = ["customer_class", "region_id", "size_band"]
    frame = frame.with_columns(
        pl.len().over(group).alias("peers_n"),
        pl.col("kwh").mean().over(group).alias("peers_avg"),
        pl.col("kwh").median().over(group).alias("peers_median"),
        pl.col("kwh").quantile(0.25, "nearest").over(group).alias("peers_p25"),
        # how many of the group used less: the customer's place among similar households
        (pl.col("kwh").rank("min").over(group) - 1).alias("below"),
    )
    return PeriodContext(period, frame, links or Links(), tariff_dir)


def document_context(db: Database, period: Period) -> PeriodContext:
    """:func:`period_context` with the configured links (``[billing] bill_url``, ``pay_url``)
    and tariff directory."""
    return period_context(db.engine, period, links=Links.from_settings(db.settings.raw),
                          tariff_dir=db.settings.billing.tariff_dir)


def load_forecaster(path: str = FORECAST_HOOK) -> ForecastProvider | None:
    """The next-bill forecaster named by ``path`` ("module:function") when it exists, else
    None — a bill then shows no forecast rather than a made-up one. Called by the entry points
    (CLI, web, batch rendering): billing does not depend on risk, risk plugs into billing."""
    return cast(ForecastProvider | None, load_hook(path))


def load_instalments(path: str = INSTALMENT_HOOK) -> InstalmentProvider | None:
    """The payment-plan instalment provider named by ``path`` when it exists, else None (a bill
    then shows no instalment line). Looked up by the entry points, like the forecaster."""
    return cast(InstalmentProvider | None, load_hook(path))


def load_hook(path: str) -> Any:
    """The callable named by ``path`` ("module:function"), or None when it does not exist."""
    import importlib

    module, _, name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError:
        return None
    return found if callable(found) else None


def bill_document(engine: Engine, account_id: str, period: Period, *, as_of: date | None = None,
                  forecast: ForecastProvider | None = None,
                  context: PeriodContext | None = None,
                  instalments: InstalmentProvider | None = None,
                  rating: ForecastProvider | None = None) -> dict[str, Any]:
    """One account's bill for the period (its live bill, else its latest cancelled one)."""
    docs = bill_documents(engine, period, [account_id], as_of=as_of, forecast=forecast,
                          context=context, include_cancelled=True, instalments=instalments,
                          rating=rating)
    if not docs:
        with engine.connect() as conn:
            known = conn.execute(text("SELECT 1 FROM bills WHERE account_id = :a"),
                                 {"a": account_id}).first()
        if known is None:
            raise NotFoundError(f"no bill for account {account_id} in {period}: the account has "
                                "no bills at all (unknown account?)")
        raise NotFoundError(f"no bill for account {account_id} in {period}")
    return docs[0]


def bill_documents(engine: Engine, period: Period, accounts: Sequence[str], *,
                   as_of: date | None = None, forecast: ForecastProvider | None = None,
                   context: PeriodContext | None = None,
                   include_cancelled: bool = False,
                   instalments: InstalmentProvider | None = None,
                   rating: ForecastProvider | None = None) -> list[dict[str, Any]]:
    """The documents of ``accounts``' bills for ``period``, in the order of ``accounts``;
    accounts without a bill are left out (the caller compares). ``as_of``: the day the
    account's position (arrears, late fees, credit, amount due) is read, today by default.
    ``instalments``: the payment-plan instalments due with these bills (see the hook)."""
    import polars as pl

    from dianfei.billing import repository
    from dianfei.customers.service import bill_facts
    from dianfei.ledger.service import open_items

    accounts = list(dict.fromkeys(accounts))
    if not accounts:
        return []
    ctx = context or period_context(engine, period)
    day = as_of or datetime.now(BUSINESS_TZ).date()
    with engine.connect() as conn:
        bills = repository.document_bills(conn, period, accounts, include_cancelled)
        if not bills:
            return []
        ids = [b["bill_id"] for b in bills.values()]
        lines = repository.document_lines(conn, ids)
        meters = repository.document_meters(conn, ids)
        derived = _estimate_bases(conn, [m for ms in meters.values() for m in ms]
                                  + [b for b in bills.values() if b["meter_id"]])
        # with the periods after this one: a forecast of the next bill is for the latest bill
        # only — once the next bill is out it says less than that bill does (and computing it
        # for an old period re-rates the account's history)
        history, superseded = repository.document_history(conn, period, list(bills))
        # every open item, credit included: what each account owes is their sum (as
        # ledger.balances computes it), the debits are the positive ones
        every_item = open_items(conn, list(bills))
    owed = dict.fromkeys(bills, 0)
    for account, amount in every_item.group_by("account_id").agg(
            pl.col("open_amount").sum()).iter_rows():
        owed[str(account)] = int(amount)
    items = every_item.filter(pl.col("open_amount") > 0)
    facts = {r["account_id"]: r for r in bill_facts(engine, list(bills)).iter_rows(named=True)}
    peers = {r["account_id"]: r for r in ctx.peers.filter(
        ctx.peers["account_id"].is_in(list(bills))).iter_rows(named=True)}
    items_by: dict[str, list[dict[str, Any]]] = {}
    for it in items.iter_rows(named=True):
        items_by.setdefault(it["account_id"], []).append(it)
    current = [a for a in bills if a not in superseded]
    predicted = forecast(engine, current, period) if forecast and current else {}
    plan_due = instalments(engine, list(bills), period) if instalments else {}
    out = []
    for account in accounts:
        bill = bills.get(account)
        if bill is None:
            continue
        doc = _document(bill, lines.get(bill["bill_id"], []),
                        meters.get(bill["bill_id"], []), history.get(account, []),
                        facts.get(account, {}), peers.get(account), items_by.get(account, []),
                        owed.get(account, 0), predicted.get(account), ctx, period, day,
                        derived)
        if plan_due.get(account) and bill["status"] != "cancelled":
            _add_instalments(doc, bill, plan_due[account], items_by.get(account, []))
        out.append(doc)
    if rating is not None:
        rated = rating(engine, list(bills), period)
        for doc in out:
            found = rated.get(doc["account"])
            doc["credit_rating"] = dict(found) if found else None
    return out


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _estimate_bases(conn: Connection, rows: Sequence[Mapping[str, Any]],
                    ) -> dict[tuple[str, datetime], str]:
    """(meter_id, read instant) → how the estimated read there was derived (metering's words),
    for the reads of these bill meters that metering estimated (估计读数)."""
    from dianfei.metering.service import describe_basis, estimate_basis

    keys = {(str(r["meter_id"]), at) for r in rows if r["estimated"]
            for at in (_utc(r["read_from_at"]), _utc(r["read_to_at"])) if at is not None}
    found = estimate_basis(conn, sorted(keys))
    return {k: describe_basis(v) for k, v in found.items()}


def _estimate_notes(m: Mapping[str, Any], derived: Mapping[tuple[str, datetime], str],
                    ) -> dict[str, str]:
    """The meter's estimated closing read (this bill rests on it) and estimated opening read
    (this bill trues it up with an actual read), each with its derivation."""
    out = {}
    to_at, from_at = _utc(m["read_to_at"]), _utc(m["read_from_at"])
    if to_at is not None and (m["meter_id"], to_at) in derived:
        out["read_to"] = derived[(m["meter_id"], to_at)]
    if from_at is not None and (m["meter_id"], from_at) in derived:
        out["read_from"] = derived[(m["meter_id"], from_at)]
    return out


def _add_instalments(doc: dict[str, Any], bill: Mapping[str, Any],
                     due: Sequence[Mapping[str, Any]], items: Sequence[Mapping[str, Any]]) -> None:
    """The "instalment due with this bill" lines (分期): each falls due on this bill's due date;
    ``with_this_bill`` is what is left to pay on the bill plus the instalments. The bill's own
    ``total`` and the account position are unchanged (a document key only when there is one, so
    the documents of accounts without a plan — and their content hashes — stay as they were)."""
    from decimal import Decimal

    from dianfei.core.money import to_fen

    this_open = sum(int(i["open_amount"]) for i in items
                    if i["item_kind"] == "bill" and i["reference"] == bill["bill_id"])
    lines = [{"plan_id": d["plan_id"], "instalment": d["instalment"], "of": d["of"],
              "amount": d["amount"], "due_on": str(bill["due_on"])[:10]} for d in due]
    added = sum(to_fen(Decimal(str(d["amount"]))) for d in due)
    doc["plan_instalments"] = lines
    doc["with_this_bill"] = fmt_yuan(this_open + added)


def _line(ln: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "line_no": ln["line_no"], "code": ln["code"], "description": ln["description"],
        "quantity": fmt_qty(ln["quantity"]), "unit": ln["unit"],
        "unit_price": fmt_price(ln["unit_price"]), "amount": fmt_yuan(ln["amount"]),
    }
    if ln["power_factor"] is not None:
        item["power_factor"] = f"{ln['power_factor'] / 100:.2f}"
        item["percent"] = fmt_qty(ln["percent"])
    item["meter_id"] = ln["meter_id"]
    return item


def _document(row: Mapping[str, Any], lines: Sequence[Mapping[str, Any]],
              bill_meters: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]],
              fact: Mapping[str, Any], peer: Mapping[str, Any] | None,
              items: Sequence[Mapping[str, Any]], balance: int, forecast: Mapping[str, str] | None,
              ctx: PeriodContext, period: Period, day: date,
              derived: Mapping[tuple[str, datetime], str] | None = None) -> dict[str, Any]:
    doc_lines = [_line(ln) for ln in lines]
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
            "read_from": _qty(m["read_from"]),
            "read_from_at": _instant(m["read_from_at"]),
            "read_to": _qty(m["read_to"]),
            "read_to_at": _instant(m["read_to_at"]),
            "kwh": fmt_qty(m["kwh"]),
            # the closing read was estimated (估抄): the next actual read corrects it
            "estimated": bool(m["estimated"]),
            # estimated read / 估计读数: how metering derived it (last read + intervals since)
            "estimates": _estimate_notes(m, derived or {}),
            "lines": own,
            "amount": fmt_yuan(sum(raw["amount"] for raw in lines
                                   if raw["meter_id"] == m["meter_id"])),
        })
    account_lines = [ln for ln, raw in zip(doc_lines, lines, strict=True) if raw["meter_id"] is None]
    account, pstr = row["account_id"], row["period"]
    kwh = int(row["kwh"])
    hist = sorted(history, key=lambda h: h["period"])
    ytd_before = sum(int(h["kwh"]) for h in hist
                     if h["period"][:4] == pstr[:4] and h["period"] < pstr)
    position = tier_position(row, kwh, ytd_before, lines, period, ctx)
    this_open = sum(int(i["open_amount"]) for i in items
                    if i["item_kind"] == "bill" and i["reference"] == row["bill_id"])
    arrears = sum(int(i["open_amount"]) for i in items
                  if i["item_kind"] == "bill" and i["reference"] != row["bill_id"])
    late_fees = sum(int(i["open_amount"]) for i in items if i["item_kind"] == "late_fee")
    credit = balance - this_open - arrears - late_fees  # ≤ 0: money held for the account
    amount_due = max(balance, 0)
    live = row["status"] != "cancelled"
    links = ctx.links
    return {
        "bill_id": row["bill_id"],
        "account": account,
        "customer_id": row["customer_id"],
        "customer_name": fact.get("name"),
        "customer_class": fact.get("customer_class"),
        "region": fact.get("region_id"),
        "region_name": fact.get("region_name"),
        "address": fact.get("address"),
        "low_income": bool(fact.get("low_income")),
        "period": pstr,
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
            "read_from": _qty(row["read_from"]),
            "read_from_at": _instant(row["read_from_at"]),
            "read_to": _qty(row["read_to"]),
            "read_to_at": _instant(row["read_to_at"]),
        },
        "kwh": fmt_qty(kwh),
        "meters": meter_groups,
        "lines": doc_lines,
        "account_lines": account_lines,
        "total": fmt_yuan(row["amount"]),
        "replaces_bill_id": row["replaces_bill_id"],
        "cancel_reason": row["cancel_reason"],
        "tiers": position,
        "time_of_use": _time_of_use(lines),
        "funds": [ln for ln in doc_lines if ln["code"].startswith("fund_")],
        "allowances": [ln for ln in doc_lines if ln["code"] == "low_income_allowance"],
        "policies": _policies(row, fact, lines),
        "account_position": {
            "as_of": day.isoformat(),
            "this_bill": fmt_yuan(row["amount"]),
            "paid_on_this_bill": fmt_yuan(row["amount"] - this_open) if live else "0.00",
            "previous_arrears": fmt_yuan(arrears),
            "late_fees": fmt_yuan(late_fees),
            "credit": fmt_yuan(-credit) if credit < 0 else "0.00",
            "amount_due": fmt_yuan(amount_due),
            "due_on": str(row["due_on"])[:10],
        },
        "history": [{"period": h["period"], "kwh": fmt_qty(h["kwh"]),
                     "amount": fmt_yuan(h["amount"]), "estimated": bool(h["estimated"])}
                    for h in reversed(hist)],
        "peer_comparison": _peers(fact, peer, kwh),
        "forecast": dict(forecast) if forecast else None,
        "bill_link": links.bill_link(account, pstr),
        "payment": [{"channel": code, "online": online,
                     "qr_payload": links.pay_payload(code, account, row["bill_id"],
                                                     fmt_yuan(amount_due)) if online else None}
                    for code, online in PAY_CHANNELS],
    }


def tier_position(row: Mapping[str, Any], kwh: int, ytd_before: int,
                  lines: Sequence[Mapping[str, Any]],
                  period: Period, ctx: PeriodContext) -> dict[str, Any] | None:
    """Where the account stands in the tiers (阶梯): the kWh of this bill in each tier and the
    kWh left before the next one. None when the tariff has no tiers."""
    from dianfei.tariffs.service import load_catalogue

    try:
        version = load_catalogue(ctx.tariff_dir).version_for(row["tariff_id"], period)
    except ValidationError:
        return None  # a tariff gone from the catalogue: the lines still say what was charged
    tiers = getattr(version.energy, "tiers", None)
    if tiers is None:
        return None
    t1, t2 = tiers.upto_for(period.month)
    annual = tiers.basis == "annual"
    before = ytd_before if annual else 0
    after = before + kwh
    # TOU with tier increments (阶梯加价): the TOU lines carry every kWh at tier-1 prices
    increments = hasattr(version.energy, "increments")
    split, amounts = [0, 0, 0], [0, 0, 0]
    for ln in lines:
        for n in (1, 2, 3):
            if ln["code"] in (f"energy_tier{n}", f"energy_tier{n}_increment"):
                split[n - 1] += int(ln["quantity"])
                amounts[n - 1] += int(ln["amount"])
    if increments:  # tier 1 holds the kWh no increment took
        split[0] = kwh - split[1] - split[2]
    tier = 1 if after <= t1 else 2 if after <= t2 else 3
    to_next = (t1 - after) if tier == 1 else (t2 - after) if tier == 2 else None
    return {
        "basis": tiers.basis,
        "year": period.year,
        "thresholds_kwh": [fmt_qty(t1), fmt_qty(t2)],
        "used_before_kwh": fmt_qty(before),
        "used_after_kwh": fmt_qty(after),
        "current_tier": tier,
        "kwh_to_next_tier": fmt_qty(to_next) if to_next is not None else None,
        # TOU tariffs with tier increments (阶梯加价): a tier's amount is its increment only
        "increments": increments,
        "split": [{"tier": n, "kwh": fmt_qty(split[n - 1]), "amount": fmt_yuan(amounts[n - 1])}
                  for n in (1, 2, 3)],
    }


def _time_of_use(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The time-of-use split (分时): kWh, share of the energy, price and amount per period."""
    acc: dict[str, list[int]] = {}
    for ln in lines:
        period = ln["code"][7:]
        if ln["code"].startswith("energy_") and period in TOU_ORDER:
            # a bill on several meters has one line per meter and period: add them up
            acc_row = acc.setdefault(period, [0, 0, int(ln["unit_price"])])
            acc_row[0] += int(ln["quantity"])
            acc_row[1] += int(ln["amount"])
    total = sum(v[0] for v in acc.values())
    out = []
    for p in TOU_ORDER:
        if p not in acc:
            continue
        q, amount, price = acc[p]
        share = (q * 1000 // total + 5) // 10 if total else 0  # whole percent, half-up
        out.append({"period": p, "kwh": fmt_qty(q), "share_percent": share,
                    "unit_price": fmt_price(price), "amount": fmt_yuan(amount)})
    return out


def _policies(row: Mapping[str, Any], fact: Mapping[str, Any],
              lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Policies applied to this bill and those the customer may be entitled to (data:
    templates/policies.toml): a policy applies to the listed classes and tariffs; it is
    "applied" when the bill carries its line, else "may apply" for the customer to ask about."""
    codes = {ln["code"] for ln in lines}
    out = []
    for code, p in policies().items():
        if p.get("classes") and fact.get("customer_class") not in p["classes"]:
            continue
        if p.get("tariffs") and row["tariff_id"] not in p["tariffs"]:
            continue
        applied = p.get("line") in codes
        if not applied and p.get("unless_flag") and fact.get(p["unless_flag"]):
            continue  # entitled and flagged but nothing billed to credit (e.g. 0 kWh)
        out.append({"code": code, "applied": applied})
    return out


def _peers(fact: Mapping[str, Any], peer: Mapping[str, Any] | None, kwh: int) -> dict[str, Any]:
    band = size_band(fact.get("capacity_kva"))
    group = f"{fact.get('customer_class')} / {fact.get('region_id')} / {band}"
    if peer is None:
        return {"group": group, "customer_class": fact.get("customer_class"),
                "region": fact.get("region_id"), "size_band": band, "accounts": 0,
                "average_kwh": None, "median_kwh": None, "efficient_kwh": None,
                "your_kwh": fmt_qty(kwh), "percent_using_less": None}
    n = int(peer["peers_n"])
    return {
        "group": group,
        "customer_class": fact.get("customer_class"),
        "region": fact.get("region_id"),
        "size_band": band,
        "accounts": n,
        "average_kwh": fmt_qty(round(peer["peers_avg"])),
        "median_kwh": fmt_qty(round(peer["peers_median"])),
        # the quarter of similar households that use least (what "efficient" neighbours use)
        "efficient_kwh": fmt_qty(int(peer["peers_p25"])),
        "your_kwh": fmt_qty(kwh),
        "percent_using_less": (int(peer["below"]) * 100 + n // 2) // n if n else None,
    }
