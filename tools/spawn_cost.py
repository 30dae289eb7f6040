#!/usr/bin/env python3
"""What one qemu-img start costs the plugin, by how it is started.

processutils.execute always passes a preexec_fn (it resets SIGPIPE), and
any preexec_fn makes Python fork() instead of vfork(): the cost then grows
with the memory of the calling process (a glance-api worker holds a few
hundred MiB).  Prints the median of N starts of ``qemu-img info`` on a
small qcow2, without and with a heap of --heap-mb MiB, and the cost of
confinement: the same call with ``sandbox = off`` and confined (Landlock
ruleset and seccomp filter built in the parent, applied in the child),
measured alternately in the same run.

    python tools/spawn_cost.py [--heap-mb 300] [-n 40]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from oslo_concurrency import processutils

from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox


def median_ms(fn, n):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def paired_ms(first, second, n):
    """Medians of two callables run alternately, and of their differences.

    The median of the pairwise differences cancels most of the drift of a
    shared host's load, which the difference of the medians does not.
    """
    first()
    second()
    a, b = [], []
    for _ in range(n):
        for fn, seen in ((first, a), (second, b)):
            t0 = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - t0)
    diff = [y - x for x, y in zip(a, b)]
    return [statistics.median(v) * 1000 for v in (a, b, diff)]


def _in_mode(mode, fn):
    def run():
        sandbox.configure(mode)
        try:
            fn()
        finally:
            sandbox.configure(sandbox.AUTO)
    return run


def measure(img, n):
    args = ['qemu-img', 'info', '-f', 'qcow2', '--output=json', img]
    limits = qemu_img.Limits(address_space=1 << 30, cpu_time=30, timeout=60)

    def info():
        qemu_img.info(img, 'qcow2', limits)

    unconfined, confined, cost = paired_ms(
        _in_mode(sandbox.OFF, info), _in_mode(sandbox.AUTO, info), n)
    return [
        ('subprocess, no preexec_fn (vfork)',
         median_ms(lambda: subprocess.run(args, capture_output=True), n)),
        ('processutils.execute (fork)',
         median_ms(lambda: processutils.execute(*args), n)),
        ('qemu_img.info, sandbox = off (fork, limits, watchdog)',
         unconfined),
        ('qemu_img.info, confined (%d layers)'
         % len(sandbox.applied_layers()), confined),
        ('  confinement cost (median of paired differences)', cost),
        ('  of which building the ruleset (parent)',
         median_ms(lambda: sandbox.prepare(
             reads=[img], executable=qemu_img.QEMU_IMG).close(), n * 10)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--heap-mb', type=int, default=300)
    parser.add_argument('-n', type=int, default=40)
    args = parser.parse_args()
    print('confinement layers: %s' % ', '.join(sandbox.applied_layers()))
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', img,
                        '1G'], check=True)
        rows = measure(img, args.n)
        heap = bytearray(args.heap_mb << 20)
        for i in range(0, len(heap), 4096):  # touch it: resident
            heap[i] = 1
        rows_big = measure(img, args.n)
    width = max(len(name) for name, _ in rows) + 2
    print('%-*s %10s %12s' % (width, 'median of %d starts' % args.n,
                              'small', '+%d MiB' % args.heap_mb))
    for (name, small), (_, big) in zip(rows, rows_big):
        print('%-*s %8.2f ms %10.2f ms' % (width, name, small, big))


if __name__ == '__main__':
    main()
