"""Who is calling, behind a reverse proxy: one rule for every per-address limit (the payment
callbacks' junk throttle, the console's and the portal's sign-in limits, the portal's one-time
codes).

A proxy in ``trusted_proxies`` (``[payments.callbacks] trusted_proxies`` /
``DIANFEI_CALLBACK_TRUSTED_PROXIES``, docs/payment-channels.md) is believed about who is behind
it: the caller is the right-most address of X-Forwarded-For that is not a trusted proxy (the
left-most ones are whatever the caller chose to write). Anybody else's X-Forwarded-For is
ignored — otherwise a caller could rotate it to escape every limit. Without trusted proxies
every customer behind a load balancer would share the balancer's address, and its limits."""

from __future__ import annotations

from collections.abc import Mapping


def client_address(peer: str | None, headers: Mapping[str, str],
                   trusted: frozenset[str]) -> str:
    """The caller's address (at most 64 characters, what the limits' tables keep): ``peer``,
    the connection's address; through a trusted proxy, the last hop of X-Forwarded-For that is
    not a trusted proxy."""
    addr = peer or "unknown"
    if addr in trusted:
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in trusted:
                return hop[:64]
    return addr[:64]
