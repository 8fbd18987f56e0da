"""What a loop does when its input cannot be trusted: hold, or go to a safe output; and how it
comes back (bumplessly), including after an interlock overrode it."""
from __future__ import annotations

import itertools
import random

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, load_default

from controller.config import ConfigError, LoopConfig, load_config, parse_config
from controller.control.control_loop import ControlLoop
from controller.control.interlocks import InterlockSet, supply_interlocks
from drivers import Quality, Reading

PH_LOOP = "[reactor.loops.ph]"


def ph_config(*lines: str) -> LoopConfig:
    """The default pH loop with extra keys (TOML lines) in its table."""
    extra = "".join(f"{line}\n" for line in lines)
    return load_default(**{PH_LOOP: f"{PH_LOOP}\n{extra}"}).reactor[0].loops["ph"]


def good(value: float, t: float) -> dict[str, Reading]:
    return {"ph": Reading(value, "pH", t)}


def bad(t: float, quality: Quality = Quality.BAD) -> dict[str, Reading]:
    return {"ph": Reading(float("nan"), "pH", t, quality)}


def settled(loop: ControlLoop, n: int = 200, seed: int = 3) -> float:
    """Run the loop on noisy good readings above its setpoint; return the last time."""
    rng = random.Random(seed)
    loop.take_over(10.0)
    t = 0.0
    for _ in range(n):
        t += 1.0
        loop.step(good(7.40 + rng.gauss(0.0, 0.004), t), t)
    return t


def test_hold_is_the_default_and_keeps_the_last_output() -> None:
    config = ph_config()
    assert config.on_bad_input == "hold" and config.safe_output is None
    loop = ControlLoop("ph", config, stats_after_s=0.0)
    t = settled(loop)
    before = loop.pid.output
    outputs = [loop.step(bad(t + i), t + i) for i in range(1, 600)]
    assert set(outputs) == {before}
    assert loop.safe_output is None


def test_safe_goes_to_the_reactor_safe_state_at_once_by_default() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"'), stats_after_s=0.0,
                safe_state=load_config(DEFAULT_CONFIG_PATH).reactor[0].safe_state)
    t = settled(loop)
    assert loop.pid.output > 10.0  # pH above setpoint: more CO2 than it started with
    assert loop.step(bad(t + 1), t + 1) == 5.0  # [reactor.safe_state] co2_pct = 5.0
    assert loop.step(bad(t + 2, Quality.FROZEN), t + 2) == 5.0


def test_the_safe_state_comes_from_the_reactor_config() -> None:
    config = load_default(**{"co2_pct = 5.0": "co2_pct = 3.5",
                             PH_LOOP: f'{PH_LOOP}\non_bad_input = "safe"'})
    reactor = config.reactor[0]
    loop = ControlLoop("ph", reactor.loops["ph"], stats_after_s=0.0, safe_state=reactor.safe_state)
    t = settled(loop)
    assert loop.step(bad(t + 1), t + 1) == 3.5


def test_an_explicit_safe_output_wins_over_the_safe_state() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"', "safe_output = 7.5"),
                       stats_after_s=0.0)
    t = settled(loop)
    assert loop.step(bad(t + 1), t + 1) == 7.5


def test_safe_after_holds_first_then_goes_safe() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"', 'safe_after_s = "10m"'),
                stats_after_s=0.0)
    t = settled(loop)
    held = loop.pid.output
    outputs = {i: loop.step(bad(t + i), t + i) for i in range(1, 700)}
    assert all(outputs[i] == held for i in range(1, 601))  # bad from t+1: 600 s held
    assert all(outputs[i] == 5.0 for i in range(601, 700))


def test_a_flicker_of_good_samples_does_not_restart_the_safe_after_count() -> None:
    config = ph_config('on_bad_input = "safe"', 'safe_after_s = "10m"')
    assert config.resume_after_good == 3
    loop = ControlLoop("ph", config, stats_after_s=0.0)
    t = settled(loop)
    held = loop.pid.output
    for i in range(1, 601):  # every 100 s, two good samples: too few to act again
        reading = good(7.4, t + i) if i % 100 in (50, 51) else bad(t + i)
        assert loop.step(reading, t + i) == held
    assert loop.step(bad(t + 601), t + 601) == 5.0


def test_a_stale_input_counts_as_bad() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"'), stats_after_s=0.0)
    t = settled(loop)
    old = Reading(7.4, "pH", t - 60.0)  # GOOD, but older than stale_after_s (10 s)
    assert loop.step({"ph": old}, t + 1) == 5.0


@pytest.mark.parametrize("safe_after", ["0s", "5m"])
def test_resuming_from_the_safe_output_is_bumpless(safe_after: str) -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"', f'safe_after_s = "{safe_after}"'),
                stats_after_s=0.0)
    t = settled(loop)
    for i in range(1, 1000):
        assert loop.step(bad(t + i), t + i) == loop.pid.output
    t += 1000
    assert loop.pid.output == 5.0
    outputs = [loop.step(good(7.45, t + i), t + i) for i in range(3)]
    # Two samples watch, the third acts: from 5.0, with no proportional kick (pH is 0.15 above
    # setpoint: 40 %/pH x 0.15 = 6 % CO2 would be the kick).
    assert outputs[:2] == [5.0, 5.0]
    assert outputs[2] == pytest.approx(5.0, abs=1e-9)
    later = [loop.step(good(7.45, t + i), t + i) for i in range(3, 600)]
    assert later[-1] > 5.0  # the integral works from there on: pH high, more CO2
    steps = [abs(b - a) for a, b in itertools.pairwise([5.0, *later])]
    assert max(steps) < 0.01  # per second: no jump anywhere on the way


