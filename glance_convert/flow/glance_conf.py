"""Glance's configuration, read the way glance-api reads it.

The one loader of the plugin's settings for every ``glance-convert``
command, and the one copy of the Glance defaults the plugin relies on.

glance-api (``glance.wsgi.api``, i.e. ``glance.common.wsgi_app.init_app``)
reads these, each file overriding the ones before it:

1. ``glance-image-import.conf`` in ``$OS_GLANCE_CONFIG_DIR`` (default
   ``/etc/glance``), if it exists;
2. ``glance-api.conf`` in the same directory;
3. the ``*.conf`` files, in name order, of ``glance.conf.d`` and then
   ``glance-api.conf.d``, each taken from the first of ``~/.glance/``,
   ``~/``, ``/etc/glance/`` and ``/etc/`` that has it (oslo.config's
   search path; ``$OS_GLANCE_CONFIG_DIR`` is not searched).  Before
   Glance 33 the second is named after the WSGI server instead
   (:mod:`glance_convert.flow.compat`), which the CLI cannot know: it
   reads ``glance.conf.d`` only;
4. ``OS_<GROUP>__<OPTION>`` environment variables, over every file.

:func:`load` reads the same, then the CLI's ``--config-file`` files.
"""

from __future__ import annotations

import glob
import os

from oslo_config import cfg

from glance_convert import options
from glance_convert.flow import compat

PROJECT = 'glance'
CONFIG_DIR_ENV = 'OS_GLANCE_CONFIG_DIR'
DEFAULT_CONFIG_DIR = '/etc/glance'
API_CONF = 'glance-api.conf'
#: The files glance-api reads from its configuration directory, in its
#: order (``glance.common.wsgi_app.CONFIG_FILES``); the first is optional.
API_FILES = ('glance-image-import.conf', API_CONF)

#: Glance's options that the plugin and the CLI read, with Glance's types
#: and defaults: registered in the CLI's own ConfigOpts (Glance need not be
#: importable there), and the defaults of :func:`glance_setting` wherever
#: Glance has not registered them.
GLANCE_OPTS = {
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
        cfg.ListOpt('disk_formats',
                    default=['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk',
                             'raw', 'qcow2', 'vdi', 'iso', 'ploop'],
                    deprecated_opts=[cfg.DeprecatedOpt('disk_formats',
                                                       group='DEFAULT')]),
        cfg.ListOpt('vmdk_allowed_types',
                    default=['streamOptimized', 'monolithicSparse']),
        cfg.ListOpt('container_formats',
                    default=['ami', 'ari', 'aki', 'bare', 'ovf', 'ova',
                             'docker', 'compressed'],
                    deprecated_opts=[cfg.DeprecatedOpt('container_formats',
                                                       group='DEFAULT')]),
        cfg.ListOpt('gpt_safety_checks_nonfatal', default=[]),
        cfg.BoolOpt('require_image_format_match', default=True),
    ],
    'glance_store': [
        cfg.ListOpt('stores', default=['file', 'http']),
    ],
    'oslo_policy': [
        cfg.StrOpt('policy_file', default='policy.yaml'),
    ],
    'oslo_concurrency': [
        cfg.StrOpt('lock_path'),
    ],
    'os_glance_staging_store': [
        cfg.StrOpt('filesystem_store_datadir'),
    ],
}

_UNREGISTERED = (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError,
                 AttributeError)


def _glance_opt(group, name) -> cfg.Opt:
    return next(o for o in GLANCE_OPTS[group] if o.name == name)


def glance_setting(group, name, conf=None):
    """One of Glance's settings, or Glance's default if not registered.

    Inside glance-api every one is registered; in unit tests or a process
    that only registered ``[glance_convert]``, the default applies.
    """
    conf = conf or options.CONF
    try:
        return getattr(conf[group], name) if group else conf[name]
    except _UNREGISTERED:
        return _glance_opt(group, name).default


def max_virtual_size(conf=None) -> int:
    """``[glance_convert] max_virtual_size``, else Glance's image_size_cap.
    """
    conf = conf or options.CONF
    value = conf[options.GROUP].max_virtual_size
    if value is None:
        value = glance_setting(None, 'image_size_cap', conf)
    return value


#: The store drivers that write every zero byte of a raw image unless
#: their thin-provisioning option is set: {driver: option}.
THIN_PROVISIONING = {
    'file': 'filesystem_thin_provisioning',
    'rbd': 'rbd_thin_provisioning',
}


def stores(conf=None) -> list[tuple[str, str]]:
    """(option group, driver) of each store images are uploaded to.

    With ``enabled_backends`` (multi-store) each backend is its own group;
    otherwise the drivers of ``[glance_store] stores`` share that group.
    """
    conf = conf or options.CONF
    backends = glance_setting(None, 'enabled_backends', conf)
    if backends:
        return [(name, driver) for name, driver in backends.items()]
    return [('glance_store', driver)
            for driver in glance_setting('glance_store', 'stores', conf)]


def store_flag(group: str, name: str, conf=None) -> bool:
    """A boolean store option (default False) of ``group``, as set."""
    conf = conf or options.CONF
    try:
        conf.register_opt(cfg.BoolOpt(name, default=False), group=group)
    except cfg.DuplicateOptError:   # registered by glance_store already
        pass
    return bool(conf[group][name])


