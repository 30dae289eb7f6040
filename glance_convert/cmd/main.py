"""``glance-convert``: the operator's command.

    glance-convert inspect FILE [--disk-format FMT] [--json]
    glance-convert convert FILE --disk-format FMT [--to FMT] [-o OUT]
    glance-convert check-config [--config-dir /etc/glance]
    glance-convert recover [--config-dir /etc/glance] [--dry-run] [--json]

``inspect`` and ``convert`` run the plugin's own checks, options and limits
(:mod:`glance_convert.pipeline.conversion`), read from Glance's configuration
directory (``--config-dir``, default ``$OS_GLANCE_CONFIG_DIR`` or
``/etc/glance`` when it exists) and any ``--config-file``.

``recover`` releases the images of imports whose glance-api died in the
middle of a conversion (run it when glance-api starts, e.g. systemd
``ExecStartPre=``); it reads Glance's configuration and database the way
glance-api does.

Exit codes: 0 success (``inspect``: the image would be accepted), 1 any
other failure (conversion failed, bad configuration, ``check-config``
found an error, ``recover`` could not read the configuration or the
database or could not release an image), 2 the image is refused by the
safety checks (the message is the one Glance users see), 64 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pwd
import sys
import uuid
import warnings

from oslo_config import cfg
from oslo_utils.imageutils import format_inspector as fi

from glance_convert import settings as config_check
from glance_convert.pipeline import conversion
from glance_convert.pipeline import sandbox
from glance_convert import errors
from glance_convert import formats
from glance_convert import options
from glance_convert import units
from glance_convert.flow import plugin
from glance_convert.host import workspace
from glance_convert.pipeline import checks
from glance_convert.pipeline import inspection

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line cannot be acted on."""


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 64 for usage errors (2 means refused)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, '%s: error: %s\n' % (self.prog, message))


def _human(n: int | None) -> str:
    if n is None:
        return 'unknown'
    return '%s (%d bytes)' % (units.human_size(n), n)


def _default_config_dir() -> str | None:
    path = os.environ.get('OS_GLANCE_CONFIG_DIR') or '/etc/glance'
    return path if os.path.isdir(path) else None


def _load_conf(args) -> cfg.ConfigOpts:
    config_dir = args.config_dir or _default_config_dir()
    try:
        return config_check.load(config_dir, args.config_file or [])
    except (cfg.Error, ValueError) as exc:
        raise UsageError('cannot read the configuration: %s' % exc)


def _settings(conf, target: str | None = None) -> conversion.Settings:
    """The plugin's settings, ``target`` overriding output_format."""
    if target:
        conf.set_override('output_format', target, group=options.GROUP)
    try:
        config_check.ensure_valid(conf)
        return conversion.Settings.from_conf(conf)
    except config_check.InvalidConfiguration as exc:
        raise UsageError(str(exc))


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise UsageError('%s: no such file' % path)
    if not os.path.isfile(path):
        raise UsageError('%s: not a regular file' % path)
    if not os.access(path, os.R_OK):
        raise UsageError('%s: not readable' % path)


def _detect(path: str) -> str:
    """Glance's name for the format the bytes show (no qemu-img)."""
    try:
        return formats.glance_name_for_inspector(
            str(fi.detect_file_format(path)))
    except fi.ImageFormatError as exc:
        return 'ambiguous (%s)' % exc


# --- inspect -----------------------------------------------------------------

def _target_settings(settings, conf, target):
    opts, compressed = formats.output_options(conf[options.GROUP], target)
    return dataclasses.replace(settings, target=target, out_options=opts,
                               compressed=compressed)


def inspect_file(path: str, claimed: str | None, conf) -> dict:
    """The report of ``glance-convert inspect`` as a dict."""
    settings = _settings(conf)
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
    report['reasons'] = checks.passed_reasons(
        claimed, settings.policy.max_virtual_size)
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
    print('Claimed format:   %s' % report['claimed_format'])
    print('Detected format:  %s' % report['detected_format'])
    print('Virtual size:     %s' % _human(report['virtual_size']))
    print('File size:        %s' % _human(report['file_size']))
    print('Allocated:        %s' % _human(report['allocated_size']))
    print('Verdict:          %s' % report['verdict'])
    confined = ', '.join(report['confinement']) or 'nothing (sandbox = off)'
    print('qemu-img confined: %s' % confined)
    for reason in report['reasons']:
        print('  - %s' % reason)
    if report['detail'] and report['verdict'] == 'rejected':
        print('  detail: %s' % report['detail'])
    print('Plugin would:     %s' % report['plugin_action'])
    if report['space_needed']:
        print('Space needed to convert to:')
        for fmt, n in report['space_needed'].items():
            print('  %-6s %s' % (fmt, _human(n)))


