"""inspect_source: info and check run at once, verdicts keep their order."""

import threading
import time

import pytest

from glance_convert.pipeline import conversion
from glance_convert.pipeline import checks
from glance_convert import errors
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from tests import hostile_corpus

SIZE = 1 << 20
GOOD_INFO = {'format': 'qcow2', 'virtual-size': SIZE,
             'format-specific': {'data': {}}}
FACTS = inspection.SourceFacts('qcow2', 'qcow2', SIZE, 4096,
                               qemu_sizes=(SIZE,))


class FakeQemuImg:
    """info and check with scripted answers; records overlap and cancels."""

    def __init__(self, info=GOOD_INFO, check=None, info_delay=0.2):
        self.info_answer = info
        self.check_answer = check if check is not None else {'exit-code': 0}
        self.info_delay = info_delay
        self.check_started = threading.Event()
        self.info_running = threading.Event()
        self.overlapped = False
        self.check_cancelled = False

    def info(self, path, fmt, limits):
        self.info_running.set()
        # The check starts while info runs, not after it.
        self.overlapped = self.check_started.wait(self.info_delay)
        self.info_running.clear()
        if isinstance(self.info_answer, Exception):
            raise self.info_answer
        return self.info_answer

    def check(self, path, fmt, limits, should_cancel=None):
        self.check_started.set()
        deadline = time.monotonic() + 5
        while isinstance(self.check_answer, str):  # 'hang' until cancelled
            if should_cancel():
                self.check_cancelled = True
                raise qemu_img.QemuImgCancelled('qemu-img check', -9,
                                                'cancelled')
            if time.monotonic() > deadline:
                raise AssertionError('the check was never cancelled')
            time.sleep(0.01)
        if isinstance(self.check_answer, Exception):
            raise self.check_answer
        return self.check_answer


@pytest.fixture
def fake(monkeypatch):
    def install(**kwargs):
        f = FakeQemuImg(**kwargs)
        monkeypatch.setattr(qemu_img, 'info', f.info)
        monkeypatch.setattr(qemu_img, 'check', f.check)
        monkeypatch.setattr(inspection, 'inspect_bytes',
                            lambda path, claimed, policy: FACTS)
        return f
    return install


def _inspect():
    return conversion.inspect_source(
        '/nonexistent/upload', 'qcow2',
        hostile_corpus.pipeline_settings('raw'))


def test_check_runs_while_info_runs(fake):
    f = fake()
    facts, info = _inspect()
    assert f.overlapped
    assert info is GOOD_INFO and facts is FACTS


def test_info_failure_cancels_the_check(fake):
    f = fake(info=qemu_img.QemuImgError('qemu-img info', 1, 'bad header'),
             check='hang')
    with pytest.raises(errors.ImageRejected) as exc_info:
        _inspect()
    assert 'cannot read it as a qcow2 image' in exc_info.value.reason
    assert f.check_cancelled


def test_info_refusal_wins_over_a_check_failure(fake):
    backing = dict(GOOD_INFO, **{'backing-filename': 'base'})
    f = fake(info=backing, check='hang')
    with pytest.raises(errors.ImageRejected) as exc_info:
        _inspect()
    assert exc_info.value.reason == checks.BACKING.say(format='qcow2')
    assert f.check_cancelled


def test_check_failure_is_reported_after_a_good_info(fake):
    fake(check=qemu_img.QemuImgError('qemu-img check', 1, 'no'))
    with pytest.raises(errors.ImageRejected) as exc_info:
        _inspect()
    assert exc_info.value.reason == checks.CORRUPT.sentence


def test_corruption_found_by_the_check_is_refused(fake):
    fake(check={'exit-code': 2, 'corruptions': 3})
    with pytest.raises(errors.ImageRejected) as exc_info:
        _inspect()
    assert exc_info.value.reason == checks.CORRUPT.sentence
