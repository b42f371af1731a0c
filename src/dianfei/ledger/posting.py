"""The posting core (记账核心): one pure planner for every movement of money.

A :class:`Book` holds the open items of some accounts in memory. Each operation — a debit (bill,
late fee), a payment, the reversal of a debit (cancelled bill, waived fee), the reversal of a
payment (refund, bank return) — *plans* the rows it implies and updates the items in memory:

- ledger rows (the book of record, append-only);
- clearing rows (``payment_allocations``: which payment cleared how much of which item);
- open-item changes (a delta on ``open_amount`` per item reference);
- events (payment posted or reversed, debit reversed), with the balance right after.

Nothing here reads or writes a database: :mod:`dianfei.ledger.items` loads a Book and writes what
it planned, in the caller's transaction. Every path — callbacks in groups, one by one, bank and
agent files, the counter, statements, the bill run, late fees, waivers, the demo — goes through a
Book, so allocation, credit and open items are decided in exactly one place.

Rules (why it is shaped this way):
- a payment clears open debits in the configured order (``oldest_first`` or ``fees_first``, see
  :mod:`dianfei.ledger.allocation`); what no debit takes is credit, an item ``CR:{payment}`` with a
  negative amount;
- credit clears every debit it meets, at once: a new bill, a rebill, a posted late fee. So an
  account never holds credit and an open debit at the same time;
- a reversed debit that had money on it gives that money back to credit, newest payment first,
  and the credit then clears the account's other open debits;
- a reversed payment negates exactly its net clearings: the debits it cleared open again and its
  unused credit disappears.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dianfei.core.clock import business_date
from dianfei.ledger.allocation import OpenItem, allocate, check_order

CREDIT_PREFIX = "CR:"


def credit_reference(payment_id: str) -> str:
    return f"{CREDIT_PREFIX}{payment_id}"


@dataclass
class Item:
    """An open item as the Book sees it (``open_amount`` changes as operations are planned)."""

    reference: str
    account_id: str
    customer_id: str
    item_kind: str  # bill | late_fee | credit
    bill_id: str | None
    due_on: date | None
    amount: int
    open_amount: int

    @property
    def payment_id(self) -> str:
        """The payment whose unused money a credit item holds."""
        return self.reference[len(CREDIT_PREFIX):]


@dataclass
class Posting:
    """The rows a Book planned, to be written in one transaction."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    clearings: list[dict[str, Any]] = field(default_factory=list)
    #: reference → the item (as it is after the plan) and the change of its open amount
    changes: dict[str, tuple[Item, int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entries or self.clearings or self.changes or self.events)


@dataclass(frozen=True)
class Release:
    """Money of one payment sitting on a debit that is being reversed."""

    payment_id: str
    amount: int
    paid_at: datetime


@dataclass(frozen=True)
class NetClearing:
    """What one payment still holds on one target (allocated_to, bill, item reference)."""

    allocated_to: str
    bill_id: str | None
    item_reference: str | None
    amount: int


class Book:
    """Open items of some accounts; plans postings against them (pure, in memory)."""

    def __init__(self, items: Iterable[Item], *, order: str, now: datetime) -> None:
        self.order = check_order(order)
        self.now = now
        self.posting = Posting()
        self._items: dict[str, dict[str, Item]] = {}
        for it in items:
            self._items.setdefault(it.account_id, {})[it.reference] = it

    # -- reading -----------------------------------------------------------------------------

    def items(self, account_id: str) -> list[Item]:
        return [i for i in self._items.get(account_id, {}).values() if i.open_amount != 0]

    def balance(self, account_id: str) -> int:
        """What the account owes (fen; negative = credit): the sum of its open items."""
        return sum(i.open_amount for i in self._items.get(account_id, {}).values())

    def credit(self, account_id: str) -> int:
        return -sum(i.open_amount for i in self.items(account_id) if i.item_kind == "credit")

    # -- bookkeeping helpers -----------------------------------------------------------------

    def _change(self, item: Item, delta: int, *, record_zero: bool = False) -> None:
        """Apply ``delta`` to an item and record it in the posting. ``record_zero`` records a
        new item even when nothing changes its amount (a 0.00 bill still gets its item)."""
        if delta == 0 and not record_zero:
            return
        item.open_amount += delta
        self._items.setdefault(item.account_id, {})[item.reference] = item
        _, before = self.posting.changes.get(item.reference, (item, 0))
        self.posting.changes[item.reference] = (item, before + delta)

    def _credit_item(self, account_id: str, customer_id: str, payment_id: str) -> Item:
        ref = credit_reference(payment_id)
        found = self._items.get(account_id, {}).get(ref)
        if found is None:
            found = Item(ref, account_id, customer_id, "credit", payment_id, None, 0, 0)
            self._items.setdefault(account_id, {})[ref] = found
        return found

    def _clear(self, payment_id: str, item: Item, fen: int, at: datetime) -> None:
        self.posting.clearings.append({
            "payment_id": payment_id, "account_id": item.account_id,
            "allocated_to": item.item_kind, "bill_id": item.bill_id,
            "item_reference": item.reference, "amount": fen, "allocated_at": at})

    def _to_credit(self, payment_id: str, account_id: str, fen: int, at: datetime) -> None:
        self.posting.clearings.append({
            "payment_id": payment_id, "account_id": account_id, "allocated_to": "credit",
            "bill_id": None, "item_reference": None, "amount": fen, "allocated_at": at})

    def _debits(self, account_id: str) -> list[OpenItem]:
        return [OpenItem(reference=i.reference, item_kind=i.item_kind, bill_id=i.bill_id or "",
                         due_on=i.due_on or date.min, open_amount=i.open_amount)
                for i in self.items(account_id) if i.item_kind != "credit" and i.open_amount > 0]

    def _entry(self, *, account_id: str, customer_id: str, kind: str, amount: int, reference: str,
               due_on: date | None = None, reverses_entry_id: int | None = None,
               reason: str | None = None, posted_at: datetime | None = None,
               on: date | None = None) -> None:
        at = posted_at or self.now
        self.posting.entries.append({
            "account_id": account_id, "customer_id": customer_id, "kind": kind, "amount": amount,
            "posted_at": at, "business_date": on or business_date(at), "due_on": due_on,
            "reference": reference, "reverses_entry_id": reverses_entry_id, "reason": reason})

    def _event(self, type_: str, key: str, account_id: str, customer_id: str, *,
               amount: int | None = None, payload: dict[str, Any] | None = None) -> None:
        self.posting.events.append({
            "type": type_, "key": key, "account_id": account_id, "customer_id": customer_id,
            "occurred_at": self.now, "business_date": business_date(self.now), "amount": amount,
            "balance_after": self.balance(account_id), "payload": payload or {}})

    # -- operations --------------------------------------------------------------------------

    def debit(self, *, reference: str, account_id: str, customer_id: str, kind: str, amount: int,
              due_on: date | None, bill_id: str | None = None, on: date | None = None,
              reason: str | None = None, ledger: bool = True) -> None:
        """A new debit (bill or late fee): its ledger row and its open item; credit meets it.
        ``ledger=False`` when the caller writes the ledger rows itself (the bill run's COPY)."""
        if kind not in ("bill", "late_fee"):
            raise ValueError(f"a debit is a bill or a late fee, not {kind!r}")
        if ledger:
            self._entry(account_id=account_id, customer_id=customer_id, kind=kind, amount=amount,
                        reference=reference, due_on=due_on, on=on, reason=reason)
        if bill_id is None:
            bill_id = reference.split(":")[1] if kind == "late_fee" else reference
        item = Item(reference, account_id, customer_id, kind, bill_id, due_on, amount, 0)
        self._change(item, amount, record_zero=True)
        self.apply_credit(account_id)

    def apply_credit(self, account_id: str) -> int:
        """Let the account's credit clear its open debits (in the allocation order), oldest
        credit first. Returns the fen moved."""
        credits = sorted((i for i in self.items(account_id)
                          if i.item_kind == "credit" and i.open_amount < 0),
                         key=lambda i: i.reference)
        moved = 0
        for cr in credits:
            debits = self._debits(account_id)
            if not debits:
                break
            parts, _ = allocate(-cr.open_amount, debits, self.order)
            by_ref = self._items[account_id]
            for part, fen in parts:
                item = by_ref[part.reference]
                self._clear(cr.payment_id, item, fen, self.now)
                self._to_credit(cr.payment_id, account_id, -fen, self.now)
                self._change(item, -fen)
                self._change(cr, fen)
                moved += fen
        return moved

    def admit(self, item: Item) -> None:
        """An item already stored (its ledger row and open item were written earlier) joins the
        plan, and credit the account holds meets it as it met the debit when it was posted.
        History replayed in time order (``payments`` history import) admits each stored bill at
        its issue time, so a payment never clears a bill that was not yet issued."""
        self._items.setdefault(item.account_id, {})[item.reference] = item
        self.apply_credit(item.account_id)

    def take_posting(self) -> Posting:
        """What was planned so far, handing the Book a fresh posting (the items keep their
        state): a long replay is written in slices instead of held in memory at once."""
        done, self.posting = self.posting, Posting()
        return done

    def pay(self, *, payment_id: str, account_id: str, customer_id: str, amount: int,
            paid_at: datetime, reason: str, payload: dict[str, Any] | None = None,
            settle: str | None = None) -> int:
        """A payment: its ledger row, its clearings (credit for the rest), its event. Returns
        what the account owes right after it. ``settle`` names an item the payer pointed at
        (a bill id on a payment slip): it is cleared first, the rest goes by the rule."""
        if amount <= 0:
            raise ValueError(f"a payment is positive, got {amount} fen")
        self._entry(account_id=account_id, customer_id=customer_id, kind="payment",
                    amount=-amount, reference=payment_id, reason=reason)
        debits = self._debits(account_id)
        parts: list[tuple[OpenItem, int]] = []
        left = amount
        if settle is not None:
            named = [d for d in debits if d.reference == settle]
            parts, left = allocate(amount, named, self.order)
            debits = [d for d in debits if d.reference != settle]
        more, left = allocate(left, debits, self.order)
        parts += more
        by_ref = self._items.get(account_id, {})
        for part, fen in parts:
            item = by_ref[part.reference]
            self._clear(payment_id, item, fen, paid_at)
            self._change(item, -fen)
        if left:
            self._to_credit(payment_id, account_id, left, paid_at)
            self._change(self._credit_item(account_id, customer_id, payment_id), -left)
        self._event("payment_posted", f"payment_posted:{payment_id}", account_id, customer_id,
                    amount=amount, payload={"payment_id": payment_id, "paid_at": paid_at,
                                            **(payload or {})})
        return self.balance(account_id)

    def reverse_debit(self, *, reference: str, entry_id: int, account_id: str, customer_id: str,
                      amount: int, reason: str, on_item: Sequence[Release]) -> None:
        """Reverse a debit (cancelled bill, waived fee). Money on it goes back to credit (newest
        payment first) and the credit then clears the account's other open debits."""
        self._entry(account_id=account_id, customer_id=customer_id, kind="reversal",
                    amount=-amount, reference=f"reversal:{entry_id}", reverses_entry_id=entry_id,
                    reason=reason)
        item = self._items.get(account_id, {}).get(reference)
        if item is None:
            item = Item(reference, account_id, customer_id, "bill", reference, None, amount, 0)
        self._change(item, -amount)
        need = -item.open_amount
        for rel in sorted(on_item, key=lambda r: r.paid_at, reverse=True):
            if need <= 0:
                break
            take = min(rel.amount, need)
            if take <= 0:
                continue
            self._clear(rel.payment_id, item, -take, self.now)
            self._to_credit(rel.payment_id, account_id, take, self.now)
            self._change(item, take)
            self._change(self._credit_item(account_id, customer_id, rel.payment_id), -take)
            need -= take
        self._event("debit_reversed", f"debit_reversed:{reference}", account_id, customer_id,
                    amount=amount, payload={"reference": reference, "reason": reason})
        self.apply_credit(account_id)

    def reverse_payment(self, *, payment_id: str, entry_id: int, account_id: str,
                        customer_id: str, amount: int, reason: str,
                        net: Sequence[NetClearing]) -> None:
        """Refund or bank return: the ledger reversal and the exact negation of the payment's net
        clearings, so the debits it cleared are open again and its unused credit is gone."""
        self._entry(account_id=account_id, customer_id=customer_id, kind="reversal",
                    amount=amount, reference=f"reversal:{entry_id}", reverses_entry_id=entry_id,
                    reason=reason)
        by_ref = self._items.setdefault(account_id, {})
        for n in net:
            self.posting.clearings.append({
                "payment_id": payment_id, "account_id": account_id, "allocated_to": n.allocated_to,
                "bill_id": n.bill_id, "item_reference": n.item_reference, "amount": -n.amount,
                "allocated_at": self.now})
            if n.allocated_to == "credit":
                self._change(self._credit_item(account_id, customer_id, payment_id), n.amount)
            else:
                assert n.item_reference is not None
                item = by_ref.get(n.item_reference)
                if item is None:  # a cleared item (not loaded): it opens again
                    item = Item(n.item_reference, account_id, customer_id, n.allocated_to,
                                n.bill_id, None, 0, 0)
                self._change(item, n.amount)
        self._event("payment_reversed", f"payment_reversed:{payment_id}", account_id,
                    customer_id, amount=amount, payload={"payment_id": payment_id,
                                                         "reason": reason})
        # a reopened debit meets whatever other credit the account holds
        self.apply_credit(account_id)

    def write_off(self, *, reference: str, account_id: str, customer_id: str,
                  reason: str) -> int:
        """Write off (核销) what is still open of one debit: a ``write_off`` entry of minus that
        amount, with the debit's own reference, and the item closed. Nothing is cleared by a
        payment, so the debit's clearings stay as they were (``ledger check`` counts the
        write-off beside them); collections sees the lower balance on its next run. Returns
        the fen written off (0: nothing open, nothing planned)."""
        item = self._items.get(account_id, {}).get(reference)
        if item is None or item.item_kind == "credit" or item.open_amount <= 0:
            return 0
        amount = item.open_amount
        self._entry(account_id=account_id, customer_id=customer_id, kind="write_off",
                    amount=-amount, reference=reference, reason=reason)
        self._change(item, -amount)
        return amount
