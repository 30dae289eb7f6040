"""Debian's Prometheus and node_exporter, private to a test.

Each runs on a free 127.0.0.1 port with its configuration and storage in
a temporary directory, in a session of its own, and is stopped by its
pid.  Test infrastructure only.
"""

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request

from glance_convert.testing import localglance

PROMETHEUS = 'prometheus'
NODE_EXPORTER = 'prometheus-node-exporter'
PROMTOOL = 'promtool'
TIMEOUT = 120           # to start, to see a value; a failure, not a limit


def require():
    """Fail, never skip: the metrics test is part of the suite."""
    missing = [t for t in (PROMETHEUS, NODE_EXPORTER)
               if not shutil.which(t)]
    if missing:
        import pytest
        pytest.fail('%s not found: install prometheus and '
                    'prometheus-node-exporter (bindep.txt lists them)'
                    % ', '.join(missing), pytrace=False)


class Daemon:
    """One server process, its log in ``base_dir``."""

    def __init__(self, name, argv, base_dir, port):
        self.name, self.argv, self.port = name, argv, port
        self.log_path = os.path.join(base_dir, '%s.log' % name)
        self.proc = None

    def start(self, ready_path):
        with open(self.log_path, 'wb') as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            with urllib.request.urlopen(
                    'http://127.0.0.1:%d%s' % (self.port, ready_path),
                    timeout=5) as resp:
                return resp.status == 200
        localglance.wait_until(ready, '%s to answer' % self.name, TIMEOUT,
                               process=self.proc, name=self.name,
                               log_tail=self.log_tail, errors=(OSError,))
        return self

    def log_tail(self):
        return localglance.tail(self.log_path, 30)

    def stop(self):
        localglance.stop_process(self.proc, 10)


def node_exporter(base_dir, textfile_dir):
    port = localglance.free_port()
    return Daemon(NODE_EXPORTER, [
        NODE_EXPORTER, '--web.listen-address=127.0.0.1:%d' % port,
        '--collector.disable-defaults', '--collector.textfile',
        '--collector.textfile.directory=%s' % textfile_dir,
    ], base_dir, port).start('/metrics')


class Prometheus(Daemon):
    """Scrapes ``targets`` ({job: 'host:port'}) every second, evaluates
    ``rule_files``; answers PromQL through its HTTP API."""

    def __init__(self, base_dir, targets, rule_files=()):
        port = localglance.free_port()
        conf = os.path.join(base_dir, 'prometheus.yml')
        config = {
            'global': {'scrape_interval': '1s',
                       'evaluation_interval': '1s'},
            'rule_files': [os.path.abspath(p) for p in rule_files],
            'scrape_configs': [
                {'job_name': job, 'static_configs': [{'targets': [t]}]}
                for job, t in targets.items()],
        }
        with open(conf, 'w') as f:
            json.dump(config, f)   # YAML is a superset of JSON
        super().__init__(PROMETHEUS, [
            PROMETHEUS, '--config.file=%s' % conf,
            '--storage.tsdb.path=%s' % os.path.join(base_dir, 'tsdb'),
            '--web.listen-address=127.0.0.1:%d' % port,
        ], base_dir, port)

    def api(self, path, **params):
        url = 'http://127.0.0.1:%d/api/v1/%s' % (self.port, path)
        if params:
            url += '?' + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as resp:
            answer = json.load(resp)
        assert answer['status'] == 'success', answer
        return answer['data']

    def query(self, promql):
        """{frozenset(labels): value} of an instant query."""
        data = self.api('query', query=promql)
        return {frozenset(r['metric'].items()): float(r['value'][1])
                for r in data['result']}

    def wait_for(self, promql, expected, what):
        """Until ``promql`` answers ``expected``; return the answer."""
        seen = []

        def matches():
            seen[:] = [self.query(promql)]
            return seen[0] == expected
        try:
            localglance.wait_until(matches, what, TIMEOUT,
                                   process=self.proc, name=self.name,
                                   log_tail=self.log_tail)
        except localglance.LocalGlanceError as exc:
            raise AssertionError('%s: %s answers %s, not %s'
                                 % (exc, promql, seen and seen[0],
                                    expected))
        return seen[0]
