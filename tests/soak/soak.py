"""Soak: many imports on one glance-api, and whether anything grows.

``tox -e soak`` (not part of the test command).  One glance-api with 2
gunicorn workers on a private PostgreSQL, the plugin converting to raw,
4 imports at a time:

* a sample of every convertible source format (must end ``active``);
* hostile files from the corpus (tests/hostile_corpus.py, those refused
  under the default policy: must be refused, image ``queued``);
* cancellations: the image is deleted while its conversion is held by a
  stand-in qemu-img (must leave nothing behind).

At 0, 100, 200, ... imports it records each worker's open file
descriptors, threads and resident memory, and the ledger's size and the
lock directory's (slot files), then prints a table (and draws it when
matplotlib is installed).  Growth beyond the warm-up is a failure:
after the first block, no figure may grow by more than the noise
allowance between blocks.

    tox -e soak [-- --imports 300 --plot soak.png]
"""

import argparse
import concurrent.futures
import itertools
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from glance_convert import formats
from glance_convert.testing import localglance
from tests import hostile_corpus
from tests import imagefactory
from tests import pgcluster
from tests.faults import harness

MiB = 1024 * 1024
PARALLEL = 4
# Allowed growth between two blocks after the first (warm-up) one.
NOISE = {'fds': 8, 'threads': 8, 'rss_mib': 24, 'ledger_bytes': 4096,
         'lock_dir_files': 0}


def worker_pids(server):
    """The gunicorn workers: children of the master."""
    master = server.process.pid
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rfind(')') + 2:].split()[1]) == master:
            found.append(int(pid))
    return sorted(found)


def sample(host):
    """The figures of one moment, summed over the workers."""
    fds = threads = rss = 0
    for pid in worker_pids(host.server):
        try:
            fds += len(os.listdir('/proc/%d/fd' % pid))
            threads += len(os.listdir('/proc/%d/task' % pid))
            with open('/proc/%d/status' % pid) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    lock_dir = host.server.lock_dir
    names = os.listdir(lock_dir) if os.path.isdir(lock_dir) else []
    try:
        ledger_bytes = os.path.getsize(host.layout.ledger_path)
    except OSError:
        ledger_bytes = 0
    return {'fds': fds, 'threads': threads, 'rss_mib': rss / MiB,
            'ledger_bytes': ledger_bytes, 'lock_dir_files': len(names),
            'workers': len(worker_pids(host.server))}


