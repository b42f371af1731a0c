"""The staff console's core pages: the KPI dashboard, account search, the customer 360 view,
the settings in force (read-only, with their source files) and the job history.

Every page reads through the domain services (reporting.dashboard, customers.search,
collections.timeline, billing, payments, ledger, jobs); every table pages on the server and
exports (web/tables.py). docs/console.md says what each page shows and to whom.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dianfei.core.clock import BUSINESS_TZ, Clock, Period, business_date
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import fmt_qty, fmt_yuan
from dianfei.db.engine import Database
from dianfei.security.service import allows
from dianfei.web import i18n
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.console_words import WORDS
from dianfei.web.tables import Column, Page, frame_fetch, listing

#: the dashboard's five charts: KPI key, i18n label, and whether the figure is a fraction (shown ×100 %)
CHARTS = (("collection_rate", "dash.collection_rate", True),
          ("overdue_rate", "dash.overdue_rate", True),
          ("avg_payment_days", "dash.payment_days", False),
          ("satisfaction", "dash.satisfaction", False),
          ("complaint_rate", "dash.complaint_rate", False))


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    i18n.add(WORDS)
    console.search_href = "/search"
    console.add_nav("nav.dashboard", "/dashboard", "periods:read", order=10)
    console.add_nav("nav.customers", "/search", "customers:read", order=30)
    console.add_nav("nav.settings", "/settings", "settings:read", order=90)
    console.add_nav("nav.jobs", "/jobs", "jobs:read", order=95)

    def today() -> date:
        return business_date(clock.now())

    # -- dashboard --------------------------------------------------------------------------

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False,
             **guard("periods:read"))
    def dashboard_page(request: Request) -> Response:
        from dianfei.customers.models import CUSTOMER_CLASSES
        from dianfei.customers.search import regions
        from dianfei.customers.service import collectors
        from dianfei.reporting.dashboard import Filters, dashboard, latest_period

        q = request.query_params
        f = Filters(region=q.get("region") or None, customer_class=q.get("customer_class") or None,
                    collector=q.get("collector") or None)
        if f.customer_class and f.customer_class not in CUSTOMER_CLASSES:
            raise ValidationError(f"customer_class must be one of {', '.join(CUSTOMER_CLASSES)}, "
                                  f"got {f.customer_class!r}")
        with db.engine.connect() as conn:
            region_list = regions(conn)
        choices = {"regions": region_list, "classes": CUSTOMER_CLASSES,
                   "collectors": collectors(db.engine).sort("collector_id").to_dicts()}
        period = Period.parse(q["period"]) if q.get("period") else latest_period(db)
        t = console.context(request)["t"]
        if period is None:
            return console.render(request, "console/dashboard.html", title=t("nav.dashboard"),
                                  data=None, filters=f, choices=choices, charts=[])
        day = max(today(), period.first_day)
        try:
            data = dashboard(db, period, day, f)
        except ValidationError as exc:  # no bills of the period for these customers
            return console.render(request, "console/dashboard.html", title=t("nav.dashboard"),
                                  data=None, problem=i18n.refusal(console.lang(request), exc),
                                  filters=f, choices=choices, charts=[], period=str(period))
        if data.get("computed_at"):
            at = datetime.fromisoformat(data["computed_at"]).astimezone(BUSINESS_TZ)
            data = {**data, "computed_at_shown": at.strftime("%Y-%m-%d %H:%M")}
        charts = [{"key": key, "label": t(label), "value": data["latest"].get(key),
                   "percent": pct,
                   "option": _line(data["trend"], key, t(label), pct)}
                  for key, label, pct in CHARTS]
        return console.render(request, "console/dashboard.html", title=t("nav.dashboard"),
                              data=data, filters=f, choices=choices, charts=charts,
                              period=str(period))

    # -- search ------------------------------------------------------------------------------

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False,
             **guard("customers:read"))
    def search_page(request: Request, q: str = "") -> Response:
        from dianfei.customers.search import clean_query, find_accounts

        t = console.context(request)["t"]
        if not q.strip():
            return console.render(request, "console/search.html", title=t("search.title"),
                                  table=None, q="")
        q = clean_query(q)
        if request.query_params.get("format") is None and request.query_params.get("page") in (
                None, "1"):
            rows, total = find_accounts(db.engine, q, 0, 2)
            if total == 1:  # one match: straight to it
                return RedirectResponse(f"/customers/{rows[0]['customer_id']}?account="
                                        f"{rows[0]['account_id']}", status_code=303)

        def fetch(offset: int, limit: int) -> Page:
            rows, total = find_accounts(db.engine, q, offset, limit)
            for r in rows:
                r["status"] = t("status.closed") if r.pop("closed_on") else t("status.open")
            return Page(rows, total)

        link = _customer_link
        columns = [Column("account_id", "col.account", link=link),
                   Column("customer_id", "col.customer", link=link),
                   Column("name", "col.name", link=link),
                   Column("customer_class", "col.class"), Column("region_id", "col.region"),
                   Column("station_id", "col.station"), Column("collector_id", "col.collector"),
                   Column("status", "col.status")]
        return listing(request, console, name="search", title=t("search.title"), columns=columns,
                       fetch=fetch, template="console/search.html", q=q)

    # -- customer 360 ------------------------------------------------------------------------

    @app.get("/customers/by-account/{account_id}", include_in_schema=False,
             **guard("customers:read"))
    def customer_by_account(account_id: str) -> Response:
        from dianfei.customers.service import customer_of_account

        with db.engine.connect() as conn:
            customer = customer_of_account(conn, account_id)
        return RedirectResponse(f"/customers/{customer}?account={account_id}", status_code=303)

    @app.get("/customers/{customer_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("customers:read"))
    def customer_page(request: Request, customer_id: str) -> Response:
        import polars as pl

        from dianfei.billing.service import bills_of_accounts
        from dianfei.collections.account import account_segment
        from dianfei.collections.timeline import account_timeline
        from dianfei.customers.search import customer_profile
        from dianfei.ledger.service import balance

        who = signed_in(request)
        t = console.context(request)["t"]
        with db.engine.connect() as conn:
            profile = customer_profile(conn, customer_id)
            account = _account_of(profile, request.query_params.get("account"))
            owed = balance(conn, account)
            bills = bills_of_accounts(conn, [account])
        phone, id_number = _personal(db, profile, allows(who.role, "pii:read"))
        items = list(reversed(account_timeline(db, account, clock=clock)))  # newest first
        risk = next((i for i in items if i["kind"] == "risk"), None)
        rows = [{"at": i["at"][:16].replace("T", " "), "kind": _kind(t, i["kind"]),
                 "summary": i.get("summary", "")} for i in items]
        columns = [Column("at", "col.at"), Column("kind", "col.kind"),
                   Column("summary", "col.detail")]
        usage = (bills.filter(pl.col("status") != "cancelled").sort("period")
                 .group_by("period", maintain_order=True).agg(pl.col("kwh").sum()).tail(12))
        chart = {"tooltip": {"trigger": "axis"}, "grid": {"left": 60, "right": 20},
                 "xAxis": {"type": "category", "data": usage["period"].to_list()},
                 "yAxis": {"type": "value", "name": "kWh"},
                 "series": [{"type": "bar", "name": "kWh", "itemStyle": {"color": "#0b4f8a"},
                             "data": [float(fmt_qty(int(k))) for k in usage["kwh"].to_list()]}]}
        header = {**profile, "account": account, "phone": phone, "id_number": id_number,
                  "balance": fmt_yuan(owed), "owes": owed > 0,
                  "status": t("status.closed") if profile["closed_on"] else t("status.open")}
        return listing(request, console, name=f"timeline-{account}",
                       title=f"{profile['name']} · {customer_id}", columns=columns,
                       fetch=frame_fetch(pl.DataFrame(rows, schema={
                           "at": pl.String, "kind": pl.String, "summary": pl.String})),
                       template="console/customer.html", c=header, risk=risk,
                       segment=account_segment(db, account, as_of=today()),
                       rating=_rating(db, account), usage=chart,
                       may_pay=allows(who.role, "payments:read"))

    @app.get("/customers/{customer_id}/bills", response_class=HTMLResponse,
             include_in_schema=False, **guard("customers:read"))
    def customer_bills_page(request: Request, customer_id: str) -> Response:
        from dianfei.customers.search import customer_profile

        t = console.context(request)["t"]
        with db.engine.connect() as conn:
            account = _account_of(customer_profile(conn, customer_id),
                                  request.query_params.get("account"))
        may_open = allows(signed_in(request).role, "bills:read")
        columns = [Column("period", "col.period",
                          link=(lambda r: f"/bills/{account}/{r['period']}") if may_open else None),
                   Column("issued_on", "col.issued_on"), Column("due_on", "col.due_on"),
                   Column("kwh", "col.kwh", num=True), Column("amount", "col.amount", num=True),
                   Column("paid", "col.paid", num=True), Column("open", "col.open", num=True),
                   Column("overdue", "col.overdue", num=True),
                   Column("late_fees", "col.late_fees", num=True),
                   Column("status", "col.status")]
        return listing(request, console, name=f"bills-{account}",
                       title=f"{t('c360.bills')} · {account}", columns=columns,
                       fetch=frame_fetch(bill_states(db, account, today())))

    @app.get("/customers/{customer_id}/payments", response_class=HTMLResponse,
             include_in_schema=False, **guard("payments:read"))
    def customer_payments_page(request: Request, customer_id: str) -> Response:
        import polars as pl

        from dianfei.customers.search import customer_profile
        from dianfei.payments.service import account_payments

        t = console.context(request)["t"]
        with db.engine.connect() as conn:
            account = _account_of(customer_profile(conn, customer_id),
                                  request.query_params.get("account"))
        pays = account_payments(db.engine, account).reverse()  # newest first
        frame = pays.select(
            "payment_id", "channel",
            pl.col("paid_at").dt.convert_time_zone("Asia/Shanghai").dt.strftime("%Y-%m-%d %H:%M")
            .alias("paid_at"),
            pl.col("amount").map_elements(lambda f: fmt_yuan(int(f)), return_dtype=pl.String)
            .alias("amount"), "source", "status")
        columns = [Column("paid_at", "col.paid_at"), Column("payment_id", "col.payment"),
                   Column("channel", "col.channel"), Column("amount", "col.amount", num=True),
                   Column("source", "col.source"), Column("status", "col.status")]
        return listing(request, console, name=f"payments-{account}",
                       title=f"{t('c360.payments')} · {account}", columns=columns,
                       fetch=frame_fetch(frame))

    # -- settings ----------------------------------------------------------------------------

    @app.get("/settings", response_class=HTMLResponse, include_in_schema=False,
             **guard("settings:read"))
    def settings_page(request: Request) -> Response:
        import polars as pl

        from dianfei.tariffs.service import load_catalogue

        t = console.context(request)["t"]
        catalogue = load_catalogue(db.settings.billing.tariff_dir)
        rows = [{"tariff_id": v.tariff_id, "name": v.name, "customer_class": v.customer_class,
                 "effective_from": v.effective_from.isoformat(),
                 "effective_to": v.effective_to.isoformat() if v.effective_to else "",
                 "source": v.source, "file": _shown(Path(catalogue.tariff(tid).source_file))}
                for tid in catalogue.ids() for v in catalogue.versions(tid)]
        columns = [Column("tariff_id", "col.tariff"), Column("name", "col.name"),
                   Column("customer_class", "col.class"),
                   Column("effective_from", "col.effective_from"),
                   Column("effective_to", "col.effective_to"), Column("source", "col.source_doc"),
                   Column("file", "col.file")]
        return listing(request, console, name="tariff-versions", title=t("settings.title"),
                       columns=columns, fetch=frame_fetch(pl.DataFrame(rows, schema={
                           c.key: pl.String for c in columns})),
                       template="console/settings.html",
                       sections=setting_sources(db, catalogue.directory))

    # -- jobs --------------------------------------------------------------------------------

    @app.get("/jobs", response_class=HTMLResponse, include_in_schema=False, **guard("jobs:read"))
    def jobs_page(request: Request) -> Response:
        from dianfei.jobs.service import RUN_STATES, kinds_seen, run_page

        t = console.context(request)["t"]
        kind = request.query_params.get("kind") or None
        state = request.query_params.get("state") or None

        def fetch(offset: int, limit: int) -> Page:
            rows, total = run_page(db, status=state, kind=kind, offset=offset, limit=limit)
            for r in rows:
                r["attempts"] = f"{r['attempts']}/{r['max_attempts']}"
                for k in ("scheduled_for", "started_at", "finished_at"):
                    r[k] = (r[k] or "")[:19].replace("T", " ")
            return Page(rows, total)

        columns = [Column("run_id", "col.run_id", num=True), Column("job", "col.job"),
                   Column("kind", "col.kind"), Column("status", "col.state"),
                   Column("attempts", "col.attempts", num=True),
                   Column("scheduled_for", "col.scheduled_for"),
                   Column("started_at", "col.started"), Column("finished_at", "col.finished"),
                   Column("triggered_by", "col.triggered_by"), Column("error", "col.error")]
        return listing(request, console, name="jobs", title=t("nav.jobs"), columns=columns,
                       fetch=fetch, template="console/jobs.html", kinds=kinds_seen(db),
                       states=RUN_STATES, kind=kind, state=state)


# -- helpers -------------------------------------------------------------------------------------


def _kind(t: Any, kind: str) -> str:
    """A timeline item's kind in words (``event:visit_recorded`` → its type's word, else as is)."""
    key = "kind." + kind.split(":", 1)[-1]
    word = t(key)
    return kind if word == key else str(word)


def _customer_link(r: Any) -> str:
    return f"/customers/{r['customer_id']}?account={r['account_id']}"


def _account_of(profile: dict[str, Any], asked: str | None) -> str:
    """The account the page shows: the one asked for (it must be the customer's), else the
    customer's first."""
    if asked:
        if asked not in profile["accounts"]:
            raise NotFoundError(f"account {asked} is not an account of customer "
                                f"{profile['customer_id']}")
        return asked
    if not profile["accounts"]:
        raise NotFoundError(f"customer {profile['customer_id']} has no account")
    return str(profile["accounts"][0])


def _personal(db: Database, profile: dict[str, Any], may_see: bool) -> tuple[str | None, str | None]:
    """Phone and ID number as the role may see them: in full, or masked (138****5678)."""
    from dianfei.core.crypto import mask_id_number, mask_phone
    from dianfei.db.pii import CUSTOMER_ID_NUMBER, CUSTOMER_PHONE, cipher_for

    if not profile["phone_enc"] and not profile["id_number_enc"]:
        return None, None
    cipher = cipher_for(db)
    cid = profile["customer_id"]
    phone = (cipher.decrypt(profile["phone_enc"], CUSTOMER_PHONE.context(cid))
             if profile["phone_enc"] else None)
    idn = (cipher.decrypt(profile["id_number_enc"], CUSTOMER_ID_NUMBER.context(cid))
           if profile["id_number_enc"] else None)
    if may_see:
        return phone, idn
    return mask_phone(phone), mask_id_number(idn)


def _rating(db: Database, account: str) -> dict[str, Any] | None:
    from dianfei.collections.incentives import rating_of

    try:
        return rating_of(db.engine, account)
    except NotFoundError:  # not rated yet: the page says so
        return None


def bill_states(db: Database, account: str, day: date) -> Any:
    """Each bill of ``account`` (newest first) with what is paid, open and overdue on ``day``
    (yuan strings): from billing's bills and the ledger's open items."""
    import polars as pl

    from dianfei.billing.service import bills_of_accounts
    from dianfei.payments.service import open_items

    with db.engine.connect() as conn:
        bills = bills_of_accounts(conn, [account])
        items = open_items(conn, [account])
    open_bill = (items.filter(pl.col("item_kind") == "bill")
                 .group_by("bill_id").agg(pl.col("open_amount").sum().alias("_open")))
    fees = (items.filter(pl.col("item_kind") == "late_fee")
            .group_by("bill_id").agg(pl.col("open_amount").sum().alias("_fees")))
    live = pl.col("status") != "cancelled"
    b = (bills.join(open_bill, on="bill_id", how="left").join(fees, on="bill_id", how="left")
         .with_columns(pl.when(live).then(pl.col("_open").fill_null(0)).otherwise(0).alias("_open"),
                       pl.col("_fees").fill_null(0))
         .with_columns(pl.when(live).then(pl.col("amount") - pl.col("_open")).otherwise(0)
                       .alias("_paid"),
                       pl.when(pl.col("due_on") < day).then(pl.col("_open")).otherwise(0)
                       .alias("_overdue"))
         .sort("period", "bill_id", descending=True))
    yuan = {"amount": "amount", "paid": "_paid", "open": "_open", "overdue": "_overdue",
            "late_fees": "_fees"}
    return b.select(
        "bill_id", "period", pl.col("issued_on").cast(pl.String), pl.col("due_on").cast(pl.String),
        pl.col("kwh").map_elements(lambda k: fmt_qty(int(k)), return_dtype=pl.String),
        *[pl.col(src).map_elements(lambda f: fmt_yuan(int(f)), return_dtype=pl.String).alias(key)
          for key, src in yuan.items()],
        "status")


def bill_status(db: Database, account: str, bill_id: str, day: date) -> dict[str, Any]:
    """What is paid, open and overdue on one bill on ``day`` (the web bill's status section)."""
    import polars as pl

    found = bill_states(db, account, day).filter(pl.col("bill_id") == bill_id)
    if found.height == 0:
        raise NotFoundError(f"bill {bill_id} of account {account} does not exist")
    return {**found.row(0, named=True), "as_of": day.isoformat()}


@lru_cache(maxsize=1)
def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("dianfei.web", "templates"),
                       autoescape=select_autoescape(["html"]))


