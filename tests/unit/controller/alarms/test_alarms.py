"""The alarm core: ISA-18.2 state machine, delays, deadband, shelving, board, flood, defaults."""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.alarms.board import AlarmBoard, ShelvingForbidden
from controller.alarms.defaults import default_alarms
from controller.alarms.spec import FLOOD, AlarmConfig
from controller.alarms.state_machine import Alarm, AlarmState, Transition
from drivers.contract.reading import Quality, Reading

S = AlarmState
OP = "alice"


def cfg(**kw) -> AlarmConfig:
    base = {"name": "a", "channel": "temperature_c", "kind": "high", "limit": 38.0}
    base.update(kw)
    return AlarmConfig(**base)


def moves(trs: list[Transition]) -> list[tuple[AlarmState, AlarmState]]:
    return [(t.from_state, t.to_state) for t in trs]


def raised(alarm: Alarm, t: float = 0.0) -> Alarm:
    alarm.evaluate(True, t)
    assert alarm.state is S.UNACK
    return alarm


# -- the ISA-18.2 diagram, edge by edge ---------------------------------------------------------

def test_normal_to_unack_to_acked_to_normal():
    a = Alarm(cfg())
    assert moves(a.evaluate(True, 0)) == [(S.NORMAL, S.UNACK)]
    assert moves(a.acknowledge(1, OP)) == [(S.UNACK, S.ACKED)]
    assert a.evaluate(True, 2) == []
    assert moves(a.evaluate(False, 3)) == [(S.ACKED, S.NORMAL)]


def test_unack_returns_unacked_then_ack_or_realarm():
    a = raised(Alarm(cfg()))
    assert moves(a.evaluate(False, 1)) == [(S.UNACK, S.RTN_UNACK)]
    assert moves(a.evaluate(True, 2)) == [(S.RTN_UNACK, S.UNACK)]
    a.evaluate(False, 3)
    trs = a.acknowledge(4, OP)
    assert moves(trs) == [(S.RTN_UNACK, S.NORMAL)] and trs[0].operator == OP


def test_latched_stays_until_acknowledged():
    a = raised(Alarm(cfg(latched=True)))
    assert moves(a.evaluate(False, 1)) == [(S.UNACK, S.LATCHED)]
    assert a.evaluate(False, 100) == [] and a.state is S.LATCHED
    assert moves(a.evaluate(True, 101)) == [(S.LATCHED, S.UNACK)]
    a.evaluate(False, 102)
    assert moves(a.acknowledge(103, OP)) == [(S.LATCHED, S.NORMAL)]


def test_latched_acked_while_active_returns_to_normal():
    a = raised(Alarm(cfg(latched=True)))
    a.acknowledge(1, OP)
    assert moves(a.evaluate(False, 2)) == [(S.ACKED, S.NORMAL)]


def test_transition_carries_priority_reason_and_notify():
    a = Alarm(cfg(priority="critical"))
    (t,) = a.evaluate(True, 5.0)
    assert t.alarm == "a" and t.priority == "critical" and t.notify and t.t_s == 5.0
    assert "above 38.0" in t.reason
    assert t.as_dict()["to"] == "unack"


def test_value_alarm_transitions_carry_the_value_judged():
    a = Alarm(cfg(limit=38.0))
    (up,) = a.evaluate_value(38.6, 0.0)
    (down,) = a.evaluate_value(37.5, 1.0)
    assert (up.value, down.value) == (38.6, 37.5)
    assert Alarm(cfg(kind="stale", limit=None)).evaluate(True, 0.0)[0].value is None


# -- delays -------------------------------------------------------------------------------------

def test_on_delay_requires_condition_to_hold():
    a = Alarm(cfg(on_delay_s=60))
    assert a.evaluate(True, 0) == [] and a.evaluate(True, 59) == []
    a.evaluate(False, 59.5)          # interrupted: timer restarts
    a.evaluate(True, 60)
    assert a.evaluate(True, 119) == []
    assert moves(a.evaluate(True, 120)) == [(S.NORMAL, S.UNACK)]
    assert a.first_raised_t_s == 120


