"""Fixtures of the notify tests (defined in _util.py, shared with the tests' helpers)."""

from tests.notify._util import clock, gateway, letters_dir, people, secret_key, senders, smtp_inbox

__all__ = ["clock", "gateway", "letters_dir", "people", "secret_key", "senders", "smtp_inbox"]
