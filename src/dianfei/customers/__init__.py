"""Customers, accounts, service points, meters, regions, supply stations, collectors."""
