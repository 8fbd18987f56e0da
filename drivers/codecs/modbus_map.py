"""The chamber's Modbus register map, as data derived from the datasheet.

Both sides use this module: the controller's Modbus driver to build requests and decode replies,
the emulated device's Modbus server to answer them, the tests to check both, and
docs/modbus.md describes it. Nothing here imports pymodbus: encoding is `struct`, so the map can be
tested, documented and reused (by a PLC program generator, say) without a Modbus stack.

Layout (0-based PDU addresses, as on the wire; tools that count from 1 add one):

- Input registers (FC4, read-only)
  - 0-15, device area: map version, status bits, device time, counters.
  - 100-239, sensor area: slot i (the i-th input channel of the datasheet) has its value as
    float32 at 100 + 2i, its quality code at 156 + i, and, for a sampled sensor, the age of the
    sample as float32 at 184 + 2i. Twenty-eight slots (25 used); the sampled channels sit in
    the low slots, so every value, quality and age is one FC4 read of at most 125 registers.
- Holding registers (FC3 read, FC6/FC16 write)
  - 0-15, device area: heartbeat at 0 (write the session token: takes the lease, feeds the
    watchdog; reads the count),
    the cut-out reset at 1 (write CUTOUT_RESET_MAGIC to re-arm the heater cut-out), the comm
    timeout (float32 seconds, read-only) at 2-3.
  - 100-139, actuator area: slot k (the k-th output channel) as float32 at 100 + 2k.

Slots follow datasheet order, so a channel added at the end of its group gets the next free slot
and no published address moves. Addresses inside an area that carry no field are reserved: they
read 0 and refuse writes. Addresses outside every area are illegal (exception 02).

Words: every 32-bit value is big-endian inside each register AND high word first (the register
with the lower address holds the most significant 16 bits), the "ABCD" order; mbpoll needs `-B`.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind

MAP_VERSION = 4
"""Bumped when a published address changes meaning; readable at input register 0.

4 (issue 12): the sensor area grows from 20 to 28 slots for the product-quality assays and the
blood-gas reference (6 sampled inputs after `lactate_mm`) and the `sampled_ml` totaliser (after
`base_delivered_ml`): the quality codes move from 140 to 156, the ages from 160 to 184, and every
device channel's slot moves up. A version-3 master would read qualities and ages in the wrong
places: it must refuse a version-4 device.

3 (issue 11): the heartbeat register takes the master's session token (one master per device:
a version-2 master writing a count would hold the lease with a new token on every heartbeat
and be refused), and input register 10 reports the lease holder.

2 (issue 10): sensor slots 8-17, actuator slot 6 and holding register 1 were reserved (read 0)
and now carry the device's own hardware. A reserved quality register reads 0, which is GOOD: a
version-1 device read with this map would report totalisers, cut-out and supply pressures as
good zeros, so a master must be able to tell the versions apart."""

CUTOUT_RESET_MAGIC = 0x5253
"""The value ("RS" in ASCII) that, written to `cutout_reset`, re-arms the heater cut-out; any
other value is refused (ILLEGAL_DATA_VALUE), so a stray write cannot re-arm it."""

WORD_ORDER = "big"
"""High word first (ABCD), as pymodbus' `convert_*_registers(word_order="big")` default."""

MAX_READ_COUNT = 125
"""Modbus limit on registers per FC3/FC4 request."""


class Table(Enum):
    """The two register tables the chamber uses; each has its own address space."""

    INPUT = "input"
    HOLDING = "holding"

    @property
    def read_function(self) -> int:
        return 4 if self is Table.INPUT else 3


class RegType(Enum):
    """A field's encoding: (name, registers, struct format of the big-endian bytes)."""

    UINT16 = ("uint16", 1, ">H")
    UINT32 = ("uint32", 2, ">I")
    FLOAT32 = ("float32", 2, ">f")

    @property
    def count(self) -> int:
        return self.value[1]

    @property
    def fmt(self) -> str:
        return self.value[2]


class Access(Enum):
    READ = "R"
    READ_WRITE = "RW"
    WRITE = "W"
    """A command register: a write acts, a read returns 0."""