def test_a_manual_loop_keeps_the_operator_output_on_bad_input() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"', 'mode = "manual"',
                                       "manual_output = 9.0"),
                       stats_after_s=0.0)
    assert [loop.step(bad(float(i)), float(i)) for i in range(1, 100)] == [9.0] * 99


def test_blind_ticks_are_counted_as_held() -> None:
    loop = ControlLoop("ph", ph_config('on_bad_input = "safe"'), stats_after_s=0.0)
    t = settled(loop)
    for i in range(1, 51):
        loop.step(bad(t + i), t + i)
    assert loop.stats.held == 50


def test_follow_adopts_an_override_and_resumes_from_it() -> None:
    loop = ControlLoop("ph", ph_config(), stats_after_s=0.0)
    t = settled(loop)
    for i in range(1, 300):  # an interlock limits CO2 to 2 % while the loop wants more
        loop.step(good(7.45, t + i), t + i)
        loop.follow(2.0)
    t += 300
    first = loop.step(good(7.45, t), t)
    assert first == pytest.approx(2.0, abs=0.05)  # one second of integral, no wound-up jump


def test_follow_leaves_a_manual_loop_alone() -> None:
    loop = ControlLoop("ph", ph_config('mode = "manual"', "manual_output = 9.0"),
                       stats_after_s=0.0)
    loop.follow(2.0)
    assert loop.pid.output == 9.0


def test_an_interlock_overrides_a_loop_at_its_safe_output() -> None:
    """Precedence: interlock over bad input. The O2 supply interlock, once tripped, holds its
    21 % O2 even when the DO probe then fails and the DO loop falls back to its safe output."""
    config = load_default(**{"[reactor.loops.do]": '[reactor.loops.do]\non_bad_input = "safe"\n'
                                                   "safe_output = 10.0"}).reactor[0]
    loop = ControlLoop("do", config.loops["do"], stats_after_s=0.0, safe_state=config.safe_state)
    locks = InterlockSet([], config.safe_state, supply_interlocks(config), {"do_pct_air": 25.0,
                                                                          "ph": 7.3}.__getitem__)
    for t in range(0, 700):  # O2 at the maximum, DO 10 % air and falling: trips after 600 s
        locks.apply({"do_pct_air": Reading(10.0 - t / 100, "%", float(t))},
                    {"o2_pct": 60.0}, float(t))
    assert "o2_supply_lost" in locks.tripped
    dead_probe = {"do_pct_air": Reading(float("nan"), "%", 700.0, Quality.BAD)}
    commands = {"o2_pct": loop.step(dead_probe, 700.0)}
    assert commands["o2_pct"] == 10.0
    locks.apply(dead_probe, commands, 700.0)
    assert commands["o2_pct"] == 21.0


@pytest.mark.parametrize(("lines", "message"), [
    (["safe_output = 4.0"],
     "reactor[0].loops.ph.safe_output = 4.0: only applies with on_bad_input = 'safe'"),
    (['safe_after_s = "5m"'],
     "reactor[0].loops.ph.safe_after_s = '5m': only applies with on_bad_input = 'safe'"),
    (['on_bad_input = "safe"', "safe_output = 16.0"],
     "reactor[0].loops.ph.safe_output = 16.0: outside the loop's output range [0.0, 15.0]"),
    (['on_bad_input = "safe"', 'safe_after_s = "8d"'],
     "reactor[0].loops.ph.safe_after_s = 691200.0: Input should be less than or equal to "
     "604800 (allowed: 0 <= value <= 604800)"),
    (['on_bad_input = "off"'], "reactor[0].loops.ph.on_bad_input = 'off': Input should be "
     "'hold' or 'safe'"),
])
def test_bad_config_names_key_value_and_range(lines: list[str], message: str,
                                              default_config_text: str) -> None:
    text = default_config_text.replace(PH_LOOP, PH_LOOP + "\n" + "\n".join(lines))
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert message in str(err.value)


def test_a_safe_state_outside_the_loop_range_is_refused_when_the_loop_is_built() -> None:
    # The config refuses a safe CO2 of 18 % itself (controller/config/safety_check.py), so the
    # loop's own check is reached with a safe state given directly.
    config = load_default(**{PH_LOOP: f'{PH_LOOP}\non_bad_input = "safe"'}).reactor[0]
    safe_state = {**config.safe_state, "co2_pct": 18.0}
    with pytest.raises(ConfigError, match=r"loops\.ph\.safe_output: .* co2_pct = 18\.0, outside "
                                          r"the loop's output range \[0\.0, 15\.0\]"):
        ControlLoop("ph", config.loops["ph"], stats_after_s=0.0, safe_state=safe_state)
