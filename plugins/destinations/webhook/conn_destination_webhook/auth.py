"""httpx auth that signs every attempt of a webhook request (fresh timestamp per retry)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx
from conn import secrets

from conn_destination_webhook.signing import sign


class WebhookSigner(httpx.Auth):
    """Adds the timestamp and signature headers; the message id header is set by the
    caller (it must stay the same across retries)."""

    requires_request_body = True

    def __init__(self, secret: str, *, id_header: str = "webhook-id",
                 timestamp_header: str = "webhook-timestamp",
                 signature_header: str = "webhook-signature",
                 clock: Callable[[], float] = time.time) -> None:
        secrets.register(secret)
        self._secret = secret
        self.id_header, self.timestamp_header = id_header, timestamp_header
        self.signature_header = signature_header
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the exact body bytes with the current time."""
        ts = str(int(self._clock()))
        msg_id = request.headers.get(self.id_header, "")
        request.headers[self.timestamp_header] = ts
        request.headers[self.signature_header] = sign(self._secret, msg_id, ts, request.content)
        yield request

    def describe_headers(self) -> dict[str, str]:
        """Headers this auth adds, as ``--dry-run`` shows them."""
        return {self.timestamp_header: "<unix time of each attempt>",
                self.signature_header: secrets.MASK}

    def __repr__(self) -> str:
        return f"<WebhookSigner {self.signature_header!r}>"
