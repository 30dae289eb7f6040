"""Import a sample image of every format through Glance and verify it.

    python -m glance_convert.testing.demo [--to FMT] [--keep]
    python -m glance_convert.testing.demo --glance-url http://glance:9292 \
        --token T

Without ``--glance-url`` it starts a private glance-api (gunicorn, sqlite,
file store, no keystone, in a temporary directory) with the glance_convert
plugin converting to ``--to``.  It then builds a small sample image of each
source format (raw, qcow2, vmdk, vdi, vhd, vhdx, ploop) holding known
data, imports each one through the real import API (glance-direct),
downloads what Glance
stored, checks its disk_format and proves with ``qemu-img compare`` that it
holds the source's guest data.  It prints one table row per image and
exits non-zero if any import failed or did not verify.

With ``--glance-url`` it smoke-tests an existing Glance instead (the plugin
must be enabled there; ``--to`` names the output_format configured there):
``--token`` (or ``OS_AUTH_TOKEN``) is sent as ``X-Auth-Token``; without
one, the keystone-style identity headers that the private server trusts
are sent, which only a Glance without keystone accepts.  The images it
creates are deleted at the end.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from glance_convert import formats
from glance_convert import units
from glance_convert.pipeline import qemu_img
from glance_convert.testing import localglance


#: Guest size of the sample images and the data written into them:
#: (offset, length, byte).  Small, so the demo runs in seconds.
SAMPLE_SIZE = 16 * units.MiB
SAMPLE_DATA = (
    (0, units.MiB, 0x11),
    (3 * units.MiB + 4096, 512 * 1024, 0x22),
    (9 * units.MiB, 2 * units.MiB, 0x33),
    (SAMPLE_SIZE - 64 * 1024, 64 * 1024, 0x44),
)


class SmokeError(Exception):
    """A set-up step failed; the message says which and why."""


def _run(cmd):
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise SmokeError('%s not found: install qemu-utils' % cmd[0])
    if result.returncode != 0:
        raise SmokeError('%s failed (exit %d): %s'
                         % (' '.join(cmd), result.returncode,
                            result.stderr.decode('utf-8', 'replace').strip()))
    return result


def build_samples(directory, source_formats):
    """Build ``sample.<fmt>`` for each format from one raw reference."""
    raw = os.path.join(directory, 'reference.raw')
    _run(['qemu-img', 'create', '-q', '-f', 'raw', raw, str(SAMPLE_SIZE)])
    writes = []
    for offset, length, byte in SAMPLE_DATA:
        writes += ['-c', 'write -q -P 0x%02x %d %d' % (byte, offset, length)]
    _run(['qemu-io', '-f', 'raw'] + writes + [raw])
    samples = {}
    for fmt in source_formats:
        path = os.path.join(directory, 'sample.%s' % fmt)
        _run(['qemu-img', 'convert', '-f', 'raw',
              '-O', formats.qemu_driver(fmt), raw, path])
        samples[fmt] = path
    return samples


def same_guest_data(a, a_fmt, b, b_fmt):
    """``qemu-img compare`` between two Glance formats."""
    return qemu_img.compare(a, formats.qemu_driver(a_fmt),
                            b, formats.qemu_driver(b_fmt))


def _size(n):
    return '-' if n is None else units.human_size(n)


class Row:
    def __init__(self, source, target, source_size):
        self.source = source
        self.target = target
        self.source_size = source_size
        self.stored_size = None
        self.seconds = None
        self.status = 'not run'
        self.verified = 'no'
        self.problem = None


def import_one(client, fmt, path, target, work_dir, timeout):
    """Import ``path`` (claimed ``fmt``); return a filled-in Row."""
    row = Row(fmt, target, os.path.getsize(path))
    image_id = None
    started = time.monotonic()
    try:
        image = client.create_image(fmt, name='glance-convert-smoke-%s' % fmt)
        image_id = image['id']
        client.stage(image_id, path)
        client.import_image(image_id, 'glance-direct')
        image, task = client.wait_for_import(image_id, timeout)
        row.seconds = time.monotonic() - started
        row.status = task['status']
        if task['status'] != 'success':
            row.problem = task.get('message') or 'import failed'
            return row
        row.stored_size = image.get('size')
        if image.get('disk_format') != target:
            row.problem = 'stored as %s, expected %s' % (
                image.get('disk_format'), target)
            return row
        out = os.path.join(work_dir, 'downloaded-%s.%s' % (fmt, target))
        nbytes = client.download(image_id, out)
        if nbytes != image.get('size'):
            row.problem = 'downloaded %d bytes, image size is %s' % (
                nbytes, image.get('size'))
        elif same_guest_data(path, fmt, out, target):
            row.verified = 'yes'
        else:
            row.problem = 'guest data differs from the source'
        os.unlink(out)
    except (localglance.LocalGlanceError, OSError) as e:
        row.seconds = time.monotonic() - started
        row.status = 'error'
        row.problem = str(e).splitlines()[0]
    finally:
        if image_id is not None:
            try:
                client.delete_image(image_id)
            except (localglance.LocalGlanceError, OSError):
                pass
    return row


def print_table(rows, out=sys.stdout):
    header = ('source', 'target', 'source size', 'stored size', 'time',
              'status', 'verified')
    lines = [header] + [
        (r.source, r.target, _size(r.source_size), _size(r.stored_size),
         '-' if r.seconds is None else '%.1f s' % r.seconds, r.status,
         r.verified) for r in rows]
    widths = [max(len(line[i]) for line in lines)
              for i in range(len(header))]
    for n, line in enumerate(lines):
        print('  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip(),
              file=out)
        if n == 0:
            print('  '.join('-' * w for w in widths), file=out)
    for r in rows:
        if r.problem:
            print('%s -> %s: %s' % (r.source, r.target, r.problem), file=out)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='python -m glance_convert.testing.demo',
        description='Import a sample image of each disk format through '
                    'Glance with the glance_convert plugin and verify the '
                    'stored images.')
    parser.add_argument('--to', default='raw', choices=formats.CONVERTIBLE,
                        help='target disk format (default: raw); with '
                             '--glance-url, the output_format configured '
                             'there')
    parser.add_argument('--formats', default=','.join(formats.CONVERTIBLE),
                        help='comma-separated source formats to import '
                             '(default: all of %(default)s)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary directory (samples, '
                             'Glance config, logs) and print its path')
    parser.add_argument('--glance-url', metavar='URL',
                        help='smoke-test this Glance instead of starting '
                             'a private one')
    parser.add_argument('--token', default=os.environ.get('OS_AUTH_TOKEN'),
                        help='keystone token for --glance-url (default: '
                             '$OS_AUTH_TOKEN)')
    parser.add_argument('--timeout', type=float, default=300,
                        help='seconds one import may take (default: 300)')
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.formats.split(',') if f.strip()]
    bad = [f for f in chosen if f not in formats.CONVERTIBLE]
    if bad or not chosen:
        parser.error('--formats: choose from %s (got %r)'
                     % (', '.join(formats.CONVERTIBLE), args.formats))
    args.formats = chosen
    return args


def _exit_on_sigterm(signum, frame):
    # Unwind through the finally blocks: stop Glance, remove the temp dir.
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    for tool in ('qemu-img', 'qemu-io'):
        if not shutil.which(tool):
            print('error: %s not found: install qemu-utils (or run '
                  './tools/run-demo, which installs it)' % tool,
                  file=sys.stderr)
            return 2
    work_dir = tempfile.mkdtemp(prefix='glance-convert-smoke-')
    server = None
    rows = []
    try:
        samples = build_samples(work_dir, args.formats)
        if args.glance_url:
            client = localglance.GlanceClient(args.glance_url,
                                              token=args.token)
            where = args.glance_url
        else:
            print('Starting a private glance-api (gunicorn, sqlite, file '
                  'store) with the glance_convert plugin, output_format=%s'
                  % args.to, flush=True)
            server = localglance.GlanceServer(
                os.path.join(work_dir, 'glance'),
                plugin_conf={'output_format': args.to})
            server.start()
            client = server.client()
            where = server.url
        print('Importing %d sample images (%s of guest data each) into %s'
              % (len(samples), _size(SAMPLE_SIZE), where), flush=True)
        for fmt, path in samples.items():
            rows.append(import_one(client, fmt, path, args.to, work_dir,
                                   args.timeout))
    except (SmokeError, localglance.LocalGlanceError, OSError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print('Kept %s (samples, Glance config and logs)' % work_dir,
                  file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print_table(rows)
    good = [r for r in rows if r.status == 'success' and r.verified == 'yes']
    print()
    print('%d passed, %d failed' % (len(good), len(rows) - len(good)))
    return 0 if len(good) == len(rows) else 1


if __name__ == '__main__':
    sys.exit(main())
