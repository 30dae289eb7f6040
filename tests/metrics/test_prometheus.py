"""Proof with the real parts: a mixed run of imports through a real
glance-api with 2 workers (converted, passed through, refused, cancelled,
and a worker SIGKILLed mid-conversion), then Debian's Prometheus scraping
``glance-convert metrics --listen`` and Debian's node_exporter reading the
textfile, answering PromQL with the exact counts.  The example alert
rules are loaded into that Prometheus, and every query of the example
Grafana dashboard is run against it.
"""

import json
import os
import subprocess
import sys

import pytest

from glance_convert.pipeline import qemu_img
from glance_convert.testing import localglance
from glance_convert.pipeline import check_table
from tests.faults import harness
from tests.faults.harness import MiB
from tests.faults.harness import say
from tests.faults.harness import wait_for
from tests.metrics import promstack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ALERTS = os.path.join(ROOT, 'etc', 'prometheus', 'glance-convert-alerts.yml')
DASHBOARD = os.path.join(ROOT, 'etc', 'grafana',
                         'glance-convert-dashboard.json')
JOBS = ('glance_convert', 'node')

pytestmark = pytest.mark.postgres


def _summary_logged(host, image_id):
    with open(host.server.log_file, errors='replace') as f:
        return 'Import summary: image_id=%s' % image_id in f.read()


def _raw(path, mib):
    with open(path, 'wb') as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    return str(path)


class Expected:
    """What the run should have counted."""

    def __init__(self):
        self.imports = {}
        self.read = 0
        self.written = 0
        self.refusals = {}
        self.recovered = 0

    def ended(self, source, result, target='raw', read_from=None,
              written=0):
        key = frozenset({'source_format': source, 'target_format': target,
                         'result': result}.items())
        self.imports[key] = self.imports.get(key, 0) + 1
        self.read += os.path.getsize(read_from)
        self.written += written

    @property
    def ended_count(self):
        return sum(self.imports.values())


def _summaries(host):
    """{image id: [the fields of each of its summary lines]}."""
    found = {}
    with open(host.server.log_file, errors='replace') as f:
        for line in f:
            if 'Import summary: ' not in line:
                continue
            fields = dict(kv.split('=', 1) for kv in line.split(
                'Import summary: ', 1)[1].split())
            found.setdefault(fields['image_id'], []).append(fields)
    return found


def _mixed_run(host, images, tmp_path):
    """Run the imports; return what they should count."""
    expect = Expected()
    client = host.client
    small, large = images.qcow2(2), images.qcow2(4)

    for _ in range(2):
        image = host.check_succeeds(host.start_import(small, 'qcow2'))
        expect.ended('qcow2', 'converted', read_from=small,
                     written=image['size'])

    raw = _raw(tmp_path / 'plain.raw', 1)
    host.check_succeeds(host.start_import(raw, 'raw'))
    expect.ended('raw', 'passed_through', target='raw', read_from=raw)

    refused = host.start_import(small, 'vmdk')   # qcow2 data
    image, task = client.wait_for_import(refused, harness.TIMEOUT)
    assert task['status'] == 'failure', task
    reason = task['message'].split('Image rejected: ', 1)[1]
    check = check_table.matching(reason).name
    expect.refusals[frozenset({'check': check}.items())] = 1
    expect.ended('vmdk', 'refused', read_from=small)
    say('refused as %s: %s' % (check, task['message']))
    [line] = _summaries(host)[refused]
    assert (line['result'], line['check'], line['source_format'],
            line['bytes_read']) == ('refused', check, 'vmdk',
                                    str(os.path.getsize(small)))

    cancelled = host.start_import(large, 'qcow2', hold='convert')
    host.held_at('convert', cancelled)
    client.delete_image(cancelled)
    wait_for(lambda: _summary_logged(host, cancelled),
             'the cancelled import to end', log=host.log)
    host.release(cancelled)
    expect.ended('qcow2', 'cancelled', read_from=large)

    # SIGKILL of a worker mid-conversion, another import running in the
    # other worker (whose look-out then recovers the victims).
    victim = host.start_import(large, 'qcow2', hold='convert')
    host.held_at('convert', victim)
    pid = host.worker_of(victim)
    other, collateral = host.other_import(small, 'qcow2', pid)
    host.kill_worker(pid)
    host.release_all()
    for image_id in [victim] + collateral:
        host.wait_released(image_id)
        host.check_released(image_id)
        expect.recovered += 1
    image = host.check_succeeds(other)
    expect.ended('qcow2', 'converted', read_from=small,
                 written=image['size'])
    host.wait_quiet()
    # Imported again, after the recovery: the textfile is written at its
    # end with every count.
    image = host.reimport(victim, large)
    expect.ended('qcow2', 'converted', read_from=large,
                 written=image['size'])
    # One summary line per import that ended; none for the killed ones.
    lines = [f for per_image in _summaries(host).values()
             for f in per_image]
    assert len(lines) == expect.ended_count, lines
    assert sorted(f['result'] for f in _summaries(host)[victim]) == [
        'converted']
    return expect


