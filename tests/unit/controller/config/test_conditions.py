"""controller.config.conditions: the recipe's condition grammar parses what docs/recipes.md says,
binds as it says, and refuses everything else with a ConditionError naming the column and what
was expected, never with another exception (a recipe is checked at load, so a crash in the
parser would be a crash of check-config)."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config.conditions import (
    MAX_DEPTH,
    All,
    AnyOf,
    Compare,
    Condition,
    ConditionError,
    Confirmed,
    Not,
    comparisons,
    parse_condition,
    uses_confirmation,
)

HOUR = 3600.0
DAY = 86400.0


def a(operand: str, op: str = ">", value: float = 1.0, for_s: float = 0.0) -> Compare:
    return Compare(operand, op, value, for_s)


def error_of(text: str) -> str:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    return str(info.value)


# --- what parses, and how it binds -----------------------------------------------------------


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_every_operator(op: str) -> None:
    assert parse_condition(f"volume_ml {op} 45") == a("volume_ml", op, 45.0)
    assert parse_condition(f"volume_ml{op}45") == a("volume_ml", op, 45.0)  # no spaces needed


@pytest.mark.parametrize(("op", "below", "at", "above"), [
    ("<", True, False, False), ("<=", True, True, False),
    (">", False, False, True), (">=", False, True, True),
])
def test_holds_compares_as_the_operator_says(op: str, below: bool, at: bool,
                                             above: bool) -> None:
    compare = a("ph", op, 7.0)
    assert (compare.holds(6.9), compare.holds(7.0), compare.holds(7.1)) == (below, at, above)


def test_and_binds_tighter_than_or() -> None:
    left = parse_condition("a > 1 or b > 2 and c > 3")
    assert left == AnyOf((a("a"), All((a("b", value=2), a("c", value=3)))))
    right = parse_condition("a > 1 and b > 2 or c > 3")
    assert right == AnyOf((All((a("a"), a("b", value=2))), a("c", value=3)))


def test_parentheses_override_precedence() -> None:
    assert parse_condition("(a > 1 or b > 2) and c > 3") == All(
        (AnyOf((a("a"), a("b", value=2))), a("c", value=3)))
    assert parse_condition("((a > 1))") == a("a")


def test_chains_are_flat() -> None:
    assert parse_condition("a > 1 and b > 1 and c > 1") == All((a("a"), a("b"), a("c")))
    assert parse_condition("a > 1 or b > 1 or c > 1") == AnyOf((a("a"), a("b"), a("c")))


def test_not_binds_to_the_term_after_it() -> None:
    assert parse_condition("not a > 1 and b > 1") == All((Not(a("a")), a("b")))
    assert parse_condition("not (a > 1 and b > 1)") == Not(All((a("a"), a("b"))))
    assert parse_condition("not not a > 1") == Not(Not(a("a")))


def test_confirmed_alone_and_combined() -> None:
    assert parse_condition("confirmed") == Confirmed()
    combined = parse_condition("confirmed and est_viable_cells_per_ml >= 1e6")
    assert combined == All((Confirmed(), a("est_viable_cells_per_ml", ">=", 1e6)))
    assert uses_confirmation(combined)
    assert uses_confirmation(parse_condition("not (a > 1 or confirmed)"))
    assert not uses_confirmation(parse_condition("a > 1 or phase_time > 1h"))
    assert comparisons(Confirmed()) == []


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("1.", 1.0), ("1.5", 1.5), (".5", 0.5), ("-2", -2.0), ("-0.25", -0.25),
    ("1e6", 1e6), ("1.5e6", 1.5e6), ("2E3", 2000.0), ("1e+3", 1000.0), ("2.5e-3", 0.0025),
    ("-1.5e-2", -0.015), ("0", 0.0),
])
def test_numbers_with_exponents_and_signs(text: str, value: float) -> None:
    assert parse_condition(f"glucose_mm < {text}") == a("glucose_mm", "<", value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30m", 1800.0), ("30min", 1800.0), ("6h", 6 * HOUR), ("2d", 2 * DAY),
    ("1.5d", 1.5 * DAY), ("0s", 0.0),
])
def test_durations_after_the_clocks(text: str, seconds: float) -> None:
    assert parse_condition(f"phase_time >= {text}") == a("phase_time", ">=", seconds)
    assert parse_condition(f"run_time < {text}") == a("run_time", "<", seconds)


def test_a_clock_compared_with_a_bare_number_is_seconds() -> None:
    assert parse_condition("phase_time >= 3600") == a("phase_time", ">=", 3600.0)


def test_for_gives_the_hold_duration() -> None:
    assert parse_condition("est_inhibitor_ng_per_ml >= 50 for 6h") == a(
        "est_inhibitor_ng_per_ml", ">=", 50.0, 6 * HOUR)
    assert parse_condition("glucose_mm < 5 for 90min or phase_time > 2d") == AnyOf((
        a("glucose_mm", "<", 5.0, 5400.0), a("phase_time", ">", 2 * DAY)))
    assert parse_condition("run_time > 1d for 1h") == a("run_time", ">", DAY, HOUR)


def test_whitespace_around_and_inside_is_free() -> None:
    assert parse_condition("  \t( a>1 )\n  and\tb >= 2  ") == All((a("a"), a("b", ">=", 2.0)))


def test_nesting_up_to_the_limit_parses() -> None:
    deep = "(" * MAX_DEPTH + "a > 1" + ")" * MAX_DEPTH
    assert parse_condition(deep) == a("a")
    assert parse_condition("not " * MAX_DEPTH + "a > 1") is not None


# --- comparisons(): one hold-timer per comparison, in reading order --------------------------


@pytest.mark.parametrize("text", [
    "a > 1",
    "a > 1 and b < 2 or c >= 3 for 1h",
    "not (a > 1 or (b < 2 and not c <= 3)) and confirmed or d > 4",
    "((a > 1) or b > 2) and (c > 3 or (d > 4 and e > 5))",
])
def test_comparisons_lists_every_comparison_in_reading_order(text: str) -> None:
    operands = [c.operand for c in comparisons(parse_condition(text))]
    in_text = [name for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
               if name not in {"and", "or", "not", "for", "confirmed", "h"}]
    assert operands == in_text


def test_comparisons_keeps_repeats_apart() -> None:
    """`a > 1 or a > 1 for 1h`: two comparisons, two hold-timers, even on one channel."""
    assert comparisons(parse_condition("a > 1 or a > 1 for 1h")) == [a("a"), a("a", for_s=HOUR)]


# --- errors: the column and what was expected ------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("", "an empty condition: write one like 'est_inhibitor_ng_per_ml >= 50 for 6h'"),
    ("   ", "an empty condition"),
    ("volume_ml", "expected a comparison after 'volume_ml' (one of <=, >=, <, >), found the "
                  "end at column 10 of 'volume_ml'"),
    ("volume_ml == 5", "unexpected '== 5' at column 11 of 'volume_ml == 5' (the operators "
                       "are <, <=, > and >=: no equality, readings are floats)"),
    ("volume_ml = 5", "unexpected '= 5' at column 11 of 'volume_ml = 5' (the operators are"),
    ("volume_ml != 5", "unexpected '!= 5' at column 11 of 'volume_ml != 5' (the operators are"),
    ("volume_ml => 5", "unexpected '=> 5' at column 11 of 'volume_ml => 5' (the operators are"),
    ("volume_ml >= 5 =", "unexpected '=' at column 16"),
    ("volume_ml >", "expected a number, found the end at column 12 of 'volume_ml >'"),
    ("phase_time >", "expected a number or a duration, found the end at column 13"),
    ("volume_ml > ph", "expected a number, found 'ph' at column 13 of 'volume_ml > ph'"),
    ("volume_ml > 2d", "expected a number: 'volume_ml' is not a time, so '2d' has no meaning "
                       "here, found '2d' at column 13 of 'volume_ml > 2d'"),
    ("a > 1 and", "expected a channel, an estimate, phase_time, run_time, 'confirmed', 'not' or "
                  "'(', found the end at column 10 of 'a > 1 and'"),
    ("a > 1 or or b > 1", "expected a channel, an estimate, phase_time, run_time, 'confirmed', "
                          "'not' or '(', found 'or' at column 10"),
    ("and > 1", "expected a channel, an estimate, phase_time, run_time, 'confirmed', 'not' or "
                "'(', found 'and' at column 1"),
    ("for > 1", "found 'for' at column 1"),
    ("> 1", "expected a channel, an estimate, phase_time, run_time, 'confirmed', 'not' or '(', "
            "found '>' at column 1 of '> 1'"),
    ("5 < volume_ml", "found '5' at column 1"),
    ("a > 1 b > 2", "expected 'and', 'or' or the end, found 'b' at column 7 of 'a > 1 b > 2'"),
    ("a > 1)", "expected 'and', 'or' or the end, found ')' at column 6"),
    ("(a > 1", "expected ')', found the end at column 7 of '(a > 1'"),
    ("(a > 1 b", "expected ')', found 'b' at column 8"),
    ("()", "found ')' at column 2"),
    ("a > 1 for", "expected a duration after 'for' (like 30m, 6h, 2d), found the end at "
                  "column 10 of 'a > 1 for'"),
    ("a > 1 for 6", "expected a duration after 'for' (like 30m, 6h, 2d), found '6' at column 11"),
    ("a > 1 for soon", "found 'soon' at column 11"),
    ("a > 1 for 6 h", "found '6' at column 11"),
    ("a > 1 for 1e3s", "unexpected '1e3s' at column 11 of 'a > 1 for 1e3s'"),
    ("a > 1 for -6h", "unexpected '-6h' at column 11"),
    ("a > 6x", "unexpected '6x' at column 5 of 'a > 6x'"),
    ("a > 1.2.3", "expected 'and', 'or' or the end, found '.3' at column 8"),
    ("a > 1e999", "expected a finite number, found '1e999' at column 5 of 'a > 1e999'"),
    ("phase_time > " + "9" * 400 + "d", "expected a finite duration, found '999"),
    ("a > 1 && b > 2", "unexpected '&& b > 2' at column 7"),
    ("__import__('os') > 1", "unexpected \"'os') > 1\" at column 12"),
    ("__import__ (os) > 1", "expected a comparison after '__import__' (one of <=, >=, <, >), "
                            "found '(' at column 12"),
    ("a.b > 1", "unexpected '.b > 1' at column 2"),
    ("a > 1; b > 2", "unexpected '; b > 2' at column 6"),
    ("confirmed > 1", "expected 'and', 'or' or the end, found '>' at column 11"),
    ("not", "expected a channel, an estimate, phase_time, run_time, 'confirmed', 'not' or '(', "
            "found the end at column 4"),
    ("(" * (MAX_DEPTH + 1) + "a > 1" + ")" * (MAX_DEPTH + 1),
     f"more than {MAX_DEPTH} nested parentheses or 'not's at column {MAX_DEPTH + 1}"),
    ("not " * (MAX_DEPTH + 1) + "a > 1",
     f"more than {MAX_DEPTH} nested parentheses or 'not's at column {4 * MAX_DEPTH + 1}"),
])
def test_errors_name_the_column_and_what_was_expected(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_a_very_deep_condition_is_a_condition_error_not_a_recursion_error() -> None:
    assert "nested" in error_of("(" * 5000 + "a > 1" + ")" * 5000)
    assert "nested" in error_of("not " * 5000 + "a > 1")


def test_condition_error_is_a_value_error() -> None:
    """The config models turn a ValueError into a line naming the key: so must this be one."""
    assert issubclass(ConditionError, ValueError)


# --- any text: a Condition or a ConditionError, nothing else -----------------------------------

NAMES = st.sampled_from(["volume_ml", "ph", "est_inhibitor_ng_per_ml", "phase_time",
                         "run_time", "confirmed", "and", "or", "not", "for", "x_1"])
OPS = st.sampled_from(["<", "<=", ">", ">=", "=", "==", "!"])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(-10**400, 10**400).map(str),
                    st.from_regex(r"-?\d{0,3}(\.\d{0,3})?([eE][+-]?\d{1,4})?", fullmatch=True))
DURATIONS = st.builds(lambda n, unit: f"{n}{unit}", NUMBERS,
                      st.sampled_from(["s", "m", "min", "h", "d", "x", ""]))
TOKENS = st.one_of(NAMES, OPS, NUMBERS, DURATIONS, st.sampled_from(["(", ")", "(", ")"]))
GRAMMAR_SHAPED = st.lists(TOKENS, max_size=30).flatmap(
    lambda tokens: st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=len(tokens),
                            max_size=len(tokens)).map(
        lambda gaps: "".join(g + t for g, t in zip(gaps, tokens, strict=True))))


def _well_formed(depth: int) -> st.SearchStrategy[str]:
    compare = st.builds(lambda n, o, v: f"{n} {o} {v}",
                        st.sampled_from(["volume_ml", "ph", "est_inhibitor_ng_per_ml"]),
                        st.sampled_from(["<", "<=", ">", ">="]),
                        st.from_regex(r"-?\d{1,3}(\.\d{1,2})?(e[+-]?\d)?", fullmatch=True))
    leaf = st.one_of(compare, st.just("confirmed"),
                     st.builds(lambda c, d: f"{c} for {d}h", compare, st.integers(0, 48)))
    if depth == 0:
        return leaf
    sub = _well_formed(depth - 1)
    return st.one_of(leaf, sub.map(lambda s: f"({s})"), sub.map(lambda s: f"not {s}"),
                     st.builds(lambda x, y, j: f"{x} {j} {y}", sub, sub,
                               st.sampled_from(["and", "or"])))


def _outcome(text: str) -> Condition | ConditionError:
    try:
        return parse_condition(text)
    except ConditionError as exc:
        return exc


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_condition_error(text: str) -> None:
    outcome = _outcome(text)
    if isinstance(outcome, ConditionError):
        assert "column" in str(outcome) or "empty condition" in str(outcome)


@settings(derandomize=True, max_examples=600, deadline=None)
@given(GRAMMAR_SHAPED)
def test_grammar_shaped_text_parses_or_is_a_condition_error(text: str) -> None:
    outcome = _outcome(text)
    if isinstance(outcome, ConditionError):
        assert "column" in str(outcome) or "empty condition" in str(outcome)
    else:
        for compare in comparisons(outcome):
            assert compare.op in ("<", "<=", ">", ">=")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(_well_formed(3))
def test_well_formed_conditions_parse_with_one_comparison_per_written_one(text: str) -> None:
    condition = parse_condition(text)
    written = re.findall(r"(volume_ml|ph|est_inhibitor_ng_per_ml) (<=|>=|<|>)", text)
    assert [(c.operand, c.op) for c in comparisons(condition)] == written
    assert uses_confirmation(condition) == ("confirmed" in text)
