"""``glance-convert check-config``: Glance's configuration and this host,
checked for the plugin.

:func:`check_host` runs every check: the options (read as glance-api reads
them), qemu-img, the plugin's place in Glance's import flow, the work
directory, the lock directory, Glance's settings that undo the plugin
(:mod:`~glance_convert.cmd.glance_rules`), conversions that a dead
glance-api left for recovery, and whether the look-out service that
releases them runs.  Every :class:`~glance_convert.flow.settings.Finding` says
what is wrong and how to fix it.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

from oslo_config import cfg

from glance_convert import errors
from glance_convert import options
from glance_convert.flow import settings
from glance_convert import units
from glance_convert.cmd import common
from glance_convert.cmd import glance_rules
from glance_convert.flow import glance_conf
from glance_convert.host import layout as layout_
from glance_convert.host import watch
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox
from glance_convert.flow.settings import ERROR
from glance_convert.flow.settings import Finding
from glance_convert.flow.settings import OK
from glance_convert.flow.settings import WARNING

PLUGIN_NAME = 'glance_convert'
PLUGIN_NAMESPACE = 'glance.image_import.plugins'
#: qemu-img that has ``convert --target-is-zero`` (VHD force_size output).
MIN_QEMU = (5, 0)

_MARK = {OK: ' OK ', WARNING: 'WARN', ERROR: 'FAIL'}


def add_parser(sub) -> None:
    p = sub.add_parser('check-config', help='Check Glance\'s configuration '
                       'and this host for the plugin.')
    p.add_argument('--json', action='store_true',
                   help='Print the findings as JSON.')
    common.config_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    config_dir = common.config_dir(args) or glance_conf.DEFAULT_CONFIG_DIR
    found = check_host(config_dir, args.config_file or [])
    if not has_errors(found):
        found += interrupted_findings(config_dir, args.config_file or [])
        found += self_healing_findings(config_dir, args.config_file or [])
    if args.json:
        json.dump([f.as_dict() for f in found], sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        for f in found:
            print('[%s] %s: %s' % (_MARK[f.severity], f.check, f.message))
            if f.fix:
                print('       fix: %s' % f.fix)
        errors_ = sum(f.severity == ERROR for f in found)
        warnings = sum(f.severity == WARNING for f in found)
        print('%d error(s), %d warning(s).' % (errors_, warnings))
    return common.EXIT_FAILED if has_errors(found) else common.EXIT_OK


def interrupted_findings(config_dir: str, extra_files) -> list[Finding]:
    """Advice about conversions that a dead glance-api left behind."""
    from glance_convert.cmd import recover
    try:
        conf = glance_conf.load(config_dir, extra_files)
        work_dir = glance_conf.work_dir(conf)
        if not work_dir:
            return []
        found = recover.peek_orphans(settings.host_workspace(conf=conf))
    except (cfg.Error, ValueError, common.UsageError, errors.ConversionError):
        return []  # reported by the other checks
    if not found:
        return [Finding(OK, 'recover', 'No interrupted conversion awaits '
                        'recovery in %s.' % work_dir)]
    return [Finding(
        WARNING, 'recover', '%d conversion(s) were interrupted by a '
        'glance-api that died (images %s); their images stay "importing" '
        'until the next import on this host or a recovery.'
        % (len(found), ', '.join(sorted({str(o.get('owner'))
                                         for o in found}))),
        'run glance-convert recover --config-dir %s as the glance-api user, '
        'and at every glance-api start (systemd ExecStartPre=).'
        % config_dir)]


#: The timer shipped in etc/systemd/, the alternative to the service.
RECOVER_TIMER = 'glance-convert-recover.timer'


def _timer_active() -> bool:
    """Whether systemd runs the shipped recovery timer on this host."""
    systemctl = shutil.which('systemctl')
    if not systemctl:
        return False
    try:
        return subprocess.run(
            [systemctl, 'is-active', '--quiet', RECOVER_TIMER],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def self_healing_findings(config_dir: str, extra_files) -> list[Finding]:
    """Whether the imports of a glance-api worker that dies are released
    with no operator: a ``glance-convert recover --follow`` runs for the
    host's work area."""
    try:
        ws = settings.host_workspace(
            conf=glance_conf.load(config_dir, extra_files))
    except (cfg.Error, ValueError, errors.ConversionError):
        return []  # reported by the other checks
    if watch.is_following(layout_.Layout(ws.work_dir, ws.lock_dir)):
        return [Finding(
            OK, 'self-healing', 'glance-convert recover --follow runs for '
            '%s: an import whose glance-api worker dies is released within '
            'seconds.' % ws.work_dir)]
    if _timer_active():
        return [Finding(
            OK, 'self-healing', 'systemd runs glance-convert recover every '
            'few seconds (%s): an import whose glance-api worker dies is '
            'released within seconds.' % RECOVER_TIMER)]
    return [Finding(
        WARNING, 'self-healing', 'No glance-convert recover --follow runs '
        'for %s: an import whose glance-api worker dies (OOM killer, kill '
        '-9) stays "importing", and its user cannot import the image again, '
        'until another import runs on this host, glance-api restarts or an '
        'operator runs glance-convert recover.' % ws.work_dir,
        'run glance-convert recover --follow --config-dir %s as the '
        'glance-api user, as a service: install and enable the '
        'glance-convert-recover.service unit that glance-convert ships in '
        'etc/systemd/ (systemctl enable --now glance-convert-recover), or '
        'its %s.' % (config_dir, RECOVER_TIMER))]


