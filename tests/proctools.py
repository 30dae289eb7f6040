"""Watching qemu-img processes through /proc, for tests.

Other tests (or other people) may run qemu-img on the same machine at the
same time: everything here attributes a process by its arguments or its
pid, never by "whatever is running".
"""

import os
import re
import threading

import pytest

from glance_convert.testing import localglance

_WORK_FILE = re.compile(r'/([0-9a-f-]{36})\.glance-convert\.')


def qemu_img_processes():
    """{pid: argv} of every running qemu-img."""
    found = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        args = [a.decode('utf-8', 'replace') for a in argv if a]
        if args and os.path.basename(args[0]) == 'qemu-img':
            found[int(pid)] = args
    return found


def conversions_under(prefixes):
    """{name: {pid: image id}} of ``qemu-img convert`` runs per prefix.

    ``prefixes`` maps a name (a node, a server) to a directory; a
    conversion belongs to the first one that holds one of its arguments.
    """
    found = {name: {} for name in prefixes}
    for pid, args in qemu_img_processes().items():
        if len(args) < 3 or args[1] != 'convert':
            continue
        for name, prefix in prefixes.items():
            prefix = prefix.rstrip('/') + '/'
            if any(a.startswith(prefix) for a in args):
                m = _WORK_FILE.search(' '.join(args))
                found[name][pid] = m.group(1) if m else '?'
                break
    return found


class ConversionSampler:
    """Samples conversions per directory continuously, in a thread.

    ``peak[name]`` is the most seen at once under one directory,
    ``peak_total`` across all of them, ``seen[name]`` the image ids.
    """

    def __init__(self, prefixes, interval=0.05):
        self.prefixes = dict(prefixes)
        self.interval = interval
        self.peak = {name: 0 for name in self.prefixes}
        self.peak_total = 0
        self.samples = 0
        self.seen = {name: set() for name in self.prefixes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='conversion-sampler')

    def current(self):
        return conversions_under(self.prefixes)

    def _run(self):
        while not self._stop.wait(self.interval):
            now = self.current()
            self.samples += 1
            for name, procs in now.items():
                self.peak[name] = max(self.peak[name], len(procs))
                self.seen[name].update(procs.values())
            self.peak_total = max(self.peak_total,
                                  sum(len(p) for p in now.values()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def wait_for(predicate, what, timeout, log_tail=None, interval=0.05):
    """Poll ``predicate`` until it returns a true value; return it.

    On time-out the test fails, with ``log_tail()`` (a server's log) when
    given.
    """
    return localglance.wait_until(predicate, what, timeout,
                                  log_tail=log_tail, interval=interval,
                                  error=pytest.fail.Exception)