class ExceptionCode(IntEnum):
    """Modbus exception codes (the byte after function code | 0x80 in an exception reply)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_FAILED = 0x0B


LEASE_REFUSED = ExceptionCode.SERVER_DEVICE_BUSY
"""The exception a device answers a heartbeat or a control write with while another master's
session holds its lease ("busy: retry later"; the lease ends with that master's heartbeats)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One value in the map: where it lives, how it is encoded, who may write it."""

    name: str
    table: Table
    address: int
    type: RegType
    access: Access
    unit: str = ""
    description: str = ""
    channel: str | None = None
    """The datasheet channel this field belongs to, if any."""

    @property
    def count(self) -> int:
        return self.type.count

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.type.count

    @property
    def writable(self) -> bool:
        return self.access is not Access.READ


@dataclass(frozen=True, slots=True)
class Area:
    """A run of addresses that are legal to access; fields live inside areas, gaps between."""

    table: Table
    name: str
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def contains(self, address: int, count: int = 1) -> bool:
        return self.start <= address and address + count <= self.end


@dataclass(frozen=True, slots=True)
class Block:
    """A contiguous span one request covers (a driver reads it with a single FC3/FC4)."""

    table: Table
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


# ------------------------------------------------------------------------------- the layout
DEVICE_AREA_SIZE = 16
SENSOR_SLOTS = 28
SENSOR_VALUE_BASE = 100
SENSOR_QUALITY_BASE = SENSOR_VALUE_BASE + 2 * SENSOR_SLOTS  # 156
SENSOR_AGE_BASE = SENSOR_QUALITY_BASE + SENSOR_SLOTS  # 184
ACTUATOR_SLOTS = 20
ACTUATOR_BASE = 100

HEARTBEAT = "heartbeat"
LEASE_HOLDER = "lease_holder"
CUTOUT_RESET = "cutout_reset"
COMM_TIMEOUT = "comm_timeout_s"
STATUS = "status"
QUALITY_SUFFIX = ".quality"
AGE_SUFFIX = ".age_s"

AREAS: tuple[Area, ...] = (
    Area(Table.INPUT, "device", 0, DEVICE_AREA_SIZE),
    Area(Table.INPUT, "sensors", SENSOR_VALUE_BASE, SENSOR_AGE_BASE + 2 * SENSOR_SLOTS
         - SENSOR_VALUE_BASE),
    Area(Table.HOLDING, "device", 0, DEVICE_AREA_SIZE),
    Area(Table.HOLDING, "actuators", ACTUATOR_BASE, 2 * ACTUATOR_SLOTS),
)

_R, _RW, _W = Access.READ, Access.READ_WRITE, Access.WRITE
_IN, _HOLD = Table.INPUT, Table.HOLDING
_U16, _U32, _F32 = RegType.UINT16, RegType.UINT32, RegType.FLOAT32

_DEVICE_FIELDS: tuple[Field, ...] = (
    Field("map_version", _IN, 0, _U16, _R, "", "layout version of this map"),
    Field(STATUS, _IN, 1, _U16, _R, "bits", "DeviceStatus bits"),
    Field("device_time_s", _IN, 2, _U32, _R, "s", "device clock, whole seconds"),
    Field("device_time_ms", _IN, 4, _U16, _R, "ms", "device clock, milliseconds (0-999)"),
    Field("watchdog_trips", _IN, 5, _U16, _R, "", "comm-loss trips to the safe state"),
    Field("requests", _IN, 6, _U32, _R, "", "requests received, this one included"),
    Field("exception_replies", _IN, 8, _U32, _R, "", "exception replies sent"),
    Field(LEASE_HOLDER, _IN, 10, _U16, _R, "",
          "session token holding the device's lease, 0 when none (lapsed or never taken)"),
    Field(HEARTBEAT, _HOLD, 0, _U16, _RW, "",
          "write the master's session token (1-65535): takes or renews the lease and feeds "
          "the comm watchdog; exception 06 while another session holds it; reads the "
          "heartbeat count (mod 65536)"),
    Field(CUTOUT_RESET, _HOLD, 1, _U16, _W, "",
          f"write {CUTOUT_RESET_MAGIC:#06x} to re-arm the heater cut-out (exception 01 while "
          "the chamber is too hot); reads 0"),
    Field(COMM_TIMEOUT, _HOLD, 2, _F32, _R, "s",
          "wall seconds without a heartbeat before the safe state (set on the device)"),
)


def _channel_fields() -> tuple[Field, ...]:
    if len(INPUTS) > SENSOR_SLOTS or len(OUTPUTS) > ACTUATOR_SLOTS:
        raise ValueError(f"the datasheet has {len(INPUTS)} inputs and {len(OUTPUTS)} outputs; "
                         f"the map has slots for {SENSOR_SLOTS} and {ACTUATOR_SLOTS}")
    fields: list[Field] = []
    for i, ch in enumerate(INPUTS):
        fields.append(Field(ch.name, _IN, SENSOR_VALUE_BASE + 2 * i, _F32, _R, ch.unit,
                            ch.description, ch.name))
        fields.append(Field(ch.name + QUALITY_SUFFIX, _IN, SENSOR_QUALITY_BASE + i, _U16, _R,
                            "", "Quality code (0 GOOD ... 4 COMM_ERROR)", ch.name))
        if ch.kind is Kind.SAMPLED:
            fields.append(Field(ch.name + AGE_SUFFIX, _IN, SENSOR_AGE_BASE + 2 * i, _F32, _R,
                                "s", "device seconds since the sample was drawn", ch.name))
    for k, ch in enumerate(OUTPUTS):
        fields.append(Field(ch.name, _HOLD, ACTUATOR_BASE + 2 * k, _F32, _RW, ch.unit,
                            ch.description, ch.name))
    return tuple(fields)


FIELDS: tuple[Field, ...] = _DEVICE_FIELDS + _channel_fields()
"""Every field of the map, device fields first, then channel fields in datasheet order."""

_BY_KEY: dict[tuple[Table, str], Field] = {(f.table, f.name): f for f in FIELDS}


def field(table: Table, name: str) -> Field:
    """The field `name` of `table`; a KeyError listing the table's names otherwise."""
    try:
        return _BY_KEY[(table, name)]
    except KeyError:
        known = ", ".join(f.name for f in FIELDS if f.table is table)
        raise KeyError(f"no {table.value} register field {name!r}; known: {known}") from None


def _span(fields: Iterable[Field], table: Table) -> Block:
    chosen = [f for f in fields if f.table is table]
    start = min(f.address for f in chosen)
    return Block(table, start, max(f.end for f in chosen) - start)


SENSOR_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.table is _IN and f.channel)
ACTUATOR_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.table is _HOLD and f.channel)
DEVICE_INPUT_FIELDS: tuple[Field, ...] = tuple(
    f for f in _DEVICE_FIELDS if f.table is _IN)

