"""The plugin's settings, and the checks of the configuration behind them.

:func:`from_conf` builds the pipeline's
:class:`~glance_convert.pipeline.config.Settings` once, after

:func:`validate_options`, and :func:`host_workspace` the host's workspace: the
pipeline and the host never read the configuration themselves.
Per-format rules come from :mod:`glance_convert.formats`.
:func:`validate_options` judges the ``[glance_convert]`` options together
with the Glance settings they depend on; the plugin runs it when it builds
its settings and refuses to start with an error.  The host checks of
``glance-convert check-config`` are in :mod:`glance_convert.cmd.check_config`.

Every :class:`Finding` says what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses

from oslo_config import cfg
from oslo_log import log as logging

from glance_convert import errors
from glance_convert import formats
from glance_convert import options
from glance_convert.flow import glance_conf
from glance_convert import units
from glance_convert.host import workspace
from glance_convert.pipeline import config
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox

LOG = logging.getLogger(__name__)

OK = 'ok'
WARNING = 'warning'
ERROR = 'error'


@dataclasses.dataclass(frozen=True)
class Finding:
    """One result of a check."""

    severity: str        # OK, WARNING or ERROR
    check: str           # short name of what was checked
    message: str         # what was found
    fix: str = ''        # what to do about it (empty for OK)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def from_conf(conf: cfg.ConfigOpts | None = None) -> config.Settings:
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
    # Once, at start: can qemu-img start without forking this process
    # (logged when not), rather than in the first import's time.
    qemu_img.launcher_tools()
    target = group.output_format
    out_options, compressed = formats.output_options(group, target)
    out_of_order = group.convert_out_of_order
    if out_of_order is None:
        out_of_order = formats.get(target).out_of_order
    return config.Settings(
        target=target,
        source_formats=tuple(group.source_formats),
        keep_formats=tuple(group.keep_formats),
        policy=inspection.Policy(
            vmdk_allowed_types=tuple(glance_conf.glance_setting(
                'image_format', 'vmdk_allowed_types', conf)),
            gpt_nonfatal=frozenset(glance_conf.glance_setting(
                'image_format', 'gpt_safety_checks_nonfatal', conf)),
            max_virtual_size=glance_conf.max_virtual_size(conf)),
        inspect_limits=qemu_img.Limits(
            address_space=group.inspect_address_space_mb * units.MiB,
            cpu_time=group.inspect_cpu_time,
            timeout=group.inspect_timeout),
        convert_limits=qemu_img.Limits(
            address_space=group.convert_address_space_mb * units.MiB,
            timeout=group.convert_timeout or None),
        # -W is left out for compressed output by qemu_img itself.
        tuning=qemu_img.Tuning(
            coroutines=(group.convert_coroutines
                        or formats.DEFAULT_COROUTINES),
            out_of_order=out_of_order,
            source_cache=group.convert_source_cache,
            target_cache=group.convert_target_cache),
        out_options=out_options,
        compressed=compressed,
        parallel_workers=group.parallel_workers,
        tuning_set=frozenset(
            name for name, value in (
                ('coroutines', group.convert_coroutines),
                ('out_of_order', group.convert_out_of_order))
            if value is not None),
        signed_images=group.signed_images,
        compressed_images=group.compressed_images,
        bare_compression=group.bare_compression,
        guest_properties=group.guest_properties,
        guest_from_disk=group.guest_from_disk,
        guest_from_appliance=group.guest_from_appliance,
        windows_devices=group.windows_devices,
        progress_interval=group.progress_interval)


def host_workspace(work_dir: str | None = None,
                   conf=None) -> workspace.Workspace:
    """The host's workspace as configured in ``[glance_convert]``.

    The work directory is :func:`glance_conf.work_dir`'s (``work_dir``
    overrides it, for tests and tools).  Lock and ledger files go to
    Glance's ``[oslo_concurrency] lock_path`` when set, else to the work
    directory.
    """
    conf = conf or options.CONF
    group = conf[options.GROUP]
    work_dir = work_dir or glance_conf.work_dir(conf)
    if not work_dir:
        raise errors.WorkspaceError(
            'The image cannot be converted because the conversion work '
            'area of this host is not configured; please contact the cloud '
            'operator', '[glance_convert] work_dir is unset and the staging '
            'directory is not a local file:// URI')
    return workspace.Workspace(
        work_dir,
        lock_dir=glance_conf.glance_setting('oslo_concurrency', 'lock_path',
                                            conf),
        max_concurrent=group.max_concurrent_conversions,
        reserved_bytes=group.reserved_space_mb * 1024 * 1024,
        max_bytes=group.max_workspace_bytes)


class InvalidConfiguration(ValueError):
    """The options cannot work together; ``findings`` says why."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__('Invalid [glance_convert] configuration: ' + ' '.join(
            '%s Fix: %s' % (f.message, f.fix) for f in findings))


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

    disk_formats = glance_conf.glance_setting('image_format',
                                              'disk_formats', conf)
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

    def glance(section, name, default=None):
        # Glance's defaults are glance_conf's, the one copy of them.
        return glance_conf.glance_setting(section, name, conf)

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