def test_off_delay_requires_condition_clear_to_hold():
    a = Alarm(cfg(off_delay_s=30))
    a.evaluate(True, 0)
    assert a.evaluate(False, 10) == []
    a.evaluate(True, 20)             # back: timer restarts
    a.evaluate(False, 25)
    assert a.evaluate(False, 54) == []
    assert moves(a.evaluate(False, 55)) == [(S.UNACK, S.RTN_UNACK)]


def test_time_going_backwards_is_refused():
    a = Alarm(cfg())
    a.evaluate(False, 10)
    with pytest.raises(ValueError, match="backwards"):
        a.evaluate(False, 9)


# -- deadband -----------------------------------------------------------------------------------

def test_high_deadband():
    a = Alarm(cfg(limit=38.0, deadband=0.2))
    a.evaluate_value(38.01, 0)
    assert a.state is S.UNACK
    a.evaluate_value(37.9, 1)
    assert a.state is S.UNACK        # inside the limit, not by the deadband
    a.evaluate_value(37.8, 2)
    assert a.state is S.RTN_UNACK


def test_low_and_deviation_deadband():
    low = Alarm(cfg(channel="ph", kind="low", limit=6.9, deadband=0.05))
    low.evaluate_value(6.89, 0)
    low.evaluate_value(6.93, 1)
    assert low.state is S.UNACK
    low.evaluate_value(6.95, 2)
    assert low.state is S.RTN_UNACK
    dev = Alarm(cfg(kind="deviation", limit=0.3, deadband=0.1))
    dev.evaluate_value(36.6, 0, setpoint=37.0)
    dev.evaluate_value(37.25, 1, setpoint=37.0)
    assert dev.state is S.UNACK
    dev.evaluate_value(37.15, 2, setpoint=37.0)
    assert dev.state is S.RTN_UNACK
    with pytest.raises(ValueError, match="setpoint"):
        dev.evaluate_value(37.0, 3)


def test_noise_at_the_limit_does_not_chatter():
    rng = random.Random(42)
    with_db = Alarm(cfg(limit=38.0, deadband=0.1))
    without = Alarm(cfg(name="b", limit=38.0))
    n_db = n_raw = 0
    for i in range(2000):
        pv = 38.0 + rng.gauss(0, 0.02)
        n_db += sum(t.to_state is S.UNACK for t in with_db.evaluate_value(pv, i))
        n_raw += sum(t.to_state is S.UNACK for t in without.evaluate_value(pv, i))
    assert n_db == 1
    assert n_raw > 100   # what the deadband saves the operator from


# -- rate ---------------------------------------------------------------------------------------

def test_rate_alarm_on_slope_not_noise():
    rng = random.Random(7)
    a = Alarm(cfg(kind="rate", limit=1.0, deadband=0.2, rate_window_s=600))
    for i in range(0, 3600, 5):      # flat with noise: no alarm
        a.evaluate_value(37.0 + rng.gauss(0, 0.02), float(i))
    assert a.state is S.NORMAL
    t0 = 3600
    for i in range(0, 1800, 5):      # +2 C/h ramp
        a.evaluate_value(37.0 + 2.0 * i / 3600 + rng.gauss(0, 0.02), float(t0 + i))
    assert a.state is S.UNACK and a.first_raised_t_s is not None
    assert a.first_raised_t_s - t0 < 600
    for i in range(1800, 4000, 5):   # flat again
        a.evaluate_value(38.0 + rng.gauss(0, 0.02), float(t0 + i))
    assert a.state is S.RTN_UNACK


def test_rate_alarm_waits_for_enough_history():
    a = Alarm(cfg(kind="rate", limit=1.0, rate_window_s=600))
    a.evaluate_value(30.0, 0)
    a.evaluate_value(40.0, 10)       # huge jump, but only 10 s of history
    assert a.state is S.NORMAL


# -- shelving -----------------------------------------------------------------------------------

