"""Where the MQTT broker is and how to log in: one URL plus optional TLS files.

A URL (`mqtt[s]://[USER:PASS@]HOST[:PORT]`) keeps the broker address in one config value and
one CLI flag; TLS material is files, so it stays out of the URL. Parsing is strict and every
error names the part that is wrong and the accepted form, because a typo here otherwise shows
up hours later as a silent "broker unreachable" in the logs.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from drivers.contract.urls import split_host_port

ACCEPTED_FORM = "mqtt[s]://[USER:PASS@]HOST[:PORT] (e.g. mqtts://ctrl:secret@broker.lab:8883)"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttSettings:
    """A broker address and the credentials to use there. Immutable; `repr` hides the password."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = 30

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        client_id: str | None = None,
        keepalive_s: int = 30,
    ) -> MqttSettings:
        """Parse `mqtt[s]://[USER:PASS@]HOST[:PORT]`; raise ValueError naming the bad part."""
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"MQTT URL {url!r}: missing scheme; accepted form: {ACCEPTED_FORM}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(
                f"MQTT URL scheme {parts.scheme!r} is not mqtt or mqtts; "
                f"accepted form: {ACCEPTED_FORM}"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"MQTT URL {_redact(url)!r}: unexpected path/query {parts.path + parts.query!r}; "
                f"accepted form: {ACCEPTED_FORM}"
            )
        try:
            host, port = split_host_port(parts.netloc.rpartition("@")[2],
                                         default_port=DEFAULT_PORTS[scheme])
        except ValueError as exc:
            raise ValueError(
                f"MQTT URL {_redact(url)!r}: {exc}; accepted form: {ACCEPTED_FORM}"
            ) from None
        host = host.lower()
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and not username:
            raise ValueError(
                f"MQTT URL has a password but no USER; accepted form: {ACCEPTED_FORM}"
            )
        tls = scheme == "mqtts"
        files = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file}
        if not tls and any(files.values()):
            named = ", ".join(k for k, v in files.items() if v)
            raise ValueError(f"TLS files ({named}) given for a plain mqtt:// URL; use mqtts://")
        if (cert_file is None) != (key_file is None):
            raise ValueError("TLS client auth needs both cert_file and key_file, or neither")
        if keepalive_s < 1:
            raise ValueError(f"keepalive_s must be >= 1 s, got {keepalive_s}")
        return cls(
            host=host,
            port=port,
            tls=tls,
            username=username,
            password=password,
            ca_file=Path(ca_file) if ca_file else None,
            cert_file=Path(cert_file) if cert_file else None,
            key_file=Path(key_file) if key_file else None,
            client_id=client_id,
            keepalive_s=keepalive_s,
        )

    @property
    def url(self) -> str:
        """The URL without the password (safe to log)."""
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def with_client_id(self, client_id: str | None) -> MqttSettings:
        """A copy with another client id (e.g. a watcher beside the controller)."""
        return replace(self, client_id=client_id)

    def tls_params(self) -> aiomqtt.TLSParameters | None:
        """TLS parameters for aiomqtt; the system CA store when no ca_file is given."""
        if not self.tls:
            return None
        return aiomqtt.TLSParameters(
            ca_certs=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `aiomqtt.Client(**kwargs)` (aiomqtt 2.x names)."""
        return {
            "hostname": self.host,
            "port": self.port,
            "identifier": self.client_id,
            "username": self.username,
            "password": self.password,
            "tls_params": self.tls_params(),
            "keepalive": self.keepalive_s,
        }


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
