"""The register map's invariants: derived from the datasheet, no overlaps, stable encoding."""
from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugins.configs import REPO

from drivers.codecs import modbus_map as m
from drivers.contract.datasheet import CHANNELS, INPUTS, OUTPUTS, Direction, Kind


def test_every_datasheet_channel_is_mapped_once_with_its_unit() -> None:
    for ch in CHANNELS:
        table = m.Table.INPUT if ch.direction is Direction.INPUT else m.Table.HOLDING
        f = m.field(table, ch.name)
        assert (f.channel, f.unit, f.type) == (ch.name, ch.unit, m.RegType.FLOAT32)
        assert f.writable == (ch.direction is Direction.OUTPUT)
    for ch in INPUTS:
        assert m.field(m.Table.INPUT, ch.name + m.QUALITY_SUFFIX).type is m.RegType.UINT16
        has_age = (m.Table.INPUT, ch.name + m.AGE_SUFFIX) in {(f.table, f.name) for f in m.FIELDS}
        assert has_age == (ch.kind is Kind.SAMPLED)
    channel_fields = [f for f in m.FIELDS if f.channel and f.name == f.channel]
    assert sorted(f.name for f in channel_fields) == sorted(c.name for c in CHANNELS)


def test_fields_do_not_overlap_and_lie_inside_their_areas() -> None:
    for table in m.Table:
        used: dict[int, str] = {}
        for f in (f for f in m.FIELDS if f.table is table):
            assert any(a.contains(f.address, f.count) for a in m.AREAS if a.table is table), f
            for a in range(f.address, f.end):
                assert a not in used, f"{f.name} overlaps {used[a]} at {table.value} {a}"
                used[a] = f.name
    for x in m.AREAS:
        for y in m.AREAS:
            if x is not y and x.table is y.table:
                assert x.end <= y.start or y.end <= x.start, (x, y)


def test_float32_fields_are_word_aligned_and_slots_follow_the_datasheet() -> None:
    for f in m.FIELDS:
        if f.type.count == 2:
            assert f.address % 2 == 0, f
    for i, ch in enumerate(INPUTS):
        assert m.field(m.Table.INPUT, ch.name).address == m.SENSOR_VALUE_BASE + 2 * i
        assert m.field(m.Table.INPUT, ch.name + ".quality").address == m.SENSOR_QUALITY_BASE + i
    for k, ch in enumerate(OUTPUTS):
        assert m.field(m.Table.HOLDING, ch.name).address == m.ACTUATOR_BASE + 2 * k


PUBLISHED = {
    (m.Table.INPUT, "temperature_c"): 100, (m.Table.INPUT, "temperature_c.quality"): 156,
    (m.Table.INPUT, "glucose_mm.age_s"): 196, (m.Table.INPUT, "status"): 1,
    (m.Table.HOLDING, "heater_pct"): 100, (m.Table.HOLDING, "heartbeat"): 0,
    (m.Table.HOLDING, "comm_timeout_s"): 2,
    # version 2: the device's own hardware (moved by version 4)
    (m.Table.INPUT, "feed_delivered_ml"): 128, (m.Table.INPUT, "heater_cutout"): 144,
    (m.Table.INPUT, "device_uptime_s"): 148, (m.Table.INPUT, "device_uptime_s.quality"): 180,
    (m.Table.HOLDING, "heater_relay"): 112, (m.Table.HOLDING, "cutout_reset"): 1,
    # version 3: one master per device (the heartbeat register takes the session token)
    (m.Table.INPUT, "lease_holder"): 10,
    # version 4: product-quality assays, the blood-gas reference and the sampling totaliser
    (m.Table.INPUT, "cd34_pct"): 116, (m.Table.INPUT, "cd34_pct.age_s"): 200,
    (m.Table.INPUT, "cd34_cd90_pct"): 118, (m.Table.INPUT, "viability_pct"): 120,
    (m.Table.INPUT, "bga_ph"): 122, (m.Table.INPUT, "bga_po2_mmhg"): 124,
    (m.Table.INPUT, "bga_pco2_mmhg"): 126, (m.Table.INPUT, "bga_pco2_mmhg.age_s"): 210,
    (m.Table.INPUT, "bga_pco2_mmhg.quality"): 169, (m.Table.INPUT, "sampled_ml"): 134,
}
"""The addresses docs/modbus.md and field devices rely on: changing one is a breaking change
(bump MAP_VERSION)."""


def test_published_addresses() -> None:
    assert m.MAP_VERSION == 4
    assert m.LEASE_REFUSED == m.ExceptionCode.SERVER_DEVICE_BUSY
    assert {key: m.field(*key).address for key in PUBLISHED} == PUBLISHED
    assert m.CUTOUT_RESET_MAGIC == 0x5253
    assert m.Block(m.Table.INPUT, 100, 112) == m.SENSOR_BLOCK
    assert m.Block(m.Table.HOLDING, 100, 14) == m.ACTUATOR_BLOCK


def test_blocks_fit_one_request_and_cover_their_fields() -> None:
    for block, fields in ((m.SENSOR_BLOCK, m.SENSOR_FIELDS),
                          (m.ACTUATOR_BLOCK, m.ACTUATOR_FIELDS),
                          (m.DEVICE_BLOCK, m.DEVICE_INPUT_FIELDS)):
        assert 1 <= block.count <= m.MAX_READ_COUNT
        assert m.check_read(block.table, block.start, block.count) is None
        assert all(block.start <= f.address and f.end <= block.end for f in fields)


