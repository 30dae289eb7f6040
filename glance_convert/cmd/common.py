"""What every ``glance-convert`` command shares: exit codes, the usage
error, the configuration and file arguments, sizes for people.

Each command module (:mod:`~glance_convert.cmd.inspect`, ...) imports this
one; :mod:`~glance_convert.cmd.main` builds the parser from them.
"""

from __future__ import annotations

import argparse
import os
import sys

from oslo_config import cfg

from glance_convert import options
from glance_convert.flow import settings
from glance_convert import units
from glance_convert.flow import glance_conf
from glance_convert.pipeline import config
from glance_convert.pipeline import containers

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line cannot be acted on."""


class Parser(argparse.ArgumentParser):
    """argparse with exit code 64 for usage errors (2 means refused)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, '%s: error: %s\n' % (self.prog, message))


# --- shared by the commands --------------------------------------------------

#: Container formats ``inspect`` and ``convert`` read, as the plugin does.
CONTAINER_FORMATS = tuple(containers.CONTAINERS)


def upload_args(p: argparse.ArgumentParser) -> None:
    """--container-format and --source-sha256, as on a Glance image."""
    p.add_argument('--container-format', metavar='CF',
                   default=containers.BARE.name, choices=CONTAINER_FORMATS,
                   help='The container format the upload claims: %s.  '
                        'Unpacked work files go to the output\'s directory '
                        '(convert) or $TMPDIR (inspect) and are removed.'
                        % '; '.join('%s (%s)' % (c.name, c.description)
                                    for c in containers.CONTAINERS.values()))
    p.add_argument('--source-sha256', metavar='HEX',
                   help='The SHA-256 the publisher gave for FILE, as the '
                        'image property glance_convert_source_sha256: '
                        'refused if FILE differs.')
    p.add_argument('--property', metavar='KEY=VALUE', action='append',
                   default=[], dest='properties',
                   help='An image property the image already has (may be '
                        'repeated): the guest properties the plugin would '
                        'set leave out those the user set.')


def upload_properties(args) -> dict:
    """The image properties the command line stands for."""
    found = {}
    for item in getattr(args, 'properties', None) or ():
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise UsageError('--property wants KEY=VALUE, not %r' % item)
        found[key] = value
    if args.source_sha256 is not None:
        found['glance_convert_source_sha256'] = args.source_sha256
    return found


def human(n: int | None) -> str:
    if n is None:
        return 'unknown'
    return '%s (%d bytes)' % (units.human_size(n), n)


def config_dir(args) -> str | None:
    """``--config-dir``, else glance-api's directory if it exists."""
    if args.config_dir:
        return args.config_dir
    path = glance_conf.default_config_dir()
    return path if os.path.isdir(path) else None


def load_conf(args) -> cfg.ConfigOpts:
    """The configuration glance-api reads, in a private ConfigOpts."""
    try:
        return glance_conf.load(config_dir(args), args.config_file or [])
    except (cfg.Error, ValueError) as exc:
        raise UsageError('cannot read the configuration: %s' % exc)


def plugin_settings(conf, target: str | None = None) -> config.Settings:
    """The plugin's settings, ``target`` overriding output_format."""
    if target:
        conf.set_override('output_format', target, group=options.GROUP)
    try:
        settings.ensure_valid(conf)
        return settings.from_conf(conf)
    except settings.InvalidConfiguration as exc:
        raise UsageError(str(exc))


def check_file(path: str) -> None:
    if not os.path.exists(path):
        raise UsageError('%s: no such file' % path)
    if not os.path.isfile(path):
        raise UsageError('%s: not a regular file' % path)
    if not os.access(path, os.R_OK):
        raise UsageError('%s: not readable' % path)


def config_args(p) -> None:
    p.add_argument('--config-dir', metavar='DIR',
                   help='Glance configuration directory: glance-api.conf '
                        'and glance-image-import.conf are read from it, '
                        'then glance-api.conf.d as glance-api reads it '
                        '(default: $OS_GLANCE_CONFIG_DIR or /etc/glance if '
                        'it exists).')
    p.add_argument('--config-file', metavar='FILE', action='append',
                   help='A further configuration file, read after those of '
                        '--config-dir (repeatable).')
