"""`bioreactor dashboard --tls-cert F --tls-key F CONFIG` over a real TLS socket: the page is
served over HTTPS with a certificate a client verifies, the session cookie is `Secure`, HSTS is
sent, an operator is offered actions, and plain HTTP on the same port gets no page."""
from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from plugins.dashboard import ALICE, post_login, running_dashboard, write_dashboard_config
from plugins.mosquitto import make_tls_files


def test_a_dashboard_with_accounts_serves_https_with_secure_cookies(
        broker, tmp_path: Path) -> None:
    b = broker()
    tls = make_tls_files(tmp_path / "tls")
    config = write_dashboard_config(tmp_path / "dashboard.toml", [ALICE])
    with running_dashboard(b.url, tmp_path, config=config, tls=tls) as dashboard:
        assert dashboard.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(tls["ca"]))
        with httpx.Client(base_url=dashboard.url, verify=trusted, timeout=30) as client:
            response = post_login(client, ALICE.name, ALICE.password)
            assert response.status_code == 303, response.text
            cookie = response.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert "max-age" in response.headers["strict-transport-security"]
            home = client.get("/")
            assert home.status_code == 200 and "operator actions are off" not in home.text
        with pytest.raises(httpx.HTTPError):  # the certificate is checked: no CA, no page
            httpx.get(dashboard.url + "/login", timeout=10)
        plain = dashboard.url.replace("https://", "http://") + "/login"
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
            response = httpx.get(plain, timeout=10)
            response.raise_for_status()
