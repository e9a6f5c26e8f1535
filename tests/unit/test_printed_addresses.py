"""Addresses picked out of what a learner's program prints: Python reprs, ip:port, [v6]:port."""

from __future__ import annotations

import pytest

from lab.programs.printed import addresses_in


def texts(line: str) -> list[str]:
    return [a.address for a in addresses_in(line)]


@pytest.mark.parametrize(("line", "expected"), [
    ("connected by ('10.77.0.5', 48606)", ["10.77.0.5:48606"]),
    ('connected by ("10.77.0.5", 48606)', ["10.77.0.5:48606"]),
    ("('fd00:77::5', 40000, 0, 0) says hello", ["[fd00:77::5]:40000"]),
    ("peer ('fe80::1%eth0', 5353, 0, 2)", ["[fe80::1]:5353"]),
    ("connected from ('10.0.0.3', 51234) to ('10.0.0.2', 19200)", ["10.0.0.3:51234", "10.0.0.2:19200"]),
    ("client 172.19.0.5:48606 -> 172.19.0.2:19200", ["172.19.0.5:48606", "172.19.0.2:19200"]),
    ("[fd00::5]:48606 sent 4 bytes", ["[fd00::5]:48606"]),
    ("dual stack saw ('::ffff:10.0.0.3', 4000, 0, 0)", ["10.0.0.3:4000"]),
    ("[2001:db8::1]:443 and 2001:db8::1 alone", ["[2001:db8::1]:443"]),
])
def test_printed_addresses_are_found_and_normalised(line, expected):
    assert texts(line) == expected


@pytest.mark.parametrize("line", [
    "Wed Nov 25 12:30:45 2026",             # a time of day is not ip:port
    "version 1.2.3:4",                      # not four octets
    "('localhost', 19200)",                 # a name, not an address: nothing to join on
    "999.1.1.1:80",                         # not an IPv4 address
    "10.0.0.1:99999",                       # port out of range
    "ratio 10.0.0.1:2.5",                   # a number, not a port
    "",
])
def test_things_that_only_look_like_addresses_are_not(line):
    assert texts(line) == []


def test_each_address_is_reported_once_where_it_stands():
    line = "('10.0.0.3', 51234) is 10.0.0.3:51234"
    found = addresses_in(line)
    assert [a.address for a in found] == ["10.0.0.3:51234", "10.0.0.3:51234"]
    assert [a.start for a in found] == [0, line.index("10.0.0.3:51234")]
    assert found[0].port == 51234 and found[0].host == "10.0.0.3"
