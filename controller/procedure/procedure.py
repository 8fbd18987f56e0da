"""The running recipe: which phase, in which state, and what it asks of the reactor this tick.

Pure logic, given the judged readings and the run clock's time each tick (`step`), and operator
commands and alarm news between ticks. It owns no actuator: `step` returns a `RecipeStep` (the
pump rates, boluses to give, loop settings on a phase's entry) that the reactor hands to the
feed schedule and the loops, so every output still passes through the interlocks after it.

Time in a phase (`phase_time`) counts only the ticks it ran: a hold, or a controller outage,
stops it, so a phase of "2 days of perfusion" gives two days of perfusion. Everything that
position depends on (state, phase, its time, the hold-timers, the dilution loop's output, the
boluses given, the phases so far) is in `snapshot()`, written with the feed ledger in one
checkpoint, so a bolus is never given twice (docs/recipes.md, "Durability").
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from controller.config.conditions import uses_confirmation
from controller.config.recipe import PhaseBolus, PhaseConfig, PhaseLoop, RecipeConfig
from controller.procedure.exits import ExitWatch
from controller.procedure.feeding import Feeding
from controller.procedure.states import (
    ADVANCING,
    PAUSED,
    SETTLES,
    TRANSITIONS,
    State,
    target,
)
from drivers.contract.reading import Reading

_IDLE, _RUNNING, _RESTARTING = State.IDLE, State.RUNNING, State.RESTARTING
"""The states `step` tests every tick, read once: an enum member read through its class costs
a metaclass lookup (~0.15 us in 3.11)."""

CONFIRM = "confirm"
RUN_ACTIONS = ("start", "restart")
"""Commands that set the recipe running: refused while something it would hold for stands."""


@dataclass(frozen=True, slots=True)
class BolusOrder:
    """A phase's bolus, due now."""

    id: str
    channel: str
    volume_ml: float
    rate_ml_per_h: float | None


@dataclass(slots=True)
class PhaseRecord:
    name: str
    index: int
    started_s: float
    ended_s: float | None = None
    ended_by: str | None = None


NO_SETTINGS: Mapping[str, PhaseLoop] = MappingProxyType({})

Standing = tuple[Iterable[tuple[str, str]], Iterable[str]]
"""What stands now: the standing alarms (name, priority) and the tripped interlocks' names."""


@dataclass(frozen=True, slots=True)
class RecipeStep:
    """What the recipe asks of the reactor this tick."""

    rates: Mapping[str, float]
    """Base pump rates (mL/h) in place of a schedule's perfusion profile."""
    boluses_wait: bool
    """Boluses neither start nor pump (held, stopped, aborted, ...); none is dropped."""
    boluses: list[BolusOrder]
    loop_settings: Mapping[str, PhaseLoop]
    """On a phase's entry: the loops' setpoints and modes it sets (else empty)."""


