"""Delivering an :class:`~conn.alerts.message.Alert`: e-mail over SMTP (stdlib
``smtplib``) and webhooks (JSON, or Slack's body) through conn's HTTP client, which
retries 429 and 5xx answers with backoff.

Every failure is a :class:`DeliveryFailed` whose message names the channel and what went
wrong, never the password or the webhook's URL (both are registered secrets and each
message is redacted).
"""

from __future__ import annotations

from typing import Any

from conn import interrupt
from conn.alerts.message import Alert
from conn.config.alerts import Channel
from conn.errors import ConnError
from conn.secrets import redact

DEFAULT_TIMEOUT = 10.0
_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


class DeliveryFailed(ConnError):
    """An alert could not be delivered to a channel (the run it is about is unaffected)."""


def deliver(channel: Channel, alert: Alert) -> None:
    """Send ``alert`` to ``channel``; raise :class:`DeliveryFailed` if it did not go."""
    if channel.problem is not None:
        raise DeliveryFailed(f"channel {channel.name!r} cannot deliver: {channel.problem}")
    try:
        if channel.type == "email":
            _email(channel.settings, alert)
        else:
            _webhook(channel, alert)
    except DeliveryFailed:
        raise
    except Exception as exc:  # any failure of the channel is a failed delivery
        raise DeliveryFailed(redact(f"channel {channel.name!r} ({channel.type}): "
                                    f"{type(exc).__name__}: {exc}")) from exc


def _email(s: dict[str, Any], alert: Alert) -> None:
    # Imported here: a run whose rules send nothing never pays for ssl and email.
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    to = [s["to"]] if isinstance(s["to"], str) else list(s["to"])
    msg = EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = s["from"]
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(alert.at)
    msg["Message-ID"] = make_msgid(domain="conn.local")
    msg.set_content(alert.text())
    tls = s.get("tls", "starttls")
    port = int(s.get("port") or _PORTS[tls])
    timeout = float(s.get("timeout", DEFAULT_TIMEOUT))
    # ca_file replaces the system's authorities (a relay with an internal CA).
    context = ssl.create_default_context(cafile=s.get("ca_file"))
    smtp: smtplib.SMTP
    if tls == "ssl":
        smtp = smtplib.SMTP_SSL(s["host"], port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(s["host"], port, timeout=timeout)
    with smtp:
        if tls == "starttls":
            smtp.starttls(context=context)
        if s.get("username"):
            smtp.login(s["username"], s.get("password") or "")
        refused = smtp.send_message(msg, from_addr=s["from"], to_addrs=to)
    if refused:
        raise DeliveryFailed(f"the SMTP server refused {len(refused)} of {len(to)} "
                             "recipient(s)")


def _webhook(channel: Channel, alert: Alert) -> None:
    from conn.http.client import HttpClient, RetryPolicy

    s = channel.settings
    body = alert.slack() if channel.type == "slack" else alert.payload()
    retry = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=5.0, max_total_wait=15.0)
    if interrupt.is_requested():  # conn is stopping (a drained follower's last segment)
        retry = RetryPolicy(max_attempts=1)  # one attempt, within the drain bound
    client = HttpClient(timeout=float(s.get("timeout", DEFAULT_TIMEOUT)), retry=retry,
                        headers=s.get("headers") or {}, name=f"alerts.{channel.name}",
                        stoppable=False)
    try:
        response = client.request("POST", s["url"], json=body)
    finally:
        client.close()
    if response.status_code >= 300:
        raise DeliveryFailed(f"channel {channel.name!r} ({channel.type}): the webhook "
                             f"answered HTTP {response.status_code}")
