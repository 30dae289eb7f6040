"""``glance-convert convert``: check and convert a file as the plugin
would, with its options and limits."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid

from glance_convert import formats
from glance_convert import options
from glance_convert import units
from glance_convert.cmd import common
from glance_convert.host import layout
from glance_convert.pipeline import containers
from glance_convert.pipeline import conversion
from glance_convert.pipeline import hold


def add_parser(sub) -> None:
    p = sub.add_parser('convert', help='Check and convert an image file as '
                       'the plugin would.')
    p.add_argument('file', metavar='FILE')
    p.add_argument('--disk-format', metavar='FMT',
                   help='The disk format the image claims (Glance names); '
                        'required but for --container-format ova, whose '
                        'OVF names it.')
    p.add_argument('--to', metavar='FMT', choices=formats.CONVERTIBLE,
                   help='Target format (default: [glance_convert] '
                        'output_format).')
    p.add_argument('-o', '--output', metavar='OUT',
                   help='Output file (default: FILE\'s name with the target '
                        'format as extension, in the current directory).')
    p.add_argument('--force', action='store_true',
                   help='Replace OUT if it exists.')
    p.add_argument('-q', '--quiet', action='store_true',
                   help='No progress bar and no summary.')
    common.upload_args(p)
    common.config_args(p)
    p.set_defaults(func=run)


class ProgressBar(hold.NoStatus):
    """A one-line progress bar on a terminal: the conversion's status."""

    def __init__(self, total: int, stream=sys.stderr, width: int = 30):
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.shown = False

    def update(self, done: int) -> None:
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * self.width)
        self.stream.write('\r[%s%s] %3d%%  %.1f / %.1f MiB read' % (
            '#' * filled, '-' * (self.width - filled), fraction * 100,
            min(done, self.total) / units.MiB, self.total / units.MiB))
        self.stream.flush()
        self.shown = True

    def progress(self, bytes_read: int) -> None:
        self.update(bytes_read)

    def finish(self) -> None:
        if self.shown:
            self.stream.write('\n')
            self.stream.flush()


def _output_path(args, target: str) -> str:
    if args.output:
        out = args.output
    else:
        base = os.path.basename(args.file)
        stem, ext = os.path.splitext(base)
        out = '%s.%s' % (stem if ext else base, target)
    out = os.path.abspath(out)
    if os.path.exists(out) and os.path.samefile(out, args.file):
        raise common.UsageError('the output %s is the input file' % out)
    if os.path.isdir(out):
        raise common.UsageError('the output %s is a directory' % out)
    if os.path.exists(out) and not args.force:
        raise common.UsageError('%s exists; use --force to replace it' % out)
    if not os.path.isdir(os.path.dirname(out)):
        raise common.UsageError('the directory of %s does not exist' % out)
    return out


def run(args) -> int:
    common.check_file(args.file)
    if args.disk_format is None and not containers.get(
            args.container_format).states_disk_format:
        raise common.UsageError('--disk-format is required')
    if args.disk_format is not None and not formats.is_convertible(
            args.disk_format):
        raise common.UsageError(
            '--disk-format %s: the plugin converts only %s'
            % (args.disk_format, ', '.join(formats.CONVERTIBLE)))
    conf = common.load_conf(args)
    target = args.to or conf[options.GROUP].output_format
    settings = common.plugin_settings(conf, target)
    out = _output_path(args, target)
    image_id = 'cli-%s' % uuid.uuid4().hex
    work_dir = os.path.dirname(out)
    # The upload is unpacked (compressed, OVA) and its SHA-256 checked as
    # the plugin does; the work files go next to the output.
    with containers.opened(
            args.file, container_format=args.container_format,
            disk_format=args.disk_format,
            properties=common.upload_properties(args), image_id=image_id,
            work_dir=work_dir, policy=settings.policy,
            bare_compression=settings.bare_compression,
            timeout=settings.convert_limits.timeout) as disk:
        if conversion.plan(disk.disk_format, settings) is None:
            conversion.convert_image(disk.path, disk.disk_format,
                                     image_id=image_id, work_dir=work_dir,
                                     settings=settings)
            disk.source_sha256()
            if not disk.unpacked:
                print('The plugin would not convert this %s image to %s '
                      '(same format without output options that ask for a '
                      're-write, or not in source_formats/in '
                      'keep_formats); nothing written.'
                      % (disk.disk_format, target))
                return common.EXIT_OK
            # The plugin stores the unpacked disk as it is.
            os.replace(disk.path, out)
            disk.keep()
            _summary(args, disk, out, 'Unpacked')
            return common.EXIT_OK
        result = _convert(args, disk, image_id, work_dir, settings)
        try:
            disk.source_sha256()
        except BaseException:
            layout.remove(result.path)
            raise
    os.replace(result.path, out)
    if not args.quiet:
        print('Converted %s (%s) to %s (%s): virtual size %s, file size %s, '
              '%.1f s.' % (args.file, disk.disk_format, out, target,
                           common.human(result.virtual_size),
                           common.human(result.size), result.duration))
    _summary(args, disk, out, None)
    return common.EXIT_OK


def _convert(args, disk, image_id, work_dir, settings):
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        bar = ProgressBar(units.allocated_bytes(disk.path))
        settings = dataclasses.replace(settings, progress_interval=0.5)
        bar.update(0)
    try:
        result = conversion.convert_image(
            disk.path, disk.disk_format, image_id=image_id,
            work_dir=work_dir, settings=settings, status=bar)
        if bar is not None:
            bar.update(bar.total)
    finally:
        if bar is not None:
            bar.finish()
    return result


def _summary(args, disk, out, verb) -> None:
    """What the plugin would record on the image, for the operator."""
    if args.quiet:
        return
    if verb:
        print('%s %s (%s) to %s (%s).' % (verb, args.file,
                                          disk.container_format, out,
                                          disk.disk_format))
    digest = disk.source_sha256()
    if digest:
        print('Upload SHA-256: %s' % digest)
    for key, value in sorted(disk.properties.items()):
        print('Image property: %s=%s' % (key, value))
