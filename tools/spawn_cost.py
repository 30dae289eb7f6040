#!/usr/bin/env python3
"""What one qemu-img start costs the plugin, by how it is started.

processutils.execute always passes a preexec_fn (it resets SIGPIPE), and
any preexec_fn makes Python fork() instead of vfork(): the cost then grows
with the memory of the calling process (a glance-api worker holds a few
hundred MiB).  Prints the median of N starts of ``qemu-img info`` on a
small qcow2, without and with a heap of --heap-mb MiB.

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


def median_ms(fn, n):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(img, n):
    args = ['qemu-img', 'info', '-f', 'qcow2', '--output=json', img]
    limits = qemu_img.Limits(address_space=1 << 30, cpu_time=30, timeout=60)
    return [
        ('subprocess, no preexec_fn (vfork)',
         median_ms(lambda: subprocess.run(args, capture_output=True), n)),
        ('processutils.execute (fork)',
         median_ms(lambda: processutils.execute(*args), n)),
        ('glance_convert qemu_img.info (fork, limits, watchdog)',
         median_ms(lambda: qemu_img.info(img, 'qcow2', limits), n)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--heap-mb', type=int, default=300)
    parser.add_argument('-n', type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', img,
                        '1G'], check=True)
        rows = measure(img, args.n)
        heap = bytearray(args.heap_mb << 20)
        for i in range(0, len(heap), 4096):  # touch it: resident
            heap[i] = 1
        rows_big = measure(img, args.n)
    print('%-55s %10s %12s' % ('median of %d starts' % args.n, 'small',
                               '+%d MiB' % args.heap_mb))
    for (name, small), (_, big) in zip(rows, rows_big):
        print('%-55s %8.1f ms %10.1f ms' % (name, small, big))


if __name__ == '__main__':
    main()
