"""The plugin's settings, and the checks of the configuration behind them.

:class:`Settings` is everything the pipeline reads from the configuration,
built once by :meth:`Settings.from_conf` after :func:`validate_options`;
per-format rules come from :mod:`glance_convert.formats`.
:func:`validate_options` judges the ``[glance_convert]`` options together
with the Glance settings they depend on; the plugin runs it when it builds
its settings and refuses to start with an error.  :func:`check_host` runs
everything ``glance-convert check-config`` reports: the options, qemu-img,
the plugin's place in Glance's import flow, the work directory, the lock
directory and the Python that runs qemu-img under resource limits.

Every :class:`Finding` says what is wrong and how to fix it.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import sys
import tempfile
from importlib import metadata

from oslo_config import cfg
from oslo_log import log as logging

from glance_convert import errors
from glance_convert import formats
from glance_convert import options
from glance_convert import units
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox

LOG = logging.getLogger(__name__)

OK = 'ok'
WARNING = 'warning'
ERROR = 'error'

PLUGIN_NAME = 'glance_convert'
PLUGIN_NAMESPACE = 'glance.image_import.plugins'
#: qemu-img that has ``convert --target-is-zero`` (VHD force_size output).
MIN_QEMU = (5, 0)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One result of a check."""

    severity: str        # OK, WARNING or ERROR
    check: str           # short name of what was checked
    message: str         # what was found
    fix: str = ''        # what to do about it (empty for OK)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs from the configuration."""

    target: str
    source_formats: tuple[str, ...]
    keep_formats: tuple[str, ...]
    policy: inspection.Policy
    inspect_limits: qemu_img.Limits
    convert_limits: qemu_img.Limits
    tuning: qemu_img.Tuning
    out_options: dict
    compressed: bool
    progress_interval: float
    parallel_workers: int = 1

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts | None = None) -> 'Settings':
        """Validate ``conf`` and build the settings; a misconfiguration is
        an import failure the user can read, not a traceback."""
        conf = conf or cfg.CONF
        try:
            ensure_valid(conf)
        except InvalidConfiguration as exc:
            LOG.error('%s', exc)
            raise errors.ConversionError(
                'Image conversion is misconfigured on this cloud; please '
                'contact the cloud operator.', str(exc))
        group = conf[options.GROUP]
        sandbox.configure(group.sandbox)
        target = group.output_format
        out_options, compressed = formats.output_options(group, target)
        out_of_order = group.convert_out_of_order
        if out_of_order is None:
            out_of_order = formats.get(target).out_of_order
        return cls(
            target=target,
            source_formats=tuple(group.source_formats),
            keep_formats=tuple(group.keep_formats),
            policy=inspection.Policy(
                vmdk_allowed_types=tuple(options.glance_setting(
                    'image_format', 'vmdk_allowed_types', conf)),
                gpt_nonfatal=frozenset(options.glance_setting(
                    'image_format', 'gpt_safety_checks_nonfatal', conf)),
                max_virtual_size=options.max_virtual_size(conf)),
            inspect_limits=qemu_img.Limits(
                address_space=group.inspect_address_space_mb * units.MiB,
                cpu_time=group.inspect_cpu_time,
                timeout=group.inspect_timeout),
            convert_limits=qemu_img.Limits(
                address_space=group.convert_address_space_mb * units.MiB,
                timeout=group.convert_timeout or None),
            # -W is left out for compressed output by qemu_img itself.
            tuning=qemu_img.Tuning(
                coroutines=group.convert_coroutines,
                out_of_order=out_of_order,
                source_cache=group.convert_source_cache,
                target_cache=group.convert_target_cache),
            out_options=out_options,
            compressed=compressed,
            parallel_workers=group.parallel_workers,
            progress_interval=group.progress_interval)


