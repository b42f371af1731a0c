"""The append-only receivable ledger (应收账): entries, balances, aging, invariants."""
