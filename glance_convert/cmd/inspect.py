"""``glance-convert inspect``: the plugin's verdict on an image file."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import uuid

from oslo_utils.imageutils import format_inspector as fi

from glance_convert import errors
from glance_convert import formats
from glance_convert import options
from glance_convert import units
from glance_convert.cmd import common
from glance_convert.pipeline import containers
from glance_convert.pipeline import conversion
from glance_convert.pipeline import describe
from glance_convert.pipeline import inspection
from glance_convert.pipeline import sandbox
from glance_convert.pipeline import check_table


def add_parser(sub) -> None:
    p = sub.add_parser('inspect', help='Report the format, sizes and '
                       'safety verdict of an image file.')
    p.add_argument('file', metavar='FILE')
    p.add_argument('--disk-format', metavar='FMT',
                   help='The disk format the image claims, in Glance\'s '
                        'names (default: the detected format).')
    p.add_argument('--json', action='store_true',
                   help='Print the report as JSON.')
    common.upload_args(p)
    common.config_args(p)
    p.set_defaults(func=run)


def _detect(path: str) -> str:
    """Glance's name for the format the bytes show (no qemu-img)."""
    try:
        return formats.glance_name_for_inspector(
            str(fi.detect_file_format(path)))
    except fi.ImageFormatError as exc:
        return 'ambiguous (%s)' % exc


def _target_settings(settings, conf, target):
    opts, compressed = formats.output_options(conf[options.GROUP], target)
    return dataclasses.replace(settings, target=target, out_options=opts,
                               compressed=compressed)


def inspect_file(path: str, claimed: str | None, conf,
                 container: str = containers.BARE.name,
                 properties: dict | None = None
                 ) -> dict:
    """The report of ``glance-convert inspect`` as a dict.

    A compressed or OVA upload is unpacked first, as the plugin does, into
    a private temporary directory that is removed afterwards; the report
    then describes the disk inside, with the upload's SHA-256 (checked
    against ``properties``' ``glance_convert_source_sha256``) and the
    properties the OVF gives.
    """
    settings = common.plugin_settings(conf)
    upload = {'container_format': container,
              'upload_size': os.path.getsize(path),
              'source_sha256': None, 'image_properties': {},
              'guest_properties': {}, 'guest': None}
    try:
        with tempfile.TemporaryDirectory(prefix='glance-convert-') as work, \
                containers.opened(
                    path, container_format=container, disk_format=claimed,
                    properties=properties or {},
                    image_id='cli-%s' % uuid.uuid4().hex, work_dir=work,
                    policy=settings.policy,
                    bare_compression=settings.bare_compression,
                    timeout=settings.convert_limits.timeout) as disk:
            report = _inspect_disk(disk.path, disk.disk_format, conf,
                                   settings, container)
            report.update(upload, file=path)
            report['image_properties'] = dict(disk.properties)
            if report['verdict'] == 'accepted':
                report['source_sha256'] = disk.source_sha256()
                report.update(_guest(disk, report, settings, work,
                                     properties or {}))
    except errors.ImageRejected as exc:
        report = dict(upload, file=path, claimed_format=claimed,
                      detected_format=None, file_size=upload['upload_size'],
                      allocated_size=units.allocated_bytes(path),
                      virtual_size=None, verdict='rejected',
                      reasons=[str(exc)], detail=exc.detail,
                      plugin_action='refuse the import', space_needed={},
                      confinement=sandbox.applied_layers())
    return report


def _guest(disk, report: dict, settings, work_dir: str,
           properties: dict) -> dict:
    """The properties the plugin would set for the guest to boot, and
    what they were decided from."""
    image = describe.Image(disk.path, report['claimed_format'],
                           report['virtual_size'] or 0)
    guest = describe.describe(image, image, settings=settings,
                              image_id='cli-guest', work_dir=work_dir,
                              appliance=disk.hints,
                              user_properties=properties)
    if guest is None:
        return {}
    facts = guest.facts
    return {'guest_properties': guest.properties,
            'guest': {'record': guest.record, 'read_from': guest.read_from,
                      'complete': facts.complete if facts else None,
                      'notes': list(facts.notes) if facts else []}}