def test_shelve_suppresses_and_expires_to_active_state():
    a = Alarm(cfg())
    assert moves(a.shelve(100, 0, OP)) == [(S.NORMAL, S.SHELVED)]
    trs = a.evaluate(True, 10)
    assert a.state is S.SHELVED and [t.notify for t in trs] == [False]
    assert moves(trs) == [(S.SHELVED, S.SHELVED)] and "unack" in trs[0].reason
    assert a.evaluate(True, 99) == []
    trs = a.evaluate(True, 100)
    assert moves(trs) == [(S.SHELVED, S.UNACK)] and trs[0].notify
    assert trs[0].reason == "shelf expired"


@pytest.mark.parametrize("latched, sequence, expected", [
    (False, [], S.NORMAL),                        # nothing happened
    (False, [True], S.UNACK),                     # still active
    (False, [True, False], S.RTN_UNACK),          # came and went while shelved
    (True, [True, False], S.LATCHED),             # latched: still needs the ack
    (True, [], S.NORMAL),
])
def test_shelf_expiry_returns_to_the_right_state(latched, sequence, expected):
    a = Alarm(cfg(latched=latched))
    a.shelve(100, 0, OP)
    for i, c in enumerate(sequence):
        a.evaluate(c, 10 + i)
    a.hold(100)
    assert a.state is expected


def test_shelving_an_acked_alarm_comes_back_acked():
    a = raised(Alarm(cfg()))
    a.acknowledge(1, OP)
    a.shelve(50, 2, OP)
    a.evaluate(True, 50)
    assert a.state is S.ACKED


def test_unshelve_and_extend():
    a = raised(Alarm(cfg()))
    a.shelve(100, 1, OP)
    assert "extended" in a.shelve(200, 2, OP)[0].reason
    a.evaluate(False, 3)
    assert moves(a.unshelve(4, OP)) == [(S.SHELVED, S.RTN_UNACK)]


def test_shelve_bounds():
    a = Alarm(cfg(max_shelve_s=3600))
    with pytest.raises(ValueError, match="after now"):
        a.shelve(10, 10, OP)
    with pytest.raises(ValueError, match="max_shelve_s"):
        a.shelve(7200, 0, OP)


# -- out of service -----------------------------------------------------------------------------

def test_out_of_service_is_not_evaluated_and_returns_fresh():
    a = Alarm(cfg(on_delay_s=10))
    a.evaluate(True, 0)
    raised(a, 10)
    assert moves(a.remove_from_service(11, OP)) == [(S.UNACK, S.OUT_OF_SERVICE)]
    assert a.evaluate(True, 50) == [] and a.state is S.OUT_OF_SERVICE
    assert moves(a.return_to_service(60, OP)) == [(S.OUT_OF_SERVICE, S.NORMAL)]
    assert a.evaluate(True, 61) == []          # on_delay counts again from scratch
    assert moves(a.evaluate(True, 71)) == [(S.NORMAL, S.UNACK)]


def test_shelved_alarm_can_be_removed_from_service():
    a = Alarm(cfg())
    a.shelve(100, 0, OP)
    a.remove_from_service(1, OP)
    assert a.state is S.OUT_OF_SERVICE and a.shelved_until is None


# -- invalid operator actions -------------------------------------------------------------------