class InvalidConfiguration(ValueError):
    """The options cannot work together; ``findings`` says why."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__('Invalid [glance_convert] configuration: ' + ' '.join(
            '%s Fix: %s' % (f.message, f.fix) for f in findings))


# Glance's defaults, for options that are not registered (outside
# glance-api) and that options.glance_setting has no default for.
_GLANCE_DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw',
                        'qcow2', 'vdi', 'iso', 'ploop']


def _glance(conf, group, name, default=None):
    try:
        return options.glance_setting(group, name, conf)
    except KeyError:
        try:
            return getattr(conf[group], name) if group else conf[name]
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError,
                AttributeError):
            return default


def _is_default(conf, name: str) -> bool:
    opt = next(o for o in options.ALL_OPTS if o.name == name)
    return getattr(conf[options.GROUP], name) == opt.default


def validate_options(conf=None) -> list[Finding]:
    """Judge the ``[glance_convert]`` options; errors and warnings only.

    An ERROR means conversions would fail or produce images Glance refuses
    later; the plugin must not start with one.  A WARNING is a setting that
    has no effect.  What each output format accepts is in its row of
    :mod:`glance_convert.formats`.
    """
    conf = conf or options.CONF
    group = conf[options.GROUP]
    target = group.output_format
    row = formats.get(target)
    found: list[Finding] = []

    def error(message, fix):
        found.append(Finding(ERROR, 'options', message, fix))

    def warning(message, fix):
        found.append(Finding(WARNING, 'options', message, fix))

    disk_formats = _glance(conf, 'image_format', 'disk_formats',
                           _GLANCE_DISK_FORMATS)
    if target not in disk_formats:
        error('output_format = %s is not in Glance\'s [image_format] '
              'disk_formats (%s): Glance would refuse the converted images.'
              % (target, ', '.join(disk_formats)),
              'add %s to [image_format] disk_formats or choose another '
              'output_format.' % target)

    if group.preallocation != 'off' and not row.preallocation:
        able = [f.name for f in formats.FORMATS.values() if f.preallocation]
        error('preallocation = %s does not apply to %s output.'
              % (group.preallocation, target),
              'set preallocation = off (only %s output can be '
              'preallocated).' % ' and '.join(
                  [', '.join(able[:-1]), able[-1]] if len(able) > 1
                  else able))

    size = group.qcow2_cluster_size
    if size & (size - 1):
        error('qcow2_cluster_size = %d is not a power of two.' % size,
              'use a power of two between 512 and 2097152, e.g. 65536.')

    def glance(section, name, default):
        return _glance(conf, section, name, default)

    for problem in row.option_problems(group, glance):
        (warning if problem.warning else error)(problem.message, problem.fix)

    for other in formats.FORMATS.values():
        for name in other.option_names:
            if other is not row and not _is_default(conf, name):
                warning('%s is set but has no effect: output_format is %s, '
                        'not %s.' % (name, target, other.name),
                        'remove %s or set output_format = %s.'
                        % (name, other.name))
    return found


def ensure_valid(conf=None) -> list[Finding]:
    """Raise :class:`InvalidConfiguration` on any error; return warnings."""
    found = validate_options(conf)
    errors = [f for f in found if f.severity == ERROR]
    if errors:
        raise InvalidConfiguration(errors)
    return found


# --- Reading a Glance configuration directory --------------------------------

#: Glance's options that the checks read, registered in a private
#: ConfigOpts with Glance's types and defaults (Glance need not be
#: importable where the CLI runs).
_GLANCE_OPTS = {
    None: [
        cfg.IntOpt('image_size_cap', default=1099511627776, min=1),
        cfg.StrOpt('node_staging_uri', default='file:///tmp/staging/'),
        cfg.DictOpt('enabled_backends'),
        cfg.IntOpt('workers', min=0),
    ],
    'image_import_opts': [
        cfg.ListOpt('image_import_plugins',
                    item_type=cfg.types.String(quotes=True), bounds=True,
                    default=[]),
    ],
    'image_format': [
        cfg.ListOpt('disk_formats', default=_GLANCE_DISK_FORMATS),
        cfg.ListOpt('vmdk_allowed_types',
                    default=['streamOptimized', 'monolithicSparse']),
        cfg.ListOpt('gpt_safety_checks_nonfatal', default=[]),
        cfg.BoolOpt('require_image_format_match', default=True),
    ],
    'oslo_concurrency': [
        cfg.StrOpt('lock_path'),
    ],
    'os_glance_staging_store': [
        cfg.StrOpt('filesystem_store_datadir'),
    ],
}

CONFIG_FILES = ('glance-api.conf', 'glance-image-import.conf')


def new_conf() -> cfg.ConfigOpts:
    """A ConfigOpts with our options and the Glance options we read."""
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    for group, opts in _GLANCE_OPTS.items():
        if group is None:
            conf.register_opts(opts)
        else:
            conf.register_opts(opts, group=group)
    return conf


def config_files(config_dir: str | None) -> list[str]:
    """The files Glance's API reads from ``config_dir``, those that exist."""
    if not config_dir:
        return []
    return [os.path.join(config_dir, name) for name in CONFIG_FILES
            if os.path.isfile(os.path.join(config_dir, name))]


