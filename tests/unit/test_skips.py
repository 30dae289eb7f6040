"""The skip allow-list: every skip a run takes is explained."""

import os

import pytest

from tests import conftest
from tests import skips

pytest_plugins = ['pytester']


def test_allowlist_reads_and_every_line_says_why():
    allowed = skips.read_allowlist()
    assert all(a.pattern and len(a.why) > 20 for a in allowed)


def test_unexplained_skip_is_found():
    allowed = [skips.Allowed('tests/a.py::test_fast*', 'needs a kernel')]
    skipped = [('tests/a.py::test_fast[x]', 'old kernel'),
               ('tests/b.py::test_root', 'root can write anywhere')]
    assert skips.unexplained(skipped, allowed) == [
        ('tests/b.py::test_root', 'root can write anywhere')]


def test_a_line_without_a_reason_is_refused(tmp_path):
    path = tmp_path / 'allowed.txt'
    path.write_text('# comment\ntests/a.py::test_x\n')
    with pytest.raises(ValueError, match='PATTERN . WHY'):
        skips.read_allowlist(str(path))


def test_a_run_with_an_unallowed_skip_fails(pytester, monkeypatch):
    # The real hooks of tests/conftest.py, in a run of their own.
    pytester.makeconftest(
        'from tests.conftest import (pytest_runtest_logreport, '
        'pytest_sessionfinish, pytest_terminal_summary)  # noqa\n')
    pytester.makepyfile(test_it='''
import pytest
def test_ok():
    pass
@pytest.mark.skip(reason='nobody ever runs this')
def test_hidden():
    pass
''')
    monkeypatch.setenv('PYTHONPATH', os.path.dirname(os.path.dirname(
        conftest.__file__)))
    monkeypatch.setenv('GLANCE_CONVERT_CHECK_SKIPS', '1')
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(['*1 skip(s) not allowed*',
                                 '*test_hidden*nobody ever runs this*'])
    monkeypatch.setenv('GLANCE_CONVERT_CHECK_SKIPS', '0')
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(['*skips (1)*'])
