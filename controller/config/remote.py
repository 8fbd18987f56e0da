"""`[mqtt]` and `[[operator]]`: telemetry to a broker, and who may send signed commands."""
from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator, model_validator

from drivers.contract.validation import StrictModel

TOPIC_ID_PATTERN = r"^[A-Za-z0-9.-][A-Za-z0-9_.-]{0,63}$"
"""A reactor id or a node id: topic-safe, and no leading `_` (`bioreactor/_node/...` is the
nodes')."""


class MqttConfig(StrictModel):
    """Telemetry and remote operation over MQTT; absent means the historian is the only record."""

    url: str = Field(description="mqtt://[USER:PASS@]HOST:PORT or mqtts://...")
    client_id: str | None = None
    node_id: str | None = Field(
        default=None, pattern=TOPIC_ID_PATTERN,
        description="this daemon's name on the broker (bioreactor/_node/NODE/status, its "
        "last will); default: client_id, else the run id")
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    outbox: str | None = Field(
        default=None, description="durable store-and-forward queue (kept across restarts); "
        "default: outbox.sqlite beside the run's database; one per daemon")
    max_skew_s: float = Field(default=30.0, gt=0, le=3600,
                              description="commands older or newer than this are refused")

    @model_validator(mode="after")
    def _client_id_names_the_node(self) -> MqttConfig:
        if self.node_id is None and self.client_id is not None and not re.match(
                TOPIC_ID_PATTERN, self.client_id):
            raise ValueError(f"client_id {self.client_id!r} is also the node id unless node_id "
                             f"is set: set node_id (pattern {TOPIC_ID_PATTERN})")
        return self

    @field_validator("url")
    @classmethod
    def _mqtt_scheme(cls, v: str) -> str:
        if not (v.startswith("mqtt://") or v.startswith("mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v


class OperatorConfig(StrictModel):
    """Someone allowed to send commands; commands are HMAC-SHA256 signed with this key."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    key_hex: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2}){16,}$",
                                description="at least 16 bytes, hex")
    key_file: str | None = None
    _key: bytes = PrivateAttr(default=b"")
    """The key as read at validation: a key file is read once, so the key checked is the key
    used (a file edited or removed mid-run changes nothing until the next start)."""

    @model_validator(mode="after")
    def _one_key(self) -> OperatorConfig:
        if (self.key_hex is None) == (self.key_file is None):
            raise ValueError("key_hex or key_file: give exactly one")
        if self.key_hex is not None:
            self._key = bytes.fromhex(self.key_hex)
            return self
        try:
            key = bytes.fromhex(Path(self.key_file).read_text().strip())  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise ValueError(f"key_file {self.key_file}: cannot read a hex key ({exc})") from None
        if len(key) < 16:
            raise ValueError(f"key_file {self.key_file}: key shorter than 16 bytes")
        self._key = key
        return self

    def key(self) -> bytes:
        return self._key
