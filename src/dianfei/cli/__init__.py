"""Command-line entry points: thin shells over the domain services (no business logic here)."""
