"""The qemu-img wrapper: limits, the killing watchdog, argument building."""

import os
import threading
import time

import pytest

from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox
from tests import proctools

FAST_PATH = (sandbox.landlock_abi()[0] >= 6
             and qemu_img.launcher_tools() is not None
             and sandbox.process_gate_usable())
needs_fast_path = pytest.mark.skipif(
    not FAST_PATH, reason='needs Landlock ABI 6, util-linux setpriv, '
    'Linux 5.5 and Python 3.11.7 (the process gate)')


def forked(runner):
    """``runner``, starting qemu-img in a forked child (qemu_img.using)."""
    def run(args, limits, **options):
        return runner(args, limits, **dict(options, fork=True))
    return run


@pytest.fixture(params=[pytest.param('fast', marks=needs_fast_path),
                        'fork'])
def start(request, start_paths):
    """Each test once through the launcher thread, once through a fork."""
    if request.param == 'fast':
        yield request.param
        assert set(start_paths) <= {qemu_img.THREAD}, start_paths
        return
    with qemu_img.using(forked):
        yield request.param
    assert set(start_paths) <= {qemu_img.FORK}, start_paths


@pytest.fixture
def fifo(tmp_path):
    """A FIFO nobody writes to: qemu-img blocks opening it, for ever."""
    path = tmp_path / 'hang'
    os.mkfifo(path)
    return str(path)


def _qemu_img_pids():
    return set(proctools.qemu_img_processes())


