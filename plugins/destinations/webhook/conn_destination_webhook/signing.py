"""Signing convention (Standard Webhooks style), for senders and receivers.

Each request carries three headers (names configurable):

- ``webhook-id``: a message id, the same on every retry of one payload (idempotency key);
- ``webhook-timestamp``: Unix seconds when this attempt was signed;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` over
  the exact body bytes sent.

The key is the UTF-8 bytes of the secret, or, for a secret of the form ``whsec_<base64>``,
the base64-decoded part (as Standard Webhooks / Svix secrets). :func:`verify` is what a
receiver runs; it only needs the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

DEFAULT_TOLERANCE = 300


def signing_key(secret: str) -> bytes:
    """The HMAC key for ``secret`` (``whsec_`` secrets are base64-decoded)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The signature header value: ``v1,<base64 digest>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *,
           tolerance: float = DEFAULT_TOLERANCE, now: float | None = None,
           id_header: str = "webhook-id", timestamp_header: str = "webhook-timestamp",
           signature_header: str = "webhook-signature") -> bool:
    """True if ``body`` was signed with ``secret`` less than ``tolerance`` seconds ago.

    ``headers`` is matched case-insensitively. The signature header may hold several
    space-separated signatures (secret rotation); any valid one passes.
    """
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = h.get(id_header.lower()), h.get(timestamp_header.lower())
    sigs = h.get(signature_header.lower(), "").split()
    if not msg_id or not ts or not sigs:
        return False
    try:
        if abs((time.time() if now is None else now) - int(ts)) > tolerance:
            return False
    except ValueError:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(expected, s) for s in sigs)