def test_invalid_actions_raise_clear_errors():
    a = Alarm(cfg())
    with pytest.raises(ValueError, match="cannot acknowledge alarm 'a': it is normal"):
        a.acknowledge(0, OP)
    raised(a, 1)
    a.acknowledge(2, OP)
    with pytest.raises(ValueError, match="it is acked"):
        a.acknowledge(3, OP)
    with pytest.raises(ValueError, match="not shelved"):
        a.unshelve(3, OP)
    with pytest.raises(ValueError, match="not out of service"):
        a.return_to_service(3, OP)
    with pytest.raises(ValueError, match="must name who"):
        a.shelve(10, 3, " ")
    a.remove_from_service(4, OP)
    with pytest.raises(ValueError, match="cannot shelve alarm 'a': it is out of service"):
        a.shelve(100, 5, OP)
    with pytest.raises(ValueError, match="already"):
        a.remove_from_service(5, OP)
    with pytest.raises(ValueError, match="it is out_of_service"):
        a.acknowledge(5, OP)
    b = Alarm(cfg(name="b"))
    b.shelve(100, 0, OP)
    with pytest.raises(ValueError, match="it is shelved"):
        b.acknowledge(1, OP)


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    ({"limit": None}, "limit missing"),
    ({"channel": None}, "channel missing"),
    ({"channel": "heater_pct"}, "expected an input"),
    ({"channel": "nope"}, "unknown channel"),
    ({"limit": 70.0}, "inside temperature_c's range"),
    ({"kind": "comm_loss", "limit": None}, "takes no channel"),
    ({"kind": "bad_quality", "limit": 1.0}, "takes no limit"),
    ({"kind": "deviation", "limit": 0.3, "deadband": 0.3}, "could never return"),
    ({"kind": "stale", "limit": None, "deadband": 1.0}, "off_delay_s"),
    ({"name": "flood"}, "reserved"),
    ({"priority": "urgent"}, "priority"),
    ({"colour": "red"}, "colour"),
    ({"on_delay_s": -1}, "on_delay_s"),
])
def test_config_errors(kw, message):
    with pytest.raises(ValidationError, match=message):
        cfg(**kw)


def test_config_accepts_durations():
    assert cfg(on_delay_s="5m").on_delay_s == 300.0


# -- the board ----------------------------------------------------------------------------------

@dataclass
class R:
    value: float
    quality: Quality = Quality.GOOD
    timestamp_s: float = 0.0


LOOPS = {"temperature": ("temperature_c", 37.0, 0.1), "do": ("do_pct_air", 40.0, 2.0),
         "ph": ("ph", 7.2, 0.05)}
SP = {"temperature_c": 37.0, "do_pct_air": 40.0, "ph": 7.2}


def good(t: float, **over: float) -> dict[str, Reading]:
    values = {**SP, **over}
    return {k: Reading(v, "u", t) for k, v in values.items()}


def test_board_quiet_when_all_is_well():
    board = AlarmBoard(default_alarms(LOOPS))
    for t in range(0, 1000, 10):
        assert board.evaluate(good(t), SP, t, comm_ok=True) == []
    assert board.active() == [] and board.first_raised == []


def test_board_stale_and_bad_quality_from_readings():
    board = AlarmBoard(default_alarms(LOOPS))
    frozen = Reading(37.0, "degC", 0.0)
    for t in range(0, 40, 1):
        r = good(t)
        r["temperature_c"] = frozen                       # never refreshed
        r["ph"] = Reading(7.2, "pH", t, Quality.BAD)
        board.evaluate(r, SP, t, comm_ok=True)
    names = {a.name for a in board.active()}
    assert names == {"temperature_stale", "ph_bad_quality"}
    assert board["temperature_stale"].first_raised_t_s == 31   # older than 30 s
    assert board["ph_bad_quality"].first_raised_t_s == 10      # 10 s on delay
    # a bad pH never raises nor clears the pH value alarms
    assert board["ph_low"].state is S.NORMAL


@pytest.mark.parametrize("quality", list(Quality))
def test_bad_quality_covers_every_quality_but_good_stale_comm(quality):
    board = AlarmBoard([AlarmConfig(name="bq", channel="ph", kind="bad_quality")])
    board.evaluate({"ph": R(7.2, quality)}, {}, 0)
    expected = quality not in (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR)
    assert (board["bq"].state is S.UNACK) is expected
    nan = AlarmBoard([AlarmConfig(name="bq", channel="ph", kind="bad_quality")])
    nan.evaluate({"ph": R(float("nan"))}, {}, 0)
    assert nan["bq"].state is S.UNACK


def test_board_missing_reading_is_stale_and_value_alarms_hold():
    board = AlarmBoard(default_alarms(LOOPS))
    for t in range(0, 100):
        board.evaluate(good(t, temperature_c=40.0), SP, t)
    assert board["temperature_high"].state is S.UNACK
    for t in range(100, 200):
        r = good(t)
        del r["temperature_c"]
        board.evaluate(r, SP, t)
    assert board["temperature_high"].state is S.UNACK       # not cleared by missing data
    assert board["temperature_stale"].state is S.UNACK


