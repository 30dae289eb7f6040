"""The phases' names and their timings."""

import re

import pytest

from glance_convert.pipeline import phases


def test_phases_are_named_once_in_import_order():
    assert phases.ORDER == (
        phases.PREPARE, phases.OPEN_CONTAINER, phases.INSPECT, phases.CHECK,
        phases.RESERVE, phases.CONVERT, phases.VERIFY, phases.DESCRIBE,
        phases.HASH,
        phases.HAND_ON)
    assert not set(phases.WAITS) & set(phases.ORDER)
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


def test_each_step_names_the_next_and_done_ends_the_run():
    ran = []

    def step(name, next_name):
        def run():
            ran.append(name)
            return next_name
        return run

    timings = phases.Timings()
    # The check sends this upload straight to the end, as a pass-through.
    phases.run(phases.INSPECT, {
        phases.INSPECT: step(phases.INSPECT, phases.CHECK),
        phases.CHECK: step(phases.CHECK, phases.DONE),
        phases.CONVERT: step(phases.CONVERT, phases.DONE)}, timings)
    assert ran == [phases.INSPECT, phases.CHECK]
    assert set(timings.seconds) == {phases.INSPECT, phases.CHECK}


def test_a_failing_step_is_timed_and_ends_the_run():
    timings = phases.Timings()

    def boom():
        raise RuntimeError('refused')

    with pytest.raises(RuntimeError):
        phases.run(phases.CHECK, {phases.CHECK: boom,
                                  phases.CONVERT: lambda: phases.DONE},
                   timings)
    assert list(timings.seconds) == [phases.CHECK]


def test_nothing_runs_from_done():
    timings = phases.Timings()
    phases.run(phases.DONE, {}, timings)
    assert timings.seconds == {}
