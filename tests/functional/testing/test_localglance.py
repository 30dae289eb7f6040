"""The harness's shared server start-up, readiness loop and stop.

Both test servers (glance-api, Keystone) and the PostgreSQL cluster rely
on these; a tiny WSGI app under a real gunicorn stands in for them.
"""

import http.client
import os
import subprocess
import sys
import textwrap

import pytest

from glance_convert.testing import localglance
from tests import proctools

APP = '''\
import subprocess


def application(environ, start_response):
    body = b'ok'
    if environ['PATH_INFO'] == '/spawn':
        # A long-lived child of the worker, as qemu-img is for Glance.
        body = str(subprocess.Popen(['sleep', '300']).pid).encode()
    start_response('200 OK', [('Content-Length', str(len(body)))])
    return [body]
'''


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != 'Z'


def get(port, path):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request('GET', path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def make_app(base, source=APP):
    base.mkdir(exist_ok=True)
    (base / 'toyapp.py').write_text(source)
    port = localglance.free_port()
    log = str(base / 'gunicorn.log')
    return localglance.GunicornApp(
        'toy', [sys.executable, '-m', 'gunicorn'], 'toyapp:application',
        port=port, base_dir=str(base), env=dict(os.environ), log_file=log,
        log_tail=lambda: localglance.tails([log]),
        ready=(lambda: get(port, '/') == 'ok', 'toy to answer',
               (OSError, http.client.HTTPException)),
        workers=1, threads=2, timeout=30,
        extra_args=localglance._gunicorn_quiet_args())


def test_wait_until_returns_the_probe_value():
    calls = []

    def probe():
        calls.append(1)
        if len(calls) < 3:
            raise OSError('not yet')
        return 'up'

    assert localglance.wait_until(probe, 'x', 30, errors=(OSError,),
                                  interval=0.01) == 'up'
    assert len(calls) == 3


def test_wait_until_time_out_names_what_the_last_error_and_the_log():
    def refused():
        raise ConnectionRefusedError('connection refused')

    with pytest.raises(localglance.LocalGlanceError) as e:
        localglance.wait_until(refused, 'the toy to answer', 0.2,
                               errors=(OSError,), interval=0.01,
                               log_tail=lambda: 'LAST LOG LINE')
    assert str(e.value) == (
        'timed out after 0.2s waiting for the toy to answer '
        '(last error: connection refused); log tail:\nLAST LOG LINE')


def test_wait_until_lets_unexpected_errors_through():
    def broken():
        raise ValueError('a bug in the probe')

    with pytest.raises(ValueError):
        localglance.wait_until(broken, 'x', 30, errors=(OSError,))


def test_wait_until_gives_up_when_the_process_exits():
    proc = subprocess.Popen(['sh', '-c', 'exit 3'])
    with pytest.raises(localglance.LocalGlanceError) as e:
        localglance.wait_until(lambda: False, 'x', 600, process=proc,
                               name='toy', interval=0.01,
                               log_tail=lambda: 'why it died')
    assert str(e.value) == ('toy exited with status 3 while starting; '
                            'log tail:\nwhy it died')


def test_proctools_wait_for_fails_the_test_with_the_log():
    with pytest.raises(pytest.fail.Exception) as e:
        proctools.wait_for(lambda: False, 'nothing', 0.1,
                           log_tail=lambda: 'LOG')
    assert 'waiting for nothing' in str(e.value)
    assert str(e.value).endswith('log tail:\nLOG')


def test_stop_kills_the_workers_children(tmp_path):
    app = make_app(tmp_path / 'app').start(60)
    try:
        child = int(get(app.port, '/spawn'))
        assert alive(child)
        app.stop(10)
        assert app.process is None
        proctools.wait_for(lambda: not alive(child), 'the child to die', 30)
    finally:
        app.kill()


def test_a_graceful_stop_alone_leaves_the_children_behind(tmp_path):
    """Why stopping kills the process group: gunicorn does not."""
    app = make_app(tmp_path / 'app').start(60)
    child = int(get(app.port, '/spawn'))
    proc = app.process
    try:
        localglance.stop_process(proc, 10, group=False)
        assert proc.returncode is not None
        assert alive(child)
    finally:
        os.kill(child, 9)
        app.kill()


def test_a_failed_start_quotes_the_log_and_leaves_nothing(tmp_path):
    app = make_app(tmp_path / 'app',
                   "raise ImportError('the toy cannot start')\n")
    with pytest.raises(localglance.LocalGlanceError) as e:
        app.start(60)
    assert 'toy (gunicorn) exited with status' in str(e.value)
    assert 'the toy cannot start' in str(e.value)
    assert app.process is None
    assert app not in localglance._RUNNING


SCRIPT = textwrap.dedent('''\
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import pathlib
    from tests.functional.testing import test_localglance as t
    app = t.make_app(pathlib.Path(sys.argv[2])).start(60)
    print(app.process.pid, flush=True)
    if sys.argv[3] == 'skip-atexit':
        os._exit(0)
    ''')


@pytest.mark.parametrize('how', ['exit', 'skip-atexit'])
def test_a_server_left_running_is_killed_at_exit(tmp_path, how):
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    out = subprocess.run(
        [sys.executable, '-c', SCRIPT, checkout, str(tmp_path / 'app'),
         how], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
        check=True)
    master = int(out.stdout)
    try:
        if how == 'exit':
            assert not alive(master)
        else:   # what the exit handler prevents: a stray server
            assert alive(master)
    finally:
        if alive(master):
            os.killpg(master, 9)
