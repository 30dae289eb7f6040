"""An import's outcome: its result and check name, its summary line,
and the slot gauges kept by TimedWorkspace."""

import logging
import os
import string

import pytest

from glance_convert import errors
from glance_convert import metrics
from glance_convert.flow import outcome as outcomes
from glance_convert.pipeline import check_table
from glance_convert.pipeline import phases
from tests import fakes
from tests import imagefactory
from tests.unit.test_metrics import run_isolated


def _fields(sentence):
    return {name: name for _, name, _, _ in string.Formatter().parse(
        sentence) if name}


@pytest.mark.parametrize('check', check_table.CHECKS, ids=lambda c: c.name)
def test_every_refusal_is_counted_under_its_check_name(check):
    with pytest.raises(errors.ImageRejected) as caught:
        check.reject('detail', **_fields(check.sentence))
    result, name = outcomes.classify(caught.value)
    assert result == metrics.REFUSED
    # qemu_img_check shares corrupt's sentence: the first one wins.
    assert name == check_table.matching(check.say(**_fields(
        check.sentence))).name
    assert name in {c.name for c in check_table.CHECKS}


def test_results_of_other_failures():
    assert outcomes.classify(errors.ConversionCancelled('x')) == (
        metrics.CANCELLED, None)
    assert outcomes.classify(errors.ConversionFailed('x')) == (
        metrics.FAILED, None)
    assert outcomes.classify(RuntimeError('x')) == (metrics.FAILED, None)
    assert outcomes.classify(None) == (None, None)


def test_summary_line_is_key_value():
    ticks = iter([0.0, 4.25])
    out = outcomes.Outcome('img-1', 'task-1', clock=lambda: next(ticks))
    out.source_format, out.target_format = 'vmdk', 'raw'
    out.timings.seconds.update({phases.PREPARE: 1.0, phases.INSPECT: 0.5,
                                phases.HAND_ON: 2.5})
    result, out.check = outcomes.classify(
        errors.ImageRejected(check_table.by_name('vmdk_extents').say()))
    out.result = result
    line = out.summary()
    assert line.startswith('Import summary: ')
    fields = dict(kv.split('=', 1) for kv in line.split()[2:])
    assert fields == {
        'image_id': 'img-1', 'task_id': 'task-1', 'result': 'refused',
        'check': 'vmdk_extents', 'source_format': 'vmdk',
        'target_format': 'raw', 'container_format': '-',
        'bytes_read': '0', 'bytes_written': '0', 'prepare_s': '1.000',
        'inspect_s': '0.500', 'hand_on_s': '2.500', 'total_s': '4.250'}


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
    print('stages', 'slot_wait' in second.seconds, flush=True)
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
        'stages True',
    ], result.stdout


# -- through the task, with a fake action wrapper and the real qemu-img ----

def _summary(caplog):
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith('Import summary: ')]
    assert len(lines) == 1, lines
    return dict(kv.split('=', 1) for kv in lines[0].split()[2:])


@pytest.fixture
def staging(tmp_path):
    d = tmp_path / 'staging'
    d.mkdir()
    return d


def _task_run(staging, claimed, data, caplog, **kw):
    caplog.set_level(logging.INFO, logger='glance_convert')
    image = fakes.FakeImage(claimed)
    src = imagefactory.make_image(staging, data, name=image.image_id)
    size = os.path.getsize(src)
    task, _ = fakes.make_task(image, staging, **kw)
    try:
        out = task.execute('file://' + src)
    except errors.ConversionError:
        out = None
    return _summary(caplog), image, size, out


def test_a_conversion_is_summarised(staging, caplog):
    fields, image, size, out = _task_run(staging, 'qcow2', 'qcow2', caplog)
    assert fields['result'] == 'converted'
    assert (fields['source_format'], fields['target_format']) == (
        'qcow2', 'raw')
    assert int(fields['bytes_read']) == size
    assert int(fields['bytes_written']) == os.path.getsize(
        out[len('file://'):])
    named = {phases.label(name) + '_s' for name in phases.ORDER}
    ran = named    # a bare upload's container is opened in no time
    assert ran | {'slot_wait_s', 'total_s'} == set(
        k for k in fields if k.endswith('_s'))
    assert 'check' not in fields
    # The phases add up to no more than the total (each rounded to 1 ms);
    # the slot wait is part of the reserve phase.
    ran_s = [float(fields[k]) for k in ran]
    assert sum(ran_s) <= float(fields['total_s']) + 0.0005 * len(ran_s)
    assert float(fields['slot_wait_s']) <= float(fields['reserve_s']) \
        + 0.001


def test_a_pass_through_is_summarised(staging, caplog):
    fields, *_ = _task_run(staging, 'raw', 'raw', caplog)
    assert (fields['result'], fields['target_format'],
            fields['bytes_written']) == ('passed_through', 'raw', '0')
    assert 'slot_wait_s' not in fields


def test_a_refusal_is_summarised_with_its_check(staging, caplog):
    fields, *_ = _task_run(staging, 'qcow2', 'vmdk', caplog)
    assert (fields['result'], fields['check']) == ('refused',
                                                   'format_mismatch')


def test_a_cancelled_import_is_summarised(staging, caplog):
    status = fakes.RecordingStatus()
    status.aborted = True
    fields, *_ = _task_run(staging, 'qcow2', 'qcow2', caplog, status=status)
    assert fields['result'] == 'cancelled'
