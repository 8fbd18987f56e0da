"""The recipe's condition grammar: a small expression language, parsed once at load, never `eval`.

A phase ends when one of its exits' conditions holds (docs/recipes.md, "Conditions"). A condition
compares a reading, an estimate or a time with a number, optionally for a duration, and
combines such comparisons with `and`, `or`, `not` and parentheses:

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" or_expr ")" | "confirmed" | comparison
    comparison := NAME OP value ["for" DURATION]
    OP         := "<" | "<=" | ">" | ">="
    value      := NUMBER | DURATION        (a DURATION only after phase_time or run_time)

NAME is a device input (`volume_ml`), a soft-sensor estimate (`est_inhibitor_ng_per_ml`) or one
of the clocks `phase_time` (how long the phase has run, holds excluded) and `run_time` (the run
clock). NUMBER is a decimal with an optional exponent (`1.5e6`); DURATION a number with a unit
(`90s`, `30m` or `30min`, `6h`, `1.5d`: the run's one duration parser, so no exponent and no
sign). `confirmed` holds once an operator has sent `confirm` in this phase. A condition nests at
most MAX_DEPTH deep (parentheses and `not`): deeper is a config error, not a RecursionError.

Why a grammar of our own rather than Python's `ast` with a whitelist: the language is five
productions, its errors can name the position and what was expected, and nothing the parser
accepts can do anything but compare numbers. Equality is left out on purpose: readings are
floats, and `ph == 7.3` would hold by accident or never.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from drivers.contract.durations import parse_duration_s

CLOCKS = ("phase_time", "run_time")
"""The operands that are times, not channels: compared with a duration (or seconds)."""
CONFIRMED = "confirmed"
KEYWORDS = frozenset({"and", "or", "not", "for", CONFIRMED})
OPERATORS = ("<=", ">=", "<", ">")
HOLDS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
"""What each operator means: `Compare.holds`, and the recipe's exits compiled for the tick
(controller/procedure/exits.py)."""
MAX_DEPTH = 32
"""Parentheses and `not`s nested deeper than this are refused: no recipe needs it, and the
recursive descent must end in a ConditionError, not Python's recursion limit."""

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<duration>\d+(?:\.\d*)?(?:min|[smhd]))(?![A-Za-z0-9_])
    | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z0-9_])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|<|>)
    | (?P<paren>[()])
    )""", re.VERBOSE)


class ConditionError(ValueError):
    """A condition that does not parse: says where and what was expected."""


@dataclass(frozen=True, slots=True)
class Compare:
    """`operand op value [for for_s]`: a reading, estimate or clock against a number."""

    operand: str
    op: str
    value: float
    for_s: float = 0.0

    def holds(self, x: float) -> bool:
        return HOLDS[self.op](x, self.value)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """An operator's `confirm` in this phase."""


@dataclass(frozen=True, slots=True)
class Not:
    term: Condition


@dataclass(frozen=True, slots=True)
class All:
    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    terms: tuple[Condition, ...]


Condition = Compare | Confirmed | Not | All | AnyOf


def parse_condition(text: str) -> Condition:
    """The condition `text` says; a ConditionError naming the position and what was expected."""
    return _Parser(text).parse()


def comparisons(condition: Condition) -> list[Compare]:
    """Every comparison in `condition`, in reading order: one hold-timer each."""
    if isinstance(condition, Compare):
        return [condition]
    if isinstance(condition, Not):
        return comparisons(condition.term)
    if isinstance(condition, All | AnyOf):
        return [c for term in condition.terms for c in comparisons(term)]
    return []


