"""Risk: scores that later models fill."""
