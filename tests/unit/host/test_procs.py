"""Unit tests of process identity: start times, liveness, killing."""

import os
import subprocess
import sys

import pytest

from glance_convert.host import procs
from tests.unit.host.hosttools import wait_for


def test_process_start_time_parses_odd_command_names(tmp_path):
    # A command name with spaces and parentheses must not shift fields.
    script = tmp_path / 'x) (y z'
    # No child processes: killing it must leave nothing behind.
    script.write_text('#!%s\nimport time\ntime.sleep(600)\n'
                      % sys.executable)
    script.chmod(0o755)
    p = subprocess.Popen([str(script)])
    try:
        wait_for(lambda: b'x) (y' in open('/proc/%d/stat' % p.pid,
                                          'rb').read(), 'exec')
        start = procs.process_start_time(p.pid)
        with open('/proc/self/stat', 'rb') as f:
            mine = int(f.read().rsplit(b')', 1)[1].split()[19])
        assert start is not None and start >= mine
    finally:
        p.kill()
        p.wait()
    assert procs.process_start_time(p.pid) is None


@pytest.fixture
def sleeper():
    p = subprocess.Popen(['sleep', '600'])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_a_reused_pid_is_a_dead_process(sleeper):
    start = procs.process_start_time(sleeper.pid)
    assert start is not None
    assert procs.alive(sleeper.pid, start)
    # The same pid with another start time: the recorded process exited
    # and the kernel gave its pid to this one.
    assert not procs.alive(sleeper.pid, start - 1)
    assert not procs.alive(sleeper.pid, start + 1)
    assert not procs.alive(sleeper.pid, None)  # no start time recorded
    sleeper.kill()
    sleeper.wait()
    assert not procs.alive(sleeper.pid, start)


def test_records_without_a_usable_pid_are_dead():
    for pid in (None, 0, -1, 'x'):
        assert not procs.alive(pid, 1)


def test_a_left_child_is_killed_but_not_a_pid_reuser(sleeper):
    start = procs.process_start_time(sleeper.pid)
    # Recorded with another start time, the pid now names an innocent
    # process: a kill by pid alone would hit it; the recorded pair spares it.
    assert not procs.kill_left_child(sleeper.pid, start - 1, 'image')
    assert sleeper.poll() is None
    assert procs.kill_left_child(sleeper.pid, start, 'image')
    assert sleeper.wait(30) == -9


def test_current_is_this_process_also_after_a_fork():
    pid, start = procs.current()
    assert pid == os.getpid() and procs.alive(pid, start)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - child
        try:
            c_pid, c_start = procs.current()
            ok = (c_pid == os.getpid() != pid
                  and c_start == procs.process_start_time(c_pid))
            os.write(w, b'1' if ok else b'0')
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b'1'
    os.waitpid(child, 0)
    os.close(r)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([__file__, '-v']))
