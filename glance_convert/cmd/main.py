"""``glance-convert``: the operator's command.

    glance-convert inspect FILE [--disk-format FMT] [--container-format CF]
                                [--source-sha256 HEX] [--json]
    glance-convert convert FILE --disk-format FMT [--container-format CF]
                                [--source-sha256 HEX] [--to FMT] [-o OUT]
    glance-convert check-config [--config-dir /etc/glance]
    glance-convert recover [--config-dir /etc/glance] [--dry-run] [--json]

Every command reads the configuration glance-api reads
(:mod:`glance_convert.flow.glance_conf`): ``glance-image-import.conf`` and
``glance-api.conf`` of the configuration directory (``--config-dir``,
default ``$OS_GLANCE_CONFIG_DIR`` or ``/etc/glance``), then the
``glance.conf.d`` and ``glance-api.conf.d`` directories glance-api reads,
then any ``--config-file``.  One module per command:
:mod:`~glance_convert.cmd.inspect`, :mod:`~glance_convert.cmd.convert`,
:mod:`~glance_convert.cmd.check_config`, :mod:`~glance_convert.cmd.recover`;
this one holds the parser, the dispatch and the exit codes.

Exit codes: 0 success (``inspect``: the image would be accepted), 1 any
other failure (conversion failed, bad configuration, ``check-config``
found an error, ``recover`` could not read the configuration or the
database or could not release an image), 2 the image is refused by the
safety checks (the message is the one Glance users see), 64 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from oslo_config import cfg

from glance_convert import errors
from glance_convert import options
from glance_convert import settings as config_check
from glance_convert import units
from glance_convert.flow import glance_conf

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


# --- shared by the commands --------------------------------------------------

#: Container formats ``inspect`` and ``convert`` read, as the plugin does.
CONTAINER_FORMATS = ('bare', 'compressed', 'ova')


def upload_args(p: argparse.ArgumentParser) -> None:
    """--container-format and --source-sha256, as on a Glance image."""
    p.add_argument('--container-format', metavar='CF', default='bare',
                   choices=CONTAINER_FORMATS,
                   help='The container format the upload claims: bare (the '
                        'default), compressed (gzip, bzip2, xz, zstd or a '
                        'one-file zip) or ova.  Unpacked work files go to '
                        'the output\'s directory (convert) or $TMPDIR '
                        '(inspect) and are removed.')
    p.add_argument('--source-sha256', metavar='HEX',
                   help='The SHA-256 the publisher gave for FILE, as the '
                        'image property glance_convert_source_sha256: '
                        'refused if FILE differs.')


def upload_properties(args) -> dict:
    """The image properties the command line stands for."""
    if args.source_sha256 is None:
        return {}
    return {'glance_convert_source_sha256': args.source_sha256}


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


def plugin_settings(conf, target: str | None = None) -> config_check.Settings:
    """The plugin's settings, ``target`` overriding output_format."""
    if target:
        conf.set_override('output_format', target, group=options.GROUP)
    try:
        config_check.ensure_valid(conf)
        return config_check.Settings.from_conf(conf)
    except config_check.InvalidConfiguration as exc:
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


# --- main --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from glance_convert.cmd import check_config
    from glance_convert.cmd import convert
    from glance_convert.cmd import inspect
    from glance_convert.cmd import recover
    parser = _Parser(
        prog='glance-convert',
        description='Inspect, convert and check images and configuration '
                    'the way the glance_convert import plugin does.',
        epilog='Exit codes: 0 success; 1 failure; 2 image refused by the '
               'safety checks; 64 usage error; 130 interrupted.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=_Parser)
    sub.required = True
    for command in (inspect, convert, check_config, recover):
        command.add_parser(sub)
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
