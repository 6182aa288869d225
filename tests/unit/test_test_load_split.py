"""molecule/shared/load.py: the failover tests' load and how it splits failures at a fault.

The split decides which failed requests a failover test forgives (in flight at the fault, or started in
the grace after it) and which fail the test, so it is tested here on records written by hand."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "shared"))
from load import Load, check_target  # noqa: E402


def load_with(records):
    load = Load("127.0.0.1", [])
    load.records = [(kind, start, end, ok, "" if ok else "HTTP 502") for kind, start, end, ok in records]
    return load


def starts(records):
    return [r[1] for r in records]


RECORDS = [
    ("api", 1.0, 2.0, False),  # failed before the fault: in no group
    ("api", 9.5, 10.2, False),  # in flight at 10.0
    ("api", 9.9, 10.05, True),  # in flight, but answered
    ("webui", 10.3, 10.4, False),  # started 0.3 s after 10.0
    ("webui", 10.8, 10.9, False),  # 0.8 s after 10.0
    ("api", 11.5, 11.6, False),  # 1.5 s after 10.0
    ("api", 12.0, 12.1, True),
]


def test_a_fault_at_one_instant():
    split = load_with(RECORDS).split(10.0)
    assert starts(split["in_flight"]) == [9.5]
    assert starts(split["early"]) == [10.3, 10.8]
    assert starts(split["after"]) == [11.5]
    assert len(split["all"]) == len(RECORDS)


def test_a_fault_window_counts_what_was_in_flight_in_it_and_starts_the_grace_at_its_end():
    split = load_with(RECORDS).split(10.0, fault_end=10.5)
    assert starts(split["in_flight"]) == [9.5, 10.3]  # 10.3-10.4 lies inside the window
    assert starts(split["early"]) == [10.8]
    assert starts(split["after"]) == [11.5]


def test_a_window_does_not_forgive_what_starts_a_grace_after_its_end():
    split = load_with(RECORDS).split(10.0, grace=0.5, fault_end=10.6)
    assert starts(split["early"]) == [10.8]
    assert starts(split["after"]) == [11.5]
    split = load_with(RECORDS).split(10.0, grace=0.1, fault_end=10.6)
    assert starts(split["after"]) == [10.8, 11.5]


@pytest.mark.parametrize("address", ["192.0.2.1", "10.0.0.1", "8.8.8.8"])
def test_targets_outside_loopback_and_the_test_networks_are_refused(address):
    with pytest.raises(ValueError, match="not loopback or a test network"):
        Load(address, [])


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "172.29.72.100"])
def test_loopback_and_the_test_networks_are_accepted(address):
    assert check_target(address) == address
