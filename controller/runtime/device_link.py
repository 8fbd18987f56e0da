"""One reactor's side of its device link: every driver call the tick makes, and what each failure
means for the tick, the records and the alarms.

The tick never sees a DriverError: a failed read becomes readings of COMM_ERROR quality (the
loops hold), a failed write is retried on the next tick, and every failure is counted and on
record. The alarm board judges the link from what this object keeps (`healthy`,
`read_failure_share`), so a flaky link raises one alarm, not one per frame.

The journal records spells, not failures: one `comm` event when failures start and one when
they end (SPELL_QUIET_S without a failure), with how many operations of each kind failed and
why; an outage of an hour, or a link dropping one frame in ten, is two rows, not one per
operation per tick. What the link absorbed without
failing (attempt timeouts, late replies, resends: the driver's `link_faults`) is counted too,
and a tick that needed any of them counts as a failed one for the comm_errors alarm: a slow
link is seen before it fails outright.

One master per device: a device whose lease another controller session holds refuses this one's
heartbeats and writes (DeviceHeldError). That is the high-priority alarm `device_held` and one
console line, not a comm failure per tick: writes wait (they would only be refused), reads go
on, and the heartbeat keeps asking, so control is taken the moment the other session's lease
lapses (docs/modbus.md, docs/serial-protocol.md).
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from controller.clock import Clock
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from drivers.contract.datasheet import INPUTS
from drivers.contract.driver import Driver
from drivers.contract.errors import (
    CommTimeoutError,
    ConnectionLostError,
    DeviceHeldError,
    DriverError,
    FrameError,
    ReadbackError,
)
from drivers.contract.reading import Quality, Reading
from drivers.contract.status import DeviceStatus

log = structlog.get_logger(__name__)

HEARTBEAT_PERIOD_S = 1.0
SPELL_QUIET_S = 30.0
"""A failure spell ends once reads have got through for this long with no failure: a link that
fails again sooner is still the same spell (as comm_loss's 30 s on-delay judges it)."""
HELD_ALARM = "device_held"
HELD_PRIORITY = "high"
"""Another controller drives the process and this one's loops do not: not critical (the device
is controlled, and its watchdog guards the other session), but an operator must act now."""
KEEP_ALIVE_WALL_S = HEARTBEAT_PERIOD_S
"""Wall seconds between heartbeats at most when the ticks are further apart: the device's
watchdog counts wall time, so a scaled clock's fast ticks beat often enough by themselves,
and this adds none to them."""
SILENCE_CHECKED_WALL_S = 2.5
"""[est] Wall seconds without a heartbeat through after which the device's status is read
before the next: a device's watchdog fires after its own comm timeout (the emulator's default
5 s), which the controller does not know, so it asks after any silence of more than two beats
and a half (at speed 1; a slower clock spaces the beats wider)."""
WENT_SAFE_ALARM = "device_went_safe"
WENT_SAFE_PRIORITY = "medium"
"""The culture went without heat, gas and feed for a while and control is back: an operator
should learn why the heartbeats stopped (a stalled host, a link), not act at once."""
LINK_ERRORS = (ConnectionLostError, CommTimeoutError, FrameError)
"""Errors that mean the link is down or unusable (as opposed to a device refusing a value)."""


@dataclass
class ReactorCounters:
    """Run-long counts, carried across a crash by the checkpoint."""

    ticks: int = 0
    read_errors: int = 0
    write_errors: int = 0
    tick_errors: int = 0
    comm_losses: int = 0
    skipped_ticks: int = 0
    restarts: int = 0
    comm_timeouts: int = 0
    """Request attempts the device did not answer in time (some were re-sent and answered)."""
    late_replies: int = 0
    """Replies that came after their request was given up: counted, never used."""
    comm_retries: int = 0
    """Requests the driver re-sent after a timeout or a garbled reply."""


LINK_FAULTS = {"timeouts": "comm_timeouts", "replies_stale": "late_replies",
               "retries": "comm_retries"}
"""The driver's `link_faults` keys and the ReactorCounters they add to."""


@dataclass
class FailureSpell:
    """A run of failed operations, from the first failure to the first tick without one."""

    started_s: float
    failed: Counter[str] = field(default_factory=Counter)
    """Failed operations by kind (read, write, heartbeat)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed operations by error type."""
    recovered_s: float | None = None
    """When a read first got through after the last failure; None while failing."""


class DeviceLink:
    def __init__(self, driver: Driver, clock: Clock, journal: ReactorJournal,
                 counters: ReactorCounters, *, control_period_s: float,
                 outside: OutsideAlarms) -> None:
        self.driver = driver
        self._outside = outside
        self.held = False
        """Another controller session holds the device: writes wait, heartbeats ask."""
        self._clock = clock
        self._journal = journal
        self._counters = counters
        self._period_s = control_period_s
        self.written: dict[str, float] = {}
        """What the device holds as far as the controller knows; emptied after an outage, so
        every output is written afresh (the device may have gone to its own safe state)."""
        self.comm_ok = True
        """The link is up (no link error since the last successful read)."""
        self.read_ok = True
        """The last read succeeded (a device can answer with exceptions on a good link)."""
        self.unhealthy_since_s: float | None = None
        """When the operation that made the link unhealthy started (None while healthy): the
        comm_loss alarm's on-delay counts from the failure, not from the first tick that got
        to judge it after waiting out the failure's deadline."""
        self._read_failures: deque[float] = deque(maxlen=100_000)
        self._refusals_logged: set[tuple[str, str]] = set()
        self._last_readback_error = ""
        self.next_heartbeat_s = float("-inf")
        self._safe_trip_reported = False
        self.heartbeat_sent_wall_s = float("-inf")
        """When a heartbeat was last sent (wall clock), through or not: `Reactor.keep_alive`
        sends one between ticks once a KEEP_ALIVE_WALL_S has passed without."""
        self._last_heartbeat_wall_s = float("inf")
        """When a heartbeat last got through (wall clock); none yet: a run's start reads the
        status itself (Reactor.start)."""
        self.spell: FailureSpell | None = None
        self._link_faults_seen: dict[str, int] = {}
        self._comm_failed_readings: dict[str, Reading] = {
            c.name: Reading(float("nan"), c.unit, 0.0, Quality.COMM_ERROR) for c in INPUTS
        }

    @property
    def reactor_id(self) -> str:
        return self._journal.reactor_id

    @property
    def healthy(self) -> bool:
        """For the board's comm_loss alarm: the link is up and the last read got through."""
        return self.comm_ok and self.read_ok

    @property
    def comm_failed_readings(self) -> dict[str, Reading]:
        """Every input at COMM_ERROR quality: what a tick sees of a device it cannot use."""
        return self._comm_failed_readings

    async def connect(self) -> dict[str, float]:
        """Connect and learn what every output holds now (the loops start from it). A device
        held by another session is connected to all the same: it is read, and asked again with
        every heartbeat."""
        try:
            await self.driver.connect()
        except DeviceHeldError as exc:
            self._held(self._clock.now(), exc)
        self.written = await self.driver.read_outputs()
        return self.written

    async def read_status(self, now: float) -> DeviceStatus | None:
        """The device's status bits, or None when it reports none or the read fails (logged:
        the status is then unknown). Read at a restart, before the first heartbeat clears
        COMM_LOSS_SAFE; never on the tick."""
        try:
            return await self.driver.read_status()
        except (DriverError, ValueError) as exc:
            log.warning("device status unknown: read failed", reactor=self.reactor_id, t_s=now,
                        error=repr(exc))
            return None

    async def read(self, now: float) -> dict[str, Reading]:
        try:
            readings = await self.driver.read()
        except DriverError as exc:
            self._counters.read_errors += 1
            self.read_ok = False
            if self.unhealthy_since_s is None:
                self.unhealthy_since_s = now
            self._read_failures.append(now)
            self._failed(now, "read", exc)
            if not self.comm_ok:  # no heartbeat counts them while the link is down
                self._count_link_faults(now)
            return self._comm_failed_readings
        self.read_ok = True
        self.unhealthy_since_s = None
        if self._refusals_logged:
            self._refusals_logged.clear()
        if not self.comm_ok:
            self.comm_ok = True
            log.warning("comm restored", reactor=self.reactor_id, t_s=now)
        spell = self.spell
        if spell is not None:
            if spell.recovered_s is None:
                spell.recovered_s = now
            elif now - spell.recovered_s >= SPELL_QUIET_S:
                self.end_spell(now)
        return readings

    async def write_changed(self, outputs: Mapping[str, float], now: float) -> None:
        """Write the outputs whose value differs from what the device holds."""
        written = self.written
        changed = {name: value for name, value in outputs.items() if written.get(name) != value}
        if not changed or self.held:
            return
        try:
            await self.driver.write(changed)
        except DeviceHeldError as exc:
            self._held(now, exc)
            return
        except ReadbackError as exc:
            # The device took the value but holds a limited one (gas mix over 100 %, a pump
            # slower than its datasheet). Resending would fail the same way every tick: record
            # it once per kind of mismatch and treat the value as sent.
            self._counters.write_errors += 1
            if str(exc) != self._last_readback_error:
                self._last_readback_error = str(exc)
                log.warning("write limited by the device", reactor=self.reactor_id, t_s=now,
                            error=str(exc))
                self._journal.event(now, "device", f"write limited: {exc}", {"outputs": changed})
        except DriverError as exc:
            self._counters.write_errors += 1
            self._failed(now, "write", exc)
            return  # not marked written: retried next tick
        else:
            self._last_readback_error = ""
        written.update(changed)

    def forget_written(self) -> None:
        """The device lost what it held (it rebooted): every output is written afresh."""
        self.written = {}

    async def heartbeat(self, now: float) -> None:
        """Feed the device's comm watchdog; due again HEARTBEAT_PERIOD_S later
        (`next_heartbeat_s`, checked by the tick so an idle tick costs no call). After a
        silence long enough for the watchdog to have fired, its status is read first: the
        heartbeat clears what it says."""
        self.next_heartbeat_s = now + HEARTBEAT_PERIOD_S
        wall_s = self.heartbeat_sent_wall_s = self._clock.wall_monotonic()
        silent_s = wall_s - self._last_heartbeat_wall_s
        if silent_s > SILENCE_CHECKED_WALL_S:
            await self._check_watchdog(now, silent_s)
        try:
            await self.driver.heartbeat()
        except DeviceHeldError as exc:
            self._held(now, exc)
        except DriverError as exc:
            self._failed(now, "heartbeat", exc)
        else:
            self._last_heartbeat_wall_s = wall_s
            self._safe_trip_reported = False  # a heartbeat through clears the device's trip
            if self.held:
                self._released(now)
        self._count_link_faults(now)

    async def _check_watchdog(self, now: float, silent_s: float) -> None:
        """The device's watchdog took it to its safe state while no heartbeat reached it (the
        controller stalled, or the link was down): what the controller believes the device
        holds is wrong, and outputs it does not change (a pump's constant rate, the heater's
        closed relay) would stay at their safe values. So every output is written afresh,
        and the trip is on record and alarmed."""
        status = await self.read_status(now)
        if status is None or not status & DeviceStatus.COMM_LOSS_SAFE:
            return
        self.written = {}
        if self._safe_trip_reported:  # the heartbeat after the last look failed: the same trip
            return
        self._safe_trip_reported = True
        message = (f"device went to its safe state: no heartbeat reached it for "
                   f"{silent_s:.1f} s (its comm-loss watchdog); every output is written again")
        log.warning(message, reactor=self.reactor_id, t_s=now)
        self._journal.event(now, "device", message, {"silent_wall_s": round(silent_s, 3)})
        self._outside.set(now, WENT_SAFE_ALARM, active=True, priority=WENT_SAFE_PRIORITY,
                          message=message)

    def _count_link_faults(self, now: float) -> None:
        """Add what the link absorbed since the last heartbeat to the counters; if it absorbed
        anything while reads succeed, this tick counts as a failed one for comm_errors."""
        absorbed = 0
        for key, now_n in self.driver.link_faults().items():
            seen = self._link_faults_seen.get(key, 0)
            delta = now_n - seen if now_n >= seen else now_n  # a rebuilt driver starts at 0
            self._link_faults_seen[key] = now_n
            setattr(self._counters, LINK_FAULTS[key],
                    getattr(self._counters, LINK_FAULTS[key]) + delta)
            absorbed += delta
        if absorbed and self.read_ok:
            self._read_failures.append(now)

    def _held(self, now: float, exc: DeviceHeldError) -> None:
        """Once per spell: another session holds the device."""
        if self.held:
            return
        self.held = True
        message = f"device held by another controller: {exc}; retrying every heartbeat"
        log.error("device held by another controller: this controller does not drive it",
                  reactor=self.reactor_id, t_s=now, error=str(exc))
        self._outside.set(now, HELD_ALARM, active=True, priority=HELD_PRIORITY, message=message)

    def _released(self, now: float) -> None:
        """The other session's lease lapsed and ours took it: every output is written afresh
        (the device went to its safe state when the other session fell silent)."""
        self.held = False
        self.written = {}
        log.warning("device control taken: the other controller's lease lapsed",
                    reactor=self.reactor_id, t_s=now)
        self._outside.set(now, HELD_ALARM, active=False, priority=HELD_PRIORITY,
                          message="device control taken: the other controller's lease lapsed")

    def read_failure_share(self, window_s: float) -> float:
        """The share of ticks over the last `window_s` whose read failed or whose link needed
        a resend, a late reply or a timeout (one read per tick)."""
        since = self._clock.now() - window_s
        failed = 0
        for t_s in reversed(self._read_failures):
            if t_s < since:
                break
            failed += 1
        return min(failed * self._period_s / window_s, 1.0)

    async def go_safe(self, safe_state: Mapping[str, float], reason: str) -> None:
        """Put every actuator in its safe state, then release the device."""
        now = self._clock.now()
        try:
            await self.driver.write(safe_state)
            self.written.update(safe_state)
            self._journal.event(now, "safe_state", f"safe state: {reason}", dict(safe_state))
        except DriverError as exc:
            self._counters.write_errors += 1
            log.error("safe state write failed", reactor=self.reactor_id, error=str(exc))
            self._journal.event(now, "error", f"safe state failed: {exc}")
        finally:
            self.end_spell(now)
            await self.driver.close()

    def end_spell(self, now: float) -> None:
        """Close the failure spell, if one is open, with its counts: one event for the whole
        spell, lasting from its first failure to the first good read after its last."""
        spell = self.spell
        if spell is None:
            return
        self.spell = None
        until_s = now if spell.recovered_s is None else spell.recovered_s
        how = "comm still failing at the end" if spell.recovered_s is None else "comm restored"
        counts = ", ".join(f"{what} {n}" for what, n in sorted(spell.failed.items()))
        self._journal.event(
            now, "comm", f"{how}: {spell.failed.total()} failed operations over "
            f"{until_s - spell.started_s:g} s ({counts})",
            {"link": "up" if self.comm_ok else "down", "spell_started_t_s": spell.started_s,
             "recovered_t_s": spell.recovered_s, "failed": dict(spell.failed),
             "errors": dict(spell.errors)})

    def _failed(self, now: float, what: str, exc: DriverError) -> None:
        """Count the failure in its spell; the first one starts the spell on record. A link
        error marks the link down; a refusal is logged once until a read gets through, not
        once per tick of a device answering "busy" for hours."""
        spell = self.spell
        if spell is None:
            spell = self.spell = FailureSpell(now)
            link = "down" if isinstance(exc, LINK_ERRORS) else "refusing"
            self._journal.event(now, "comm", f"comm {'loss' if link == 'down' else 'failing'}: "
                                f"{what} failed: {exc}",
                                {"link": link, "operation": what, "error": type(exc).__name__})
        spell.failed[what] += 1
        spell.recovered_s = None
        spell.errors[type(exc).__name__] += 1
        if isinstance(exc, LINK_ERRORS):
            self.written = {}
            if self.comm_ok:
                self.comm_ok = False
                if self.unhealthy_since_s is None:
                    self.unhealthy_since_s = now
                self._counters.comm_losses += 1
                # Logged, not alarmed: the board's comm_loss (30 s on-delay) and comm_errors
                # alarms judge the link, so a flaky one is not an alarm per frame.
                log.error("comm loss", reactor=self.reactor_id, t_s=now, error=str(exc))
        elif (what, str(exc)) not in self._refusals_logged:
            self._refusals_logged.add((what, str(exc)))
            log.warning(f"{what} failed (logged once until a read succeeds)",
                        reactor=self.reactor_id, t_s=now, error=str(exc))
