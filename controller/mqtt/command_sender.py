"""Sending one signed command over MQTT and waiting for the controller's reply to it.

The reply topic is shared by every operator of a reactor; the client picks its own reply out by
nonce. Used by `bioreactor cmd` and the dashboard.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from controller.mqtt.client import Client
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import Topics


async def send_command(settings: MqttSettings, command: Mapping[str, Any], *,
                       timeout_s: float) -> dict[str, Any]:
    """Publish `command` (QoS 1) and return the reply carrying its nonce.

    Subscribes before publishing, so a fast reply cannot be missed. Raises TimeoutError when no
    reply arrives in `timeout_s`, aiomqtt.MqttError when the broker cannot be reached.
    """
    topics = Topics(command["reactor"])
    async with asyncio.timeout(timeout_s):
        async with Client(**settings.client_kwargs()) as client:
            await client.subscribe(topics.cmd_reply, qos=1)
            await client.publish(topics.cmd, json.dumps(command).encode(), qos=1)
            async for message in client.messages:
                try:
                    reply = json.loads(bytes(message.payload))
                except (TypeError, ValueError):
                    continue
                if isinstance(reply, dict) and reply.get("nonce") == command["nonce"]:
                    return reply
    raise TimeoutError("the broker closed the subscription")  # pragma: no cover