def cmd_inspect(args) -> int:
    _check_file(args.file)
    conf = _load_conf(args)
    report = inspect_file(args.file, args.disk_format, conf)
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        _print_inspect(report)
    return EXIT_REJECTED if report['verdict'] == 'rejected' else EXIT_OK


# --- convert -----------------------------------------------------------------

class ProgressBar:
    """A one-line progress bar on a terminal."""

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
        raise UsageError('the output %s is the input file' % out)
    if os.path.isdir(out):
        raise UsageError('the output %s is a directory' % out)
    if os.path.exists(out) and not args.force:
        raise UsageError('%s exists; use --force to replace it' % out)
    if not os.path.isdir(os.path.dirname(out)):
        raise UsageError('the directory of %s does not exist' % out)
    return out


def cmd_convert(args) -> int:
    _check_file(args.file)
    if not formats.is_convertible(args.disk_format):
        raise UsageError('--disk-format %s: the plugin converts only %s'
                         % (args.disk_format, ', '.join(formats.CONVERTIBLE)))
    conf = _load_conf(args)
    target = args.to or conf[options.GROUP].output_format
    settings = _settings(conf, target)
    out = _output_path(args, target)
    if conversion.plan(args.disk_format, settings) is None:
        print('The plugin would not convert this %s image to %s (same '
              'format without output options that ask for a re-write, or '
              'not in source_formats/in keep_formats); nothing written.'
              % (args.disk_format, target))
        return EXIT_OK
    bar = None
    on_progress = None
    if sys.stderr.isatty() and not args.quiet:
        bar = ProgressBar(units.allocated_bytes(args.file))
        on_progress = bar.update
        settings = dataclasses.replace(settings, progress_interval=0.5)
        bar.update(0)
    try:
        result = conversion.convert_image(
            args.file, args.disk_format,
            image_id='cli-%s' % uuid.uuid4().hex,
            work_dir=os.path.dirname(out), settings=settings,
            on_progress=on_progress)
        if bar is not None:
            bar.update(bar.total)
    finally:
        if bar is not None:
            bar.finish()
    os.replace(result.path, out)
    if not args.quiet:
        print('Converted %s (%s) to %s (%s): virtual size %s, file size %s, '
              '%.1f s.' % (args.file, args.disk_format, out, target,
                           _human(result.virtual_size), _human(result.size),
                           result.duration))
    return EXIT_OK


# --- check-config ------------------------------------------------------------

_MARK = {config_check.OK: ' OK ', config_check.WARNING: 'WARN',
         config_check.ERROR: 'FAIL'}


