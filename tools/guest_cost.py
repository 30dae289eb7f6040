#!/usr/bin/env python3
"""What reading a guest's boot facts costs one import.

Builds the test suite's guest disks (Windows UEFI and BIOS, Linux UEFI
and BIOS: tests/guestdisks.py, so sgdisk, parted, mkfs.* and mtools are
needed) and prints, per disk, the median wall time of reading its facts
and deciding its properties: from the raw file (``pread``; what a raw
output costs) and from a qcow2 copy through the confined ``qemu-img dd``
(what any other output costs), with the reads, bytes and qemu-img runs
each took.  The budget of the feature is 50 ms per import.

    python tools/guest_cost.py [-n 20]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from glance_convert.guest import decide  # noqa: E402
from glance_convert.guest import disk  # noqa: E402
from glance_convert.guest import reader  # noqa: E402
from glance_convert.pipeline import guest_view  # noqa: E402
from glance_convert.pipeline import qemu_img  # noqa: E402
from tests import guestdisks  # noqa: E402

LAYOUTS = ('windows_uefi', 'windows_bios', 'linux_uefi', 'linux_bios')


def timed(fn, n):
    times = []
    result = None
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=20)
    args = parser.parse_args()
    limits = qemu_img.Limits(timeout=60)
    print('%-13s %-6s %9s %6s %9s %5s' % ('disk', 'via', 'median ms',
                                          'reads', 'bytes', 'runs'))
    with tempfile.TemporaryDirectory() as work:
        for name in LAYOUTS:
            raw = getattr(guestdisks, name)(
                os.path.join(work, name + '.raw'), work)
            qcow2 = os.path.join(work, name + '.qcow2')
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                            'qcow2', raw, qcow2], check=True)
            size = os.path.getsize(raw)

            def from_raw():
                with reader.FileReader(raw) as source:
                    facts = disk.read_disk(source)
                decide.decide(facts, None, source_format='vmdk')
                return facts, None

            def from_qcow2():
                view = guest_view.ImageReader(qcow2, 'qcow2', size, limits,
                                              work)
                facts = disk.read_disk(view)
                decide.decide(facts, None, source_format='vmdk')
                return facts, view.runs

            for via, fn in (('raw', from_raw), ('qcow2', from_qcow2)):
                ms, (facts, runs) = timed(fn, args.n)
                print('%-13s %-6s %9.2f %6d %9d %5s' % (
                    name, via, ms, facts.reads, facts.bytes_read,
                    '-' if runs is None else runs))


if __name__ == '__main__':
    main()