def test_board_out_of_range_reading_still_drives_high_alarm():
    c = cfg(name="t_hi", limit=55.0)
    board = AlarmBoard([c])
    board.evaluate({"temperature_c": R(60.0, Quality.OUT_OF_RANGE)}, {}, 0)
    assert board["t_hi"].state is S.UNACK


def test_board_comm_loss_latched_and_critical_temperature():
    board = AlarmBoard(default_alarms(LOOPS))
    for t in range(0, 40):
        board.evaluate(good(t), SP, t, comm_ok=t < 5)
    assert board["comm_loss"].state is S.UNACK
    board.evaluate(good(41), SP, 41, comm_ok=True)
    assert board["comm_loss"].state is S.LATCHED
    trs = []
    for t in range(42, 100):
        trs += board.evaluate(good(t, temperature_c=39.5), SP, t)
    (hi,) = [t for t in trs if t.alarm == "temperature_high"]
    assert hi.priority == "critical" and hi.t_s == 72 and hi.notify
    assert board.active()[0].name == "temperature_high"   # worst first
    assert {a.name for a in board.unacknowledged()} >= {"comm_loss", "temperature_high"}
    firsts = board.first_raised
    assert [(f.name, f.t_s) for f in firsts][:2] == [("comm_loss", 35), ("temperature_high", 72)]


def test_board_deviation_uses_live_setpoint():
    board = AlarmBoard(default_alarms(LOOPS))
    for t in range(0, 400, 10):
        board.evaluate(good(t, do_pct_air=50.0), SP, t)
    assert board["do_deviation"].state is S.UNACK
    with pytest.raises(ValueError, match="no setpoint"):
        board.evaluate(good(400), {}, 400)


def test_board_operator_actions_by_name():
    board = AlarmBoard([cfg(name="x"), cfg(name="y")])
    board.evaluate({"temperature_c": R(39.0)}, {}, 0)
    assert len(board.unacknowledged()) == 2
    assert len(board.acknowledge_all(1, OP)) == 2
    board.shelve("x", 100, 2, OP)
    assert [a.name for a in board.shelved()] == ["x"]
    board.remove_from_service("y", 3, OP)
    assert [a.name for a in board.out_of_service()] == ["y"]
    with pytest.raises(KeyError, match="unknown alarm 'z'"):
        board.acknowledge("z", 4, OP)
    with pytest.raises(ValueError, match="unique"):
        AlarmBoard([cfg(), cfg()])


# -- flood --------------------------------------------------------------------------------------

def _flood_board(n: int, **kw) -> AlarmBoard:
    configs = [AlarmConfig(name=f"a{i}", channel="volume_ml", kind="high", limit=10.0 + i)
               for i in range(n)]
    configs.append(AlarmConfig(name="crit", channel="temperature_c", kind="high", limit=39.0,
                               priority="critical"))
    return AlarmBoard(configs, **kw)


def test_flood_summary_replaces_individual_notifications():
    board = _flood_board(20)
    trs: list[Transition] = []
    for i in range(20):      # the volume rises through one limit each 10 s: 20 activations
        trs += board.evaluate({"volume_ml": R(10.5 + i), "temperature_c": R(37.0)}, {}, i * 10)
    acts = [t for t in trs if t.alarm != FLOOD and t.is_activation]
    assert len(acts) == 20                                  # all still recorded
    assert sum(t.notify for t in acts) == 10                # the first 10 notified
    floods = [t for t in trs if t.alarm == FLOOD]
    assert len(floods) == 1 and floods[0].count == 11 and floods[0].notify
    assert board.flooding
    # a critical alarm during the flood still notifies
    (crit,) = board.evaluate({"volume_ml": R(40.0), "temperature_c": R(39.5)}, {}, 200)
    assert crit.alarm == "crit" and crit.notify
    # the window empties: one end-of-flood summary
    end = board.evaluate({"volume_ml": R(40.0), "temperature_c": R(39.5)}, {}, 900)
    # activations 11..20
    assert [(t.alarm, t.count, t.notify) for t in end] == [(FLOOD, 10, True)]
    assert "21 alarms unacknowledged" in end[0].reason
    assert not board.flooding