def _ppid(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return int(f.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_timeout_kills_qemu_img(fifo, start):
    started = []
    with pytest.raises(qemu_img.QemuImgTimeout):
        qemu_img.run(['info', '-f', 'raw', fifo],
                     qemu_img.Limits(timeout=1), on_start=started.append,
                     reads=[fifo])
    assert started and started[0] not in _qemu_img_pids()


def test_cancel_kills_qemu_img(fifo, tmp_path, start):
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    started = time.monotonic()
    with pytest.raises(qemu_img.QemuImgCancelled):
        qemu_img.convert(fifo, 'raw', str(tmp_path / 'out'), 'raw',
                         limits=qemu_img.Limits(timeout=60),
                         should_cancel=flag.is_set)
    assert time.monotonic() - started < 30


def test_limits_apply_to_qemu_img_itself(fifo, start):
    """The kernel enforces the limits on the qemu-img process."""
    seen = {}
    flag = threading.Event()

    def on_start(pid):
        def read():
            time.sleep(0.3)
            with open('/proc/%d/limits' % pid) as f:
                seen['limits'] = f.read()
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                seen['cmd'] = f.read().split(b'\0')
            flag.set()
        threading.Thread(target=read).start()

    with pytest.raises(qemu_img.QemuImgCancelled):
        qemu_img.run(['info', '-f', 'raw', fifo],
                     qemu_img.Limits(address_space=1 << 30, cpu_time=7,
                                     file_size=12345 * 512, timeout=60),
                     should_cancel=flag.is_set, on_start=on_start,
                     reads=[fifo])
    rows = {line[:26].strip(): line[26:].split()
            for line in seen['limits'].splitlines()[1:]}
    assert rows['Max address space'][:2] == [str(1 << 30)] * 2
    assert rows['Max cpu time'][:2] == ['7', '7']
    assert rows['Max file size'][:2] == [str(12345 * 512)] * 2
    assert os.path.basename(seen['cmd'][0]) == b'qemu-img'


def test_limits_allow_normal_work(tmp_path):
    img = tmp_path / 'a.raw'
    img.write_bytes(b'\0' * 1024 * 1024)
    info = qemu_img.info(str(img), 'raw',
                         qemu_img.Limits(address_space=1 << 30, cpu_time=5,
                                         timeout=30))
    assert info['virtual-size'] == 1024 * 1024
    assert info['format'] == 'raw'


def test_file_size_limit_stops_runaway_output(tmp_path, start):
    src = tmp_path / 'a.raw'
    with open(src, 'wb') as f:
        f.write(os.urandom(8 * 1024 * 1024))
    with pytest.raises(qemu_img.QemuImgLimitExceeded):
        qemu_img.convert(str(src), 'raw', str(tmp_path / 'b.raw'), 'raw',
                         limits=qemu_img.Limits(file_size=1024 * 1024,
                                                timeout=60))


def test_failure_carries_stderr(tmp_path):
    bad = tmp_path / 'not-qcow2'
    bad.write_bytes(b'hello' * 1000)
    with pytest.raises(qemu_img.QemuImgError) as exc_info:
        qemu_img.info(str(bad), 'qcow2', qemu_img.Limits(timeout=30))
    assert exc_info.value.exit_code == 1
    assert 'qcow2' in exc_info.value.stderr.lower()


def test_measure_unsupported_target_returns_none(tmp_path):
    img = tmp_path / 'a.raw'
    img.write_bytes(b'\1' * 65536)
    limits = qemu_img.Limits(timeout=30)
    assert qemu_img.measure(str(img), 'raw', 'vpc', {}, limits) is None
    assert qemu_img.measure(str(img), 'raw', 'qcow2', {}, limits) > 65536


def test_progress_reports_bytes_read(tmp_path, start):
    src = tmp_path / 'a.raw'
    with open(src, 'wb') as f:
        f.write(os.urandom(64 * 1024 * 1024))
    seen = []
    qemu_img.convert(str(src), 'raw', str(tmp_path / 'b.qcow2'), 'qcow2',
                     compressed=True, limits=qemu_img.Limits(timeout=120),
                     on_progress=seen.append, progress_interval=0.2)
    assert seen, 'no progress was reported during a multi-second run'
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_convert_args_never_combine_compression_and_out_of_order():
    args = qemu_img.convert_args(
        'in', 'qcow2', 'out', 'qcow2', out_options={'compat': '1.1'},
        tuning=qemu_img.Tuning(coroutines=4, out_of_order=True,
                               source_cache='none'),
        compressed=True)
    assert '-c' in args and '-W' not in args
    assert args[:5] == ['convert', '-f', 'qcow2', '-O', 'qcow2']
    assert args[args.index('-m') + 1] == '4'
    assert args[args.index('-T') + 1] == 'none'
    assert args[args.index('-o') + 1] == 'compat=1.1'
    assert args[-2:] == ['in', 'out']
    plain = qemu_img.convert_args(
        'in', 'raw', 'out', 'raw', out_options={},
        tuning=qemu_img.Tuning(out_of_order=True))
    assert '-W' in plain and '-c' not in plain and '-o' not in plain


def test_qemu_img_dies_with_its_glance_process(fifo, tmp_path, start):
    """A SIGKILLed glance-api must not leave qemu-img running."""
    import subprocess
    import sys
    script = tmp_path / 'parent.py'
    script.write_text(
        'import contextlib, sys, threading, time\n'
        'from glance_convert.pipeline import qemu_img\n'
        'from tests.unit.pipeline.test_qemu_img import forked\n'
        'def run():\n'
        '    with (qemu_img.using(forked) if sys.argv[2] == "fork"\n'
        '          else contextlib.nullcontext()):\n'
        '        qemu_img.info(sys.argv[1], "raw", qemu_img.Limits(\n'
        '            timeout=120, cpu_time=60))\n'
        'threading.Thread(target=run, daemon=True).start()\n'
        'time.sleep(120)\n')
    parent = subprocess.Popen([sys.executable, str(script), fifo, start],
                              env=dict(os.environ, PYTHONPATH=os.getcwd()))
    deadline = time.monotonic() + 30
    child = set()
    while not child and time.monotonic() < deadline:
        time.sleep(0.1)
        child = {p for p in _qemu_img_pids() if _ppid(p) == parent.pid}
    assert child, 'qemu-img did not start'
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _qemu_img_pids() & child and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _qemu_img_pids() & child


def test_compare_tells_different_images_apart(tmp_path, start):
    """qemu-img compare exits 1 on a mismatch: that must not read as 0."""
    from tests import imagefactory
    a = imagefactory.make_raw(tmp_path / 'a.raw', 1 << 20,
                              [(4096, 4096, 0x41)])
    b = imagefactory.make_raw(tmp_path / 'b.raw', 1 << 20, [])
    assert qemu_img.compare(a, 'raw', a, 'raw')
    assert not qemu_img.compare(a, 'raw', b, 'raw')


@pytest.mark.parametrize('cpu_time', [None, 30])
def test_sigkill_from_outside_is_not_a_limit(fifo, cpu_time, start):
    # The OOM killer's SIGKILL looks like RLIMIT_CPU's; only a process
    # with a CPU limit can have hit that limit.
    def kill(pid):
        threading.Timer(0.3, os.kill, (pid, 9)).start()
    with pytest.raises(qemu_img.QemuImgError) as exc:
        qemu_img.run(['info', '-f', 'raw', fifo],
                     qemu_img.Limits(timeout=60, cpu_time=cpu_time),
                     on_start=kill, reads=[fifo])
    assert isinstance(exc.value, qemu_img.QemuImgLimitExceeded) == bool(
        cpu_time)


def _status(path):
    """The confinement lines of a /proc status file."""
    with open(path) as f:
        return {k: v.strip() for k, _, v in
                (line.partition(':') for line in f)
                if k in ('NoNewPrivs', 'Seccomp', 'Seccomp_filters')}


@needs_fast_path
def test_launcher_thread_confines_qemu_img_not_its_caller(fifo, tmp_path,
                                                          monkeypatch):
    """No fork: qemu-img started by another thread, without preexec_fn,
    confined; the caller's thread is as it was and still opens files."""
    started = []
    real = qemu_img.subprocess.Popen

    def popen(argv, **kw):
        started.append((argv, kw.get('preexec_fn'),
                        threading.get_native_id()))
        return real(argv, **kw)

    monkeypatch.setattr(qemu_img.subprocess, 'Popen', popen)
    before = _status('/proc/thread-self/status')
    seen = {}
    flag = threading.Event()

    def on_start(pid):
        def read():
            time.sleep(0.3)
            seen.update(_status('/proc/%d/status' % pid))
            flag.set()
        threading.Thread(target=read).start()

    with pytest.raises(qemu_img.QemuImgCancelled):
        qemu_img.run(['info', '-f', 'raw', fifo],
                     qemu_img.Limits(cpu_time=7, timeout=60),
                     should_cancel=flag.is_set, on_start=on_start,
                     reads=[fifo])
    [(argv, preexec_fn, tid)] = started
    assert preexec_fn is None
    assert os.path.basename(argv[0]) == 'setpriv'
    assert tid != threading.get_native_id()
    assert seen['NoNewPrivs'] == '1' and seen['Seccomp'] == '2'
    if 'Seccomp_filters' in before:
        assert int(seen['Seccomp_filters']) == int(
            before['Seccomp_filters']) + 1
    # Nothing leaked into this thread: no flag, no filter, files open.
    assert _status('/proc/thread-self/status') == before
    (tmp_path / 'after').write_text('still writable')
    assert (tmp_path / 'after').read_text() == 'still writable'
    assert [t.name for t in threading.enumerate()
            if t.name == 'qemu-img-launcher'] == []


@needs_fast_path
def test_one_kernel_thread_for_all_falls_back_to_fork(
        tmp_path, monkeypatch, start_paths):
    """Green threads (eventlet) share one kernel thread: restricting the
    "launcher" would restrict the caller for good.  It forks instead."""
    monkeypatch.setattr(sandbox, 'gettid', lambda: 4242)
    before = _status('/proc/thread-self/status')
    img = tmp_path / 'a.raw'
    img.write_bytes(b'\0' * 65536)
    assert qemu_img.info(str(img), 'raw', qemu_img.Limits(timeout=30))[
        'virtual-size'] == 65536
    assert start_paths == [qemu_img.FORK]
    assert _status('/proc/thread-self/status') == before


def test_missing_qemu_img_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(qemu_img.QemuImgError) as exc_info:
        qemu_img.info(str(tmp_path / 'x'), 'raw', qemu_img.Limits())
    assert 'not found' in str(exc_info.value)
    assert os.listdir(tmp_path) == []
