"""The phases' names and their timings."""

import re

import pytest

from glance_convert.pipeline import phases


def test_phases_are_named_once_in_import_order():
    assert phases.ORDER == (
        phases.OPEN_CONTAINER, phases.INSPECT, phases.CHECK, phases.RESERVE,
        phases.CONVERT, phases.VERIFY, phases.HAND_ON)
    assert len(set(phases.ORDER)) == len(phases.ORDER)


def test_summary_lists_the_phases_that_ran_in_order():
    timings = phases.Timings()
    with timings.phase(phases.CONVERT):
        pass
    with timings.phase(phases.INSPECT):
        pass
    assert re.fullmatch(r'inspect \d+\.\d\d s, convert \d+\.\d\d s',
                        timings.summary())
    assert phases.Timings().summary() == ''


def test_a_phase_that_fails_is_counted_and_the_error_kept():
    timings = phases.Timings()
    with pytest.raises(RuntimeError):
        with timings.phase(phases.VERIFY):
            raise RuntimeError('refused')
    assert list(timings.seconds) == [phases.VERIFY]
    assert timings.seconds[phases.VERIFY] >= 0


def test_an_unknown_phase_is_a_programming_error():
    with pytest.raises(ValueError):
        with phases.Timings().phase('download'):
            pass
