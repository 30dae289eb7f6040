"""The metrics: counted across processes, surviving a dead one, never
failing an import (unwritable directory, full disk)."""

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import parser

from glance_convert import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def samples(text):
    """{(name, sorted labels): value} of an exposition."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def scrape(directory, workspace=None):
    return samples(metrics.exposition(
        metrics.registry(str(directory), workspace)).decode())


def imports(found, result, src='qcow2', dst='raw'):
    key = ('glance_convert_imports_total',
           (('result', result), ('source_format', src),
            ('target_format', dst)))
    return found.get(key, 0)


#: A glance-api worker in miniature: records, then waits for stdin to
#: close (alive) or exits.
WORKER = textwrap.dedent('''
    import sys
    from glance_convert import metrics
    assert metrics.setup(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        metrics.import_done('qcow2', 'raw', metrics.CONVERTED,
                            {'convert': 0.3, 'total': 0.5},
                            bytes_read=1000, bytes_written=4000)
    metrics.import_done('vmdk', 'raw', metrics.REFUSED, {'total': 0.1},
                        check='vmdk_extents')
    metrics.running(1)
    print('ready', flush=True)
    sys.stdin.read()
''')


def start_worker(directory, count):
    proc = subprocess.Popen(
        [sys.executable, '-c', WORKER, str(directory), str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    assert proc.stdout.readline().strip() == 'ready'
    return proc


def test_counts_of_every_process_add_up_and_survive_a_killed_one(tmp_path):
    one = start_worker(tmp_path, 2)
    two = start_worker(tmp_path, 3)
    try:
        found = scrape(tmp_path)
        assert imports(found, 'converted') == 5
        assert imports(found, 'refused', 'vmdk') == 2
        assert found[('glance_convert_refusals_total',
                      (('check', 'vmdk_extents'),))] == 2
        assert found[('glance_convert_read_bytes_total', ())] == 5000
        assert found[('glance_convert_written_bytes_total', ())] == 20000
        assert found[('glance_convert_conversion_seconds_count',
                      (('phase', 'total'),))] == 7
        assert found[('glance_convert_conversions_running', ())] == 2

        one.kill()
        one.wait()
        found = scrape(tmp_path)
        # The dead worker's counts stay; its running conversion does not.
        assert imports(found, 'converted') == 5
        assert found[('glance_convert_conversions_running', ())] == 1
    finally:
        for proc in (one, two):
            proc.kill()
            proc.wait()


def test_without_forgetting_dead_processes_their_gauges_stay(tmp_path):
    """What forget_dead() is for: the library alone keeps the gauge of a
    killed process (no server hook called mark_process_dead)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import multiprocess
    proc = start_worker(tmp_path, 1)
    proc.kill()
    proc.wait()
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, str(tmp_path))
    raw = samples(metrics.exposition(reg).decode())
    assert raw[('glance_convert_conversions_running', ())] == 1
    assert scrape(tmp_path).get(
        ('glance_convert_conversions_running', ()), 0) == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith('gauge')]


def test_a_reused_pid_does_not_inherit_a_dead_process_s_files(tmp_path):
    proc = start_worker(tmp_path, 1)
    proc.kill()
    proc.wait()
    names = os.listdir(tmp_path)
    # pid and start time name a process's files.
    assert any(re.fullmatch(r'counter_%d-\d+\.db' % proc.pid, n)
               for n in names), names