class Procedure:
    def __init__(self, config: RecipeConfig, safe_rates: Mapping[str, float],
                 standing: Callable[[], Standing] | None = None) -> None:
        """`safe_rates`: the reactor's safe pump rates, applied on abort. `standing`: what
        stands now, asked as a phase begins (the reactor's alarms and interlocks)."""
        self.config = config
        self._standing_now = standing
        self._safe_rates = dict(safe_rates)
        self.state = State.IDLE
        self.phase_index: int | None = None
        self.history: list[PhaseRecord] = []
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        """(t_s, message, data) since the runtime last emptied it: transitions, on record."""
        self.phase_time_s = 0.0
        self._last_running_s: float | None = None
        self._entered_s = float("-inf")
        """When the state was entered: an acting state completes at a later tick."""
        self._watch: ExitWatch | None = None
        self._feeding: Feeding | None = None
        self._given = 0
        """Boluses of this phase given so far (its boluses in order of `after`)."""
        self._boluses: list[PhaseBolus] = []
        """The running phase's boluses in order of `after`."""
        self._hold_rates = {phase.name: phase.hold.model_dump() for phase in config.phase}
        self._boluses_ordered = 0
        self.confirmed = False
        self._started = False
        self._settings_due = False
        """A phase was entered: its loop settings go out with the next step."""
        self._entered_now = False
        """A phase was entered in this step: what stands is checked against its reactions."""
        self._telemetry: dict[str, Any] = {}
        self._update_telemetry()
        self._quiet_step: RecipeStep | None = None
        """The last step that asked for no bolus and no loop settings (see `step`)."""

    # --- what others read --------------------------------------------------------------------
    @property
    def phase(self) -> PhaseConfig | None:
        return None if self.phase_index is None else self.config.phase[self.phase_index]

    @property
    def telemetry(self) -> dict[str, Any]:
        """`{"state", "phase"}` for every telemetry message (the same dict until it changes)."""
        return self._telemetry

    def summary(self) -> dict[str, Any]:
        return {"name": self.config.name, "state": self.state.value,
                "phase": None if self.phase is None else self.phase.name,
                "phases": [{"name": r.name, "started_s": r.started_s, "ended_s": r.ended_s,
                            "ended_by": r.ended_by} for r in self.history]}

    # --- commands and reactions (between ticks) ----------------------------------------------
    def command(self, action: str, now_s: float, by: str, reason: str = "",
                standing: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        """An operator's command: (before, after); a ValueError saying why it is refused.

        `standing`: what the running phase would hold or abort for that stands now (see
        `standing`); `start` and `restart` are refused while there is any. Reactions act on
        an alarm as it is raised, so a recipe restarted under a critical alarm still standing
        would otherwise run on under it, and the next such alarm would hold it again at once.
        """
        before = dict(self._telemetry)
        blocking = list(standing) if action in RUN_ACTIONS else []
        if blocking and self.state in TRANSITIONS.get(action, {}):
            raise ValueError(
                f"{action} refused: {'; '.join(blocking)} still stands and the phase would "
                "hold for it; clear it, shelve the alarm or reset the interlock first")
        if action == CONFIRM:
            self._confirm(now_s, by)
        else:
            self._move(target(action, self.state), now_s, f"operator:{by}",
                       f"{action} by {by}" + (f": {reason}" if reason else ""))
        return before, dict(self._telemetry)

    def _confirm(self, now_s: float, by: str) -> None:
        phase = self.phase
        if self.state is not State.RUNNING or phase is None:
            raise ValueError(f"confirm is for a running phase; the recipe is {self.state.value}")
        if not any(uses_confirmation(e.condition) for e in phase.exit):
            raise ValueError(f"phase {phase.name!r} waits for no confirmation (none of its "
                             "exits reads `confirmed`)")
        if self.confirmed:
            raise ValueError(f"phase {phase.name!r} is already confirmed")
        self.confirmed = True
        self._event(now_s, f"recipe phase {phase.name} confirmed by {by}",
                    {"event": "confirmed", "phase": phase.name, "by": f"operator:{by}"})

    def standing(self, alarms: Iterable[tuple[str, str]],
                 interlocks: Iterable[str]) -> list[str]:
        """Of the standing alarms (name, priority) and tripped interlocks, those the present
        phase (the first before the recipe starts) would hold or abort for, in words."""
        return [f"{priority} alarm {name} (on_alarm.{priority} = {reaction})"
                if kind == "alarm" else f"interlock {name} (on_interlock = {reaction})"
                for reaction, kind, name, priority in self._reactions(alarms, interlocks)]

    def _reactions(self, alarms: Iterable[tuple[str, str]],
                   interlocks: Iterable[str]) -> list[tuple[str, str, str, str | None]]:
        """(reaction, kind, name, priority) of each standing alarm and tripped interlock the
        present phase (the first before the recipe starts) would hold or abort for."""
        phase = self.phase if self.phase is not None else self.config.phase[0]
        found: list[tuple[str, str, str, str | None]] = []
        for name, priority in alarms:
            reaction = getattr(phase.on_alarm, priority)
            if reaction != "nothing":
                found.append((reaction, "alarm", name, priority))
        if phase.on_interlock != "nothing":
            found.extend((phase.on_interlock, "interlock", name, None)
                         for name in sorted(interlocks))
        return found

    def react(self, kind: str, name: str, priority: str | None, now_s: float) -> None:
        """A newly raised alarm (`kind` "alarm", its priority) or interlock trip ("interlock"):
        what the running phase declares for it (nothing, hold or abort)."""
        phase = self.phase if self.phase is not None else self.config.phase[0]
        if kind == "interlock":
            reaction = phase.on_interlock
        else:
            reaction = getattr(phase.on_alarm, priority or "low")
        if reaction == "nothing" or self.state not in TRANSITIONS[reaction]:
            return
        self._move(TRANSITIONS[reaction][self.state], now_s, f"{kind}:{name}",
                   f"{reaction} on {kind} {name}" + (f" ({priority})" if priority else ""))

    # --- the tick ----------------------------------------------------------------------------
    def step(self, readings: Mapping[str, Reading], now_s: float) -> RecipeStep:
        """Advance the procedure to `now_s`; what it asks of the reactor for this tick.

        On the hot path of every tick: it allocates one small object and evaluates the exits;
        a bolus or a phase's settings only when one is due."""
        state = self.state
        if state in SETTLES and now_s > self._entered_s:
            self._move(SETTLES[state], now_s, "recipe", "state complete")
        elif state is _IDLE and self.config.autostart and not self._started:
            self._move(_RUNNING, now_s, "recipe", "autostart")
        boluses: list[BolusOrder] = []
        if self.state is _RUNNING:
            self._advance(readings, now_s)
        if self._entered_now:
            self._entered_now = False
            self._react_to_standing(now_s)
        state = self.state
        if state is _RUNNING and self._given < len(self._boluses):
            boluses = self._due_boluses()
        settings: Mapping[str, PhaseLoop] = NO_SETTINGS
        if self._settings_due:
            self._settings_due = False
            settings = self.config.phase[self.phase_index].loops  # type: ignore[index]
        if state is _RUNNING or state is _RESTARTING:
            rates = self._feeding.step(readings, now_s)  # type: ignore[union-attr]
        else:
            rates = self._rates_not_running(state)
        wait = state is not _RUNNING and state is not _RESTARTING
        if boluses or settings:
            return RecipeStep(rates, wait, boluses, settings)
        # Most ticks ask what the last one did (the same rates dict, nothing due): the step is
        # immutable and its empty list only read, so the last one is handed again rather than
        # a frozen dataclass built anew every tick.
        last = self._quiet_step
        if last is None or last.rates is not rates or last.boluses_wait is not wait:
            self._quiet_step = last = RecipeStep(rates, wait, [], NO_SETTINGS)
        return last

    def _advance(self, readings: Mapping[str, Reading], now_s: float) -> None:
        if self._last_running_s is not None:
            self.phase_time_s += now_s - self._last_running_s
        self._last_running_s = now_s
        watch, index = self._watch, self.phase_index
        assert watch is not None and index is not None
        exit_index = watch.first_holding(readings, now_s, self.phase_time_s, self.confirmed)
        if exit_index is None:
            return
        phase = self.config.phase[index]
        following = self.config.next_of(index, phase.exit[exit_index])
        self._end_phase(now_s, watch.when_of(exit_index))
        if following is None:
            self._move(State.COMPLETE, now_s, "recipe",
                       f"phase {phase.name} ended by {watch.when_of(exit_index)!r}")
            return
        self._enter(following, now_s)

    def _react_to_standing(self, now_s: float) -> None:
        """A phase just begun reacts to what already stands, as it would had it been raised
        now: reactions act on an alarm as it is raised, so without this an alarm a mild phase
        ignored would go unanswered through a stricter phase after it. Abort before hold; done
        before the phase's first rates and boluses go out."""
        if self._standing_now is None:
            return
        reactions = self._reactions(*self._standing_now())
        if not reactions:
            return
        reaction, kind, name, priority = min(reactions, key=lambda r: r[0] != "abort")
        if self.state not in TRANSITIONS[reaction]:
            return
        phase = self.phase
        assert phase is not None
        self._move(TRANSITIONS[reaction][self.state], now_s, f"{kind}:{name}",
                   f"{reaction} on {kind} {name}" + (f" ({priority})" if priority else "")
                   + f", standing as phase {phase.name} began")

    def _due_boluses(self) -> list[BolusOrder]:
        """The phase's boluses whose offset the phase's time has reached, each once."""
        due = []
        boluses = self._boluses
        while self._given < len(boluses) and boluses[self._given].after <= self.phase_time_s:
            bolus = boluses[self._given]
            due.append(BolusOrder(f"r{self._boluses_ordered}", bolus.channel,
                                  bolus.volume_ml, bolus.rate_ml_per_h))
            self._given += 1
            self._boluses_ordered += 1
        return due

    def _rates_not_running(self, state: State) -> Mapping[str, float]:
        if state is State.ABORTING or state is State.ABORTED:
            return self._safe_rates
        assert state in PAUSED or state is State.IDLE
        phase = self.phase if self.phase is not None else self.config.phase[0]
        return self._hold_rates[phase.name]

    # --- phases and states -------------------------------------------------------------------
    def _enter(self, index: int, now_s: float) -> None:
        phase = self.config.phase[index]
        self.phase_index = index
        self.phase_time_s = 0.0
        self._last_running_s = now_s
        self._watch = ExitWatch(phase.exit)
        self._feeding = Feeding(phase.feed)
        self._given = 0
        self._boluses = sorted(phase.bolus, key=lambda b: b.after)
        self.confirmed = False
        self.history.append(PhaseRecord(phase.name, index, now_s))
        self._settings_due = True
        self._entered_now = True
        self._update_telemetry()
        self._event(now_s, f"recipe phase {phase.name} started",
                    {"event": "phase_started", "phase": phase.name, "index": index})

    def _end_phase(self, now_s: float, ended_by: str) -> None:
        record = self.history[-1]
        record.ended_s = now_s
        record.ended_by = ended_by
        self._event(now_s, f"recipe phase {record.name} ended by {ended_by}",
                    {"event": "phase_ended", "phase": record.name, "index": record.index,
                     "started_s": record.started_s, "ended_by": ended_by})

    def _move(self, to: State, now_s: float, by: str, why: str) -> None:
        old = self.state
        self.state = to
        self._entered_s = now_s
        if to is State.RUNNING and old is State.IDLE:
            self._started = True
            self._enter(0, now_s)
        if old in ADVANCING and to not in ADVANCING:
            self._pause()
        if to is State.RUNNING:
            self._last_running_s = now_s
        if to in (State.STOPPING, State.ABORTING) and self.history \
                and self.history[-1].ended_s is None:
            self._end_phase(now_s, why)
        self._update_telemetry()
        phase = self.phase
        self._event(now_s, f"recipe {old.value} -> {to.value} ({why})",
                    {"event": "state", "state": to.value, "from_state": old.value,
                     "phase": None if phase is None else phase.name, "by": by})

    def _pause(self) -> None:
        """Leaving `running`: the phase's clock stops, every hold-timer restarts and the
        dilution loop freezes, so nothing counts the time the phase did not run."""
        self._last_running_s = None
        if self._watch is not None:
            self._watch.reset()
        if self._feeding is not None:
            self._feeding.pause()

    def _event(self, now_s: float, message: str, data: dict[str, Any]) -> None:
        self.events.append((now_s, message, data))

    def _update_telemetry(self) -> None:
        phase = self.phase
        self._telemetry = {"state": self.state.value,
                           "phase": None if phase is None else phase.name}

    # --- durability --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "phase_index": self.phase_index,
            "phase_time_s": self.phase_time_s,
            "history": [asdict(r) for r in self.history],
            "true_since_s": None if self._watch is None else list(self._watch.true_since_s),
            "feeding": None if self._feeding is None else self._feeding.snapshot(),
            "given": self._given,
            "boluses_ordered": self._boluses_ordered,
            "confirmed": self.confirmed,
            "started": self._started,
        }

    def restore(self, snapshot: Mapping[str, Any], now_s: float) -> None:
        """Carry on from `snapshot()` after a controller restart, under `on_restart`: `held`
        (the default) comes back held wherever it was moving, and says where it was."""
        self.history = [PhaseRecord(**r) for r in snapshot["history"]]
        index = snapshot["phase_index"]
        self._started = bool(snapshot["started"])
        if index is not None:
            phase = self.config.phase[int(index)]
            self.phase_index = int(index)
            self._watch = ExitWatch(phase.exit)
            self._watch.true_since_s = list(snapshot["true_since_s"])
            self._feeding = Feeding(phase.feed)
            self._feeding.restore(snapshot["feeding"])
            self._boluses = sorted(phase.bolus, key=lambda b: b.after)
        self.phase_time_s = float(snapshot["phase_time_s"])
        self._given = int(snapshot["given"])
        self._boluses_ordered = int(snapshot["boluses_ordered"])
        self.confirmed = bool(snapshot["confirmed"])
        was = State(snapshot["state"])
        self.state = was
        self._last_running_s = None  # the outage is not phase time
        self._entered_s = now_s
        where = (f"phase {self.phase.name} after {self.phase_time_s / 3600.0:.2f} h of it"
                 if self.phase is not None else "no phase yet")
        if was in SETTLES:
            settled = SETTLES[was]
            to = State.HELD if was is State.RESTARTING and self.config.on_restart == "held" \
                else settled
        elif was is State.RUNNING and self.config.on_restart == "held":
            to = State.HELD
        else:
            to = was
        if was is State.RUNNING and to is State.HELD:
            self._pause()
        elif to is not was and self._feeding is not None:
            self._feeding.pause()
        self.state = to
        self._update_telemetry()
        self._event(now_s, f"recipe restored {to.value} at {where} (was {was.value}; "
                    f"on_restart = {self.config.on_restart})",
                    {"event": "state", "state": to.value, "from_state": was.value,
                     "phase": None if self.phase is None else self.phase.name,
                     "by": "restart", "phase_time_s": self.phase_time_s})
        if to is State.RUNNING:
            self._last_running_s = now_s
