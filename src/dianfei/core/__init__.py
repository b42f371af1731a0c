"""Money, time, ids, typed errors and settings: no domain knowledge lives here."""
