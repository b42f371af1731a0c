"""Bill runs, bills and their itemised lines, corrections (cancel and rebill)."""