def test_a_burst_that_starts_a_flood_is_summarised_whole():
    """A dropped link raises many alarms in one evaluation: none of them pages on its own."""
    board = _flood_board(12)
    trs = board.evaluate({"volume_ml": R(30.0), "temperature_c": R(39.5)}, {}, 0)
    names = (*(f"a{i}" for i in range(12)), "crit")
    assert trs[0].alarm == FLOOD and trs[0].count == 13 and trs[0].alarms == names
    assert "13 activations within 600 s (a0, a1," in trs[0].reason
    assert trs[0].priority == "critical"              # the worst alarm in the flood
    notified = [t.alarm for t in trs if t.notify]
    assert notified == [FLOOD, "crit"]                # the summary, and the exempt critical
    assert len([t for t in trs if t.is_activation]) == 13  # every activation still recorded
    (end,) = board.evaluate({"volume_ml": R(30.0), "temperature_c": R(39.5)}, {}, 600)
    assert (end.alarm, end.to_state, end.count) == (FLOOD, S.NORMAL, 12)
    assert end.alarms == names[:12] and end.notify
    assert end.as_dict()["alarms"] == list(names[:12])


def test_flood_end_names_what_was_held_back_during_the_flood():
    board = _flood_board(6, flood_threshold=3, flood_window_s=100)
    board.evaluate({"volume_ml": R(14.5), "temperature_c": R(37.0)}, {}, 0)   # a0..a4: flood
    assert board.flooding
    later = board.evaluate({"volume_ml": R(15.5), "temperature_c": R(37.0)}, {}, 50)  # a5
    assert [(t.alarm, t.notify) for t in later] == [("a5", False)]
    (end,) = board.evaluate({"volume_ml": R(15.5), "temperature_c": R(37.0)}, {}, 100)
    assert end.count == 6 and end.alarms == ("a0", "a1", "a2", "a3", "a4", "a5")
    assert not board.flooding


def test_board_shelving_policy():
    board = AlarmBoard([cfg(name="x", max_shelve_s=3600), cfg(name="y"),
                        cfg(name="hot", priority="critical")], max_shelve_s=7200)
    assert board.max_shelve_s_for("x") == 3600 and board.max_shelve_s_for("y") == 7200
    assert not board.may_shelve("hot") and board.may_shelve("x")
    with pytest.raises(ShelvingForbidden, match="critical alarms may not be shelved"):
        board.shelve("hot", 10, 0, OP)
    with pytest.raises(ShelvingForbidden, match="0 < duration_s <= 7200"):
        board.shelve("y", 7201, 0, OP)
    with pytest.raises(ValueError, match="max_shelve_s"):  # the alarm's own limit
        board.shelve("x", 3601, 0, OP)
    assert moves(board.shelve("y", 7200, 0, OP)) == [(S.NORMAL, S.SHELVED)]
    lax = AlarmBoard([cfg(name="hot", priority="critical")], unshelvable=())
    assert moves(lax.shelve("hot", 100, 0, OP)) == [(S.NORMAL, S.SHELVED)]
    with pytest.raises(ValueError, match=r"unshelvable.*unknown priorities"):
        AlarmBoard([], unshelvable=["urgent"])


def test_no_flood_below_threshold():
    board = _flood_board(10)
    trs: list[Transition] = []
    for i in range(10):
        trs += board.evaluate({"volume_ml": R(10.5 + i), "temperature_c": R(37.0)}, {}, i)
    assert all(t.notify for t in trs) and not any(t.alarm == FLOOD for t in trs)


# -- defaults -----------------------------------------------------------------------------------