def cmd_check_config(args) -> int:
    config_dir = args.config_dir or _default_config_dir() or '/etc/glance'
    found = config_check.check_host(config_dir, args.config_file or [])
    if not config_check.has_errors(found):
        found += _interrupted_findings(config_dir, args.config_file or [])
    if args.json:
        json.dump([f.as_dict() for f in found], sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        for f in found:
            print('[%s] %s: %s' % (_MARK[f.severity], f.check, f.message))
            if f.fix:
                print('       fix: %s' % f.fix)
        errors_ = sum(f.severity == config_check.ERROR for f in found)
        warnings = sum(f.severity == config_check.WARNING for f in found)
        print('%d error(s), %d warning(s).' % (errors_, warnings))
    return EXIT_FAILED if config_check.has_errors(found) else EXIT_OK


def _interrupted_findings(config_dir: str, extra_files) -> list:
    """check-config's advice about conversions that glance-api left behind.
    """
    try:
        conf = config_check.load(config_dir, extra_files)
        group = conf[options.GROUP]
        work_dir = group.work_dir or config_check.staging_dir(conf)
        if not work_dir:
            return []
        found = _peek_orphans(workspace.from_conf(work_dir, conf=conf))
    except (cfg.Error, ValueError, UsageError, errors.ConversionError):
        return []  # reported by the other checks
    if not found:
        return [config_check.Finding(
            config_check.OK, 'recover', 'No interrupted conversion awaits '
            'recovery in %s.' % work_dir)]
    return [config_check.Finding(
        config_check.WARNING, 'recover', '%d conversion(s) were interrupted '
        'by a glance-api that died (images %s); their images stay '
        '"importing" until the next import on this host or a recovery.'
        % (len(found), ', '.join(sorted({str(o.get('owner'))
                                         for o in found}))),
        'run glance-convert recover --config-dir %s as the glance-api user, '
        'and at every glance-api start (systemd ExecStartPre=).'
        % config_dir)]


# --- recover -----------------------------------------------------------------

#: Files glance-api reads from its configuration directory, in its order
#: (glance.common.wsgi_app): the import file is optional.
_API_FILES = ('glance-image-import.conf', 'glance-api.conf')


def _glance_files(config_dir: str | None, extra_files) -> list[str]:
    if not config_dir:
        raise UsageError('no Glance configuration directory: pass '
                         '--config-dir (the directory of glance-api.conf)')
    if not os.path.isdir(config_dir):
        raise UsageError('configuration directory %s does not exist'
                         % config_dir)
    if not os.path.isfile(os.path.join(config_dir, 'glance-api.conf')):
        raise UsageError('no glance-api.conf in %s: pass the directory of '
                         'glance-api.conf with --config-dir' % config_dir)
    files = [os.path.join(config_dir, name) for name in _API_FILES
             if os.path.isfile(os.path.join(config_dir, name))]
    for path in extra_files:
        if not os.path.isfile(path):
            raise UsageError('%s: no such configuration file' % path)
    return files + list(extra_files)


def _load_glance_conf(config_dir: str, files: list[str]) -> cfg.ConfigOpts:
    """Load Glance's configuration into ``cfg.CONF`` as glance-api does.

    Glance's own options, the database options and the store options are
    registered, so that Glance's database API and staging path work in
    this process as in glance-api.
    """
    try:
        import glance_store
        from glance.common import config as glance_config
        from glance.common import wsgi_app
        from oslo_db import options as db_options
    except ImportError as exc:
        raise UsageError('Glance is not installed in this Python (%s): %s; '
                         'run the glance-convert of the glance-api '
                         'environment' % (sys.executable, exc))
    conf = cfg.CONF
    conf_d = os.path.join(config_dir, 'glance-api.conf.d')
    try:
        glance_config.set_config_defaults()
        db_options.set_defaults(conf)
        conf([], project='glance', prog='glance-api',
             default_config_files=files,
             default_config_dirs=[conf_d] if os.path.isdir(conf_d) else [])
        if conf.enabled_backends:
            glance_store.register_store_opts(
                conf, reserved_stores=wsgi_app.RESERVED_STORES)
        else:
            glance_store.register_opts(conf)
        # Parse the values recovery uses now: a bad one is a config error.
        for name in ('work_dir', 'max_concurrent_conversions',
                     'reserved_space_mb', 'max_workspace_bytes'):
            getattr(conf[options.GROUP], name)
        for group, name in (('database', 'connection'),
                            ('oslo_concurrency', 'lock_path')):
            getattr(conf[group], name)
    except (cfg.Error, ValueError) as exc:
        raise UsageError('cannot read the configuration: %s' % exc)
    return conf


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit] + '...'


def _glance_repos(files: list[str]):
    """Admin image and task repositories, once the database answers."""
    from glance import context as glance_context
    from oslo_db import exception as db_exc
    if not cfg.CONF.database.connection:
        raise UsageError('[database] connection is not set in %s: recover '
                         'needs the database of glance-api'
                         % ', '.join(files))
    image_repo, task_repo = plugin.admin_repos(
        glance_context.get_admin_context())
    try:
        image_repo.list(limit=1)
    except db_exc.CantStartEngineError as exc:
        raise UsageError('cannot use the Glance database: %s'
                         % _one_line(exc))
    except Exception as exc:  # noqa: BLE001 - any driver error
        raise UsageError('cannot use the Glance database ([database] '
                         'connection in %s): %s: %s'
                         % (', '.join(files), type(exc).__name__,
                            _one_line(exc)))
    return image_repo, task_repo


def _peek_orphans(ws) -> list[dict]:
    """The orphan records recovery would take, without changing anything."""
    try:
        return ws.peek_orphans()
    except errors.WorkspaceError as exc:
        raise UsageError(exc.detail)


def _check_user(path: str) -> None:
    """Refuse to run as root on files glance-api owns."""
    try:
        owner = os.stat(path).st_uid
    except FileNotFoundError:
        return
    if os.geteuid() == 0 and owner != 0:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise UsageError('run recover as the user glance-api runs as (%s '
                         'owns %s), e.g. sudo -u %s glance-convert recover '
                         '...; as root it would leave files glance-api '
                         'cannot use' % (name, path, name))


