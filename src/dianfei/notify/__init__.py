"""Notices out (通知): templates, outbox, channels (SMTP email, SMS gateway, letters)."""