def load(config_dir: str | None = None,
         extra_files: list[str] | tuple = ()) -> cfg.ConfigOpts:
    """Parse Glance's files in ``config_dir``, then ``extra_files``.

    Raises ``cfg.Error`` (unreadable or malformed files, bad values).
    """
    conf = new_conf()
    files = config_files(config_dir) + list(extra_files)
    for path in files:
        if not os.path.isfile(path):
            raise cfg.ConfigFilesNotFoundError([path])
    conf(args=[], project='glance', default_config_files=files,
         default_config_dirs=[], use_env=False)
    # Parse every value now, so that a bad value is reported here and not
    # in the middle of a conversion.
    for group, opts in [(options.GROUP, options.ALL_OPTS)] + list(
            _GLANCE_OPTS.items()):
        for opt in opts:
            getattr(conf[group] if group else conf, opt.dest)
    return conf


# --- check-config ------------------------------------------------------------


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


def staging_dir(conf) -> str | None:
    """Glance's staging directory, as Glance computes it; None if remote."""
    if conf.enabled_backends:
        path = conf.os_glance_staging_store.filesystem_store_datadir
        return path or None
    uri = conf.node_staging_uri or ''
    return uri[len('file://'):] if uri.startswith('file://') else None


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
        work_dir = staging_dir(conf)
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


def check_host(config_dir: str, extra_files=()) -> list[Finding]:
    """Everything ``glance-convert check-config`` reports."""
    found: list[Finding] = []
    files = config_files(config_dir)
    if not os.path.isdir(config_dir):
        return [Finding(ERROR, 'config', 'Configuration directory %s does '
                        'not exist.' % config_dir,
                        'pass the directory that holds glance-api.conf '
                        'with --config-dir.')]
    if not any(os.path.basename(f) == 'glance-api.conf' for f in files):
        found.append(Finding(
            ERROR, 'config', 'No glance-api.conf in %s.' % config_dir,
            'pass the directory that holds glance-api.conf with '
            '--config-dir.'))
    try:
        conf = load(config_dir, extra_files)
    except (cfg.Error, ValueError) as exc:
        found.append(Finding(ERROR, 'config', 'The configuration cannot be '
                             'read: %s' % exc,
                             'correct the file or value named above.'))
        return found
    found.append(Finding(OK, 'config', 'Read %s.' % ', '.join(
        files + list(extra_files)) if files or extra_files
        else 'No configuration files read.'))
    found += check_qemu_img()
    found += sandbox.findings(conf[options.GROUP].sandbox)
    found += check_plugin_enabled(conf)
    found += check_work_dir(conf)
    found += check_lock_path(conf)
    found += check_deprecated(files + list(extra_files))
    option_findings = validate_options(conf)
    found += option_findings or [Finding(
        OK, 'options', '[glance_convert] options are valid (output_format '
        '= %s).' % conf[options.GROUP].output_format)]
    return found


def has_errors(found: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in found)