def recover(ws, image_repo, task_repo, staging_dir: str | None,
            dry_run: bool = False) -> list[dict]:
    """Release the images of interrupted conversions; one report per record.

    Each report: ``image_id``, ``task_id``, ``pid`` (the dead holder),
    ``removed`` (work files removed, or that would be), ``staged_data``
    (the staged file deleted, or None), ``result`` (``released``,
    ``would release``, ``skipped`` or ``failed``) and ``reason``.
    """
    if not os.path.exists(ws.ledger_path):
        return []  # no conversion ever ran here; create nothing
    _check_user(ws.ledger_path)
    try:
        orphans = _peek_orphans(ws) if dry_run else ws.take_orphans()
    except errors.WorkspaceError as exc:
        raise UsageError('conversion work area %s: %s'
                         % (ws.work_dir, exc.detail))
    reports = []
    retry = []
    try:
        _recover_each(orphans, reports, retry, image_repo, task_repo,
                      staging_dir, dry_run)
    finally:
        if retry and not dry_run:
            ws.return_orphans(retry)
    return reports


def _recover_each(orphans, reports, retry, image_repo, task_repo,
                  staging_dir, dry_run) -> None:
    """Release each orphan; what failed and may succeed later to ``retry``.
    """
    for orphan in orphans:
        report = {'image_id': orphan.get('owner'),
                  'task_id': (orphan.get('info') or {}).get('task_id'),
                  'pid': orphan.get('pid'),
                  'removed': list(orphan.get('removed') or []),
                  'staged_data': None, 'result': None, 'reason': None}
        reports.append(report)
        try:
            _, _, image, reason = plugin.orphan_target(orphan, image_repo)
        except Exception as exc:  # noqa: BLE001 - reported, exit 1
            report['result'] = 'failed'
            report['reason'] = 'cannot read the image: %s' % _one_line(exc)
            retry.append(orphan)
            continue
        if image is None:
            report['result'] = 'skipped'
            report['reason'] = reason
            continue
        staged = (os.path.join(staging_dir, report['image_id'])
                  if staging_dir else None)
        if staged and os.path.lexists(staged):
            report['staged_data'] = staged
        if dry_run:
            report['result'] = 'would release'
            continue
        try:
            released = plugin.recover_interrupted(
                [orphan], image_repo, task_repo, staging_dir=staging_dir)
        except Exception as exc:  # noqa: BLE001 - reported, exit 1
            report['result'] = 'failed'
            report['reason'] = _one_line(exc)
            retry.append(orphan)
            continue
        if released:
            report['result'] = 'released'
            if staged and os.path.lexists(staged):
                report['result'] = 'failed'
                report['reason'] = 'the staged data %s was not removed' % (
                    staged)
        else:  # taken over between the look-up and the release
            report['result'] = 'skipped'
            report['reason'] = 'the image changed during recovery'


def _print_recover(reports, ws, dry_run: bool) -> None:
    print('Work directory: %s (ledger %s)' % (ws.work_dir, ws.ledger_path))
    if not reports:
        print('Nothing to recover: no conversion was interrupted.')
        return
    for r in reports:
        what = {'released': 'Released',
                'would release': 'Would release',
                'skipped': 'Skipped',
                'failed': 'FAILED to release'}[r['result']]
        line = '%s image %s (import task %s, glance-api pid %s)' % (
            what, r['image_id'], r['task_id'], r['pid'])
        if r['result'] in ('released', 'would release'):
            line += (': the task fails as interrupted, the image goes back '
                     'to queued and can be imported again')
        elif r['reason']:
            line += ': %s' % r['reason']
        if r['result'] == 'failed' and not dry_run:
            line += ' (kept: the next recover, or import here, retries it)'
        print(line)
        verb = 'would remove' if dry_run else 'removed'
        for path in r['removed']:
            print('  %s work file %s' % (verb, path))
        if r['staged_data'] and r['result'] != 'failed':
            print('  %s staged data %s' % (verb, r['staged_data']))
    counts = {k: sum(r['result'] == k for r in reports)
              for k in ('released', 'would release', 'skipped', 'failed')}
    print('%d released, %d skipped, %d failed%s.' % (
        counts['would release'] if dry_run else counts['released'],
        counts['skipped'], counts['failed'],
        ' (dry run: nothing changed)' if dry_run else ''))


