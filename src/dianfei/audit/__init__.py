"""The audit chain: an append-only, hash-chained record of every change to money, supply state,
customer data, users and configuration (see ``service``)."""
