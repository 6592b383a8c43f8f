"""The prod-rendered controller Nginx, running on a loopback address, against real clients.

curl (with ``--resolve`` so SNI carries the site name) checks Host handling, headers and
``/media/``; testssl.sh enumerates every cipher suite the server accepts. Before the issue:
30 suites, 16 without forward secrecy and 14 CBC; a bogus Host was echoed into the redirect.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provisioning.settings import ControllerSettings
from tests.support.daemons import loopback_controller_settings, running_nginx, state_directory
from tests.support.tooling import require_executable

DOMAIN = "gemnar.test"


@pytest.fixture(params=["address", "domain"])
def site(request: pytest.FixtureRequest) -> Iterator[ControllerSettings]:
    """A running controller Nginx without a site name (answers to its address) and with one."""
    with state_directory("gemnar-harden-") as root:
        settings = loopback_controller_settings(root)
        if request.param == "domain":
            settings = replace(settings, domain=DOMAIN)
        with running_nginx(settings):
            yield settings


def site_host(settings: ControllerSettings) -> str:
    return settings.domain or settings.private_address


def curl(settings: ControllerSettings, scheme: str, path: str, host: str | None = None,
         sni: str | None = None) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of a GET; status 0 when the server closed or refused."""
    port = settings.ports.https if scheme == "https" else settings.ports.http
    name = sni or site_host(settings)
    argv = [str(require_executable("curl")), "-sk", "-o", "/dev/null", "-D", "-",
            "--max-time", "10", "--resolve", f"{name}:{port}:{settings.private_address}",
            f"{scheme}://{name}:{port}{path}"]
    if host:
        argv += ["-H", f"Host: {host}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = result.stdout.replace("\r", "").split("\n")
    if not lines or not lines[0].startswith("HTTP/"):
        return 0, {}
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def test_http_redirects_only_to_the_site(site: ControllerSettings) -> None:
    status, headers = curl(site, "http", "/x")
    assert status == 301
    assert headers["location"] == f"https://{site_host(site)}:{site.ports.https}/x"


def test_a_bogus_host_gets_no_redirect_to_it(site: ControllerSettings) -> None:
    status, headers = curl(site, "http", "/x", host="evil.example")
    assert status == 0 and "location" not in headers
    # Over TLS too: a name the site does not have, in the Host header or in SNI.
    assert curl(site, "https", "/x", host="evil.example")[0] == 0
    if site.domain:
        assert curl(site, "https", "/x", sni="evil.example")[0] == 0


def test_every_response_carries_the_security_headers(site: ControllerSettings) -> None:
    media = Path(site.paths.media_root)
    (media / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Path(site.paths.static_root, "s.css").write_text("body{}")
    for path in ["/", "/static/s.css", "/media/a.png", "/ws/x", "/accounts/login/"]:
        status, headers = curl(site, "https", path)
        assert status in {200, 503}, (path, status)
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["strict-transport-security"].startswith("max-age=31536000"), path
        assert "content-security-policy" in headers, path


def test_uploaded_html_is_served_as_an_attachment_with_nosniff(site: ControllerSettings) -> None:
    media = Path(site.paths.media_root)
    (media / "evil.html").write_text("<script>alert(document.cookie)</script>")
    (media / "evil.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>")
    (media / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    for name in ["evil.html", "evil.svg"]:
        status, headers = curl(site, "https", f"/media/{name}")
        assert status == 200
        assert headers["content-disposition"] == "attachment"
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        assert "default-src 'none'" in headers["content-security-policy"]
    status, headers = curl(site, "https", "/media/photo.jpg")
    assert status == 200 and "content-disposition" not in headers
    assert "sandbox" in headers["content-security-policy"]


def test_logins_are_rate_limited_per_client(site: ControllerSettings) -> None:
    """10 a minute with a burst of 5: the 7th immediate attempt is refused with 429."""
    statuses = [curl(site, "https", "/accounts/login/")[0] for _ in range(8)]
    assert statuses[:6] == [503] * 6  # no workers: the fallback's answer, not the limit
    assert statuses[6:] == [429, 429]


def test_tls_offers_only_aead_suites_with_forward_secrecy(tmp_path: Path) -> None:
    """testssl.sh's full cipher enumeration of the running site (no site name)."""
    testssl = require_executable("testssl", "/usr/bin")
    with state_directory("gemnar-harden-") as root:
        settings = loopback_controller_settings(root)
        with running_nginx(settings):
            report = tmp_path / "testssl.json"
            subprocess.run(
                [str(testssl), "--quiet", "--warnings", "off", "--color", "0", "-e", "-p",
                 "-S", "--jsonfile", str(report),
                 f"{settings.private_address}:{settings.ports.https}"],
                capture_output=True, text=True, check=False, timeout=600,
            )
    findings = json.loads(report.read_text())
    suites = [f["finding"] for f in findings if f["id"].startswith("cipher_x")]
    print(f"\ntestssl.sh: {len(suites)} suites: {suites}")
    assert suites, findings
    for suite in suites:
        assert "ECDH" in suite or "TLS_AES" in suite or "TLS_CHACHA20" in suite, suite
        assert "GCM" in suite or "CHACHA20" in suite or "POLY1305" in suite, suite
    protocols = {f["id"]: f["finding"] for f in findings if f["id"] in {
        "SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"}}
    assert protocols["TLS1"].startswith("not offered")
    assert protocols["TLS1_1"].startswith("not offered")
    assert protocols["TLS1_2"].startswith("offered")
    assert protocols["TLS1_3"].startswith("offered")
    by_id = {f["id"]: f["finding"] for f in findings}
    # Stapling is neither configured nor claimed: Let's Encrypt ended OCSP (docs/hardening.md).
    assert by_id["OCSP_stapling"] == "not offered"


def test_tls12_sessions_get_no_ticket(site: ControllerSettings) -> None:
    """``ssl_session_tickets off``: a TLS 1.2 handshake carries no ticket (resumption uses the
    server's session cache, so there is no ticket key to rotate). (TLS 1.3 still announces
    tickets: with tickets off OpenSSL makes them stateful, references into the same cache.)"""
    openssl = require_executable("openssl")
    result = subprocess.run(
        [str(openssl), "s_client", "-connect", f"{site.private_address}:{site.ports.https}",
         "-servername", site_host(site), "-tls1_2"],
        input="", capture_output=True, text=True, timeout=30, check=False)
    assert "Protocol  : TLSv1.2" in result.stdout, result.stderr[-500:]
    assert "Session-ID: " in result.stdout
    assert "TLS session ticket" not in result.stdout