def cmd_recover(args) -> int:
    logging.basicConfig(
        stream=sys.stderr, format='%(levelname)s %(name)s: %(message)s',
        level=logging.INFO if args.verbose else logging.ERROR)
    if not args.verbose:
        # Import-time noise of Glance's dependencies, not about recovery:
        # eventlet's deprecation and store drivers that are not installed.
        warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
        logging.getLogger('stevedore').setLevel(logging.CRITICAL)
    config_dir = args.config_dir or _default_config_dir()
    files = _glance_files(config_dir, args.config_file or [])
    _load_glance_conf(config_dir, files)
    try:
        ws = workspace.from_conf()
    except errors.WorkspaceError as exc:
        raise UsageError('no conversion work area: %s' % exc.detail)
    image_repo, task_repo = _glance_repos(files)
    reports = recover(ws, image_repo, task_repo, workspace.staging_dir(),
                      dry_run=args.dry_run)
    if args.json:
        json.dump({'work_dir': ws.work_dir, 'ledger': ws.ledger_path,
                   'dry_run': args.dry_run, 'interrupted': reports},
                  sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        _print_recover(reports, ws, args.dry_run)
    failed = [r for r in reports if r['result'] == 'failed']
    for r in failed:
        print('glance-convert: error: image %s was not released: %s'
              % (r['image_id'], r['reason']), file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


# --- main --------------------------------------------------------------------

def _config_args(p) -> None:
    p.add_argument('--config-dir', metavar='DIR',
                   help='Glance configuration directory: glance-api.conf '
                        'and glance-image-import.conf are read from it '
                        '(default: $OS_GLANCE_CONFIG_DIR or /etc/glance if '
                        'it exists).')
    p.add_argument('--config-file', metavar='FILE', action='append',
                   help='A further configuration file, read after those of '
                        '--config-dir (repeatable).')


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog='glance-convert',
        description='Inspect, convert and check images and configuration '
                    'the way the glance_convert import plugin does.',
        epilog='Exit codes: 0 success; 1 failure; 2 image refused by the '
               'safety checks; 64 usage error; 130 interrupted.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=_Parser)
    sub.required = True

    p = sub.add_parser('inspect', help='Report the format, sizes and '
                       'safety verdict of an image file.')
    p.add_argument('file', metavar='FILE')
    p.add_argument('--disk-format', metavar='FMT',
                   help='The disk format the image claims, in Glance\'s '
                        'names (default: the detected format).')
    p.add_argument('--json', action='store_true',
                   help='Print the report as JSON.')
    _config_args(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser('convert', help='Check and convert an image file as '
                       'the plugin would.')
    p.add_argument('file', metavar='FILE')
    p.add_argument('--disk-format', metavar='FMT', required=True,
                   help='The disk format the image claims (Glance names).')
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
    _config_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser('check-config', help='Check Glance\'s configuration '
                       'and this host for the plugin.')
    p.add_argument('--json', action='store_true',
                   help='Print the findings as JSON.')
    _config_args(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser('recover', help='Release the images of imports '
                       'interrupted when glance-api died (run it at '
                       'glance-api start).',
                       description='Remove what conversions of dead '
                       'glance-api processes left in the work directory, '
                       'fail their import tasks, put their images back to '
                       'queued and delete their staged data, so the images '
                       'can be imported again.  Needs Glance\'s database; '
                       'run it as the user glance-api runs as.')
    p.add_argument('--dry-run', action='store_true',
                   help='Only report what would be released.')
    p.add_argument('--json', action='store_true',
                   help='Print the report as JSON.')
    p.add_argument('-v', '--verbose', action='store_true',
                   help='Log what recovery does on stderr.')
    _config_args(p)
    p.set_defaults(func=cmd_recover)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print('glance-convert: error: %s' % exc, file=sys.stderr)
        return EXIT_FAILED
    except errors.ImageRejected as exc:
        print('glance-convert: %s' % exc, file=sys.stderr)
        print('  detail: %s' % exc.detail, file=sys.stderr)
        return EXIT_REJECTED
    except errors.ConversionError as exc:
        print('glance-convert: %s' % exc, file=sys.stderr)
        print('  detail: %s' % exc.detail, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print('glance-convert: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print('glance-convert: error: %s' % exc, file=sys.stderr)
        return EXIT_FAILED


if __name__ == '__main__':
    sys.exit(main())