def staging_dir(conf=None) -> str | None:
    """Glance's local staging directory, computed as Glance does.

    ``[os_glance_staging_store] filesystem_store_datadir`` with
    ``enabled_backends``, else ``node_staging_uri``.  None when it is not
    a local ``file://`` location or Glance's options are not registered.
    """
    conf = conf or options.CONF
    try:
        if conf.enabled_backends:
            return conf.os_glance_staging_store.filesystem_store_datadir \
                or None
        uri = conf.node_staging_uri or ''
    except _UNREGISTERED:
        return None
    return uri[len('file://'):] if uri.startswith('file://') else None


def filesystem_store_dirs(stores, conf=None) -> list[str]:
    """The data directories of those of ``stores`` (store names, as in
    ``os_glance_importing_to_stores``) that are filesystem stores; with a
    single store (no ``enabled_backends``), its directory if it is one.
    Empty where Glance's store options are not registered.
    """
    conf = conf or options.CONF
    found = []
    try:
        backends = conf.enabled_backends or {}
        if backends:
            for name in stores:
                if backends.get(name) == 'file':
                    found.append(conf[name].filesystem_store_datadir)
        elif conf.glance_store.default_store == 'file':
            found.append(conf.glance_store.filesystem_store_datadir)
    except _UNREGISTERED:
        return []
    return [d for d in found if d]


def work_dir(conf=None) -> str | None:
    """The directory conversions write to: THE rule, used everywhere.

    ``[glance_convert] work_dir`` when set, else Glance's staging directory
    (where Glance's housekeeper also reaps the files of deleted images).
    None when neither is a local directory: the plugin then refuses to
    convert.
    """
    conf = conf or options.CONF
    return conf[options.GROUP].work_dir or staging_dir(conf)


def default_config_dir() -> str:
    """The directory glance-api reads its two files from."""
    return (os.environ.get(CONFIG_DIR_ENV) or '').strip() \
        or DEFAULT_CONFIG_DIR


def config_files(config_dir: str | None, extra_files=()) -> list[str]:
    """The files :func:`load` reads, in order; see the module docstring.

    Only existing files of ``config_dir`` and the ``.conf.d`` directories
    are listed (a missing ``glance-api.conf`` is for the caller to report);
    ``extra_files`` are listed as given.  Without ``config_dir``, only
    ``extra_files``.
    """
    files: list[str] = []
    if config_dir:
        files += [os.path.join(config_dir, name) for name in API_FILES
                  if os.path.isfile(os.path.join(config_dir, name))]
        prog = compat.api_prog() or PROJECT
        for conf_d in dict.fromkeys(cfg.find_config_dirs(project=PROJECT,
                                                         prog=prog)):
            files += sorted(glob.glob(os.path.join(conf_d, '*.conf')))
    return files + list(extra_files)


def new_conf() -> cfg.ConfigOpts:
    """A private ConfigOpts with our options and :data:`GLANCE_OPTS`."""
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    for group, opts in GLANCE_OPTS.items():
        if group is None:
            conf.register_opts(opts)
        else:
            conf.register_opts(opts, group=group)
    return conf


def load(config_dir: str | None = None, extra_files=(),
         glance: bool = False) -> cfg.ConfigOpts:
    """Read the configuration glance-api reads, then ``extra_files``.

    ``glance=False``: into a new private ConfigOpts; Glance need not be
    installed.  ``glance=True``: into ``cfg.CONF`` with all of Glance's
    options, its database and store options registered, as in glance-api
    (for commands that use Glance's database).  Every value the plugin
    reads is parsed here, so a bad value is reported at once.

    Raises ``cfg.Error`` or ``ValueError`` for unreadable or malformed
    files and bad values, ``ImportError`` when ``glance`` and Glance is
    not installed.
    """
    files = config_files(config_dir, extra_files)
    for path in files:
        if not os.path.isfile(path):
            raise cfg.ConfigFilesNotFoundError([path])
    conf = _glance_conf() if glance else new_conf()
    # default_config_dirs=[]: the .conf.d files are in ``files`` already,
    # in glance-api's order, and before extra_files.
    conf(args=[], project=PROJECT, prog=compat.API_PROG,
         default_config_files=files, default_config_dirs=[])
    if glance:
        _register_store_opts(conf)
    for opt in options.ALL_OPTS:
        getattr(conf[options.GROUP], opt.dest)
    for group, opts in GLANCE_OPTS.items():
        for opt in opts:
            glance_setting(group, opt.dest, conf)
    return conf


def _glance_conf() -> cfg.ConfigOpts:
    """``cfg.CONF`` with Glance's own and its database options.

    Everything is imported before parsing: some modules register command
    line options when imported, which oslo.config refuses after parsing.
    """
    import glance_store  # noqa: F401
    from glance.common import config as glance_config
    from glance.common import wsgi_app  # noqa: F401
    from oslo_db import options as db_options
    glance_config.set_config_defaults()
    db_options.set_defaults(cfg.CONF)
    return cfg.CONF


def _register_store_opts(conf) -> None:
    """glance_store's options, registered as glance-api does after parsing.
    """
    import glance_store
    from glance.common import wsgi_app
    if conf.enabled_backends:
        glance_store.register_store_opts(
            conf, reserved_stores=wsgi_app.RESERVED_STORES)
    else:
        glance_store.register_opts(conf)