SENSOR_BLOCK = _span(SENSOR_FIELDS, _IN)
"""Every sensor value, quality and age: one FC4 request (100, 112 registers today)."""
if SENSOR_BLOCK.count > MAX_READ_COUNT:
    raise ValueError(f"the sensor block needs {SENSOR_BLOCK.count} registers, more than one "
                     f"read's {MAX_READ_COUNT}: keep the sampled channels in the low slots")
ACTUATOR_BLOCK = _span(ACTUATOR_FIELDS, _HOLD)
"""Every actuator setpoint: one FC3 request."""
DEVICE_BLOCK = _span(DEVICE_INPUT_FIELDS, _IN)
"""Status, device time and counters: one FC4 request."""

REGISTER_SPACE = max(a.end for a in AREAS)
"""Addresses 0 .. REGISTER_SPACE-1 cover every area of both tables."""


# ------------------------------------------------------------------------------- encoding
def encode_float32(value: float) -> tuple[int, int]:
    """IEEE-754 single, high word first. Finite values beyond float32 become +-inf, as a
    float32 conversion in C would, rather than raising."""
    try:
        raw = struct.pack(">f", value)
    except OverflowError:
        raw = struct.pack(">f", math.copysign(math.inf, value))
    hi, lo = struct.unpack(">HH", raw)
    return hi, lo