def check_qemu_img() -> list[Finding]:
    path = shutil.which(qemu_img.QEMU_IMG)
    if not path:
        return [Finding(ERROR, 'qemu-img', 'qemu-img is not installed or '
                        'not on the PATH of this process.',
                        'install it (Debian/Ubuntu: apt-get install '
                        'qemu-utils; RHEL: dnf install qemu-img).')]
    try:
        version = qemu_img.version()
    except qemu_img.QemuImgError as exc:
        return [Finding(ERROR, 'qemu-img', 'qemu-img at %s does not run: %s'
                        % (path, exc), 'reinstall qemu-img.')]
    try:
        numbers = tuple(int(x) for x in version.split('.')[:2])
    except ValueError:
        numbers = ()
    if numbers and numbers < MIN_QEMU:
        return [Finding(WARNING, 'qemu-img', 'qemu-img %s at %s is older '
                        'than 5.0: VHD output with vhd_force_size fails.'
                        % (version, path), 'upgrade qemu-img.')]
    return [Finding(OK, 'qemu-img', 'qemu-img %s at %s.' % (version, path))]


def check_plugin_enabled(conf) -> list[Finding]:
    found = []
    plugins = list(conf.image_import_opts.image_import_plugins or [])
    if PLUGIN_NAME not in plugins:
        found.append(Finding(
            ERROR, 'plugin', 'glance_convert is not in [image_import_opts] '
            'image_import_plugins (%s): imports are not converted.'
            % (', '.join(plugins) or 'empty'),
            'in glance-image-import.conf set [image_import_opts] '
            'image_import_plugins = [%s]' % ', '.join(plugins
                                                      + [PLUGIN_NAME])))
    else:
        found.append(Finding(OK, 'plugin', 'glance_convert is enabled in '
                             '[image_import_opts] image_import_plugins.'))
    if 'image_conversion' in plugins:
        found.append(Finding(
            ERROR, 'plugin', 'Glance\'s own image_conversion plugin is '
            'enabled as well: images would be converted twice.',
            'remove image_conversion from image_import_plugins.'))
    eps = [ep for ep in metadata.entry_points(group=PLUGIN_NAMESPACE)
           if ep.name == PLUGIN_NAME]
    if not eps:
        found.append(Finding(
            ERROR, 'plugin', 'The glance_convert entry point is not '
            'installed in this Python (%s).' % sys.executable,
            'pip install glance-convert into the environment that runs '
            'glance-api.'))
    return found