def test_word_order_with_a_known_value() -> None:
    assert m.encode_float32(37.0) == (0x4214, 0x0000)
    assert m.decode_float32(0x4214, 0x0000) == 37.0
    assert m.encode_float32(40.0) == (0x4220, 0x0000)
    assert m.encode(m.field(m.Table.INPUT, "requests"), 0x12345678) == [0x1234, 0x5678]
    assert m.decode(m.field(m.Table.INPUT, "requests"), [0x1234, 0x5678]) == 0x12345678


@given(st.floats(width=32, allow_nan=False))
def test_float32_round_trip(value: float) -> None:
    hi, lo = m.encode_float32(value)
    assert 0 <= hi <= 0xFFFF and 0 <= lo <= 0xFFFF
    assert m.decode_float32(hi, lo) == value
    assert struct.pack(">HH", hi, lo) == struct.pack(">f", value)


@given(st.floats(allow_nan=False))
def test_any_double_encodes_to_the_nearest_float32(value: float) -> None:
    back = m.to_float32(value)
    if math.isinf(back):
        assert abs(value) >= 3.4e38
    else:
        assert back == pytest.approx(value, rel=2 ** -23, abs=1.5e-45)


def test_nan_survives() -> None:
    assert m.encode_float32(math.nan) == (0x7FC0, 0x0000)
    assert math.isnan(m.decode_float32(0x7FC0, 0))


def test_block_round_trip_through_encode_span() -> None:
    values = {f.name: float(i) for i, f in enumerate(m.SENSOR_FIELDS)}
    regs = m.encode_span(m.Table.INPUT, m.SENSOR_BLOCK.start, m.SENSOR_BLOCK.count, values)
    assert m.decode_block(m.SENSOR_BLOCK, regs, m.SENSOR_FIELDS) == values
    # a span starting inside a float carries the low word only
    low = m.encode_span(m.Table.INPUT, 101, 1, {"temperature_c": 37.5})
    assert low == [m.encode_float32(37.5)[1]]


def test_access_rules() -> None:
    H, IN = m.Table.HOLDING, m.Table.INPUT
    E = m.ExceptionCode
    assert m.check_write(H, 100, 2) is None
    assert m.check_write(H, 100, 14) is None
    assert m.check_write(H, 0, 1) is None
    assert m.check_write(H, 100, 1) is E.ILLEGAL_DATA_ADDRESS   # half a float (high word)
    assert m.check_write(H, 101, 2) is E.ILLEGAL_DATA_ADDRESS   # straddles two floats
    assert m.check_write(H, 2, 2) is E.ILLEGAL_DATA_ADDRESS     # comm timeout is read-only
    assert m.check_write(H, 0, 2) is None                      # heartbeat + cut-out reset
    assert m.check_write(H, 1, 1) is None                      # cut-out reset alone
    assert m.check_write(H, 0, 3) is E.ILLEGAL_DATA_ADDRESS     # ... + half the comm timeout
    assert m.check_write(H, 4, 1) is E.ILLEGAL_DATA_ADDRESS     # reserved device register
    assert m.check_write(H, 114, 2) is E.ILLEGAL_DATA_ADDRESS   # reserved actuator slot
    assert m.check_write(H, 50, 2) is E.ILLEGAL_DATA_ADDRESS    # gap between areas
    assert m.check_write(IN, 100, 2) is E.ILLEGAL_FUNCTION
    assert m.check_read(IN, 101, 1) is None                    # half a float: fine to read
    assert m.check_read(IN, 100, 125) is None
    assert m.check_read(IN, 200, 40) is None                   # to the area's last register
    assert m.check_read(IN, 200, 41) is E.ILLEGAL_DATA_ADDRESS  # runs past the area
    assert m.check_read(IN, 10, 6) is None                     # reserved reads 0
    assert m.check_read(IN, 15, 2) is E.ILLEGAL_DATA_ADDRESS
    assert m.check_read(H, 0, 126) is E.ILLEGAL_DATA_VALUE


def test_write_runs_group_adjacent_setpoints() -> None:
    runs = m.write_runs(["base_ml_per_h", "heater_pct", "o2_pct", "feed_ml_per_h"])
    assert [(start, [f.name for f in fs]) for start, fs in runs] == [
        (100, ["heater_pct", "o2_pct"]), (106, ["feed_ml_per_h"]), (110, ["base_ml_per_h"])]
    assert len(m.write_runs([c.name for c in OUTPUTS])) == 1


def test_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="heater_pct"):
        m.field(m.Table.HOLDING, "nope")


def test_the_doc_tables_match_the_map() -> None:
    """docs/modbus.md lists every field at its address with its type and access."""
    doc = (REPO / "docs" / "modbus.md").read_text()
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in doc.splitlines() if line.startswith("| ")]
    for f in m.FIELDS:
        span = str(f.address) if f.count == 1 else f"{f.address}-{f.end - 1}"
        if f.name.endswith(m.QUALITY_SUFFIX):
            first = m.SENSOR_QUALITY_BASE
            span = f"{first}-{first + len(INPUTS) - 1}"
            name = "*channel*.quality"
        else:
            name = f.name
        matching = [r for r in rows if r[0] == span and name in r[1]]
        assert matching, f"docs/modbus.md has no row {span} | {name}"
        assert matching[0][3:5] == [f.type.value[0], f.access.value], (f.name, matching[0])
