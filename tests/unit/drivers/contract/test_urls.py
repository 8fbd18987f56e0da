"""`split_host_port`, the one parser of a HOST:PORT (device URLs, a sweep's --scheduler)."""
from __future__ import annotations

import pytest

from drivers.contract.urls import split_host_port


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:502", ("127.0.0.1", 502)),
    ("plc.local:65535", ("plc.local", 65535)),
    ("[::1]:8786", ("::1", 8786)),
    ("[fe80::1%eth0]:1", ("fe80::1%eth0", 1)),
])
def test_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


def test_a_default_port_stands_in_for_a_missing_one() -> None:
    assert split_host_port("plc.local", default_port=502) == ("plc.local", 502)
    assert split_host_port("[::1]", default_port=502) == ("::1", 502)


@pytest.mark.parametrize(("text", "why"), [
    ("plc.local", "missing :PORT"),
    ("", "missing :PORT"),
    (":502", "missing HOST"),
    ("[]:502", "missing HOST"),
    ("h:0", "port '0' is not an integer 1-65535"),
    ("h:65536", "port '65536' is not an integer 1-65535"),
    ("h:８０", "port '８０' is not an integer 1-65535"),  # Unicode digits are not a port
    ("[::1", "unbalanced brackets"),  # was ('[:', 1): the host's text cut at its last colon
    ("::1]:80", "unbalanced brackets"),
    ("[[::1]]:80", "unbalanced brackets"),
    ("a[b:80", "unbalanced brackets"),
])
def test_a_bad_host_port_says_what_is_wrong_and_what_is_expected(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"^expected HOST:PORT \(PORT 1-65535\), got ") as err:
        split_host_port(text)
    assert why in str(err.value)
    assert repr(text) in str(err.value)


def test_port_zero_only_where_a_free_port_may_be_picked() -> None:
    assert split_host_port("127.0.0.1:0", free_port_ok=True) == ("127.0.0.1", 0)