def _writable(directory: str) -> str | None:
    """None if a file can be created in ``directory``, else why not."""
    if not os.path.isdir(directory):
        return 'it does not exist or is not a directory'
    try:
        fd, path = tempfile.mkstemp(prefix='.glance-convert-check-',
                                    dir=directory)
    except OSError as exc:
        return 'cannot create a file in it (%s)' % exc.strerror
    os.close(fd)
    os.unlink(path)
    return None


def check_work_dir(conf) -> list[Finding]:
    group = conf[options.GROUP]
    work_dir = group.work_dir
    where = '[glance_convert] work_dir'
    if not work_dir:
        work_dir = glance_conf.staging_dir(conf)
        where = 'the staging directory'
        if not work_dir:
            return [Finding(
                ERROR, 'work_dir', 'work_dir is unset and the staging '
                'directory is not a local file:// location.',
                'set [glance_convert] work_dir to a local directory.')]
    problem = _writable(work_dir)
    if problem:
        return [Finding(
            ERROR, 'work_dir', 'Work directory %s (%s): %s.'
            % (work_dir, where, problem),
            'create it and make it writable by the user glance-api runs '
            'as (e.g. install -d -o glance -g glance %s).' % work_dir)]
    st = os.statvfs(work_dir)
    free = st.f_bavail * st.f_frsize
    reserved = group.reserved_space_mb * units.MiB
    message = 'Work directory %s (%s) is writable; %s free.' % (
        work_dir, where, units.human_size(free))
    if free <= reserved:
        return [Finding(
            WARNING, 'work_dir', message + ' That is not more than '
            'reserved_space_mb (%s): every conversion would be refused.'
            % units.human_size(reserved),
            'free space, lower reserved_space_mb or move work_dir.')]
    return [Finding(OK, 'work_dir', message)]


def check_lock_path(conf) -> list[Finding]:
    lock_path = conf.oslo_concurrency.lock_path
    if lock_path:
        problem = _writable(lock_path)
        if problem:
            return [Finding(
                ERROR, 'lock_path', '[oslo_concurrency] lock_path %s: %s.'
                % (lock_path, problem),
                'create it, writable by the glance-api user, on a local '
                'file system.')]
        return [Finding(OK, 'lock_path', '[oslo_concurrency] lock_path %s '
                        'is writable.' % lock_path)]
    workers = conf.workers
    if workers == 1:
        return [Finding(OK, 'lock_path', 'lock_path is unset; one '
                        'glance-api process ([DEFAULT] workers = 1).')]
    return [Finding(
        WARNING, 'lock_path', '[oslo_concurrency] lock_path is unset and '
        'more than one glance-api process can run: conversion slots and '
        'space reservations then live in the work directory, and Glance\'s '
        'own external locks have no directory.',
        'set [oslo_concurrency] lock_path to a local directory writable by '
        'glance-api (e.g. /var/lib/glance/lock).')]


def check_metrics(conf) -> list[Finding]:
    """metrics_dir and metrics_textfile usable: a problem only turns the
    metrics off (no import fails), hence warnings."""
    group = conf[options.GROUP]
    directory, textfile = group.metrics_dir, group.metrics_textfile
    found = []
    if not directory:
        found.append(Finding(OK, 'metrics', 'Prometheus metrics are off '
                             '([glance_convert] metrics_dir is unset).'))
    else:
        existing = directory
        while not os.path.exists(existing) and os.path.dirname(
                existing) != existing:
            existing = os.path.dirname(existing)   # glance-api creates it
        problem = _writable(existing)
        if problem:
            found.append(Finding(
                WARNING, 'metrics', '[glance_convert] metrics_dir %s: %s; '
                'glance-api records no metrics.' % (existing, problem),
                'create it, writable by the user glance-api runs as (e.g. '
                'install -d -o glance -g glance %s).' % directory))
        else:
            found.append(Finding(OK, 'metrics', 'Prometheus metrics are '
                                 'recorded in %s.' % directory))
    if textfile:
        parent = os.path.dirname(os.path.abspath(textfile))
        problem = _writable(parent)
        if not directory:
            found.append(Finding(
                WARNING, 'metrics', 'metrics_textfile is set but '
                'metrics_dir is not: the textfile is never written.',
                'set [glance_convert] metrics_dir too.'))
        elif problem:
            found.append(Finding(
                WARNING, 'metrics', 'metrics_textfile %s: its directory '
                '%s' % (textfile, problem),
                'point it into node_exporter\'s textfile directory, '
                'writable by the glance-api user.'))
        elif not textfile.endswith('.prom'):
            found.append(Finding(
                WARNING, 'metrics', 'metrics_textfile %s does not end in '
                '".prom": node_exporter ignores it.' % textfile,
                'rename it to end in .prom.'))
    return found