def with_status(html: str, status: dict[str, Any], lang: str) -> str:
    """The web bill with its payment status on top (rendered from console/bill_status.html)."""
    i18n.add(WORDS)
    block = str(_templates().get_template("console/bill_status.html").render(
        s=status, t=i18n.translator(i18n.normalise(lang))))
    head, sep, rest = html.partition("<body>")
    return head + sep + block + rest if sep else block + html


def _line(trend: list[dict[str, Any]], key: str, label: str, percent: bool) -> dict[str, Any]:
    """An ECharts line option of one KPI over the trend periods (gaps where null)."""
    values = [None if r.get(key) is None else (round(r[key] * 100, 2) if percent else r[key])
              for r in trend]
    return {"tooltip": {"trigger": "axis"}, "grid": {"left": 50, "right": 16, "top": 30,
                                                      "bottom": 30},
            "xAxis": {"type": "category", "data": [r["period"] for r in trend]},
            "yAxis": {"type": "value", "name": "%" if percent else "", "scale": True},
            "series": [{"type": "line", "name": label, "data": values, "connectNulls": False,
                        "itemStyle": {"color": "#0b4f8a"}}]}


def _shown(path: Path) -> str:
    """A file path as the page shows it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def setting_sources(db: Database, tariff_dir: Path) -> list[dict[str, Any]]:
    """Each configuration area with the files it is read from (path and content)."""
    from dianfei.collections import assignment, incentives, late_fees, plan_policy, tasks
    from dianfei.collections.ladder import LADDER_DIR
    from dianfei.jobs.calendar import DEFAULT_SCHEDULE
    from dianfei.notify.render import PACKAGED

    schedule = (db.settings.raw.get("jobs", {}) or {}).get("schedule")

    def files(*paths: Path) -> list[dict[str, str]]:
        out = []
        for p in paths:
            try:
                content = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:  # the page names the unreadable file
                content = f"(cannot be read: {exc})"
            out.append({"path": _shown(p), "content": content})
        return out

    templates = sorted(p for p in PACKAGED.rglob("*") if p.is_file())
    return [
        {"key": "tariffs", "files": files(*sorted(tariff_dir.glob("*.toml")))},
        {"key": "ladders", "files": files(*sorted(LADDER_DIR.glob("*.toml")))},
        {"key": "templates", "files": files(*templates)},
        {"key": "late_fees", "files": files(late_fees.RULE_FILE)},
        {"key": "plans", "files": files(plan_policy.POLICY_FILE)},
        {"key": "assignment", "files": files(assignment.RULES_FILE)},
        {"key": "tasks", "files": files(tasks.RULES_FILE)},
        {"key": "incentives", "files": files(incentives.RULES_FILE)},
        {"key": "schedule", "files": files(Path(schedule) if schedule else DEFAULT_SCHEDULE)},
    ]