def _inspect_disk(path: str, claimed: str | None, conf, settings,
                  container: str) -> dict:
    """The report on one disk image file (the upload's, or inside it)."""
    detected = _detect(path)
    claimed = claimed or detected
    report = {
        'file': path,
        'claimed_format': claimed,
        'detected_format': detected,
        'file_size': os.path.getsize(path),
        'allocated_size': units.allocated_bytes(path),
        'virtual_size': None,
        'verdict': None,
        'reasons': [],
        'detail': None,
        'plugin_action': None,
        'space_needed': {},
        'confinement': sandbox.applied_layers(),
    }
    try:
        if formats.is_convertible(claimed):
            facts, info = conversion.inspect_source(path, claimed, settings)
        else:  # stored unconverted, so checked from its bytes (even an
            # ambiguous one, which the checks refuse)
            facts = inspection.inspect_bytes(path, claimed, settings.policy)
            info = {}
    except errors.ImageRejected as exc:
        report['verdict'] = 'rejected'
        report['reasons'] = [str(exc)]
        report['detail'] = exc.detail
        report['plugin_action'] = 'refuse the import'
        return report
    virtual_size = int(info.get('virtual-size') or facts.virtual_size)
    report['virtual_size'] = virtual_size
    report['verdict'] = 'accepted'
    report['reasons'] = check_table.passed_reasons(
        claimed, settings.policy.max_virtual_size, container)
    target = conversion.plan(claimed, settings)
    report['plugin_action'] = ('convert to %s' % target if target
                               else 'pass through (not converted)')
    if not formats.is_convertible(claimed):
        return report
    for fmt in formats.CONVERTIBLE:
        try:
            report['space_needed'][fmt] = conversion.estimate_output_bytes(
                path, claimed, fmt, virtual_size,
                _target_settings(settings, conf, fmt))
        except errors.ConversionError as exc:  # pragma: no cover
            report['space_needed'][fmt] = None
            report['detail'] = exc.detail
    return report


def _print_inspect(report: dict) -> None:
    print('File:             %s' % report['file'])
    if report['container_format'] != containers.BARE.name:
        print('Container format: %s' % report['container_format'])
    if report['source_sha256']:
        print('Upload SHA-256:   %s' % report['source_sha256'])
    print('Claimed format:   %s' % report['claimed_format'])
    print('Detected format:  %s' % report['detected_format'])
    print('Virtual size:     %s' % common.human(report['virtual_size']))
    print('File size:        %s' % common.human(report['file_size']))
    print('Allocated:        %s' % common.human(report['allocated_size']))
    print('Verdict:          %s' % report['verdict'])
    confined = ', '.join(report['confinement']) or 'nothing (sandbox = off)'
    print('qemu-img confined: %s' % confined)
    for reason in report['reasons']:
        print('  - %s' % reason)
    if report['detail'] and report['verdict'] == 'rejected':
        print('  detail: %s' % report['detail'])
    print('Plugin would:     %s' % report['plugin_action'])
    for key, value in sorted(report['image_properties'].items()):
        print('Image property:   %s=%s' % (key, value))
    guest = report.get('guest')
    if guest:
        print('Guest:            %s' % (guest['record'] or 'nothing found'))
        if guest['complete'] is False:
            print('  incomplete: %s' % '; '.join(guest['notes']))
        for key, value in sorted(report['guest_properties'].items()):
            print('Would set:        %s=%s' % (key, value))
    if report['space_needed']:
        print('Space needed to convert to:')
        for fmt, n in report['space_needed'].items():
            print('  %-6s %s' % (fmt, common.human(n)))


def run(args) -> int:
    common.check_file(args.file)
    conf = common.load_conf(args)
    report = inspect_file(args.file, args.disk_format, conf,
                          args.container_format,
                          common.upload_properties(args))
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        _print_inspect(report)
    if report['verdict'] == 'rejected':
        return common.EXIT_REJECTED
    return common.EXIT_OK
