"""Who may use the UI: safe by default.

* **Where it listens.** Loopback unless a token is set: :func:`check_bind` refuses any
  other address without one.
* **Host header.** Without a token, only requests naming the loopback address it listens
  on are answered (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``): a web page
  that points its own domain name at 127.0.0.1 (DNS rebinding) gets 403.
* **Token.** With a token, every ``/api`` request needs ``Authorization: Bearer TOKEN``
  (compared in constant time). The page gets it from the URL's fragment (``#token=``),
  which browsers never send to a server or in a Referer.
* **State-changing requests** (POST) also need a JSON body type (a cross-site form cannot
  send one without a CORS preflight, which is never granted), a same-origin ``Origin``
  and ``Sec-Fetch-Site`` when the browser sends them, and either the token or, without a
  token, the per-process CSRF token the page carries (``X-Conn-CSRF``).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from conn.errors import ConfigError

#: Sec-Fetch-Site values of a request the page itself made (or a user typed).
SAME_SITE = {"same-origin", "none"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"the UI would listen on {host}, beyond this machine, without a "
                          f"token: pass --token (or set CONN_UI_TOKEN), or keep the default "
                          f"--host 127.0.0.1")


@dataclass
class Guard:
    """Decides each request; ``port`` is the one actually bound."""

    port: int
    token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def hosts(self) -> set[str]:
        return {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    def refuse(self, method: str, path: str, headers: Mapping[str, str]) -> str | None:
        """Why this request is refused (None: allowed). ``headers``: lowercase names."""
        host = headers.get("host", "")
        if not self.token and host not in self.hosts():
            return f"unknown Host {host!r}: open the UI at http://127.0.0.1:{self.port}/"
        needs_token = bool(self.token) and path.startswith("/api/") \
            and path != "/api/openapi.json"
        if needs_token and not self._bearer(headers):
            return "missing or wrong token: send 'Authorization: Bearer TOKEN'"
        if method in ("GET", "HEAD"):
            return None
        return self._refuse_write(headers, host)

    def _bearer(self, headers: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        return bool(self.token) and hmac.compare_digest(given.encode(),
                                                        str(self.token).encode())

    def _refuse_write(self, headers: Mapping[str, str], host: str) -> str | None:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return "a state-changing request needs 'Content-Type: application/json'"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return f"cross-origin request refused (Origin {origin!r})"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in SAME_SITE:
            return f"cross-site request refused (Sec-Fetch-Site {site!r})"
        if self.token:
            return None  # checked above: every /api request carries it
        given = headers.get("x-conn-csrf", "")
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            return "missing or wrong CSRF token (X-Conn-CSRF): reload the page"
        return None
