"""The posting core (ledger/posting.py): the pure ``Book`` planner, without a database.

Property tests drive random sequences of debits (bills, late fees ``LF:{bill}:{day}``), payments,
reversed debits (with the releases a database would give: each payment's net money on the item)
and reversed payments (with the payment's net clearings) for a few accounts, in both allocation
orders, and check after every step what the money core promises:

- an account's open items add up to its planned ledger rows;
- a payment's clearing rows add up to its amount, and to 0 once it is reversed;
- no account holds credit (a negative item) and an open debit (a positive item) at once;
- a debit item is never negative nor above its amount (0 once reversed), and holds what its
  amount leaves after its clearings; a credit item holds its payment's unused credit;
- every payment and reversal has its event, whose ``balance_after`` is the balance at that moment;
- the same sequence plans the same posting, and one Book for the whole sequence (the batch and
  bulk paths) plans what a fresh Book per operation does (the one-by-one path, which reloads the
  open items from the database every time).

Then a few exact examples: overpayment → credit → the next bill cleared by it; a cancelled paid bill
→ its money back to credit → the rebill cleared; a refund of a payment whose credit was partly used.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.ledger.posting import Book, Item, NetClearing, Posting, Release, credit_reference

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
ACCOUNTS = ("A", "B", "C")
ORDERS = ("oldest_first", "fees_first")
FIRST_DUE = date(2026, 1, 18)


# -- a model of the database around a Book ----------------------------------------------------


@dataclass
class Debit:
    reference: str
    account_id: str
    kind: str
    amount: int
    entry_id: int
    due_on: date
    reversed: bool = False


@dataclass
class Paid:
    payment_id: str
    account_id: str
    amount: int
    paid_at: datetime
    entry_id: int
    reversed: bool = False


@dataclass
class Ledger:
    """What the database would hold: every planned row, and what the services read back from it
    (releases of a debit, net clearings of a payment). ``fresh`` plans each operation with a new
    Book loaded from the open items, as the one-by-one path does; otherwise one Book plans the
    whole sequence, as a batch or a bulk file does."""

    order: str
    fresh: bool = False
    debits: dict[str, Debit] = field(default_factory=dict)
    payments: dict[str, Paid] = field(default_factory=dict)
    posting: Posting = field(default_factory=Posting)
    items: dict[str, Item] = field(default_factory=dict)
    book: Book | None = None
    entries: int = 0
    n_pay: int = 0

    # -- what the services read from the database

    def releases(self, reference: str) -> list[Release]:
        net: dict[str, int] = defaultdict(int)
        for c in self.posting.clearings:
            if c["item_reference"] == reference:
                net[c["payment_id"]] += c["amount"]
        return [Release(pid, fen, self.payments[pid].paid_at) for pid, fen in sorted(net.items())
                if fen > 0]

    def net_clearings(self, payment_id: str) -> list[NetClearing]:
        net: dict[tuple[str, str | None, str | None], int] = defaultdict(int)
        for c in self.posting.clearings:
            if c["payment_id"] == payment_id:
                net[(c["allocated_to"], c["bill_id"], c["item_reference"])] += c["amount"]
        return [NetClearing(to, bill, ref, fen) for (to, bill, ref), fen
                in sorted(net.items(), key=lambda kv: (kv[0][0], kv[0][2] or "")) if fen != 0]

    # -- planning

    def _book(self, references: Sequence[str] = ()) -> Book:
        if not self.fresh:
            if self.book is None:
                self.book = Book([], order=self.order, now=NOW)
            return self.book
        loaded = [copy.copy(i) for i in self.items.values()
                  if i.open_amount != 0 or i.reference in references]
        return Book(loaded, order=self.order, now=NOW)

    def _absorb(self, book: Book) -> Posting:
        """The rows this operation planned (a fresh Book plans only this operation; the shared
        Book accumulates, so take what is new)."""
        p = book.posting
        if self.fresh:
            new = p
        else:
            new = Posting(entries=p.entries[len(self.posting.entries):],
                          clearings=p.clearings[len(self.posting.clearings):],
                          events=p.events[len(self.posting.events):])
        self.posting.entries += new.entries
        self.posting.clearings += new.clearings
        self.posting.events += new.events
        for ref, (it, _) in p.changes.items():
            self.items[ref] = copy.copy(it)
        if self.fresh:
            for ref, (it, delta) in p.changes.items():
                _, before = self.posting.changes.get(ref, (it, 0))
                self.posting.changes[ref] = (copy.copy(it), before + delta)
        else:
            self.posting.changes = {r: (copy.copy(it), d) for r, (it, d) in p.changes.items()}
        self.entries += len(new.entries)
        return new

    def debit(self, account: str, kind: str, reference: str, amount: int, due_on: date) -> Posting:
        book = self._book()
        book.debit(reference=reference, account_id=account, customer_id=account, kind=kind,
                   amount=amount, due_on=due_on)
        self.debits[reference] = Debit(reference, account, kind, amount, self.entries + 1, due_on)
        return self._absorb(book)

    def pay(self, account: str, amount: int) -> tuple[Posting, int]:
        self.n_pay += 1
        pid = f"P{self.n_pay:03d}"
        paid_at = NOW - timedelta(hours=1) + timedelta(seconds=self.n_pay)
        book = self._book()
        after = book.pay(payment_id=pid, account_id=account, customer_id=account, amount=amount,
                         paid_at=paid_at, reason=f"counter T{self.n_pay}")
        self.payments[pid] = Paid(pid, account, amount, paid_at, self.entries + 1)
        return self._absorb(book), after

    def reverse_debit(self, reference: str) -> Posting:
        d = self.debits[reference]
        book = self._book([reference])
        book.reverse_debit(reference=reference, entry_id=d.entry_id, account_id=d.account_id,
                           customer_id=d.account_id, amount=d.amount, reason="cancelled",
                           on_item=self.releases(reference))
        d.reversed = True
        return self._absorb(book)

    def reverse_payment(self, payment_id: str) -> Posting:
        p = self.payments[payment_id]
        net = self.net_clearings(payment_id)
        book = self._book([n.item_reference for n in net if n.item_reference])
        book.reverse_payment(payment_id=payment_id, entry_id=p.entry_id, account_id=p.account_id,
                             customer_id=p.account_id, amount=p.amount, reason="refund", net=net)
        p.reversed = True
        return self._absorb(book)

    # -- what the database holds

    def balance(self, account: str) -> int:
        return sum(i.open_amount for i in self.items.values() if i.account_id == account)

    def ledger_sum(self, account: str) -> int:
        return sum(e["amount"] for e in self.posting.entries if e["account_id"] == account)


# -- random sequences -------------------------------------------------------------------------

bill_op = st.tuples(st.just("bill"), st.sampled_from(ACCOUNTS), st.integers(0, 20_000),
                    st.integers(0, 120))
fee_op = st.tuples(st.just("fee"), st.integers(0, 50), st.integers(1, 60), st.integers(1, 800))
pay_op = st.tuples(st.just("pay"), st.sampled_from(ACCOUNTS), st.integers(1, 30_000),
                   st.just(0))
rev_debit_op = st.tuples(st.just("reverse_debit"), st.integers(0, 50), st.just(0), st.just(0))
rev_pay_op = st.tuples(st.just("reverse_payment"), st.integers(0, 50), st.just(0), st.just(0))
Op = tuple[str, Any, int, int]
ops_strategy = st.lists(st.one_of(bill_op, bill_op, fee_op, pay_op, pay_op, pay_op, rev_debit_op,
                                  rev_pay_op), min_size=4, max_size=30)


def apply(led: Ledger, op: Op) -> tuple[Posting, str, int | None] | None:
    """Run one abstract op on the model; the new rows, the account touched, and what ``pay``
    returned. None when the op has nothing to act on (no bill for a fee, nothing to reverse)."""
    kind, a, b, c = op
    if kind == "bill":
        n = sum(1 for d in led.debits.values() if d.kind == "bill") + 1
        return led.debit(a, "bill", f"{a}-B{n:02d}", b, FIRST_DUE + timedelta(days=c)), a, None
    if kind == "fee":
        bills = [d for d in led.debits.values() if d.kind == "bill" and not d.reversed]
        if not bills:
            return None
        bill = bills[a % len(bills)]
        day = bill.due_on + timedelta(days=b)
        ref = f"LF:{bill.reference}:{day.isoformat()}"
        if ref in led.debits:
            return None
        return led.debit(bill.account_id, "late_fee", ref, c, day), bill.account_id, None
    if kind == "pay":
        posting, after = led.pay(a, b)
        return posting, a, after
    if kind == "reverse_debit":
        live = [d for d in led.debits.values() if not d.reversed]
        if not live:
            return None
        d = live[a % len(live)]
        return led.reverse_debit(d.reference), d.account_id, None
    live_pays = [p for p in led.payments.values() if not p.reversed]
    if not live_pays:
        return None
    p = live_pays[a % len(live_pays)]
    return led.reverse_payment(p.payment_id), p.account_id, None


def check_invariants(led: Ledger) -> None:
    clearings = led.posting.clearings
    for acct in ACCOUNTS:
        # open items add up to the ledger
        assert led.balance(acct) == led.ledger_sum(acct), acct
        opens = [i.open_amount for i in led.items.values() if i.account_id == acct]
        # never credit and an open debit at once
        assert not (any(x < 0 for x in opens) and any(x > 0 for x in opens)), (acct, opens)
    # each payment's clearings add up to its amount, or to nothing once reversed
    by_payment: dict[str, int] = defaultdict(int)
    credit_by_payment: dict[str, int] = defaultdict(int)
    for cl in clearings:
        by_payment[cl["payment_id"]] += cl["amount"]
        if cl["allocated_to"] == "credit":
            credit_by_payment[cl["payment_id"]] += cl["amount"]
        assert cl["account_id"] == led.payments[cl["payment_id"]].account_id
    for p in led.payments.values():
        assert by_payment[p.payment_id] == (0 if p.reversed else p.amount), p
        # the credit item holds exactly the payment's unused credit, never below zero
        unused = credit_by_payment[p.payment_id]
        assert unused >= 0, p
        cr = led.items.get(credit_reference(p.payment_id))
        assert (cr.open_amount if cr else 0) == -unused, p
    # debits: 0 ≤ open ≤ amount (0 once reversed), and open = amount − what clears it
    on_item: dict[str, int] = defaultdict(int)
    for cl in clearings:
        if cl["item_reference"] is not None:
            on_item[cl["item_reference"]] += cl["amount"]
            assert cl["item_reference"] in led.debits, cl
    for d in led.debits.values():
        it = led.items.get(d.reference)
        got = it.open_amount if it else 0
        assert 0 <= got <= d.amount, (d, got)
        if d.reversed:
            assert got == 0, d
        assert got == (0 if d.reversed else d.amount) - on_item[d.reference], d
        if it is not None:
            assert (it.item_kind, it.account_id) == (d.kind, d.account_id)
    # the planned open-item changes, applied to empty items, give the items
    for ref, (it, delta) in led.posting.changes.items():
        assert delta == led.items[ref].open_amount == it.open_amount, ref
    # ledger rows: signs of their kinds
    for e in led.posting.entries:
        if e["kind"] == "payment":
            assert e["amount"] < 0
        elif e["kind"] in ("bill", "late_fee"):
            assert e["amount"] >= 0


def check_step(led: Ledger, op: Op, new: Posting, account: str, after: int | None) -> None:
    kind = op[0]
    expected = {"bill": [], "fee": [], "pay": ["payment_posted"],
                "reverse_debit": ["debit_reversed"], "reverse_payment": ["payment_reversed"]}[kind]
    assert [e["type"] for e in new.events] == expected
    for ev in new.events:
        assert ev["account_id"] == account
        assert ev["balance_after"] == led.balance(account) == led.ledger_sum(account)
    if kind == "pay":
        assert after == led.balance(account)
        assert [e["kind"] for e in new.entries] == ["payment"]
    elif kind in ("reverse_debit", "reverse_payment"):
        assert [e["kind"] for e in new.entries] == ["reversal"]
    else:
        assert [e["kind"] for e in new.entries] == [{"bill": "bill", "fee": "late_fee"}[kind]]


def run(ops: list[Op], order: str, *, fresh: bool = False) -> Ledger:
    led = Ledger(order, fresh=fresh)
    for op in ops:
        res = apply(led, op)
        if res is None:
            continue
        new, account, after = res
        check_step(led, op, new, account, after)
        check_invariants(led)
    return led


@settings(max_examples=300, deadline=None)
@given(ops=ops_strategy, order=st.sampled_from(ORDERS))
def test_every_step_keeps_the_books_sound(ops: list[Op], order: str) -> None:
    run(ops, order)


@settings(max_examples=200, deadline=None)
@given(ops=ops_strategy, order=st.sampled_from(ORDERS))
def test_a_book_per_operation_plans_what_one_book_for_the_sequence_does(
        ops: list[Op], order: str) -> None:
    one = run(ops, order)
    each = run(ops, order, fresh=True)
    assert each.posting.entries == one.posting.entries
    assert each.posting.clearings == one.posting.clearings
    assert each.posting.events == one.posting.events
    assert {r: i.open_amount for r, i in each.items.items()} == {
        r: i.open_amount for r, i in one.items.items()}


@settings(max_examples=100, deadline=None)
@given(ops=ops_strategy, order=st.sampled_from(ORDERS))
def test_the_same_sequence_plans_the_same_posting(ops: list[Op], order: str) -> None:
    assert run(ops, order).posting == run(ops, order).posting
    assert run(ops, order, fresh=True).posting == run(ops, order, fresh=True).posting


@settings(max_examples=200, deadline=None)
@given(ops=ops_strategy)
def test_both_orders_leave_the_same_balances_and_credit(ops: list[Op]) -> None:
    # the order decides which debit a payment clears, never how much is owed or held as credit
    # (reversed payments negate what they cleared, whatever that was)
    a, b = run(ops, "oldest_first"), run(ops, "fees_first")
    for acct in ACCOUNTS:
        assert a.balance(acct) == b.balance(acct)
        assert a.ledger_sum(acct) == b.ledger_sum(acct)


# -- exact examples ---------------------------------------------------------------------------


def net_of(led: Ledger, payment_id: str) -> dict[str, int]:
    return {(n.item_reference or "credit"): n.amount for n in led.net_clearings(payment_id)}


def open_of(led: Ledger, account: str) -> dict[str, int]:
    return {r: i.open_amount for r, i in sorted(led.items.items())
            if i.account_id == account and i.open_amount != 0}


def test_overpayment_becomes_credit_that_clears_the_next_bill() -> None:
    # given: a bill of 80.00 and a payment of 100.00
    led = Ledger("oldest_first")
    led.debit("A", "bill", "A-202601-1", 8000, date(2026, 2, 18))
    _, after = led.pay("A", 10000)
    assert after == -2000
    assert open_of(led, "A") == {"CR:P001": -2000}
    assert net_of(led, "P001") == {"A-202601-1": 8000, "credit": 2000}
    # when: the next bill of 50.00 is posted
    new = led.debit("A", "bill", "A-202602-1", 5000, date(2026, 3, 18))
    # then: the credit clears 20.00 of it in the bill's own posting; 30.00 stays open
    assert [(c["payment_id"], c["allocated_to"], c["item_reference"], c["amount"])
            for c in new.clearings] == [("P001", "bill", "A-202602-1", 2000),
                                        ("P001", "credit", None, -2000)]
    assert open_of(led, "A") == {"A-202602-1": 3000}
    assert net_of(led, "P001") == {"A-202601-1": 8000, "A-202602-1": 2000}
    check_invariants(led)


def test_money_on_a_cancelled_bill_goes_back_to_credit_and_clears_the_rebill() -> None:
    # given: a bill of 80.00 paid in two payments (50.00, then 30.00)
    led = Ledger("oldest_first")
    led.debit("A", "bill", "A-202601-1", 8000, date(2026, 2, 18))
    led.pay("A", 5000)
    led.pay("A", 3000)
    assert open_of(led, "A") == {}
    # when: the bill is cancelled (a misread)
    new = led.reverse_debit("A-202601-1")
    # then: each payment's money on it is credit again, the newest payment first
    assert [(c["payment_id"], c["allocated_to"], c["amount"]) for c in new.clearings] == [
        ("P002", "bill", -3000), ("P002", "credit", 3000),
        ("P001", "bill", -5000), ("P001", "credit", 5000)]
    assert [e["balance_after"] for e in new.events] == [-8000]
    assert open_of(led, "A") == {"CR:P001": -5000, "CR:P002": -3000}
    # when: the rebill of 60.00 is posted
    led.debit("A", "bill", "A-202601-2", 6000, date(2026, 2, 18))
    # then: the credit clears it, the oldest credit (P001) first; 20.00 of P002 stays credit
    assert open_of(led, "A") == {"CR:P002": -2000}
    assert net_of(led, "P001") == {"A-202601-2": 5000}
    assert net_of(led, "P002") == {"A-202601-2": 1000, "credit": 2000}
    assert led.balance("A") == led.ledger_sum("A") == -2000
    check_invariants(led)


def test_refund_of_a_payment_whose_credit_was_partly_used() -> None:
    # given: a bill of 30.00, a payment of 100.00 (70.00 credit), a late fee and a second bill
    # the credit partly clears, and a second payment of 5.00 that is all credit later
    led = Ledger("fees_first")
    led.debit("A", "bill", "A-202601-1", 3000, date(2026, 2, 18))
    led.pay("A", 10000)
    led.debit("A", "late_fee", "LF:A-202601-1:2026-02-20", 100, date(2026, 2, 20))
    led.debit("A", "bill", "A-202602-1", 4000, date(2026, 3, 18))
    assert net_of(led, "P001") == {"A-202601-1": 3000, "LF:A-202601-1:2026-02-20": 100,
                                   "A-202602-1": 4000, "credit": 2900}
    led.pay("A", 500)
    assert open_of(led, "A") == {"CR:P001": -2900, "CR:P002": -500}
    # when: the first payment is refunded
    new = led.reverse_payment("P001")
    # then: everything it cleared is open again and its unused credit is gone; the other
    # payment's credit meets the reopened debits in the account's order (fees first)
    assert sum(c["amount"] for c in new.clearings if c["payment_id"] == "P001") == -10000
    assert net_of(led, "P001") == {}
    assert net_of(led, "P002") == {"LF:A-202601-1:2026-02-20": 100, "A-202601-1": 400}
    assert open_of(led, "A") == {"A-202601-1": 2600, "A-202602-1": 4000}
    assert [(e["type"], e["balance_after"]) for e in new.events] == [("payment_reversed", 6600)]
    assert led.balance("A") == 3000 + 100 + 4000 - 500
    check_invariants(led)


def test_a_debit_of_zero_plans_its_open_item() -> None:
    # given: an empty book
    book = Book([], order="oldest_first", now=NOW)
    # when: a bill of 0.00 is posted (nothing used, no fixed charge: the bill run issues these)
    book.debit(reference="A-202601-1", account_id="A", customer_id="A", kind="bill", amount=0,
               due_on=date(2026, 2, 18))
    # then: its ledger row and its (zero) open item are planned, as the bill run's bulk path
    # writes them (ledger check wants an open item for every debit)
    assert [e["amount"] for e in book.posting.entries] == [0]
    item, delta = book.posting.changes["A-202601-1"]
    assert (item.item_kind, item.amount, item.open_amount, delta) == ("bill", 0, 0, 0)
