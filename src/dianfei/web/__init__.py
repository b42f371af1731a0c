"""The web console (Jinja2 pages) — entry points only, no business logic."""
