#!/usr/bin/env python3
"""What recording the metrics costs one import, in multi-process mode.

Times, in a fresh directory, everything the conversion task records for
one import (glance_convert.flow.outcome): the Outcome with its laps, the
slot wrapper's waiting and running gauges, the counters, the histogram
by phase, the sandbox layers and the summary line; with --textfile, the
request for a textfile write too (a thread started when none is busy);
and, separately, one textfile write (done in that background thread,
not in the import's time) with N processes' files in the directory.
Prints the median and the 95th percentile of -n rounds of --batch
imports each.

    python tools/metrics_cost.py [-n 50] [--batch 100] [--processes 8]
                                 [--textfile]
"""

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

from glance_convert import metrics
from glance_convert import options
from glance_convert.flow import outcome as outcomes
from glance_convert.pipeline import checks
from glance_convert import errors


def one_import(i: int) -> None:
    """What ConvertImage.execute records, without the conversion."""
    out = outcomes.Outcome('image-%d' % i, 'task-%d' % i)
    out.source_format, out.container_format = 'qcow2', 'bare'
    out.bytes_read = 1 << 30
    out.target_format = 'raw'
    out.lap()
    out.stage = 'inspect'
    out.lap()
    metrics.waiting(1)
    metrics.waiting(-1)
    out.lap('slot_wait')
    metrics.running(1)
    metrics.running(-1)
    out.stage = 'convert'
    if i % 10 == 9:   # one in ten refused
        exc = errors.ImageRejected(checks.BACKING.say(format='qcow2'))
        result, out.check = outcomes.classify(exc)
        out.result = result
    else:
        out.stored(True, 'raw', 2 << 30)
    out.lap()
    out.seconds['total'] = 1.0
    metrics.import_done(out.source_format, out.target_format,
                        out.result, out.seconds,
                        bytes_read=out.bytes_read,
                        bytes_written=out.bytes_written, check=out.check)
    out.summary()   # formatted; logging it is the log handler's cost
    metrics.textfile_after_import()


def other_processes(directory, count):
    code = ('import sys; from glance_convert import metrics; '
            'metrics.setup(sys.argv[1]); '
            'metrics.import_done("vmdk", "raw", "converted", '
            '{"total": 1.0}, 1, 1)')
    for _ in range(count):
        subprocess.run([sys.executable, '-c', code, directory], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-n', type=int, default=50)
    parser.add_argument('--batch', type=int, default=100)
    parser.add_argument('--processes', type=int, default=8,
                        help='dead processes whose files the textfile '
                             'write reads')
    parser.add_argument('--textfile', action='store_true',
                        help='also request the textfile write after each '
                             'import, as metrics_textfile does')
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as d:
        if args.textfile:
            options.CONF.set_override(
                'metrics_textfile', os.path.join(d, 'after-import.prom'),
                group=options.GROUP)
        assert metrics.setup(d)
        for i in range(args.batch):    # warm: every label set exists
            one_import(i)
        per_import = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            for i in range(args.batch):
                one_import(i)
            per_import.append((time.perf_counter() - t0) / args.batch)
        other_processes(d, args.processes)
        target = os.path.join(d, 'out.prom')
        writes = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            metrics.write_textfile(target, metrics.registry(d))
            writes.append(time.perf_counter() - t0)

    def show(what, values):
        values = sorted(values)
        p95 = values[int(0.95 * (len(values) - 1))]
        print('%-52s median %8.1f us   p95 %8.1f us'
              % (what, statistics.median(values) * 1e6, p95 * 1e6))
    show('recording per import (in the import\'s time)', per_import)
    show('textfile write, %d processes (background thread)'
         % (args.processes + 1), writes)


if __name__ == '__main__':
    main()
