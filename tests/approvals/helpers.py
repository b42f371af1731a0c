"""Users of every role the approvals tests act as, and reading the audit chain's actions."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text

from dianfei.audit.verify import verify
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.security.service import Principal, active_user, add_user
from tests.collections.test_collections_e2e import at

#: the users: li collects, zhou is the billing clerk, wang and zhao supervise, sun audits
STAFF = {"li": "collector", "zhou": "billing_clerk", "wang": "supervisor", "zhao": "supervisor",
         "sun": "auditor", "qian": "cashier"}
PASSWORD = "a-long-enough-password"


def add_staff(db: Database) -> None:
    with db.session() as s:
        for name, role in STAFF.items():
            add_user(s, username=name, role=role, password=PASSWORD,
                     now=at(date(2026, 1, 1)))


def who(db: Database, name: str) -> Principal:
    with db.session() as s:
        return active_user(s, name)


def clock(day: date, hh: int = 10) -> FixedClock:
    return FixedClock(at(day, hh))


def actions(db: Database, prefix: str = "") -> list[str]:
    with db.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(text(
            "SELECT action FROM audit_records ORDER BY seq")) if str(r[0]).startswith(prefix)]


def chain_intact(db: Database) -> bool:
    return verify(db.engine).intact


def books_broken(db: Database) -> list[str]:
    """The ledger's and the payments' broken invariants, but for the bills table's own (the
    collections fixtures post bill debits without bill documents)."""
    from dianfei.ledger.service import check
    from dianfei.payments.service import check as check_payments

    with db.engine.connect() as conn:
        return ([v.invariant for v in check(conn) if "books an existing bill" not in v.invariant]
                + [str(p[0]) for p in check_payments(conn)])