def uses_confirmation(condition: Condition) -> bool:
    if isinstance(condition, Confirmed):
        return True
    if isinstance(condition, Not):
        return uses_confirmation(condition.term)
    if isinstance(condition, All | AnyOf):
        return any(uses_confirmation(term) for term in condition.terms)
    return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenise(text)
        self.i = 0
        self.depth = 0

    def _tokenise(self, text: str) -> list[tuple[str, str, int]]:
        tokens: list[tuple[str, str, int]] = []
        pos = 0
        end = len(text.rstrip())
        while pos < end:
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                bad = text[pos:end].lstrip()
                hint = (" (the operators are <, <=, > and >=: no equality, readings are floats)"
                        if bad.startswith(("=", "!=")) else "")
                raise ConditionError(f"unexpected {bad[:20]!r} at column "
                                     f"{end - len(bad) + 1} of {text!r}{hint}")
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        return tokens

    def parse(self) -> Condition:
        if not self.tokens:
            raise ConditionError("an empty condition: write one like "
                                 "'est_inhibitor_ng_per_ml >= 50 for 6h'")
        condition = self._or()
        if self.i < len(self.tokens):
            self._fail("'and', 'or' or the end")
        return condition

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, expected: str) -> None:
        token = self._peek()
        found = "the end" if token is None else repr(token[1])
        column = len(self.text) + 1 if token is None else token[2] + 1
        raise ConditionError(f"expected {expected}, found {found} at column {column} of "
                             f"{self.text!r}")

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "name" and token[1] == word:
            self.i += 1
            return True
        return False

    def _or(self) -> Condition:
        terms = [self._and()]
        while self._keyword("or"):
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))

    def _and(self) -> Condition:
        terms = [self._unary()]
        while self._keyword("and"):
            terms.append(self._unary())
        return terms[0] if len(terms) == 1 else All(tuple(terms))

    def _unary(self) -> Condition:
        token = self._peek()
        nests = token is not None and (token[0], token[1]) in (("name", "not"), ("paren", "("))
        if nests and self.depth >= MAX_DEPTH:
            assert token is not None
            raise ConditionError(f"more than {MAX_DEPTH} nested parentheses or 'not's at column "
                                 f"{token[2] + 1} of {self.text!r}")
        self.depth += nests
        try:
            return self._nested_unary()
        finally:
            self.depth -= nests

    def _nested_unary(self) -> Condition:
        if self._keyword("not"):
            return Not(self._unary())
        if self._keyword(CONFIRMED):
            return Confirmed()
        token = self._peek()
        if token is not None and token[0] == "paren" and token[1] == "(":
            self.i += 1
            inner = self._or()
            token = self._peek()
            if token is None or token[1] != ")":
                self._fail("')'")
            self.i += 1
            return inner
        return self._comparison()

    def _comparison(self) -> Compare:
        token = self._peek()
        if token is None or token[0] != "name" or token[1] in KEYWORDS:
            self._fail("a channel, an estimate, phase_time, run_time, 'confirmed', 'not' or '('")
        assert token is not None
        operand = token[1]
        self.i += 1
        op = self._peek()
        if op is None or op[0] != "op":
            self._fail(f"a comparison after {operand!r} (one of {', '.join(OPERATORS)})")
        assert op is not None
        self.i += 1
        value = self._value(operand)
        for_s = 0.0
        if self._keyword("for"):
            duration = self._peek()
            if duration is None or duration[0] != "duration":
                self._fail("a duration after 'for' (like 30m, 6h, 2d)")
            assert duration is not None
            self.i += 1
            for_s = self._duration_s(duration[1])
        return Compare(operand, op[1], value, for_s)

    def _value(self, operand: str) -> float:
        token = self._peek()
        if token is not None and token[0] == "number":
            if not math.isfinite(float(token[1])):
                self._fail("a finite number")
            self.i += 1
            return float(token[1])
        if token is not None and token[0] == "duration":
            if operand not in CLOCKS:
                self._fail(f"a number: {operand!r} is not a time, so {token[1]!r} has no "
                           "meaning here")
            self.i += 1
            return self._duration_s(token[1])
        self._fail("a number" + (" or a duration" if operand in CLOCKS else ""))
        raise AssertionError  # unreachable: _fail raises

    def _duration_s(self, text: str) -> float:
        """The project's one duration parser; its ValueError (a duration too long to be finite)
        as a ConditionError, so a bad condition is always a config error with a column."""
        try:
            return parse_duration_s(text)
        except ValueError:
            self.i -= 1
            self._fail("a finite duration")
            raise AssertionError from None  # unreachable: _fail raises