def _dashboard_queries():
    with open(DASHBOARD) as f:
        board = json.load(f)
    for panel in board['panels']:
        for target in panel.get('targets', ()):
            # The dashboard's variables, as Grafana fills them.
            yield panel['title'], (target['expr']
                                   .replace('$__rate_interval', '1m')
                                   .replace('$__range', '1h')
                                   .replace('$instance', '.*')
                                   .replace('$job', '.*'))


def test_prometheus_answers_the_exact_counts(tmp_path, pg, images):
    promstack.require()
    textfile_dir = tmp_path / 'textfile'
    textfile_dir.mkdir()
    host = harness.Host(tmp_path, pg, 'metrics', plugin_conf={
        'metrics_dir': str(tmp_path / 'metrics'),
        'metrics_textfile': str(textfile_dir / 'glance_convert.prom'),
        'reserved_space_mb': 0,
    })
    daemons = []
    try:
        with harness.running(host):
            expect = _mixed_run(host, images, tmp_path)

            port = localglance.free_port()
            env = dict(os.environ)
            env.pop('OS_GLANCE_CONFIG_DIR', None)
            exporter = subprocess.Popen(
                [sys.executable, '-m', 'glance_convert.cmd', 'metrics',
                 '--config-dir', host.server.conf_dir,
                 '--listen', '127.0.0.1:%d' % port],
                env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True)
            daemons.append(exporter)
            assert b'serving metrics' in exporter.stderr.readline()
            node = promstack.node_exporter(str(tmp_path), textfile_dir)
            daemons.append(node)
            prom = promstack.Prometheus(
                str(tmp_path),
                {'glance_convert': '127.0.0.1:%d' % port,
                 'node': '127.0.0.1:%d' % node.port},
                rule_files=[ALERTS]).start('/-/ready')
            daemons.append(prom)

            for job in JOBS:
                sel = '{job="%s"}' % job
                say('job %s' % job)
                prom.wait_for(
                    'sum by (source_format, target_format, result) '
                    '(glance_convert_imports_total%s)' % sel,
                    expect.imports, 'the imports counted by %s' % job)
                assert prom.query(
                    'sum by (check) (glance_convert_refusals_total%s)'
                    % sel) == expect.refusals
                assert prom.query(
                    'sum(glance_convert_imports_recovered_total%s)'
                    % sel) == {frozenset(): expect.recovered}
                assert prom.query(
                    'sum(glance_convert_read_bytes_total%s)' % sel) == {
                        frozenset(): expect.read}
                assert prom.query(
                    'sum(glance_convert_written_bytes_total%s)' % sel) == {
                        frozenset(): expect.written}
                assert prom.query(
                    'sum(glance_convert_conversion_seconds_count'
                    '{job="%s",phase="total"})' % job) == {
                        frozenset(): expect.ended_count}
                # The killed worker's conversion is not running any more.
                assert prom.query(
                    'sum(glance_convert_conversions_running%s)' % sel) == {
                        frozenset(): 0}
                assert prom.query(
                    'sum(glance_convert_conversions_waiting%s)' % sel) == {
                        frozenset(): 0}
                assert prom.query(
                    'max(glance_convert_conversion_slots%s)' % sel) == {
                        frozenset(): 4}
                # This host's qemu-img runs unconfined (the harness's
                # stand-in needs it): every layer reads 0.
                assert set(prom.query(
                    'max by (layer) (glance_convert_sandbox_layer%s)'
                    % sel).values()) == {0}
                assert [dict(k)['version'] for k in prom.query(
                    'glance_convert_qemu_img_info%s' % sel)] == [
                        qemu_img.version()]

            # The example alert rules load and evaluate.
            rules = [r for g in prom.api('rules')['groups']
                     for r in g['rules']]
            assert rules and all(r['health'] == 'ok' for r in rules), rules
            alerts = wait_for(lambda: [
                a for a in prom.api('alerts')['alerts']
                if a['labels']['alertname'] == 'GlanceConvertSandboxMissing'],
                'the sandbox alert', timeout=promstack.TIMEOUT)
            assert {a['state'] for a in alerts} <= {'pending', 'firing'}
            assert {a['labels']['layer'] for a in alerts} == {
                'no_new_privs', 'landlock-fs', 'seccomp'}
            assert not [a for a in prom.api('alerts')['alerts']
                        if a['labels']['alertname'] in (
                            'GlanceConvertRefusalSpike',
                            'GlanceConvertSlotsSaturated')]

            # Every query of the dashboard is valid PromQL with data (a
            # rate needs two scrapes in its range: wait for them).
            for title, expr in _dashboard_queries():
                wait_for(lambda: prom.api('query', query=expr)['result'],
                         'data for the panel %r: %s' % (title, expr),
                         timeout=promstack.TIMEOUT)
    finally:
        for daemon in reversed(daemons):
            if isinstance(daemon, subprocess.Popen):
                localglance.stop_process(daemon, 10)
            else:
                daemon.stop()
