"""A real SMTP server for the alerts' tests: aiosmtpd in a thread on 127.0.0.1, with
optional AUTH (plain text: the tests do not set up TLS certificates)."""

from __future__ import annotations

import email
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conn.testing.services import free_port


@dataclass
class Received:
    """One message the server accepted."""

    sender: str
    recipients: list[str]
    message: Message
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode()


@dataclass
class Mailbox:
    """What the server received, and the logins it saw."""

    messages: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          email.message_from_bytes(raw), raw))
        return "250 OK"


@contextmanager
def smtp_server(*, user: str | None = None, password: str | None = None,
                tls: str = "none", context: ssl.SSLContext | None = None
                ) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server on 127.0.0.1: ``(port, mailbox)``. With ``user``/``password`` it
    requires that login (AUTH PLAIN/LOGIN; over TLS unless ``tls`` is ``none``).
    ``tls``: ``starttls`` (required before anything else) or ``ssl`` (SMTPS) with the
    server's ``context``."""
    box = Mailbox()
    kwargs: dict[str, Any] = {}
    if tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif tls == "ssl":
        kwargs.update(ssl_context=context)
    if user is not None:
        def check(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            if isinstance(auth_data, LoginPassword):
                box.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=ok)

        # With implicit TLS (SMTPS) aiosmtpd does not know the session is encrypted and
        # would not offer AUTH (aio-libs/aiosmtpd#281): require TLS for STARTTLS only.
        kwargs.update(authenticator=check, auth_required=True,
                      auth_require_tls=tls == "starttls")
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), **kwargs)
    with warnings.catch_warnings():
        # aiosmtpd warns that AUTH without TLS is unsafe: true, and fine on loopback.
        warnings.simplefilter("ignore")
        controller.start()
    try:
        yield controller.port, box
    finally:
        controller.stop()
