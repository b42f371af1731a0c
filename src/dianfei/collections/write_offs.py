"""Writing off one debit (核销) — a bill or a late fee — with what collections keeps about it.

The ledger writes a debit off (``ledger.service.write_off``); what collections knows and the
ledger does not is the bill's late fee accrued since the last month end and not posted yet
(``late_fee_accruals``, docs/collections.md "Late fees"). Left alone, the next day's run would
find the bill no longer open, finish the accrual and post that fee as a new late-fee item: a
fee the customer is dunned for on a bill the branch has given up. So a bill's write-off takes
the fee with it, in the same transaction, as the account closure does for a whole account:
the pending fee is posted (the bad debt is what the customer owed, to the fen) and written off
at once, and the accrual is finished. A bill's late fees posted before (month ends) are their
own debits (``LF:…`` references): each is written off on its own request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dianfei.collections import repository
from dianfei.core.clock import Clock, business_date
from dianfei.ledger import service as ledger

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from dianfei.ledger.service import LedgerEntry


@dataclass(frozen=True)
class WrittenOff:
    """The write-off of the debit asked for, and of the late fee accrued on it that was posted
    with it (None when there was none)."""

    entry: LedgerEntry
    fee: LedgerEntry | None = None

    @property
    def amount(self) -> int:
        """Fen written off in all (positive)."""
        return -int(self.entry.amount) - (int(self.fee.amount) if self.fee is not None else 0)


def pending_fee(conn: Connection, reference: str) -> int:
    """The late fee accrued on the bill ``reference`` and not posted yet (fen; 0 for a late fee,
    a bill not overdue, or one whose accrual is finished or waived): what a write-off of the
    bill writes off beside its open amount."""
    found = repository.pending_fee_of_bill(conn, reference)
    return 0 if found is None else max(found[2], 0)


def write_off_debt(session: Session, *, reference: str, reason: str,
                   clock: Clock) -> WrittenOff:
    """Write off what is open of one debit in the caller's transaction; for a bill, the late fee
    accrued on it since the last month end too (posted, written off, the accrual finished). The
    ledger refuses, naming why, a debit it does not know, one written off or reversed already, or
    one with nothing open — before anything is posted."""
    from dianfei.collections.service import post_late_fees

    entry = ledger.write_off(session, clock=clock, reference=reference, reason=reason)
    conn = session.connection()
    found = repository.pending_fee_of_bill(conn, reference)
    if found is None:
        return WrittenOff(entry)
    now = clock.now()
    day = business_date(now)
    account_id, customer_id, fen = found
    repository.close_accrual(conn, reference, day)
    if fen <= 0:
        return WrittenOff(entry)
    import polars as pl

    post_late_fees(conn, pl.DataFrame(
        {"bill_id": [reference], "account_id": [account_id], "customer_id": [customer_id],
         "delta": [fen]},
        schema={"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "delta": pl.Int64}), day=day, now=now)
    fee_ref = f"LF:{reference}:{day.isoformat()}"
    # credit the account held may have cleared the fee as it was posted: nothing left to write off
    if not ledger.open_amount(session, fee_ref):
        return WrittenOff(entry)
    fee = ledger.write_off(session, clock=clock, reference=fee_ref,
                           reason=f"{reason} (the late fee accrued on {reference})")
    return WrittenOff(entry, fee)
