"""Run one benchmark step in a forked child and measure it.

Forking per run gives every run its own resource accounting: a forked
child starts with zeroed ``RUSAGE_CHILDREN``, so the child's view of its
own children (qemu-img, cp) is exactly that run's CPU time and peak RSS,
and its ``VmHWM`` (reset through ``/proc/self/clear_refs``) is the peak
memory the Python side reached during that run.  The parent has imported
everything already, so a fork costs a millisecond.
"""

import json
import os
import resource
import time
import traceback

MiB = 1024 * 1024


def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return None


def _reset_hwm():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def run_forked(fn, prepare=None, trace_python=False):
    """Run ``fn()`` in a forked child; return a dict of measurements.

    ``prepare()`` runs in the child before the clock starts.  ``fn`` returns
    the output path (or None); its sizes are recorded.  Errors come back as
    ``{'error': message}``.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        _report_and_exit(wfd, fn, prepare, trace_python)
    os.close(wfd)
    return _collect(pid, rfd)


def _report_and_exit(wfd, fn, prepare, trace_python):
    """In a forked child: measure ``fn``, write the result to ``wfd``, exit.
    """
    status = 0
    try:
        result = _child(fn, prepare, trace_python)
    except BaseException as exc:  # report everything to the parent
        result = {'error': '%s: %s' % (type(exc).__name__, exc),
                  'traceback': traceback.format_exc()}
        status = 1
    try:
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(wfd, data):]
    finally:
        os._exit(status)


def _collect(pid, rfd):
    """In the parent: the result a child wrote to ``rfd``; reap it."""
    with os.fdopen(rfd, 'rb') as f:
        raw = f.read()
    os.waitpid(pid, 0)
    if not raw:
        return {'error': 'benchmark child died without a result'}
    return json.loads(raw)


def _child(fn, prepare, trace_python):
    if prepare:
        prepare()
    tracemalloc = None
    if trace_python:
        import tracemalloc
        tracemalloc.start()
    hwm_reset = _reset_hwm()
    rss0 = _status_kib('VmRSS')
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        'wall': wall,
        'cpu_children': kids.ru_utime + kids.ru_stime,
        'cpu_self': (self1.ru_utime - self0.ru_utime
                     + self1.ru_stime - self0.ru_stime),
        'rss_children_peak': kids.ru_maxrss * 1024,
        'py_rss_added': ((_status_kib('VmHWM') - rss0) * 1024
                         if hwm_reset else None),
    }
    if tracemalloc:
        result['py_traced_peak'] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if out:
        st = os.stat(out)
        result.update(output=out, out_apparent=st.st_size,
                      out_allocated=st.st_blocks * 512)
    return result


class CacheControl:
    """Make a file's pages cold or warm before a run.

    cold: ``drop_caches`` (page cache only) when we may write it, else
    ``posix_fadvise(DONTNEED)`` on the files involved; warm: read them.
    """

    def __init__(self, method='auto'):
        if method == 'auto':
            method = 'drop_caches' if self._can_drop() else 'fadvise'
        self.method = method

    @staticmethod
    def _can_drop():
        try:
            with open('/proc/sys/vm/drop_caches', 'w') as f:
                f.write('1')
            return True
        except OSError:
            return False

    def cold(self, paths):
        os.sync()
        if self.method == 'drop_caches':
            with open('/proc/sys/vm/drop_caches', 'w') as f:
                f.write('1')
            return
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    @staticmethod
    def warm(paths):
        buf = bytearray(4 * MiB)
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                pos = 0
                while True:
                    try:  # skip holes: they are not in the page cache
                        pos = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:
                        break
                    n = os.preadv(fd, [buf], pos)
                    if n <= 0:
                        break
                    pos += n
            finally:
                os.close(fd)

    def apply(self, mode, paths):
        if mode == 'cold':
            self.cold(paths)
        else:
            # Every run starts with no dirty pages waiting for writeback
            # (earlier runs write about as much as the image holds), so no
            # run pays for another's.
            os.sync()
            self.warm(paths)


def run_concurrent(fns):
    """Start ``len(fns)`` forked runs at the same instant.

    Returns (aggregate wall seconds, [per-run results]).
    """
    go_r, go_w = os.pipe()
    children = []
    for fn in fns:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            os.close(go_w)
            os.read(go_r, 1)
            _report_and_exit(wfd, fn, None, False)
        os.close(wfd)
        children.append((pid, rfd))
    os.close(go_r)
    t0 = time.perf_counter()
    os.write(go_w, b'x' * len(fns))
    os.close(go_w)
    results = [_collect(pid, rfd) for pid, rfd in children]
    return time.perf_counter() - t0, results
