"""E-mail over TLS to a real SMTP server (aiosmtpd with a certificate from a test CA,
trustme): STARTTLS and SMTPS with ``ca_file``; an untrusted certificate is a failed
delivery that names the reason, and the run is unaffected."""

from __future__ import annotations

import ssl

import pytest
import trustme
from conn.alerts.channels import DeliveryFailed, deliver
from conn.alerts.message import Alert
from conn.config.alerts import Channel

from tests.alerts.smtp import smtp_server

# aiosmtpd cannot tell that an SMTPS session is encrypted (see tests/alerts/smtp.py).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
PASSWORD = "tls-pw-8ahW2secret"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_context(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def channel(port: int, tls: str, ca_file: str | None) -> Channel:
    settings = {"type": "email", "host": "127.0.0.1", "port": port, "tls": tls,
                "username": "alerts", "password": PASSWORD, "from": "conn@example.com",
                "to": "ops@example.com", "timeout": 5}
    if ca_file:
        settings["ca_file"] = ca_file
    return Channel("mail", "email", settings)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_with_the_relays_ca(ca, tmp_path, tls):
    ca_file = tmp_path / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with smtp_server(user="alerts", password=PASSWORD, tls=tls,
                     context=server_context(ca)) as (port, box):
        deliver(channel(port, tls, str(ca_file)),
                Alert("test", "r", "s", "over TLS", run_id="abc"))
    assert [m.subject for m in box.messages] == ["[conn] TEST r: sync s run abc"]
    assert box.logins == [("alerts", PASSWORD)]


def test_an_untrusted_certificate_is_refused(ca):
    with smtp_server(user="alerts", password=PASSWORD, tls="starttls",
                     context=server_context(ca)) as (port, box), \
            pytest.raises(DeliveryFailed) as info:
        deliver(channel(port, "starttls", None), Alert("test", "r", "s", "x"))
    assert "channel 'mail' (email): SSLCertVerificationError" in str(info.value)
    assert box.messages == [] and box.logins == []
    assert PASSWORD not in str(info.value)