def check_deprecated(files: list[str]) -> list[Finding]:
    """The in-tree plugin's ``[image_conversion] output_format``."""
    found = []
    for path in files:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(path)
        except configparser.Error:
            continue  # oslo.config reports what matters
        if parser.has_option('image_conversion', 'output_format'):
            found.append(Finding(
                WARNING, 'options', '%s sets [image_conversion] '
                'output_format, the deprecated alias of [glance_convert] '
                'output_format.' % path,
                'move the setting to [glance_convert] output_format.'))
    return found


def check_sandbox(mode_setting: str) -> list[Finding]:
    """Each confinement layer, and what to do about a missing one."""
    if mode_setting == sandbox.OFF:
        return [Finding(
            WARNING, 'sandbox', 'sandbox = off: qemu-img runs '
            'unconfined, with every right of glance-api.',
            'set [glance_convert] sandbox = auto (or required).')]
    found = []
    for layer in sandbox.layers():
        if layer.available:
            found.append(Finding(
                OK, 'sandbox', '%s (%s) stops %s.'
                % (layer.name, layer.detail, layer.stops)))
        elif layer.essential:
            severity = (ERROR if mode_setting == sandbox.REQUIRED
                        else WARNING)
            consequence = ('every conversion is refused'
                           if mode_setting == sandbox.REQUIRED
                           else 'qemu-img runs without it')
            found.append(Finding(
                severity, 'sandbox', '%s is not available (%s): %s; it '
                'would stop %s.' % (layer.name, layer.detail, consequence,
                                    layer.stops), layer.fix + '.'))
        else:
            found.append(Finding(
                OK, 'sandbox', '%s is not available (%s); it '
                'would stop %s.' % (layer.name, layer.detail, layer.stops),
                layer.fix + '.'))
    return found


def check_host(config_dir: str, extra_files=()) -> list[Finding]:
    """Everything ``glance-convert check-config`` reports."""
    found: list[Finding] = []
    if not os.path.isdir(config_dir):
        return [Finding(ERROR, 'config', 'Configuration directory %s does '
                        'not exist.' % config_dir,
                        'pass the directory that holds glance-api.conf '
                        'with --config-dir.')]
    if not os.path.isfile(os.path.join(config_dir, glance_conf.API_CONF)):
        found.append(Finding(
            ERROR, 'config', 'No glance-api.conf in %s.' % config_dir,
            'pass the directory that holds glance-api.conf with '
            '--config-dir.'))
    files = glance_conf.config_files(config_dir, extra_files)
    try:
        conf = glance_conf.load(config_dir, extra_files)
    except (cfg.Error, ValueError) as exc:
        found.append(Finding(ERROR, 'config', 'The configuration cannot be '
                             'read: %s' % exc,
                             'correct the file or value named above.'))
        return found
    found.append(Finding(OK, 'config', 'Read %s.' % ', '.join(files)
                         if files else 'No configuration files read.'))
    found += check_qemu_img()
    found += check_sandbox(conf[options.GROUP].sandbox)
    found += check_plugin_enabled(conf)
    found += check_work_dir(conf)
    found += check_lock_path(conf)
    found += check_metrics(conf)
    found += check_deprecated(files)
    found += glance_rules.check_glance_rules(conf, config_dir)
    option_findings = settings.validate_options(conf)
    found += option_findings or [Finding(
        OK, 'options', '[glance_convert] options are valid (output_format '
        '= %s).' % conf[options.GROUP].output_format)]
    return found


def has_errors(found: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in found)
