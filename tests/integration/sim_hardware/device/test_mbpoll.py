"""A third-party Modbus master (mbpoll, on libmodbus) against the real server, running the exact
command lines of docs/modbus.md."""
from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import time
from collections.abc import AsyncIterator

import pytest
from plugins.configs import REPO

from drivers.contract.status import DeviceStatus
from drivers.contract.urls import parse_device_url
from sim_hardware.device.modbus_server import running
from sim_hardware.device.served_chamber import ServedChamber

DOC = REPO / "docs" / "modbus.md"
DOC_PORT = "5020"
DOC_PTY = "/dev/pts/7"
MBPOLL_TIMEOUT_S = 10.0


def doc_commands() -> dict[str, str]:
    """{comment: command} from the ```mbpoll block of docs/modbus.md, plus the RTU line."""
    text = DOC.read_text()
    block = re.search(r"```mbpoll\n(.*?)```", text, re.S)
    assert block, "docs/modbus.md has no ```mbpoll block"
    commands: dict[str, str] = {}
    comment = ""
    for line in block.group(1).splitlines():
        if line.startswith("# "):
            comment = line[2:]
        elif line.startswith("mbpoll "):
            commands[comment] = line
    rtu = re.search(r"^mbpoll -m rtu .*$", text, re.M)
    assert rtu, "docs/modbus.md has no mbpoll RTU command line"
    commands["rtu"] = rtu.group(0)
    return commands


COMMANDS = doc_commands()


def command(starts: str) -> str:
    matches = [cmd for comment, cmd in COMMANDS.items() if comment.startswith(starts)]
    assert len(matches) == 1, f"one mbpoll line commented {starts!r} in docs/modbus.md"
    return matches[0]


@pytest.fixture
def mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail("mbpoll is not installed: `apt-get install -y mbpoll` (make test does it); "
                    "these tests check the server against a third-party Modbus master")
    return path


CLOCK_S = [0.0]
"""The device clock: it stands still unless a test moves it."""


@pytest.fixture
async def chamber() -> ServedChamber:
    CLOCK_S[0] = 0.0
    c = ServedChamber({}, seed=11, now=lambda: CLOCK_S[0], wall=time.monotonic)
    await c.start()
    return c


@pytest.fixture
async def port(chamber: ServedChamber) -> AsyncIterator[str]:
    async with running(chamber, "modbus-tcp://127.0.0.1:0") as url:
        yield url.rsplit(":", 1)[1]


async def run(mbpoll: str, line: str, **substitute: str) -> tuple[int, str]:
    """Run a doc command line (with its example port/path swapped for the live ones) without
    blocking the event loop the server runs on. Returns (exit status, stdout + stderr)."""
    for old, new in substitute.items():
        assert old in line, f"{old!r} not in {line!r}"
        line = line.replace(old, new)
    argv = shlex.split(line)
    assert argv[0] == "mbpoll"
    process = await asyncio.create_subprocess_exec(
        mbpoll, *argv[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), MBPOLL_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"mbpoll did not finish in {MBPOLL_TIMEOUT_S} s: {line}")
    return process.returncode or 0, out.decode(errors="replace")


def values(output: str) -> dict[int, float]:
    """mbpoll's `[101]: \t37.0202` lines as {reference: value}."""
    return {int(m[1]): float(m[2]) for m in re.finditer(r"^\[(\d+)\]:\s+(\S+)\s*$", output, re.M)}


async def test_read_a_sensor_float(mbpoll: str, port: str, chamber: ServedChamber) -> None:
    status, out = await run(mbpoll, command("read temperature_c"), **{f"-p {DOC_PORT}":
                                                                      f"-p {port}"})
    assert status == 0, out
    got = values(out)
    assert list(got) == [101]
    assert abs(got[101] - chamber.read_inputs()["temperature_c"].value) < 0.5


async def test_write_a_setpoint_and_the_chamber_holds_it(mbpoll: str, port: str,
                                                        chamber: ServedChamber) -> None:
    swap = {f"-p {DOC_PORT}": f"-p {port}"}
    status, out = await run(mbpoll, command("write heater_pct"), **swap)
    assert status == 0 and "Written 1 references" in out, out
    assert chamber.read_outputs()["heater_pct"] == 40.0
    status, out = await run(mbpoll, command("read every actuator"), **swap)
    assert status == 0, out
    assert values(out) == {101 + 2 * k: pytest.approx(v, rel=1e-5)
                           for k, v in enumerate(chamber.read_outputs().values())}
    assert values(out)[101] == 40.0


async def test_heartbeat(mbpoll: str, port: str, chamber: ServedChamber) -> None:
    count = chamber.heartbeat_count
    status, out = await run(mbpoll, command("heartbeat"), **{f"-p {DOC_PORT}": f"-p {port}"})
    assert status == 0, out
    assert chamber.heartbeat_count == count + 1


async def test_every_sensor_with_zero_based_references(mbpoll: str, port: str) -> None:
    status, out = await run(mbpoll, command("every sensor value"),
                            **{f"-p {DOC_PORT}": f"-p {port}"})
    assert status == 0, out
    got = values(out)
    assert list(got) == list(range(100, 150, 2))
    assert 30 < got[100] < 45


async def test_rearm_the_cutout(mbpoll: str, port: str, chamber: ServedChamber) -> None:
    """The doc's re-arm line: refused (exit 1, "Illegal function") while the tripped chamber is
    hot, accepted once it is cool."""
    swap = {f"-p {DOC_PORT}": f"-p {port}"}
    chamber.write_outputs({"heater_pct": 100.0, "heater_relay": 1.0})
    CLOCK_S[0] += 300.0
    assert chamber.status & DeviceStatus.HEATER_CUTOUT
    status, out = await run(mbpoll, command("re-arm the heater cut-out"), **swap)
    assert status != 0 and "Illegal function" in out, out
    assert chamber.status & DeviceStatus.HEATER_CUTOUT
    chamber.write_outputs({"heater_pct": 0.0})
    CLOCK_S[0] += 1800.0
    status, out = await run(mbpoll, command("re-arm the heater cut-out"), **swap)
    assert status == 0 and "Written 1 references" in out, out
    assert not chamber.status & DeviceStatus.HEATER_CUTOUT


async def test_a_refused_write_is_reported(mbpoll: str, port: str, chamber: ServedChamber
                                          ) -> None:
    before = chamber.read_outputs()
    line = command("write heater_pct").replace(" 40", " 150")
    status, out = await run(mbpoll, line, **{f"-p {DOC_PORT}": f"-p {port}"})
    assert status != 0 and "Illegal data value" in out, out
    assert chamber.read_outputs() == before


async def test_rtu_over_a_pty(mbpoll: str, chamber: ServedChamber) -> None:
    async with running(chamber, "modbus-rtu://pty") as url:
        path = parse_device_url(url).location
        status, out = await run(mbpoll, COMMANDS["rtu"], **{DOC_PTY: path})
    assert status == 0, out
    assert 30 < values(out)[101] < 45
