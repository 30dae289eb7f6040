"""Build small disk images holding known data, and compare them.

Every image starts as a raw file written with ``qemu-io -c "write -P"``
(known, non-zero bytes at several offsets, zeros elsewhere) and is then
converted with ``qemu-img convert``; so any two images built from the same
patterns hold the same guest data, which ``qemu-img compare`` proves.

Formats are Glance's names (``vhd``, not qemu's ``vpc``).

    path = make_image(tmp_path, 'vhd')
    assert compare(path, 'vhd', other, 'raw')
"""

import os
import subprocess

from glance_convert import formats
from glance_convert.pipeline import qemu_img

MiB = 1024 * 1024

#: Default guest size of test images.
DEFAULT_SIZE = 4 * MiB

#: Default data: (offset, length, byte pattern).  Sector-aligned, inside
#: the first DEFAULT_SIZE bytes, with distinct patterns so that a misplaced
#: block shows up as a difference.
DEFAULT_PATTERNS = (
    (0, 64 * 1024, 0x5a),
    (MiB + 512, 4096, 0xa5),
    (2 * MiB + 192 * 1024, 256 * 1024, 0x3c),
    (DEFAULT_SIZE - 64 * 1024, 64 * 1024, 0xc3),
)


class ImageToolError(Exception):
    """qemu-img or qemu-io failed while building or comparing images."""


def run_tool(cmd, error=ImageToolError):
    """Run a tool that builds or reads an image; ``error`` with its
    stderr when it fails."""
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise error('%s failed (exit %d): %s'
                    % (' '.join(cmd), result.returncode,
                       result.stderr.decode('utf-8', 'replace')))
    return result


def make_raw(path, size=DEFAULT_SIZE, pattern_offsets=DEFAULT_PATTERNS):
    """Create a raw image of ``size`` bytes with the given data.

    ``pattern_offsets`` is an iterable of ``(offset, length, byte)``; each
    range is filled with ``byte`` (0x01-0xff), everything else is zero.
    """
    path = os.fspath(path)
    run_tool(['qemu-img', 'create', '-q', '-f', 'raw', path, str(size)])
    writes = []
    for offset, length, byte in pattern_offsets:
        if not 0 < byte < 256:
            raise ValueError('pattern byte must be 1..255, not %r' % byte)
        if offset < 0 or offset + length > size:
            raise ValueError('range %d+%d outside a %d-byte image'
                             % (offset, length, size))
        writes += ['-c', 'write -q -P 0x%02x %d %d' % (byte, offset, length)]
    if writes:
        run_tool(['qemu-io', '-f', 'raw'] + writes + [path])
    return path


def convert(src, src_fmt, dst, dst_fmt, options=None):
    """``qemu-img convert`` between Glance formats, with ``-o`` options."""
    cmd = ['qemu-img', 'convert', '-f', formats.qemu_driver(src_fmt),
           '-O', formats.qemu_driver(dst_fmt)]
    if options:
        cmd += ['-o', ','.join('%s=%s' % kv for kv in options.items())]
    run_tool(cmd + [os.fspath(src), os.fspath(dst)])
    return os.fspath(dst)


def make_image(directory, fmt, size=DEFAULT_SIZE,
               pattern_offsets=DEFAULT_PATTERNS, name=None, options=None):
    """Build an image of Glance format ``fmt`` in ``directory``.

    The guest data is that of :func:`make_raw` with the same arguments.
    ``options`` go to ``qemu-img convert -o`` (e.g. ``{'subformat':
    'streamOptimized'}`` for vmdk).  Returns the path.
    """
    directory = os.fspath(directory)
    path = os.path.join(directory, name or 'source.%s' % fmt)
    if fmt == 'raw' and not options:
        return make_raw(path, size, pattern_offsets)
    raw = path + '.tmp-raw'
    make_raw(raw, size, pattern_offsets)
    try:
        convert(raw, 'raw', path, fmt, options)
    finally:
        os.unlink(raw)
    return path


def compare(a, a_fmt, b, b_fmt):
    """True if the two images (Glance formats) hold the same guest data.

    The plugin's own ``qemu-img compare`` (non-strict: a size difference
    is allowed if the extra area reads as zeros, as VHD rounds sizes).
    """
    return qemu_img.compare(os.fspath(a), formats.qemu_driver(a_fmt),
                            os.fspath(b), formats.qemu_driver(b_fmt))


def info(path, fmt):
    """``qemu-img info --output=json`` as a dict (for test images only)."""
    import json
    result = run_tool(['qemu-img', 'info', '--output=json', '-f',
                       formats.qemu_driver(fmt), os.fspath(path)])
    return json.loads(result.stdout)


def make_ova(directory, ovf, disk, disk_name='disk1.vmdk', out=None,
             tar_format='ustar'):
    """An OVA as VMware writes one, made with the ``tar`` command: the OVF
    descriptor ``ovf`` (bytes) first, then ``disk`` (moved into
    ``directory`` as ``disk_name``).  Returns its path (``out`` or
    ``directory/appliance.ova``); ``tar_format`` is GNU tar's ``--format``.
    """
    directory = os.fspath(directory)
    os.rename(disk, os.path.join(directory, disk_name))
    with open(os.path.join(directory, 'vm.ovf'), 'wb') as f:
        f.write(ovf)
    out = os.fspath(out or os.path.join(directory, 'appliance.ova'))
    run_tool(['tar', '-cf', out, '--format=%s' % tar_format, '-C', directory,
              'vm.ovf', disk_name])
    return out


def sha256_of(path):
    """The hex SHA-256 of a file, as a publisher prints it.

    Through ``hashlib.new``: tests that replace ``hashlib.sha256`` to watch
    the plugin's hashing still get the real digest here.
    """
    import hashlib
    with open(path, 'rb') as f:
        return hashlib.new('sha256', f.read()).hexdigest()
