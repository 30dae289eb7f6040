"""``glance-convert recover``: release the images of imports that a dead
glance-api left in the middle of a conversion.

Run it when glance-api starts (e.g. systemd ``ExecStartPre=``), and with
``--follow`` as a service beside glance-api (``etc/systemd/``), as the
user glance-api runs as.  It reads Glance's configuration and database the
way glance-api does, and releases the images with the plugin's own
:mod:`glance_convert.flow.recovery`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import signal
import sys
import threading
import warnings

from oslo_config import cfg

from glance_convert import errors
from glance_convert.flow import settings
from glance_convert.cmd import common
from glance_convert.flow import glance_conf
from glance_convert.flow import recovery
from glance_convert.host import layout as layout_
from glance_convert.host import watch

#: Seconds between two looks of ``--follow``: with the release itself
#: (well under a second), an import is released a few seconds after its
#: worker died, and the look costs one read of a small file.
FOLLOW_INTERVAL = 2.0


def add_parser(sub) -> None:
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
    p.add_argument('--follow', action='store_true',
                   help='Keep running: release the imports of every '
                   'glance-api process that dies, a few seconds after it '
                   'died, until stopped (SIGTERM).  For a service beside '
                   'glance-api; logs on stderr.')
    p.add_argument('--if-needed', action='store_true',
                   help='Exit at once, without loading Glance or using its '
                   'database, when no import waits to be released (for a '
                   'systemd timer: most of its runs find nothing).  '
                   'Without it, recover also checks the database.')
    p.add_argument('--interval', type=_interval, default=FOLLOW_INTERVAL,
                   metavar='SECONDS',
                   help='With --follow: seconds between two looks at the '
                   'ledger (default %(default)s).')
    common.config_args(p)
    p.set_defaults(func=run)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            'not a number of seconds from 0.1 to 3600: %r' % text)
    return value


def load_glance_conf(config_dir: str | None, extra_files) -> list[str]:
    """Load the configuration into ``cfg.CONF`` with all of Glance's
    options, as glance-api does; return the files read."""
    if not config_dir:
        raise common.UsageError('no Glance configuration directory: pass '
                                '--config-dir (the directory of '
                                'glance-api.conf)')
    if not os.path.isdir(config_dir):
        raise common.UsageError('configuration directory %s does not exist'
                                % config_dir)
    if not os.path.isfile(os.path.join(config_dir, glance_conf.API_CONF)):
        raise common.UsageError('no glance-api.conf in %s: pass the directory '
                                'of glance-api.conf with --config-dir'
                                % config_dir)
    for path in extra_files:
        if not os.path.isfile(path):
            raise common.UsageError('%s: no such configuration file' % path)
    try:
        glance_conf.load(config_dir, extra_files, glance=True)
        cfg.CONF.database.connection  # a bad value is a config error
    except ImportError as exc:
        raise common.UsageError('Glance is not installed in this Python (%s): '
                                '%s; run the glance-convert of the glance-api '
                                'environment' % (sys.executable, exc))
    except (cfg.Error, ValueError) as exc:
        raise common.UsageError('cannot read the configuration: %s' % exc)
    return glance_conf.config_files(config_dir, extra_files)


def _glance_repos(files: list[str]):
    """Admin image and task repositories, once the database answers."""
    from glance import context as glance_context
    from oslo_db import exception as db_exc
    if not cfg.CONF.database.connection:
        raise common.UsageError('[database] connection is not set in %s: '
                                'recover needs the database of glance-api'
                                % ', '.join(files))
    image_repo, task_repo = recovery.admin_repos(
        glance_context.get_admin_context())
    try:
        image_repo.list(limit=1)
    except db_exc.CantStartEngineError as exc:
        raise common.UsageError('cannot use the Glance database: %s'
                                % recovery.one_line(exc))
    except Exception as exc:  # noqa: BLE001 - any driver error
        raise common.UsageError('cannot use the Glance database ([database] '
                                'connection in %s): %s: %s'
                                % (', '.join(files), type(exc).__name__,
                                   recovery.one_line(exc)))
    return image_repo, task_repo


def peek_orphans(ws) -> list[dict]:
    """The orphan records recovery would take, without changing anything."""
    try:
        return ws.peek_orphans()
    except errors.WorkspaceError as exc:
        raise common.UsageError(exc.detail)


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
        raise common.UsageError(
            'run recover as the user glance-api runs as (%s owns %s), e.g. '
            'sudo -u %s glance-convert recover ...; as root it would leave '
            'files glance-api cannot use' % (name, path, name))


def recover(ws, image_repo, task_repo, staging_dir: str | None,
            dry_run: bool = False) -> list[dict]:
    """Release the images of interrupted conversions; one report per record
    (see :func:`glance_convert.flow.recovery.release_all`)."""
    if not os.path.exists(ws.ledger_path):
        return []  # no conversion ever ran here; create nothing
    _check_user(ws.ledger_path)
    try:
        if dry_run:
            reports, _ = recovery.release_all(
                peek_orphans(ws), image_repo, task_repo, staging_dir,
                dry_run=True)
            return reports
        # The operator asks now: records waiting for a retry go too.
        return recovery.recover(ws, lambda: (image_repo, task_repo),
                                staging_dir, due_only=False)
    except errors.WorkspaceError as exc:
        raise common.UsageError('conversion work area %s: %s'
                                % (ws.work_dir, exc.detail))


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


def follow(ws, files: list[str], interval: float) -> int:
    """``--follow``: the look-out service, until SIGTERM or SIGINT.

    No database query at start or while idle: the repositories are made
    at start (which loads Glance's modules once, so the first release is
    as quick as the next) but the database is first used when an import
    is to be released, so a database that is not up yet at boot is no
    reason to stop.
    """
    if not cfg.CONF.database.connection:
        raise common.UsageError('[database] connection is not set in %s: '
                                'recover needs the database of glance-api'
                                % ', '.join(files))
    _check_user(ws.ledger_path)
    _check_user(ws.lock_dir)
    from glance import context as glance_context
    repos = recovery.admin_repos(glance_context.get_admin_context())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with watch.following(layout_.Layout(ws.work_dir, ws.lock_dir)):
            logging.getLogger(__name__).info(
                'Looking every %g s for imports interrupted in %s (ledger '
                '%s)', interval, ws.work_dir, ws.ledger_path)
            recovery.follow(ws, lambda: repos, glance_conf.staging_dir(),
                            interval, stop)
    except errors.WorkspaceError as exc:
        raise common.UsageError('conversion work area %s: %s'
                                % (ws.work_dir, exc.detail))
    logging.getLogger(__name__).info('Stopped looking for interrupted '
                                     'imports')
    return common.EXIT_OK


def run(args) -> int:
    logging.basicConfig(
        stream=sys.stderr, format=('%(asctime)s ' if args.follow else '')
        + '%(levelname)s %(name)s: %(message)s',
        level=logging.INFO if args.verbose or args.follow
        else logging.ERROR)
    if args.follow and (args.dry_run or args.json):
        raise common.UsageError('--follow cannot be combined with --dry-run '
                                'or --json')
    if not args.verbose:
        # Import-time noise of Glance's dependencies, not about recovery:
        # eventlet's deprecation and store drivers that are not installed.
        warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
        logging.getLogger('stevedore').setLevel(logging.CRITICAL)
    quiet = (_quiet_workspace(args) if args.if_needed
             and not (args.follow or args.dry_run) else None)
    if quiet is not None:
        _report([], quiet, args)
        return common.EXIT_OK
    files = load_glance_conf(common.config_dir(args), args.config_file or [])
    try:
        ws = settings.host_workspace()
    except errors.WorkspaceError as exc:
        raise common.UsageError('no conversion work area: %s' % exc.detail)
    if args.follow:
        return follow(ws, files, args.interval)
    image_repo, task_repo = _glance_repos(files)
    reports = recover(ws, image_repo, task_repo, glance_conf.staging_dir(),
                      dry_run=args.dry_run)
    _report(reports, ws, args)
    failed = [r for r in reports if r['result'] == 'failed']
    for r in failed:
        print('glance-convert: error: image %s was not released: %s'
              % (r['image_id'], r['reason']), file=sys.stderr)
    return common.EXIT_FAILED if failed else common.EXIT_OK


def _quiet_workspace(args):
    """The workspace, if its ledger names no interrupted import; else None.

    Read without importing Glance or using its database, so that a
    ``--if-needed`` run with nothing to do (most runs from a timer) costs
    little.  Any doubt
    (a configuration or ledger that cannot be read) returns None: the
    full run reports it.
    """
    directory = common.config_dir(args)
    if not directory or not os.path.isfile(
            os.path.join(directory, glance_conf.API_CONF)) or not all(
            os.path.isfile(f) for f in args.config_file or []):
        return None
    try:
        ws = settings.host_workspace(conf=glance_conf.load(
            directory, args.config_file or []))
        pending = ws.peek_orphans()
    except Exception:  # noqa: BLE001 - the full run says what is wrong
        return None
    return None if pending else ws


def _report(reports, ws, args) -> None:
    if args.json:
        json.dump({'work_dir': ws.work_dir, 'ledger': ws.ledger_path,
                   'dry_run': args.dry_run, 'interrupted': reports},
                  sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        _print_recover(reports, ws, args.dry_run)