def test_default_alarms_match_the_brief():
    by = {c.name: c for c in default_alarms(LOOPS)}
    assert by["temperature_deviation"].limit == pytest.approx(0.3)
    assert by["temperature_deviation"].on_delay_s == 300
    assert by["do_deviation"].limit == pytest.approx(6.0)
    for loop in LOOPS:
        assert by[f"{loop}_bad_quality"].kind == "bad_quality"
        assert by[f"{loop}_stale"].kind == "stale"
    assert by["comm_loss"].channel is None and by["comm_loss"].kind == "comm_loss"
    th = by["temperature_high"]
    assert (th.limit, th.priority, th.latched) == (39.0, "critical", True)
    assert (by["ph_low"].limit, by["ph_low"].priority) == (6.9, "high")
    assert (by["ph_high"].limit, by["ph_high"].priority) == (7.6, "high")


def test_default_alarms_accept_loop_configs_and_refuse_bad_setpoints():
    from plugins.configs import DEFAULT_CONFIG_PATH

    from controller.config import load_config
    config = load_config(DEFAULT_CONFIG_PATH)
    names = {c.name for c in default_alarms(config.reactor[0].loops)}
    assert "comm_loss" in names
    with pytest.raises(ValueError, match="default alarm limits"):
        default_alarms({"ph": ("ph", 7.7, 0.05)})


# -- property: no sequence reaches an inconsistent state ----------------------------------------

ALLOWED_AUTOMATIC = {
    (S.NORMAL, S.UNACK), (S.UNACK, S.RTN_UNACK), (S.UNACK, S.LATCHED), (S.ACKED, S.NORMAL),
    (S.RTN_UNACK, S.UNACK), (S.LATCHED, S.UNACK), (S.SHELVED, S.SHELVED),
    (S.SHELVED, S.NORMAL), (S.SHELVED, S.UNACK), (S.SHELVED, S.ACKED),
    (S.SHELVED, S.RTN_UNACK), (S.SHELVED, S.LATCHED),
}

