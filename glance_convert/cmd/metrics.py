"""``glance-convert metrics``: the Prometheus metrics of this host's
glance-api processes.

Reads ``[glance_convert] metrics_dir``, where every glance-api process
records (:mod:`glance_convert.metrics`), and the work directory for the
host's slots and space; prints the exposition format, serves it over HTTP
(``--listen``) for Prometheus to scrape, or writes a node_exporter
textfile (``--textfile``).  Run it on the glance-api host, where its
processes are visible: the gauges of processes it cannot see are dropped
as those of dead ones.
"""

from __future__ import annotations

import os
import signal
import sys

from glance_convert import errors
from glance_convert import metrics
from glance_convert import options
from glance_convert.flow import settings
from glance_convert.cmd import common


def add_parser(sub) -> None:
    p = sub.add_parser(
        'metrics', help='Print the Prometheus metrics of this host\'s '
        'glance-api processes, serve them over HTTP or write them for '
        'node_exporter.',
        description='Collect the metrics every glance-api process of this '
        'host records in [glance_convert] metrics_dir, with the host\'s '
        'conversion slots and work space, and print them in the Prometheus '
        'text format.  Run it on the glance-api host.')
    how = p.add_mutually_exclusive_group()
    how.add_argument('--listen', metavar='HOST:PORT',
                     help='Serve them over HTTP at http://HOST:PORT/metrics '
                          'until stopped, for Prometheus to scrape.')
    how.add_argument('--textfile', metavar='PATH',
                     help='Write them to PATH atomically, for '
                          'node_exporter\'s textfile collector (the name '
                          'must end in .prom).')
    common.config_args(p)
    p.set_defaults(func=run)


def listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(':')
    host = host.strip('[]')
    if not sep or not host or not port.isdigit() or not (
            0 < int(port) < 65536):
        raise common.UsageError('--listen takes HOST:PORT, e.g. '
                                '127.0.0.1:9720, not %r' % value)
    return host, int(port)


def _workspace(conf):
    try:
        return settings.host_workspace(conf=conf)
    except errors.ConversionError as exc:
        print('glance-convert: no slot or work space metrics: %s'
              % exc.detail, file=sys.stderr)
        return None


def serve(host: str, port: int, reg) -> None:
    """Serve ``reg`` with prometheus_client's own HTTP server (threads,
    IPv4 or IPv6, no line per request) until SIGTERM or Ctrl-C."""
    from prometheus_client import start_http_server
    started = start_http_server(port, addr=host, registry=reg)
    server = started[0] if isinstance(started, tuple) else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(common.EXIT_OK))
    print('glance-convert: serving metrics on http://%s:%d/metrics'
          % ('[%s]' % host if ':' in host else host,
             server.server_port if server else port),
          file=sys.stderr, flush=True)
    while True:
        signal.pause()


def run(args) -> int:
    address = listen_address(args.listen) if args.listen else None
    conf = common.load_conf(args)
    directory = conf[options.GROUP].metrics_dir
    if not directory:
        raise common.UsageError('metrics are off: set [glance_convert] '
                                'metrics_dir in the glance-api configuration')
    if not os.path.isdir(directory):
        raise common.UsageError('%s does not exist: no glance-api process '
                                'has recorded metrics yet' % directory)
    reg = metrics.registry(directory, _workspace(conf))
    if args.textfile:
        metrics.write_textfile(args.textfile, reg)
    elif address:
        serve(*address, reg)
    else:
        sys.stdout.buffer.write(metrics.exposition(reg))
        sys.stdout.flush()
    return common.EXIT_OK