def decode_float32(hi: int, lo: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


def to_float32(value: float) -> float:
    """`value` as the float32 the wire carries (what a device will hold)."""
    return decode_float32(*encode_float32(value))


def encode(f: Field, value: float) -> list[int]:
    """Registers of `value` in field `f` (integers are masked to the field's width)."""
    if f.type is RegType.FLOAT32:
        return list(encode_float32(value))
    if f.type is RegType.UINT32:
        v = int(value) & 0xFFFFFFFF
        return [v >> 16, v & 0xFFFF]
    return [int(value) & 0xFFFF]


def decode(f: Field, registers: Sequence[int]) -> float | int:
    """The value of field `f` from its registers (exactly `f.count` of them)."""
    if len(registers) != f.count:
        raise ValueError(f"{f.name}: needs {f.count} registers, got {len(registers)}")
    if f.type is RegType.FLOAT32:
        return decode_float32(registers[0], registers[1])
    if f.type is RegType.UINT32:
        return (registers[0] << 16) | registers[1]
    return registers[0]


def decode_block(block: Block, registers: Sequence[int],
                 fields: Iterable[Field]) -> dict[str, float | int]:
    """Decode `fields` (all inside `block`) from a read of `block`."""
    if len(registers) != block.count:
        raise ValueError(f"block at {block.start} needs {block.count} registers, "
                         f"got {len(registers)}")
    out: dict[str, float | int] = {}
    for f in fields:
        if f.table is not block.table or f.address < block.start or f.end > block.end:
            raise ValueError(f"{f.name} ({f.table.value} {f.address}) is outside the block")
        offset = f.address - block.start
        out[f.name] = decode(f, registers[offset:offset + f.count])
    return out


def encode_span(table: Table, address: int, count: int,
                values: Mapping[str, float | int]) -> list[int]:
    """The registers `address .. address+count-1` of `table` holding `values` (by field name).

    Registers of fields not in `values`, and reserved registers, are 0; a field cut by the span
    contributes the registers inside it (a read may start in the middle of a float).
    """
    image = [0] * count
    end = address + count
    for f in fields_in(table, address, count):
        if f.name not in values:
            continue
        for j, reg in enumerate(encode(f, values[f.name])):
            a = f.address + j
            if address <= a < end:
                image[a - address] = reg
    return image


# ------------------------------------------------------------------------------- access rules
def fields_in(table: Table, address: int, count: int) -> list[Field]:
    """Fields of `table` with at least one register in `address .. address+count-1`."""
    end = address + count
    return [f for f in FIELDS if f.table is table and f.address < end and address < f.end]


def check_read(table: Table, address: int, count: int) -> ExceptionCode | None:
    """None if every register of the span lies inside an area of `table`.

    Reads may start or stop inside a float32 pair (harmless, and what 16-bit tools do).
    """
    if not 1 <= count <= MAX_READ_COUNT:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if not _inside_areas(table, address, count):
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    return None


def check_write(table: Table, address: int, count: int) -> ExceptionCode | None:
    """None if a write of `count` registers at `address` is allowed.

    ILLEGAL_DATA_ADDRESS when the span leaves the areas, touches a read-only or reserved
    register, or covers only half of a float32 (half a setpoint is never applied).
    """
    if table is not Table.HOLDING:
        return ExceptionCode.ILLEGAL_FUNCTION
    if count < 1 or not _inside_areas(table, address, count):
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    end = address + count
    covered = 0
    for f in fields_in(table, address, count):
        if not f.writable or f.address < address or f.end > end:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        covered += f.count
    if covered != count:  # some register of the span is reserved
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    return None


def _inside_areas(table: Table, address: int, count: int) -> bool:
    end = address + count
    a = address
    while a < end:
        area = next((x for x in AREAS if x.table is table and x.start <= a < x.end), None)
        if area is None:
            return False
        a = area.end
    return True


def write_runs(names: Iterable[str]) -> list[tuple[int, list[Field]]]:
    """Actuator fields for `names` grouped into runs of adjacent registers, ascending.

    One FC16 per run writes exactly the channels asked for and nothing else.
    """
    chosen = sorted((field(Table.HOLDING, n) for n in names), key=lambda f: f.address)
    runs: list[tuple[int, list[Field]]] = []
    for f in chosen:
        if runs and runs[-1][1][-1].end == f.address:
            runs[-1][1].append(f)
        else:
            runs.append((f.address, [f]))
    return runs
