"""Which process is which: identity, liveness, and killing a left child.

A pid alone does not name a process: once it exits, the kernel may give
its pid to a newcomer.  The pair (pid, start time) does, so every record
of a holder or child in the ledger carries both, and this module holds
the package's one liveness check built on that pair.
"""

import contextlib
import logging
import os
import signal

LOG = logging.getLogger(__name__)

_me: tuple[int | None, int | None] = (None, None)


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if gone.

    Together with the pid it names a process uniquely: a reused pid belongs
    to a process that started later.
    """
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain
    # spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b')') + 2:].split()
    # Field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
    if fields and fields[0] in (b'Z', b'X'):
        return None  # a zombie holds no locks and writes no files
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid, start) -> bool:
    """Whether the process recorded as (``pid``, ``start``) still runs.

    False when the pid is gone or was reused by a process that started at
    another time, and for records without a start time or a valid pid.
    """
    if start is None or not isinstance(pid, int) or pid <= 0:
        return False
    return process_start_time(pid) == start


def pid_namespace() -> str | None:
    """This process's pid namespace (``pid:[4026531836]``), or None."""
    try:
        return os.readlink('/proc/self/ns/pid')
    except OSError:
        return None


def alien(namespace: str | None) -> bool:
    """Whether a record made in pid ``namespace`` comes from another one.

    A glance-api in a container and a recovery outside it (or in another
    container) sharing the lock directory see different pids: a record
    from the other side must never be taken for a dead process.
    """
    return bool(namespace) and namespace != pid_namespace()


def current() -> tuple[int, int | None]:
    """(pid, start time) of this process; recomputed after a fork."""
    global _me
    pid = os.getpid()
    if _me[0] != pid:
        _me = (pid, process_start_time(pid))
    return _me


def kill_left_child(pid: int, start: int | None, whose: str) -> bool:
    """SIGKILL a recorded child (qemu-img) of a dead holder, if it runs.

    Without it, a qemu-img whose glance-api was SIGKILLed would go on
    writing into a file that the reaper already unlinked.
    """
    if not alive(pid, start):
        return False
    LOG.warning('Killing process %d left by dead conversion of %s', pid,
                whose)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    return True
