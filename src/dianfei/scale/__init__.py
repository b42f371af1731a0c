"""Scale-out on Apache Spark: the bill run, VEE and risk scoring per partition of accounts.

The local backend (Polars in one process) stays the default and needs no Java. The Spark backend
applies the same columnar functions to each partition of accounts (or of meter groups) inside
Spark tasks: no second implementation of any business rule lives here, only the plumbing that
splits the work, ships it and writes it back exactly once. See docs/scaling.md.
"""
