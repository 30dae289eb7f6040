"""``glance-convert metrics``: prints, serves and writes what the
glance-api processes recorded, as a separate process would."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from glance_convert.cmd import common as cli
from glance_convert.cmd import metrics as cmd
from tests.unit import test_metrics as recorded


def configure(tmp_path, **opts):
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    lines = ['[glance_convert]', 'work_dir = %s' % work,
             'max_concurrent_conversions = 3']
    lines += ['%s = %s' % kv for kv in opts.items()]
    conf = tmp_path / 'glance-api.conf'
    conf.write_text('\n'.join(lines) + '\n')
    return ['--config-dir', str(tmp_path)]


def glance_convert(*args, **kwargs):
    return subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd.main'] + list(args),
        cwd=recorded.ROOT, capture_output=True, timeout=60, **kwargs)


@pytest.fixture
def worker(tmp_path):
    proc = recorded.start_worker(tmp_path / 'm', 2)
    yield proc
    proc.kill()
    proc.wait()


def test_prints_the_exposition(tmp_path, worker):
    args = configure(tmp_path, metrics_dir=tmp_path / 'm')
    result = glance_convert('metrics', *args)
    assert result.returncode == 0, result.stderr
    found = recorded.samples(result.stdout.decode())
    assert recorded.imports(found, 'converted') == 2
    assert found[('glance_convert_conversion_slots', ())] == 3
    assert found[('glance_convert_workspace_reserved_bytes', ())] == 0
    st = os.statvfs(tmp_path / 'work')
    free = found[('glance_convert_workspace_free_bytes', ())]
    assert abs(free - st.f_bavail * st.f_frsize) < 256 * 1024 * 1024


def test_writes_a_textfile(tmp_path, worker):
    args = configure(tmp_path, metrics_dir=tmp_path / 'm')
    target = tmp_path / 'glance_convert.prom'
    result = glance_convert('metrics', '--textfile', str(target), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b''
    assert recorded.imports(recorded.samples(target.read_text()),
                            'converted') == 2


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_serves_over_http_until_terminated(tmp_path, worker):
    args = configure(tmp_path, metrics_dir=tmp_path / 'm')
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, '-m', 'glance_convert.cmd.main', 'metrics',
         '--listen', '127.0.0.1:%d' % port] + args,
        cwd=recorded.ROOT, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert 'serving metrics on http://127.0.0.1:%d/metrics' % port \
            in line, line
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port,
                                    timeout=30) as resp:
            body = resp.read().decode()
        assert recorded.imports(recorded.samples(body), 'converted') == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait()


def test_metrics_off_is_a_clear_error(tmp_path):
    result = glance_convert('metrics', *configure(tmp_path))
    assert result.returncode == cli.EXIT_FAILED
    assert b'metrics are off: set [glance_convert] metrics_dir' in \
        result.stderr
    assert b'Traceback' not in result.stderr


def test_missing_directory_is_a_clear_error(tmp_path):
    args = configure(tmp_path, metrics_dir=tmp_path / 'none')
    result = glance_convert('metrics', *args)
    assert result.returncode == cli.EXIT_FAILED
    assert re.search(rb'none does not exist', result.stderr)


@pytest.mark.parametrize('value', ['9090', 'host:', ':80', 'h:70000',
                                   'h:x'])
def test_bad_listen_address(value):
    with pytest.raises(cli.UsageError):
        cmd.listen_address(value)


def test_listen_address_forms():
    assert cmd.listen_address('127.0.0.1:9720') == ('127.0.0.1', 9720)
    assert cmd.listen_address('[::1]:9720') == ('::1', 9720)


def test_port_in_use_is_a_clear_error(tmp_path, worker):
    args = configure(tmp_path, metrics_dir=tmp_path / 'm')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        port = s.getsockname()[1]
        start = time.monotonic()
        result = glance_convert('metrics', '--listen',
                                '127.0.0.1:%d' % port, *args)
    assert result.returncode == cli.EXIT_FAILED, time.monotonic() - start
    assert b'Address already in use' in result.stderr
    assert b'Traceback' not in result.stderr
