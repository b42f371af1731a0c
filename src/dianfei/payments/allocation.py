"""Allocation (销账) lives in the money core, :mod:`dianfei.ledger.allocation` (public through
``ledger.service``); this name stays for the payments code and tests that read it."""

from dianfei.ledger.service import (
    ALLOCATION_ORDERS,
    OpenItem,
    allocate,
    allocate_frame,
    check_order,
    sort_items,
)

__all__ = ["ALLOCATION_ORDERS", "OpenItem", "allocate", "allocate_frame", "check_order",
           "sort_items"]
