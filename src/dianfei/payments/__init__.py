"""Payments (缴费): orders, inbox, posted payments and their allocations."""