class Soak:
    def __init__(self, base, pg, total):
        self.total = total
        self.host = harness.Host(base, pg, 'soak', plugin_conf={
            'max_concurrent_conversions': 2, 'reserved_space_mb': 0})
        self.sources = os.path.join(base, 'sources')
        os.makedirs(self.sources, exist_ok=True)
        self.good = [(imagefactory.make_image(self.sources, fmt), fmt)
                     for fmt in formats.CONVERTIBLE]
        self.hostile = [
            (c.path, c.claimed_format) for c in hostile_corpus.build_corpus(
                os.path.join(base, 'hostile'))
            if c.hostile and not c.policy]
        self.outcomes = {}
        self.lock = threading.Lock()

    def plan(self):
        """Which kind each import is: mostly good, some hostile, some
        cancelled, in a fixed shuffled order."""
        rng = random.Random(15)
        kinds = []
        for i in range(self.total):
            r = rng.random()
            kinds.append('cancel' if r < 0.1 else
                         'hostile' if r < 0.35 else 'good')
        good = itertools.cycle(self.good)
        hostile = itertools.cycle(self.hostile)
        # A raw upload passes through (the target is raw): never held in
        # qemu-img convert, so cancellations use a qcow2 upload.
        cancel = [g for g in self.good if g[1] == 'qcow2']
        return [(k, next(hostile) if k == 'hostile' else
                 cancel[0] if k == 'cancel' else next(good))
                for k in kinds]

    def one(self, kind, source, fmt):
        client = self.host.client
        h = self.host
        image_id = client.create_image(fmt)['id']
        if kind == 'cancel':
            h.hold('convert', image_id)
        try:
            client.stage(image_id, source)
        except localglance.GlanceHTTPError as exc:
            assert kind == 'hostile', (kind, fmt, source, exc)
            return kind, 'refused at upload'
        client.import_image(image_id, 'glance-direct')
        if kind == 'cancel':
            try:
                h.held_at('convert', image_id)
            finally:
                client.delete_image(image_id)
                h.release(image_id)
            harness.wait_for(lambda: h.files_of(image_id) == [],
                             'the files of deleted %s to go' % image_id)
            return kind, 'deleted'
        image, task = client.wait_for_import(image_id, 300)
        if kind == 'good':
            assert task['status'] == 'success', (fmt, task)
            assert image['status'] == 'active', image
            result = 'active'
        else:
            assert task['status'] == 'failure', (source, task)
            assert image['status'] == 'queued', image
            assert 'Internal Error' not in task['message'], task
            result = 'refused'
        assert h.files_of(image_id) == [], h.files_of(image_id)
        client.delete_image(image_id)  # keep the database small
        return kind, result

    def run(self, every=100):
        rows = [(0, sample(self.host))]
        plan = self.plan()
        counts = {}
        for start in range(0, self.total, every):
            block = plan[start:start + every]
            with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
                for kind, result in pool.map(
                        lambda item: self.one(item[0], *item[1]), block):
                    counts[(kind, result)] = counts.get(
                        (kind, result), 0) + 1
            self.host.wait_quiet()
            time.sleep(2)  # let finished threads and sockets go
            rows.append((start + len(block), sample(self.host)))
            print_table(rows)
        return rows, counts


COLUMNS = ('fds', 'threads', 'rss_mib', 'ledger_bytes', 'lock_dir_files')


def print_table(rows):
    print('%8s %8s %8s %9s %13s %15s' % (('imports',) + COLUMNS))
    for n, s in rows:
        print('%8d %8d %8d %9.1f %13d %15d' % (
            n, s['fds'], s['threads'], s['rss_mib'], s['ledger_bytes'],
            s['lock_dir_files']))
    sys.stdout.flush()


def check_bounded(rows):
    """Growth after the first block beyond the noise allowance."""
    problems = []
    for (n0, a), (n1, b) in zip(rows[1:], rows[2:]):
        for key in COLUMNS:
            if b[key] - a[key] > NOISE[key]:
                problems.append('%s grew from %s to %s between %d and %d '
                                'imports' % (key, a[key], b[key], n0, n1))
    return problems


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot
    except ImportError:
        print('matplotlib not installed: no plot')
        return
    fig, axes = pyplot.subplots(1, len(COLUMNS), figsize=(16, 3))
    for ax, key in zip(axes, COLUMNS):
        ax.plot([n for n, _ in rows], [s[key] for _, s in rows], 'o-')
        ax.set_title(key)
        ax.set_xlabel('imports')
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    print('plot written to %s' % path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--imports', type=int, default=int(
        os.environ.get('GLANCE_CONVERT_SOAK_IMPORTS', 300)))
    parser.add_argument('--plot', default=os.environ.get(
        'GLANCE_CONVERT_SOAK_PLOT'))
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix='glance-convert-soak-')
    try:
        with pgcluster.PostgresCluster(os.path.join(base, 'pg')) as pg:
            soak = Soak(base, pg, args.imports)
            with harness.running(soak.host):
                started = time.monotonic()
                rows, counts = soak.run()
                elapsed = time.monotonic() - started
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print('\n%d imports in %.0f s, %d at a time:' % (
        args.imports, elapsed, PARALLEL))
    for (kind, result), n in sorted(counts.items()):
        print('  %-8s %-18s %d' % (kind, result, n))
    print_table(rows)
    if args.plot:
        plot(rows, args.plot)
    problems = check_bounded(rows)
    for p in problems:
        print('UNBOUNDED: %s' % p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
