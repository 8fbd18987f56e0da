"""controller.control.pid: the loop arithmetic, checked against what the ISA form says it must
do."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from controller.control.pid import Pid, PidTuning


def _drive(pid: Pid, samples: list[tuple[float, float]]) -> list[float]:
    """Feed (t, pv) samples, return the outputs."""
    return [pid.update(pv, t) for t, pv in samples]


# --- anti-windup ---------------------------------------------------------------------------------


def test_no_windup_after_an_hour_at_the_limit() -> None:
    kp, ti, sp = 2.0, 60.0, 37.0
    out_min, out_max = 0.0, 100.0
    pid = Pid(PidTuning(kp=kp, ti_s=ti), sp, out_min, out_max)

    # The textbook integrator with only an output clamp, for comparison.
    naive_i = 0.0

    def naive(pv: float, dt: float) -> float:
        nonlocal naive_i
        e = sp - pv
        naive_i += kp * dt / ti * e
        return min(max(kp * e + naive_i, out_min), out_max)

    # One hour with the PV far below the setpoint (heater too weak, lid open): saturated. (The
    # first sample only initialises, bumplessly from out_min; integral action then ramps the
    # output up to the limit within ~3 minutes.)
    t = 0.0
    pid.update(20.0, t)
    saturated = 0
    for _ in range(3600):
        t += 1.0
        saturated += pid.update(20.0, t) == out_max
        naive(20.0, 1.0)
    assert saturated > 3300 and pid.output == out_max
    assert naive_i > 1000.0  # the unprotected integrator has wound up far beyond 100 %

    # The PV then rises through the setpoint (0.5 degC per update) and keeps going.
    pv_path = [30.0 + 0.5 * k for k in range(60)]  # 30 ... 59.5, crosses 37 at k = 14
    protected, unprotected, errors = [], [], []
    for pv in pv_path:
        t += 1.0
        protected.append(pid.update(pv, t))
        unprotected.append(naive(pv, 1.0))
        errors.append(sp - pv)

    first_negative = next(k for k, e in enumerate(errors) if e < 0)
    # Protected: off the limit within a few updates of the error changing sign (in fact as soon
    # as the error starts to shrink) and falling on every update once the PV is above the setpoint.
    off_limit = next(k for k, u in enumerate(protected) if u < out_max)
    assert off_limit <= first_negative + 3
    assert all(u < out_max for u in protected[off_limit:])
    after = protected[first_negative:]
    assert all(b < a for a, b in itertools.pairwise(after))
    # Unprotected: still pinned at 100 % long after the PV went 10 degC above the setpoint.
    assert all(u == out_max for u in unprotected[: first_negative + 30])


def test_integral_tracks_the_applied_output_at_the_lower_limit_too() -> None:
    # Reverse-acting (CO2 lowers pH), pinned at out_min, then the error reverses.
    pid = Pid(PidTuning(kp=40.0, ti_s=1000.0), 7.3, 0.0, 15.0, output_raises_pv=False,
              initial_output=5.0)
    t = 0.0
    pid.update(7.0, t)  # pH too low: CO2 should go to 0
    for _ in range(7200):
        t += 1.0
        pid.update(7.0, t)
    assert pid.output == 0.0  # reached after ~7 min, then pinned for ~1 h 50 min
    t += 1.0
    u = pid.update(7.35, t)  # pH now above setpoint: CO2 needed at once
    assert u > 0.0
    assert u == pytest.approx(40.0 * 0.05 + 40.0 / 1000.0 * 0.05 * 1.0 + 40.0 * 0.3, rel=1e-9)


# --- bumpless transfers --------------------------------------------------------------------------


def test_manual_to_auto_is_bumpless() -> None:
    kp, ti, td = 3.0, 120.0, 20.0
    pid = Pid(PidTuning(kp=kp, ti_s=ti, td_s=td), 37.0, 0.0, 100.0, initial_output=30.0)
    rng = random.Random(5)
    t = 0.0
    for _ in range(50):
        pid.update(36.0 + rng.uniform(-0.5, 0.5), t)
        t += 1.0
    pid.set_manual(42.0)
    assert pid.output == 42.0 and pid.manual
    # In manual the output stays where the operator put it, whatever the PV does.
    for pv in (35.0, 38.0, 36.2, 36.5, 36.5):
        assert pid.update(pv, t) == 42.0
        t += 1.0
    pid.set_auto()
    assert not pid.manual
    dt = 1.0
    u = pid.update(36.5, t - 1.0 + dt)  # same PV as the last manual sample: no P or D change
    assert abs(u - (42.0 + kp * dt / ti * (37.0 - 36.5))) < 1e-9


def test_manual_to_auto_with_a_pv_change_only_adds_the_incremental_terms() -> None:
    kp, ti = 3.0, 120.0
    pid = Pid(PidTuning(kp=kp, ti_s=ti), 37.0, 0.0, 100.0)
    pid.update(36.0, 0.0)
    pid.set_manual(60.0)
    pid.update(36.0, 1.0)
    pid.set_auto()
    u = pid.update(36.4, 1.5)
    # velocity form: delta P + integral over the step, nothing else
    assert abs(u - (60.0 + kp * (0.6 - 1.0) + kp * 0.5 / ti * 0.6)) < 1e-9


def test_manual_output_is_clamped_to_the_limits() -> None:
    pid = Pid(PidTuning(kp=1.0, ti_s=10.0), 5.0, 0.0, 20.0)
    pid.set_manual(55.0)
    assert pid.output == 20.0
    pid.set_manual(-3.0)
    assert pid.output == 0.0


def test_tuning_change_is_bumpless() -> None:
    old = PidTuning(kp=2.0, ti_s=300.0, td_s=30.0)
    new = PidTuning(kp=8.0, ti_s=50.0, td_s=5.0)
    sp, dt, slope = 37.0, 1.0, 0.01
    pid = Pid(old, sp, 0.0, 100.0, initial_output=40.0)
    # PV on a steady ramp: constant derivative, P changing every step.
    t, pv = 0.0, 35.0
    for _ in range(30):
        pid.update(pv, t)
        t += dt
        pv += slope
    u_before = pid.output
    e_before = sp - (pv - slope)
    pid.set_tuning(new)
    assert pid.output == u_before  # nothing moves at the instant of the change
    u = pid.update(pv, t)
    e = sp - pv
    # From here on the new tuning acts incrementally from where the old one left the output: the
    # derivative term is unchanged (same slope), P moves by kp_new * delta e, I by
    # kp_new/ti_new*e*dt.
    expected = u_before + new.kp * (e - e_before) + new.kp * dt / new.ti_s * e
    assert abs(u - expected) < 1e-9
    # A non-bumpless switch would have jumped by roughly (kp_new - kp_old) * e: far bigger.
    assert abs((new.kp - old.kp) * e) > 1.0


def test_set_tuning_rejects_non_positive_ti() -> None:
    pid = Pid(PidTuning(kp=1.0, ti_s=10.0), 5.0, 0.0, 20.0)
    with pytest.raises(ValueError, match="ti_s"):
        pid.set_tuning(PidTuning(kp=1.0, ti_s=0.0))
    assert pid.tuning.ti_s == 10.0


# --- derivative ----------------------------------------------------------------------------------


def test_setpoint_step_gives_no_derivative_kick() -> None:
    kp, ti, td, dt = 4.0, 200.0, 60.0, 1.0
    pid = Pid(PidTuning(kp=kp, ti_s=ti, td_s=td, d_filter_s=2.0), 30.0, -1000.0, 1000.0)
    t = 0.0
    for _ in range(20):
        pid.update(29.0, t)
        t += dt
    u0 = pid.output
    delta_sp = 2.5
    pid.setpoint += delta_sp
    u1 = pid.update(29.0, t)
    e1 = pid.setpoint - 29.0
    # only the proportional step (plus the ordinary integral over this dt)
    assert abs((u1 - u0) - (kp * delta_sp + kp * dt / ti * e1)) < 1e-9
    # derivative-on-error would have kicked by kp*td*delta_sp/dt = 600 on top
    assert u1 - u0 < kp * delta_sp + 1.0


def test_derivative_filter_attenuates_a_single_sample_spike() -> None:
    tuning = {"kp": 1.0, "ti_s": 1e9, "td_s": 50.0}
    raw = Pid(PidTuning(**tuning), 37.0, -1e6, 1e6, initial_output=0.0)
    filtered = Pid(PidTuning(**tuning, d_filter_s=20.0), 37.0, -1e6, 1e6, initial_output=0.0)
    pvs = [37.0] * 10 + [38.0] + [37.0] * 10  # one glitch of 1 unit
    raw_out = _drive(raw, [(float(k), pv) for k, pv in enumerate(pvs)])
    filt_out = _drive(filtered, [(float(k), pv) for k, pv in enumerate(pvs)])
    baseline = raw_out[9]
    assert filt_out[9] == baseline
    raw_peak = max(abs(u - baseline) for u in raw_out)
    filt_peak = max(abs(u - baseline) for u in filt_out)
    # unfiltered: P (1) + D (kp*td*1/dt = 50) at the spike
    assert raw_peak == pytest.approx(51.0, rel=1e-9)
    # filtered: D seen through a first-order lag, alpha = dt/(Tf+dt) = 1/21
    assert filt_peak == pytest.approx(1.0 + 50.0 / 21.0, rel=1e-9)
    assert filt_peak < raw_peak / 10


# --- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_limits_and_rate_limit_hold_over_a_random_sequence(seed: int) -> None:
    rng = random.Random(seed)
    out_min, out_max, rate = 5.0, 60.0, 0.5  # %/s
    pid = Pid(PidTuning(kp=rng.uniform(1, 50), ti_s=rng.uniform(5, 500), td_s=rng.uniform(0, 30),
                        d_filter_s=rng.uniform(0, 5)),
              25.0, out_min, out_max, rate_limit_per_s=rate, initial_output=30.0,
              output_raises_pv=rng.random() < 0.5)
    t, u_prev = 0.0, pid.output
    hit_max = hit_min = hit_rate = False
    for k in range(4000):
        dt = rng.choice([0.1, 0.5, 1.0, 1.0, 1.0, 3.0, 7.0])
        t += dt
        if k % 500 == 0:
            pid.setpoint = rng.uniform(0, 100)
        if k % 200 == 0:  # a sustained error one way or the other, then noise on top
            offset = rng.choice([-1, 1]) * rng.uniform(0.5, 5.0)
        pv = pid.setpoint + offset + rng.gauss(0, 1.0)
        u = pid.update(pv, t)
        assert out_min <= u <= out_max
        step = abs(u - u_prev)
        if k > 0:  # the first sample only initialises
            assert step <= rate * dt + 1e-12
        hit_max |= u == out_max
        hit_min |= u == out_min
        hit_rate |= math.isclose(step, rate * dt, rel_tol=1e-9)
        u_prev = u
    assert hit_max and hit_min and hit_rate  # the sequence really exercised every limit


def test_initial_output_is_clamped() -> None:
    assert Pid(PidTuning(kp=1.0, ti_s=1.0), 0.0, 0.0, 10.0, initial_output=50.0).output == 10.0
    assert Pid(PidTuning(kp=1.0, ti_s=1.0), 0.0, 0.0, 10.0, initial_output=-5.0).output == 0.0
    assert Pid(PidTuning(kp=1.0, ti_s=1.0), 0.0, 2.0, 10.0).output == 2.0


# --- time ----------------------------------------------------------------------------------------


def test_integral_uses_the_measured_dt() -> None:
    kp, ti = 2.0, 100.0
    deltas = {}
    for dt in (1.0, 2.0, 0.25):
        pid = Pid(PidTuning(kp=kp, ti_s=ti), 37.0, 0.0, 100.0, initial_output=50.0)
        pid.update(36.0, 10.0)
        u0 = pid.output
        deltas[dt] = pid.update(36.0, 10.0 + dt) - u0
    assert deltas[1.0] == pytest.approx(kp / ti * 1.0, rel=1e-12)
    assert deltas[2.0] == pytest.approx(2.0 * deltas[1.0], rel=1e-12)
    assert deltas[0.25] == pytest.approx(0.25 * deltas[1.0], rel=1e-12)


def test_repeated_or_backwards_timestamps_change_nothing() -> None:
    pid = Pid(PidTuning(kp=2.0, ti_s=10.0, td_s=5.0), 37.0, 0.0, 100.0, initial_output=50.0)
    pid.update(36.0, 10.0)
    u = pid.update(36.0, 11.0)
    assert pid.update(30.0, 11.0) == u
    assert pid.update(30.0, 9.0) == u
    # and the next good sample still integrates over the real dt from t = 11
    assert pid.update(36.0, 12.0) == pytest.approx(u + 2.0 / 10.0 * 1.0, rel=1e-12)


def test_hold_then_resume_has_no_gap_integral_and_no_derivative_spike() -> None:
    kp, ti, td = 2.0, 100.0, 30.0
    pid = Pid(PidTuning(kp=kp, ti_s=ti, td_s=td), 37.0, -1000.0, 1000.0, initial_output=10.0)
    t = 0.0
    for _ in range(10):
        pid.update(36.0, t)
        t += 1.0
    u_hold = pid.output
    pid.hold()
    # blind for 600 s (probe fouled); the first good sample comes back 3 degC different
    t += 600.0
    assert pid.update(33.0, t) == u_hold  # resuming moves nothing: no D spike, no P jump
    t += 1.0
    u = pid.update(33.0, t)
    # only one second of integral, none for the 600 s gap, no derivative (PV flat since resume)
    assert abs(u - (u_hold + kp / ti * 4.0 * 1.0)) < 1e-9
    # for scale: integrating the gap would have added kp/ti*1*600 = 12, a derivative across the gap
    # kp*td*3/600 = 0.3, a derivative on the first resumed dt kp*td*3/1 = 180


# --- direction -----------------------------------------------------------------------------------


def test_reverse_action_mirrors_direct_action() -> None:
    tuning = PidTuning(kp=5.0, ti_s=60.0, td_s=10.0, d_filter_s=3.0)
    sp = 7.3
    direct = Pid(tuning, sp, -50.0, 50.0, initial_output=0.0)
    reverse = Pid(tuning, sp, -50.0, 50.0, initial_output=0.0, output_raises_pv=False)
    rng = random.Random(11)
    x = 0.0
    for k in range(300):
        x += rng.gauss(0, 0.02)
        u_d = direct.update(sp - x, float(k))
        u_r = reverse.update(sp + x, float(k))
        assert u_r == pytest.approx(u_d, abs=1e-9)


def test_reverse_action_raises_output_when_pv_is_above_setpoint() -> None:
    # pH above setpoint: more CO2.
    direct = Pid(PidTuning(kp=40.0, ti_s=1000.0), 7.3, 0.0, 15.0, initial_output=5.0)
    reverse = Pid(PidTuning(kp=40.0, ti_s=1000.0), 7.3, 0.0, 15.0, initial_output=5.0,
                  output_raises_pv=False)
    for pid in (direct, reverse):
        pid.update(7.3, 0.0)
        for k in range(1, 11):
            pid.update(7.4, float(k))
    assert reverse.output > 5.0 + 40.0 * 0.1 * 0.99
    assert direct.output < 5.0 - 40.0 * 0.1 * 0.99


# --- closed loop ---------------------------------------------------------------------------------


def test_closed_loop_first_order_plant_settles_with_zero_steady_state_error() -> None:
    # Chamber temperature: tau dT/dt = -(T - T_amb) + gain * heater, exact zero-order-hold step.
    tau, gain, t_amb, sp = 600.0, 0.2, 20.0, 37.0
    dt = 1.0
    decay = math.exp(-dt / tau)
    pid = Pid(PidTuning(kp=30.0, ti_s=720.0), sp, 0.0, 100.0)
    temp, t = t_amb, 0.0
    errors = []
    for _ in range(6 * 3600):
        u = pid.update(temp, t)
        target = t_amb + gain * u
        temp = target + (temp - target) * decay
        t += dt
        errors.append(sp - temp)
    assert abs(errors[-1]) < 1e-6
    assert max(abs(e) for e in errors[-3600:]) < 1e-3  # settled for the last hour
    assert pid.output == pytest.approx((sp - t_amb) / gain, abs=1e-3)  # 85 %, held by I alone
    assert max(-e for e in errors) < 2.0  # no wild overshoot either


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(("out_min", "out_max"), [(10.0, 10.0), (20.0, 10.0)])
def test_rejects_empty_output_range(out_min: float, out_max: float) -> None:
    with pytest.raises(ValueError, match="out_min"):
        Pid(PidTuning(kp=1.0, ti_s=10.0), 0.0, out_min, out_max)


@pytest.mark.parametrize("ti_s", [0.0, -5.0])
def test_rejects_non_positive_integral_time(ti_s: float) -> None:
    with pytest.raises(ValueError, match="ti_s"):
        Pid(PidTuning(kp=1.0, ti_s=ti_s), 0.0, 0.0, 10.0)


# --- the update's limits are `_limit`'s ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_limits_inside_update_are_exactly_limit(seed: int) -> None:
    """`update` applies the output limits inline (it runs for every loop every tick), a copy
    of `_limit`, which the restart's first output uses: the two must agree bit for bit, NaN
    and infinities included, with and without a rate limit, whatever the output before."""
    rng = random.Random(seed)
    odd = [math.nan, math.inf, -math.inf, 0.0, -0.0]

    def value(scale: float) -> float:
        return rng.choice(odd) if rng.random() < 0.1 else rng.uniform(-scale, scale)

    for _ in range(600):
        out_min = rng.uniform(-50.0, 50.0)
        pid = Pid(PidTuning(kp=rng.uniform(0.1, 5.0), ti_s=rng.uniform(1.0, 600.0),
                            td_s=rng.choice([0.0, rng.uniform(0.0, 30.0)])),
                  value(100.0), out_min, out_min + rng.uniform(1.0, 100.0),
                  rate_limit_per_s=rng.choice([None, rng.uniform(0.01, 5.0)]),
                  initial_output=rng.uniform(-100.0, 100.0))
        t = 0.0
        pid.update(value(100.0), t)
        for _ in range(5):
            last_t, t = t, t + rng.choice([rng.uniform(0.01, 20.0), 1.0])
            dt = t - last_t  # as update measures it
            before, integral_before = pid.output, pid._integral
            applied = pid.update(value(100.0), t)
            # What update wanted, in its own order of operations (floats do not associate).
            integral = integral_before + pid.tuning.kp * dt / pid.tuning.ti_s * pid._last_error
            wanted = pid._last_p + integral + pid._last_d
            reference = Pid(pid.tuning, pid.setpoint, pid.out_min, pid.out_max,
                            rate_limit_per_s=pid.rate_limit_per_s)
            reference.output = before
            expected = reference._limit(wanted, dt)
            assert applied == expected or (math.isnan(applied) and math.isnan(expected)), (
                wanted, before, dt)
            if math.isnan(applied):
                break  # a NaN output is the end of this loop's story (the judge stops it)
