"""``glance-convert``: the operator's command.

    glance-convert inspect FILE [--disk-format FMT] [--container-format CF]
                                [--source-sha256 HEX] [--json]
    glance-convert convert FILE --disk-format FMT [--container-format CF]
                                [--source-sha256 HEX] [--to FMT] [-o OUT]
    glance-convert check-config [--config-dir /etc/glance]
    glance-convert recover [--config-dir /etc/glance] [--dry-run] [--json]
    glance-convert metrics [--config-dir /etc/glance]
                           [--listen HOST:PORT | --textfile PATH]

Every command reads the configuration glance-api reads
(:mod:`glance_convert.flow.glance_conf`): ``glance-image-import.conf`` and
``glance-api.conf`` of the configuration directory (``--config-dir``,
default ``$OS_GLANCE_CONFIG_DIR`` or ``/etc/glance``), then the
``glance.conf.d`` and ``glance-api.conf.d`` directories glance-api reads,
then any ``--config-file``.  One module per command:
:mod:`~glance_convert.cmd.inspect`, :mod:`~glance_convert.cmd.convert`,
:mod:`~glance_convert.cmd.check_config`, :mod:`~glance_convert.cmd.recover`,
:mod:`~glance_convert.cmd.metrics`;
this one holds the parser and the dispatch; :mod:`~glance_convert.cmd.common`
what they share.

Exit codes: 0 success (``inspect``: the image would be accepted), 1 any
other failure (conversion failed, bad configuration, ``check-config``
found an error, ``recover`` could not read the configuration or the
database or could not release an image), 2 the image is refused by the
safety checks (the message is the one Glance users see), 64 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from glance_convert import errors
from glance_convert.cmd import common


def build_parser() -> argparse.ArgumentParser:
    from glance_convert.cmd import check_config
    from glance_convert.cmd import convert
    from glance_convert.cmd import inspect
    from glance_convert.cmd import metrics
    from glance_convert.cmd import recover
    parser = common.Parser(
        prog='glance-convert',
        description='Inspect, convert and check images and configuration '
                    'the way the glance_convert import plugin does.',
        epilog='Exit codes: 0 success; 1 failure; 2 image refused by the '
               'safety checks; 64 usage error; 130 interrupted.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=common.Parser)
    sub.required = True
    for command in (inspect, convert, check_config, recover, metrics):
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except common.UsageError as exc:
        print('glance-convert: error: %s' % exc, file=sys.stderr)
        return common.EXIT_FAILED
    except errors.ImageRejected as exc:
        print('glance-convert: %s' % exc, file=sys.stderr)
        print('  detail: %s' % exc.detail, file=sys.stderr)
        return common.EXIT_REJECTED
    except errors.ConversionError as exc:
        print('glance-convert: %s' % exc, file=sys.stderr)
        print('  detail: %s' % exc.detail, file=sys.stderr)
        return common.EXIT_FAILED
    except KeyboardInterrupt:
        print('glance-convert: interrupted', file=sys.stderr)
        return common.EXIT_INTERRUPTED
    except OSError as exc:
        print('glance-convert: error: %s' % exc, file=sys.stderr)
        return common.EXIT_FAILED


if __name__ == '__main__':
    sys.exit(main())