def run_isolated(code, *args, **kwargs):
    """Run ``code`` in a fresh interpreter (the multi-process mode is
    global to a process)."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)]
                          + [str(a) for a in args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          **kwargs)


def test_off_unless_a_directory_is_set(tmp_path):
    result = run_isolated('''
        import os, sys
        from glance_convert import metrics
        assert not metrics.setup()
        metrics.import_done('qcow2', 'raw', metrics.CONVERTED, {})
        metrics.running(1)
        import prometheus_client.values as v
        print(v.ValueClass.__name__, 'PROMETHEUS_MULTIPROC_DIR' in os.environ)
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['MutexValue', 'False']


def test_unwritable_directory_costs_one_log_line(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    result = run_isolated('''
        import sys
        from oslo_log import log
        from oslo_config import cfg
        log.register_options(cfg.CONF)
        cfg.CONF([], project='t')
        log.setup(cfg.CONF, 't')
        from glance_convert import metrics
        for _ in range(3):
            assert not metrics.setup(sys.argv[1])
            metrics.import_done('qcow2', 'raw', metrics.CONVERTED, {})
        print('imports go on')
    ''', blocker / 'metrics')
    assert result.returncode == 0, result.stderr
    assert 'imports go on' in result.stdout
    out = result.stdout + result.stderr
    assert out.count("Prometheus metrics are off") == 1, out


FILL_AND_RECORD = '''
    import os, sys
    from glance_convert import metrics
    directory = sys.argv[1]
    os.makedirs(directory, exist_ok=True)
    # Fill the file system.
    with open(os.path.join(directory, 'filler'), 'wb') as f:
        try:
            while True:
                f.write(b'x' * 65536)
                f.flush()
        except OSError:
            pass
    if sys.argv[2] == 'plugin':
        print('on' if metrics.setup(directory) else 'off', flush=True)
        metrics.import_done('qcow2', 'raw', metrics.CONVERTED, {})
    else:
        from prometheus_client.mmap_dict import MmapedDict
        d = MmapedDict(os.path.join(directory, 'counter_1.db'))
        d.write_value('k', 1.0, 0.0)
    print('alive', flush=True)
'''


@pytest.fixture
def full_disk():
    """A 1 MiB tmpfs of our own (root and a mount namespace needed)."""
    probe = subprocess.run(['unshare', '-m', 'true'], capture_output=True)
    if os.geteuid() != 0 or probe.returncode != 0:
        pytest.skip('needs root and unshare -m to mount a small tmpfs')

    def run(mode):
        script = ('mount -t tmpfs -o size=1m tmpfs "$1" && '
                  'exec "$2" -c "$3" "$1/m" "$4"')
        return subprocess.run(
            ['unshare', '-m', 'sh', '-c', script, 'sh', '/mnt',
             sys.executable, textwrap.dedent(FILL_AND_RECORD), mode],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    return run


def test_full_disk_turns_metrics_off_without_killing_the_process(full_disk):
    result = full_disk('plugin')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['off', 'alive']
    assert 'Prometheus metrics are off' in result.stderr


def test_full_disk_kills_a_process_that_writes_an_unallocated_mmap(
        full_disk):
    """Why the files are allocated up front: the library's own file on
    a full disk takes the process down with SIGBUS."""
    result = full_disk('library')
    assert result.returncode == -signal.SIGBUS, (result.returncode,
                                                 result.stderr)
    assert 'alive' not in result.stdout


def test_textfile_is_replaced_atomically(tmp_path):
    proc = start_worker(tmp_path / 'm', 1)
    try:
        target = tmp_path / 'prom' / 'glance_convert.prom'
        target.parent.mkdir()
        target.write_text('old\n')
        metrics.write_textfile(str(target),
                               metrics.registry(str(tmp_path / 'm')))
        assert imports(samples(target.read_text()), 'converted') == 1
        assert os.listdir(target.parent) == ['glance_convert.prom']
    finally:
        proc.kill()
        proc.wait()


def test_textfile_that_cannot_be_written_leaves_the_old_one(tmp_path):
    proc = start_worker(tmp_path / 'm', 1)
    proc.kill()
    proc.wait()
    target = tmp_path / 'glance_convert.prom'
    target.write_text('old\n')

    class Broken:
        def collect(self):
            raise OSError('disk full')
            yield
    from prometheus_client import CollectorRegistry
    reg = CollectorRegistry()
    reg.register(Broken())
    with pytest.raises(OSError):
        metrics.write_textfile(str(target), reg)
    assert target.read_text() == 'old\n'
    assert sorted(os.listdir(tmp_path)) == ['glance_convert.prom', 'm']


def test_names_follow_prometheus_conventions():
    names = [m.full_name for m in metrics.METRICS]
    assert len(set(names)) == len(names)
    for m in metrics.METRICS:
        assert re.fullmatch(r'glance_convert_[a-z_]+', m.full_name)
        assert m.full_name.endswith('_total') == (m.kind == 'counter')
        if m.kind == 'gauge' and m.source == 'process':
            assert m.mode.startswith('live'), m.name
        if 'bytes' in m.name:
            assert m.full_name.endswith(('_bytes', '_bytes_total'))
        for label in m.labels:
            assert re.fullmatch(r'[a-z_]+', label)
    assert set(metrics.RESULTS) == {'converted', 'passed_through',
                                    'refused', 'failed', 'cancelled'}
