"""The REST API (FastAPI) — entry points only, no business logic."""
