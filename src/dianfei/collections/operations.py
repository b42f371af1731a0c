"""The daily-run steps of collector operations (C), called by ``service.run_day``:

- before the dunning snapshot: the good-payer rating (:mod:`incentives`), so today's snapshot
  puts the repeat defaulters on their shorter ladder;
- after the day's notices went out: contact flags (:mod:`contacts`: today's bounces, wrong-contact
  visits, missing contacts), then tasks other modules raised are routed to their department and
  overdue ones escalate to the department's supervisor (:mod:`tasks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dianfei.collections.context import Context


def before_snapshot(ctx: Context) -> None:
    from dianfei.collections.incentives import rate_accounts

    ctx.report.operations.update(rate_accounts(ctx.db, ctx.day, clock=ctx.clock))


def after_dispatch(ctx: Context) -> None:
    from dianfei.collections.contacts import check_contacts
    from dianfei.collections.tasks import escalate_overdue, route_new_tasks

    got = check_contacts(ctx.db, ctx.day, clock=ctx.clock)
    ctx.report.operations["contact_flags"] = got["flagged"]
    ctx.report.operations["contact_tasks"] = got["tasks"]
    with ctx.db.session() as s:
        ctx.report.operations["tasks_routed"] = route_new_tasks(s, clock=ctx.clock)
        ctx.report.operations["tasks_escalated"] = escalate_overdue(s, clock=ctx.clock)
