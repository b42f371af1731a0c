"""Suspension orders waiting for a second person (停电审批): the read the approvals package makes
before every list and decision. Kept apart from collections.service, whose import brings the
whole daily cycle (late fees, ladders, Polars), so that ``dianfei approvals list`` starts fast."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dianfei.collections.models import StopCase


def stop_cases_awaiting_approval(session: Session) -> list[dict[str, Any]]:
    """Suspension orders the rules raised that wait for a second person (停电审批): the case,
    its account, the bill it is for and when it was ordered, oldest first."""
    rows = session.scalars(select(StopCase).where(
        StopCase.status == "ordered", StopCase.approval_required.is_(True),
        StopCase.approved_by.is_(None)).order_by(StopCase.case_id))
    return [{"case_id": c.case_id, "account_id": c.account_id, "customer_id": c.customer_id,
             "bill_id": c.bill_id, "ordered_at": c.ordered_at} for c in rows]
