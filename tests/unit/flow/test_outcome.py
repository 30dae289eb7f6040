"""An import's outcome: its result and check name, its summary line,
and the slot gauges kept by TimedWorkspace."""

import string

import pytest

from glance_convert import errors
from glance_convert import metrics
from glance_convert.flow import outcome as outcomes
from glance_convert.pipeline import checks
from tests.unit.test_metrics import run_isolated


def _fields(sentence):
    return {name: name for _, name, _, _ in string.Formatter().parse(
        sentence) if name}


@pytest.mark.parametrize('check', checks.CHECKS, ids=lambda c: c.name)
def test_every_refusal_is_counted_under_its_check_name(check):
    with pytest.raises(errors.ImageRejected) as caught:
        check.reject('detail', **_fields(check.sentence))
    result, name = outcomes.classify(caught.value)
    assert result == metrics.REFUSED
    # qemu_img_check shares corrupt's sentence: the first one wins.
    assert name == checks.matching(check.say(**_fields(
        check.sentence))).name
    assert name in {c.name for c in checks.CHECKS}


def test_results_of_other_failures():
    assert outcomes.classify(errors.ConversionCancelled('x')) == (
        metrics.CANCELLED, None)
    assert outcomes.classify(errors.ConversionFailed('x')) == (
        metrics.FAILED, None)
    assert outcomes.classify(RuntimeError('x')) == (metrics.FAILED, None)
    assert outcomes.classify(None) == (None, None)


def test_summary_line_is_key_value():
    ticks = iter([0.0, 1.0, 1.5, 4.0, 4.0])
    out = outcomes.Outcome('img-1', 'task-1', clock=lambda: next(ticks))
    out.source_format, out.target_format = 'vmdk', 'raw'
    out.lap()                       # prepare: 1.0
    out.stage = 'inspect'
    out.lap()                       # inspect: 0.5
    result, out.check = outcomes.classify(
        errors.ImageRejected(checks.EXTENTS.say()))
    out.result = result
    out.lap('convert')              # 2.5
    line = out.summary()
    assert line.startswith('Import summary: ')
    fields = dict(kv.split('=', 1) for kv in line.split()[2:])
    assert fields == {
        'image_id': 'img-1', 'task_id': 'task-1', 'result': 'refused',
        'check': 'vmdk_extents', 'source_format': 'vmdk',
        'target_format': 'raw', 'container_format': '-',
        'bytes_read': '0', 'bytes_written': '0', 'prepare_s': '1.000',
        'inspect_s': '0.500', 'convert_s': '2.500'}


SLOTS = '''
    import sys, threading, time
    from glance_convert import metrics
    from glance_convert.flow import outcome as outcomes
    from glance_convert.host import workspace
    directory, work = sys.argv[1], sys.argv[2]
    assert metrics.setup(directory)
    ws = workspace.Workspace(work, lock_dir=None, max_concurrent=1,
                             reserved_bytes=0, max_bytes=0)

    def gauges():
        found = {}
        for fam in metrics.registry(directory).collect():
            for s in fam.samples:
                if s.name.startswith('glance_convert_conversions_'):
                    found[s.name[len('glance_convert_conversions_'):]] = (
                        int(s.value))
        return found

    first, second = (outcomes.Outcome(n, 't') for n in ('a', 'b'))
    for o in (first, second):
        o.stage = 'inspect'
    release, holding, waited = (threading.Event() for _ in range(3))

    def hold():
        with outcomes.TimedWorkspace(ws, first).slot('a', 10):
            holding.set()
            release.wait()
    threading.Thread(target=hold).start()
    holding.wait()
    print('one holds', gauges(), flush=True)
    done = threading.Event()

    def wait_for_slot():
        with outcomes.TimedWorkspace(ws, second).slot(
                'b', 30, on_wait=waited.set):
            print('second holds', gauges(), flush=True)
        done.set()
    threading.Thread(target=wait_for_slot).start()
    waited.wait()
    print('one waits', gauges(), flush=True)
    release.set()
    done.wait()
    print('none', gauges(), flush=True)
    print('stages', second.stage, 'slot_wait' in second.seconds, flush=True)
'''


def test_slot_gauges_follow_the_conversions(tmp_path):
    (tmp_path / 'work').mkdir()
    result = run_isolated(SLOTS, tmp_path / 'm', tmp_path / 'work')
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines()
             if line.split(' ', 2)[0] in ('one', 'second', 'none',
                                          'stages')]
    assert lines == [
        "one holds {'running': 1, 'waiting': 0}",
        "one waits {'running': 1, 'waiting': 1}",
        "second holds {'running': 1, 'waiting': 0}",
        "none {'running': 0, 'waiting': 0}",
        'stages convert True',
    ], result.stdout