actions = st.one_of(
    st.tuples(st.just("eval"), st.booleans()),
    st.tuples(st.just("ack"), st.none()),
    st.tuples(st.just("shelve"), st.floats(1, 200)),
    st.tuples(st.just("unshelve"), st.none()),
    st.tuples(st.just("oos"), st.none()),
    st.tuples(st.just("rts"), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(latched=st.booleans(), on=st.sampled_from([0, 5, 20]), off=st.sampled_from([0, 5, 20]),
       steps=st.lists(st.tuples(actions, st.floats(0, 15)), max_size=60))
def test_random_sequences_stay_consistent(latched, on, off, steps):
    a = Alarm(cfg(latched=latched, on_delay_s=on, off_delay_s=off, max_shelve_s=200))
    t = 0.0
    for (kind, arg), dt in steps:
        t += dt
        before = a.state
        try:
            if kind == "eval":
                trs = a.evaluate(arg, t)
            elif kind == "ack":
                trs = a.acknowledge(t, OP)
            elif kind == "shelve":
                trs = a.shelve(t + arg, t, OP)
            elif kind == "unshelve":
                trs = a.unshelve(t, OP)
            elif kind == "oos":
                trs = a.remove_from_service(t, OP)
            else:
                trs = a.return_to_service(t, OP)
        except ValueError:
            assert a.state is before          # a refused action changes nothing
            continue
        for tr in trs:
            assert tr.from_state in S and tr.to_state in S
            if tr.operator is None:
                assert (tr.from_state, tr.to_state) in ALLOWED_AUTOMATIC
            if tr.to_state is S.NORMAL and tr.operator is None:
                assert tr.from_state in (S.ACKED, S.SHELVED)   # unacked never self-clears
        if trs:
            assert trs[-1].to_state is a.state
        # invariants on the (underlying) state
        state = a.state
        assert state in S
        under = a.underlying_state
        if state is S.OUT_OF_SERVICE:
            assert under is S.NORMAL and not a.condition_active
        if under in (S.UNACK, S.ACKED):
            assert a.condition_active
        else:
            assert not a.condition_active
        if under is S.LATCHED:
            assert latched
        if under is S.RTN_UNACK:
            assert not latched
        if state is S.SHELVED and kind == "eval":
            assert a.shelved_until is not None and a.shelved_until > t   # expiry honoured


def _evaluate_every_alarm_the_whole_way(board: AlarmBoard, readings, setpoints, t_s,
                                        comm_ok, read_failures) -> list[Transition]:
    """What `AlarmBoard.evaluate` did before its settled fast path: every alarm through
    `_evaluate_one`, then the flood filter."""
    out: list[Transition] = []
    for alarm in board.alarms.values():
        out += board._evaluate_one(alarm, readings, setpoints, t_s, comm_ok, read_failures)
    return board._flood_filter(out, t_s)


@pytest.mark.parametrize("seed", range(6))
def test_board_settled_path_gives_the_transitions_and_states_of_the_whole_way(seed):
    """Random walks across limits and deadbands, with bad, out-of-range, stale, missing and
    comm-error readings, a setpoint moving, shelves and removals: the fast board and one that
    evaluates every alarm the whole way give the same transitions, the same states and the
    same snapshots, evaluation by evaluation."""
    rng = random.Random(seed)
    configs = [*default_alarms(LOOPS),
               AlarmConfig(name="test_t_high_delayed", channel="temperature_c", kind="high",
                           limit=37.3, deadband=0.1, on_delay_s=20.0, off_delay_s=15.0),
               AlarmConfig(name="test_do_low", channel="do_pct_air", kind="low", limit=35.0,
                           deadband=1.0, latched=True),
               AlarmConfig(name="test_ph_stale", channel="ph", kind="stale", limit=12.0)]
    fast, whole = AlarmBoard(configs), AlarmBoard(configs)
    values = dict(SP)
    setpoints = dict(SP)
    sample_t = dict.fromkeys(SP, 0.0)
    qualities = [Quality.GOOD] * 12 + [Quality.OUT_OF_RANGE, Quality.BAD, Quality.STALE,
                                       Quality.COMM_ERROR, Quality.FROZEN]
    t = 0.0
    for _ in range(600):
        t += rng.choice([5.0, 5.0, 5.0, 1.0, 30.0])
        readings: dict[str, Reading] = {}
        for name, sp in SP.items():
            # a walk that dwells around the limits and the deadbands: steps of a tenth of
            # its reach, pulled back towards the setpoint
            values[name] += rng.gauss(0.0, 0.1 * REACH[name]) + 0.02 * (sp - values[name])
            if rng.random() < 0.85:
                sample_t[name] = t
            if rng.random() < 0.05:
                continue  # missing
            value = values[name] if rng.random() > 0.02 else float("nan")
            readings[name] = Reading(value, "u", sample_t[name], rng.choice(qualities))
        if rng.random() < 0.05:
            setpoints["temperature_c"] = rng.choice([36.5, 37.0, 37.5])
        comm_ok = rng.random() > 0.03
        share = rng.choice([0.0, 0.0, 0.0, 0.5])
        action = rng.random()
        name = rng.choice(list(fast.alarms))
        shelf_s = rng.choice([10.0, 60.0])
        for board in (fast, whole):
            alarm = board[name]
            if action < 0.02 and alarm.state is not S.OUT_OF_SERVICE and board.may_shelve(name):
                board.shelve(name, t + shelf_s, t, OP)
            elif action < 0.03 and alarm.state is not S.OUT_OF_SERVICE:
                board.remove_from_service(name, t, OP)
            elif action < 0.05 and alarm.state is S.OUT_OF_SERVICE:
                board.return_to_service(name, t, OP)
            elif action < 0.15 and alarm.state in (S.UNACK, S.RTN_UNACK, S.LATCHED):
                board.acknowledge(name, t, OP)
        got = fast.evaluate(readings, setpoints, t, comm_ok, lambda _window_s, share=share: share)
        expected = _evaluate_every_alarm_the_whole_way(whole, readings, setpoints, t, comm_ok,
                                                       lambda _window_s, share=share: share)
        assert got == expected
        assert fast.snapshot() == whole.snapshot()
        assert [a._judged_value for a in fast.alarms.values()] == \
            [a._judged_value for a in whole.alarms.values()]


REACH = {"temperature_c": 1.5, "do_pct_air": 20.0, "ph": 0.5}
