"""qemu-img confinement, tried by a hostile stand-in (tests/standin.py).

The stand-in runs the real qemu-img, then tries to steal, to reach out, to
touch other processes and to leave a process behind.  Confined, every
attempt fails and the conversion still compares equal; with ``sandbox =
off`` the same attempts succeed, so these tests can fail.
"""

import errno
import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest

from glance_convert import errors
from glance_convert.flow import settings as config_check
from glance_convert.cmd import check_config
from glance_convert.pipeline import conversion
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox
from tests import hostile_corpus
from tests import standin

MiB = 1024 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# Escapes whose proof is in the output; 'proc' only through a subprocess
# (putenv does not change /proc/PID/environ of the test process itself).
DATA = {'canary', 'sibling', 'conf', 'listing', 'tcp', 'abstract',
        'etc_glance', 'parent', 'owner', 'env', 'fork'}
EFFECTS = ['abstract', 'ioprio', 'linger', 'prlimit', 'renice',
           'scheduler', 'signal', 'tcp', 'write']


def _effects(scene):
    """What an unconfined stand-in leaves outside its output."""
    return sorted(EFFECTS + (['affinity'] if 'affinity' in scene.attempts()
                             else []))


@pytest.fixture
def mode():
    """Set the sandbox mode for one test; back to auto afterwards."""
    yield sandbox.configure
    sandbox.configure(sandbox.AUTO)


@pytest.fixture
def scene(tmp_path, qemu_tools):
    """A staging dir with an upload, its sibling, a config dir, escapes."""
    staging = tmp_path / 'staging'
    config = tmp_path / 'config'
    staging.mkdir()
    config.mkdir()
    (config / 'glance-image-import.conf').write_text('[glance_convert]\n')
    image_id = str(uuid.uuid4())
    src = str(staging / image_id)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', src, '8M'],
                   check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 1M 2M',
                    src], check=True, capture_output=True)
    escapes = standin.Escapes(tmp_path, str(staging), str(config))
    escapes.image_id, escapes.src = image_id, src
    escapes.staging, escapes.config = str(staging), str(config)
    yield escapes
    escapes.close()


@pytest.fixture
def reports():
    """The stand-in's reports, from qemu-img's stdout."""
    found = []

    def recording(runner):
        def run(args, limits, **options):
            result = runner(args, limits, **options)
            report = standin.report(result.stdout)
            if report is not None:
                found.append(report)
            return result
        return run

    with qemu_img.using(recording):
        yield found


@pytest.fixture
def simulate():
    """``simulate(module, name, fn)``: another host, on which the public
    probe ``module.name`` is ``fn``.  The real host is probed again after
    the test."""
    with pytest.MonkeyPatch.context() as patch:
        def replace(module, name, fn):
            patch.setattr(module, name, fn)
            sandbox.probe_again()
        yield replace
    sandbox.probe_again()


def _force_start(simulate, how):
    """Start qemu-img as ``how`` says, simulating what forces the fork."""
    if how == 'no-setpriv':
        simulate(qemu_img, 'launcher_tools', lambda: None)
    elif how == 'landlock-abi-5':
        simulate(sandbox, 'landlock_abi', lambda: (5, 'simulated: ABI 5'))
    elif how == 'no-process-gate':   # Linux < 5.5 or Python < 3.11.7
        simulate(sandbox, 'process_gate_usable', lambda: False)
    return qemu_img.THREAD if how == 'fast' else qemu_img.FORK


#: The launcher thread needs Landlock ABI 6, util-linux setpriv/prlimit
#: and what its process gate needs (Linux 5.5, Python 3.11.7).
LAUNCHER_USABLE = (sandbox.landlock_abi()[0] >= 6
                   and qemu_img.launcher_tools() is not None
                   and sandbox.process_gate_usable())
FAST = pytest.param('fast', marks=pytest.mark.skipif(
    not LAUNCHER_USABLE, reason='needs Landlock ABI 6, util-linux '
    'setpriv/prlimit, Linux 5.5 and Python 3.11.7'))
START = [FAST, 'no-setpriv', 'landlock-abi-5', 'no-process-gate']


def _convert_in_process(scene, monkeypatch, target='raw'):
    monkeypatch.setenv('PATH', scene.env()['PATH'])
    for key, value in scene.env().items():
        if key.startswith('GC_'):
            monkeypatch.setenv(key, value)
    return conversion.convert_image(
        scene.src, 'qcow2', image_id=scene.image_id,
        work_dir=scene.staging,
        settings=hostile_corpus.pipeline_settings(target))


def _assert_confined_and_equal(scene, out):
    """Confined, the stand-in could not start qemu-img as a process of
    its own: it became qemu-img (exec), so it appended nothing."""
    assert os.path.getsize(out) == 8 * MiB
    assert qemu_img.compare(scene.src, 'qcow2', out, 'raw')


def _wait_for(predicate, what, timeout=120):
    """A generous time-out, never a timed assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'gave up waiting: %s' % what
        time.sleep(0.05)


def _assert_linger_rewrites(scene, out):
    """Unconfined: a process of the stand-in outlived it, holding the
    output open; told to, it writes into the output after the checks."""
    assert scene.lingering() is not None
    assert 'linger' not in scene.stolen(out)
    scene.release_linger()
    _wait_for(lambda: scene.lingering() is None, 'the lingering process')
    assert 'linger' in scene.stolen(out)


@pytest.mark.parametrize('how', START)
def test_confined_standin_gets_nothing(scene, reports, monkeypatch, mode,
                                       simulate, start_paths, how):
    """Through the launcher thread (vfork) and the forked child alike."""
    expected = _force_start(simulate, how)
    mode(sandbox.AUTO)
    result = _convert_in_process(scene, monkeypatch)
    assert start_paths and set(start_paths) == {expected}, start_paths
    assert len(reports) == 1, reports
    report = reports[0]
    assert sorted(report) == sorted(scene.attempts())
    for name, outcome in report.items():
        assert outcome.startswith('denied'), (name, outcome)
    assert scene.stolen(result.path) == []
    assert scene.effects() == []
    assert scene.lingering() is None
    _assert_confined_and_equal(scene, result.path)


@pytest.mark.parametrize('how', [FAST, 'no-setpriv'])
def test_unconfined_standin_steals(scene, reports, monkeypatch, mode,
                                   simulate, start_paths, how):
    """The control: the same stand-in, unconfined, gets everything."""
    expected = _force_start(simulate, how)
    mode(sandbox.OFF)
    result = _convert_in_process(scene, monkeypatch)
    # Unconfined, nothing needs a thread of its own.
    unconfined = (qemu_img.DIRECT if expected == qemu_img.THREAD
                  else qemu_img.FORK)
    assert set(start_paths) == {unconfined}, start_paths
    report = reports[0]
    for name, outcome in report.items():
        assert outcome.startswith('got'), (name, outcome)
    assert scene.stolen(result.path) == sorted(
        DATA & set(scene.attempts()))
    assert scene.effects() == _effects(scene)
    assert os.path.getsize(result.path) > 8 * MiB + standin.RAN_MARK
    _assert_linger_rewrites(scene, result.path)


@pytest.mark.skipif(not LAUNCHER_USABLE, reason='no launcher thread here')
def test_launcher_thread_needs_its_seccomp_guard(scene, reports, monkeypatch,
                                                 mode, simulate, start_paths):
    """Why the launcher's filter refuses signals to glance-api's pid and
    the launcher's tid: Landlock's scoping lets a signal to the launcher
    thread through (it is in the domain), and a signal to one thread acts
    on the whole process.  Without the rule, the stand-in finds it."""
    real = sandbox.build_launcher_program

    def unguarded(*args):
        # No slot for the tid and pid: the rule compares with 0.
        prog, _threads, _processes = real(*args)
        return prog, [], []
    simulate(sandbox, 'build_launcher_program', unguarded)
    mode(sandbox.AUTO)
    _convert_in_process(scene, monkeypatch)
    assert set(start_paths) == {qemu_img.THREAD}
    report = reports[0]
    assert report['parent'].startswith('got'), report
    # Everything else is still refused.
    assert [n for n, o in report.items() if not o.startswith('denied')] == [
        'parent']


# --- nothing outlives qemu-img -----------------------------------------------

#: What the stand-in does once it has tried everything, per outcome.
BEHAVIOUR = {'success': 'convert', 'failure': 'fail', 'timeout': 'hang',
             'cancel': 'hang'}
RAISES = {'success': None, 'failure': qemu_img.QemuImgError,
          'timeout': qemu_img.QemuImgTimeout,
          'cancel': qemu_img.QemuImgCancelled}


@pytest.mark.parametrize('outcome', sorted(BEHAVIOUR))
@pytest.mark.parametrize('how', [FAST, 'no-setpriv'])
@pytest.mark.parametrize('mode_name', [sandbox.AUTO, sandbox.OFF])
def test_nothing_outlives_qemu_img(scene, monkeypatch, mode, simulate,
                                   tmp_path, mode_name, how, outcome):
    """Success, failure, time-out or cancellation: when qemu-img's run
    ends, no process of it is left (the stand-in's setsid and double
    fork included).  Unconfined (the control), one is left behind."""
    _force_start(simulate, how)
    mode(mode_name)
    monkeypatch.setenv('PATH', scene.env()['PATH'])
    scene.set_behaviour(BEHAVIOUR[outcome])
    out = str(tmp_path / 'out.raw')

    def hanging():
        with open(out, 'rb') as f:
            return standin.HANGING in f.read()

    limits = qemu_img.Limits(timeout=15 if outcome == 'timeout' else 600)
    try:
        qemu_img.convert(scene.src, 'qcow2', out, 'raw', limits=limits,
                         should_cancel=hanging if outcome == 'cancel'
                         else None)
    except qemu_img.QemuImgError as exc:
        assert type(exc) is RAISES[outcome], exc
    else:
        assert RAISES[outcome] is None
    if mode_name == sandbox.OFF:
        assert scene.lingering() is not None
    else:
        assert scene.lingering() is None
        assert not os.path.exists(scene.linger_pidfile)


# --- the output, judged as an upload -----------------------------------------

def _replacement(scene, kind):
    """An image a compromised qemu-img writes instead of the output."""
    path = os.path.join(scene.root, 'replacement-' + kind)
    create = {
        'backing': ['-f', 'qcow2', '-b', scene.canary, '-F', 'raw', '-u',
                    path, '8M'],
        'extent': ['-f', 'vmdk', '-o', 'subformat=monolithicFlat', path,
                   '8M'],
        'huge': ['-f', 'qcow2', path, '1G'],
        'hidden': ['-f', 'qcow2', path, '8M'],
    }[kind]
    subprocess.run([scene.real_qemu_img, 'create', '-q'] + create,
                   check=True)
    return path


#: (what the stand-in writes, the format asked for, the user's sentence)
HOSTILE_OUTPUTS = [
    ('backing', 'qcow2', 'with a backing file are not allowed'),
    ('extent', 'vmdk', 'refer to other files'),
    ('huge', 'qcow2', 'above the limit'),
    ('hidden', 'raw', 'hides another disk image'),
]


def _source_for(scene, target):
    """(path, format, image id) of an upload that is converted to
    ``target``: the scene's qcow2, or a raw copy of it."""
    if target != 'qcow2':
        return scene.src, 'qcow2', scene.image_id
    image_id = str(uuid.uuid4())
    path = os.path.join(scene.staging, image_id)
    subprocess.run([scene.real_qemu_img, 'convert', '-f', 'qcow2', '-O',
                    'raw', scene.src, path], check=True)
    return path, 'raw', image_id


@pytest.mark.parametrize('kind,target,words', HOSTILE_OUTPUTS)
def test_hostile_output_is_refused(scene, monkeypatch, mode, kind, target,
                                   words):
    """A qemu-img that writes something else than what was asked for:
    the output goes through the checks an upload of that format gets."""
    mode(sandbox.AUTO)
    monkeypatch.setenv('PATH', scene.env()['PATH'])
    scene.set_behaviour('replace', _replacement(scene, kind))
    src, claimed, image_id = _source_for(scene, target)
    before = sorted(os.listdir(scene.staging))
    with pytest.raises(errors.ConversionError) as exc_info:
        conversion.convert_image(
            src, claimed, image_id=image_id, work_dir=scene.staging,
            settings=hostile_corpus.pipeline_settings(
                target, max_virtual_size=64 * MiB))
    assert words in str(exc_info.value), exc_info.value
    assert sorted(os.listdir(scene.staging)) == before


def test_output_larger_than_allowed_needed_the_upload_checks(
        scene, monkeypatch, mode):
    """The control: without the upload checks on the output, a qcow2
    claiming more than the allowed virtual size was handed on."""
    mode(sandbox.AUTO)
    monkeypatch.setenv('PATH', scene.env()['PATH'])
    scene.set_behaviour('replace', _replacement(scene, 'huge'))
    src, claimed, image_id = _source_for(scene, 'qcow2')
    real = inspection.inspect_bytes
    output = conversion.work_paths(scene.staging, image_id, 'qcow2')[1]
    monkeypatch.setattr(
        inspection, 'inspect_bytes',
        lambda path, claimed, policy: None if path == output
        else real(path, claimed, policy))
    result = conversion.convert_image(
        src, claimed, image_id=image_id, work_dir=scene.staging,
        settings=hostile_corpus.pipeline_settings(
            'qcow2', max_virtual_size=64 * MiB))
    assert result.path == output and result.virtual_size == 1024 * MiB


@pytest.mark.skipif(not LAUNCHER_USABLE, reason='no launcher thread here')
def test_process_gate_lets_only_the_launcher_through(scene, monkeypatch,
                                                     mode):
    """The gate answers the start that the kernel says the launcher
    thread made; any other (here: the launcher's, with the gate told
    another thread id) is refused, and nothing runs."""
    mode(sandbox.AUTO)
    real = sandbox.ProcessGate.__init__
    monkeypatch.setattr(
        sandbox.ProcessGate, '__init__',
        lambda self, listener, tid: real(self, listener, tid + 1))
    with pytest.raises(qemu_img.QemuImgError) as exc_info:
        qemu_img.info(scene.src, 'qcow2', qemu_img.Limits(timeout=60))
    assert exc_info.value.exit_code is None            # never started
    # Refused (EPERM); Python then falls back from vfork to fork, which
    # the closed gate answers with ENOSYS.
    assert any(os.strerror(code) in exc_info.value.stderr
               for code in (errno.EPERM, errno.ENOSYS)), exc_info.value


def test_etc_glance_is_tried(scene):
    if scene.etc_glance_skip:
        pytest.skip(scene.etc_glance_skip)
    assert 'etc_glance' in scene.attempts()


def _cli(scene, mode_name, src, disk_format, out):
    with open(os.path.join(scene.config, 'glance-image-import.conf'),
              'w') as f:
        f.write('[glance_convert]\nsandbox = %s\n' % mode_name)
    env = scene.env()
    env['PYTHONPATH'] = REPO
    return subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd', 'convert', src,
         '--disk-format', disk_format, '--to', 'raw', '-o', out, '-q',
         '--config-dir', scene.config],
        env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('mode_name', [sandbox.AUTO, sandbox.OFF])
def test_cli_convert(scene, tmp_path, mode_name):
    out = str(tmp_path / 'out' / 'disk.raw')
    os.mkdir(os.path.dirname(out))
    proc = _cli(scene, mode_name, scene.src, 'qcow2', out)
    assert proc.returncode == 0, proc.stderr
    if mode_name == sandbox.AUTO:
        assert scene.stolen(out) == []
        assert scene.effects() == []
        _assert_confined_and_equal(scene, out)
    else:
        assert scene.stolen(out) == sorted(
            (DATA | {'proc'}) & set(scene.attempts()))
        assert scene.effects() == _effects(scene)
        _assert_linger_rewrites(scene, out)


def test_cli_parallel_conversion_is_confined(scene, tmp_path):
    """A streamOptimized VMDK to raw: two qemu-img, both confined."""
    vmdk = os.path.join(scene.staging, str(uuid.uuid4()))
    subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'vmdk',
                    '-o', 'subformat=streamOptimized', scene.src, vmdk],
                   check=True)
    out = str(tmp_path / 'out.raw')
    proc = _cli(scene, sandbox.AUTO, vmdk, 'vmdk', out)
    assert proc.returncode == 0, proc.stderr
    assert scene.stolen(out) == []
    assert scene.effects() == []
    # Both processes became qemu-img: nothing appended.
    assert os.path.getsize(out) == 8 * MiB
    assert qemu_img.compare(vmdk, 'vmdk', out, 'raw')


# --- a layer missing (simulated) ---------------------------------------------

def _without(simulate, layer):
    if layer == sandbox.LANDLOCK_FS:
        simulate(sandbox, 'landlock_abi',
                 lambda: (0, 'simulated: no Landlock'))
    else:
        simulate(sandbox, 'seccomp_table',
                 lambda: (None, 'simulated: no seccomp'))


@pytest.mark.parametrize('layer', [sandbox.LANDLOCK_FS, sandbox.SECCOMP])
def test_auto_without_a_layer_converts_and_logs(scene, reports, monkeypatch,
                                                mode, simulate, caplog, layer):
    _without(simulate, layer)
    with caplog.at_level(logging.WARNING):
        mode(sandbox.AUTO)
    assert any(layer in r.getMessage() and 'simulated' in r.getMessage()
               for r in caplog.records), caplog.text
    assert layer not in sandbox.applied_layers()
    if layer == sandbox.SECCOMP:
        # The bound on processes is seccomp's: missing with it, and said.
        assert any(sandbox.ONE_PROCESS in r.getMessage()
                   and r.levelno == logging.WARNING
                   for r in caplog.records), caplog.text
        assert sandbox.ONE_PROCESS not in sandbox.applied_layers()
    result = _convert_in_process(scene, monkeypatch)
    report = reports[0]
    abi = sandbox.landlock_abi()[0] if layer == sandbox.SECCOMP else 0
    if layer == sandbox.LANDLOCK_FS:
        # seccomp alone still stops the network and the signal.
        for name in ('tcp', 'abstract', 'signal'):
            assert report[name].startswith('denied'), report
        assert report['canary'].startswith('got')
        assert result.converted
    else:
        # Landlock alone still stops the files ...
        for name in ('canary', 'sibling', 'conf', 'listing', 'write'):
            assert report[name].startswith('denied'), report
        # ... and, where the kernel scopes them, signals and abstract
        # sockets (ABI 6), and TCP (ABI 4).
        if abi >= 6:
            assert report['signal'].startswith('denied'), report
            assert report['abstract'].startswith('denied'), report
        if abi >= 4:
            assert report['tcp'].startswith('denied'), report
        # Only seccomp refuses naming a file's owner (F_SETOWN); ABI 6
        # scopes the signal it would bring, which no test sends.  It also
        # carries the rules on processes: without it, the stand-in starts
        # processes and changes another process's limits and priorities.
        # The environment stays clean (no kernel layer needed).
        for name in ('owner', 'fork', 'prlimit', 'renice', 'ioprio'):
            assert report[name].startswith('got'), report
        assert report['env'].startswith('denied'), report
        assert scene.stolen(result.path) == ['fork', 'owner']
        converted = str(scene.root) + '/converted.raw'
        with open(result.path, 'rb') as f, open(converted, 'wb') as out:
            out.write(f.read(8 * MiB))
        assert qemu_img.compare(scene.src, 'qcow2', converted, 'raw')


def test_check_config_and_inspect_show_the_new_layers(scene, simulate):
    """check-config names each layer, what it stops and, when missing,
    how to get it; inspect lists the layers its qemu-img runs had."""
    def finding(layer):
        [found] = [f for f in check_config.check_sandbox(sandbox.AUTO)
                   if f.message.startswith(layer + ' ')]
        return found

    for layer in (sandbox.ONE_PROCESS, sandbox.MINIMAL_ENV):
        assert finding(layer).severity == config_check.OK
    assert 'outlive' in finding(sandbox.ONE_PROCESS).message
    assert 'environment' in finding(sandbox.MINIMAL_ENV).message
    assert 'other processes' in finding(sandbox.SECCOMP).message
    proc = subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd', 'inspect', scene.src,
         '--disk-format', 'qcow2', '--json', '--config-dir', scene.config],
        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    confinement = json.loads(proc.stdout)['confinement']
    assert {sandbox.ONE_PROCESS, sandbox.MINIMAL_ENV} <= set(confinement)
    _without(simulate, sandbox.SECCOMP)
    missing = finding(sandbox.ONE_PROCESS)
    assert missing.severity == config_check.WARNING
    assert 'not available' in missing.message and 'seccomp' in missing.fix


@pytest.mark.parametrize('layer', [sandbox.LANDLOCK_FS, sandbox.SECCOMP])
def test_required_without_a_layer_refuses(scene, monkeypatch, mode, simulate,
                                          caplog, layer):
    _without(simulate, layer)
    mode(sandbox.REQUIRED)
    ran = []
    monkeypatch.setattr(qemu_img.subprocess, 'Popen',
                        lambda *a, **kw: ran.append(a))
    before = sorted(os.listdir(scene.staging))
    with caplog.at_level(logging.ERROR):
        with pytest.raises(sandbox.ConfinementUnavailable) as exc_info:
            _convert_in_process(scene, monkeypatch)
    exc = exc_info.value
    assert isinstance(exc, errors.ConversionError)
    # One sentence for the user; the reason in the log and the detail.
    assert str(exc).count('.') == 1 and '/' not in str(exc)
    assert layer in exc.detail and 'simulated' in exc.detail
    assert any(layer in r.getMessage() for r in caplog.records)
    assert ran == []                      # no qemu-img started
    assert sorted(os.listdir(scene.staging)) == before
    assert scene.effects() == []


@pytest.mark.parametrize('how', [FAST, 'no-setpriv'])
def test_failure_in_the_child_refuses(scene, monkeypatch, mode, simulate,
                                      how):
    """A layer the probe saw but the child (or the launcher thread)
    cannot apply: no qemu-img."""
    _force_start(simulate, how)
    mode(sandbox.AUTO)
    real = sandbox.prepare

    def not_a_ruleset(*args, **kwargs):
        # A Landlock domain the probe allows but the kernel refuses to
        # enforce: landlock_restrict_self fails on this descriptor.
        confinement = real(*args, **kwargs)
        os.close(confinement.ruleset_fd)
        confinement.ruleset_fd = os.open(os.devnull,
                                         os.O_RDONLY | os.O_CLOEXEC)
        return confinement
    monkeypatch.setattr(sandbox, 'prepare', not_a_ruleset)
    before = sorted(os.listdir(scene.staging))
    with pytest.raises(sandbox.ConfinementUnavailable) as exc_info:
        _convert_in_process(scene, monkeypatch)
    assert 'landlock_restrict_self' in exc_info.value.detail
    assert sorted(os.listdir(scene.staging)) == before
    assert scene.effects() == []


# --- the hostile corpus with every policy check switched off -----------------

CORPUS_RUNNER = r'''
import json, os, sys
from glance_convert.pipeline import conversion, inspection, sandbox
from tests.hostile_corpus import pipeline_settings
# Test only: no byte check, no judgement of qemu-img info or check, no
# output check.  Only the confinement stands between qemu-img and the host.
inspection.inspect_bytes = lambda path, claimed, policy: (
    inspection.SourceFacts(claimed, claimed, 0, os.path.getsize(path)))
inspection.check_info = lambda *a, **kw: None
inspection.check_consistency = lambda *a, **kw: None
inspection.verify_output = lambda *a, **kw: None
mode, work_dir, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sandbox.configure(mode)
for i, (path, claimed) in enumerate(cases):
    target = 'qcow2' if claimed == 'raw' else 'raw'
    try:
        conversion.convert_image(path, claimed, image_id='case%d' % i,
                                 work_dir=work_dir,
                                 settings=pipeline_settings(target))
        print('CONVERTED', path)
    except Exception as exc:
        print('FAILED', path, type(exc).__name__)
'''


def _strace_works():
    try:
        subprocess.run(['strace', '-f', '-o', os.devnull, 'true'],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def qemu_img_opens(trace):
    """Files that qemu-img processes (and their threads) opened.

    ``trace``: ``strace -f -z`` output (successful calls only).  A pid is
    qemu-img's once it has executed qemu-img; its clones inherit that.
    """
    qemu, opened = set(), set()
    for line in trace.splitlines():
        # strace pads the pid to five columns: "123   execve(...".
        pid, _, call = line.partition(' ')
        call = call.lstrip()
        name = call.split('(', 1)[0]
        if name == 'execve':
            if '/qemu-img"' in call.split(',', 1)[0]:
                qemu.add(pid)
            else:
                qemu.discard(pid)
        elif pid in qemu and name in ('clone', 'clone3', 'fork', 'vfork'):
            qemu.add(call.rsplit('=', 1)[1].strip().split()[0])
        elif pid in qemu and 'open' in name and '"' in call:
            opened.add(call.split('"')[1])
    return opened


SYSTEM = ('/usr/', '/lib', '/etc/ld.so.cache', '/dev/null', '/dev/urandom')


def _corpus_run(tmp_path, mode_name):
    from tests.functional.pipeline import test_hostile
    cases = [c for c in test_hostile.CASES
             if c.reason_substring != hostile_corpus.VSIZE]
    work = tmp_path / ('work-' + mode_name)
    work.mkdir()
    log = str(tmp_path / ('strace-%s.log' % mode_name))
    proc = subprocess.run(
        ['strace', '-f', '-z', '-qq', '-s', '4096', '-e',
         'trace=open,openat,openat2,creat,execve,clone,clone3,fork,vfork',
         '-o', log, sys.executable, '-c', CORPUS_RUNNER, mode_name,
         str(work), json.dumps([(c.path, c.claimed_format) for c in cases])],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(log) as f:
        opened = qemu_img_opens(f.read())
    outputs = sorted(str(p) for p in work.iterdir())
    leaked = set()
    for path in outputs:
        with open(path, 'rb') as f:
            data = f.read()
        leaked |= {c.name for c in test_hostile.CANARIED
                   if hostile_corpus.canary_bytes(c.canary_path) in data}
    uploads = {c.path for c in cases}
    host_files = {p for p in opened
                  if not p.startswith(SYSTEM) and p not in uploads
                  and not p.startswith(str(work))}
    return proc.stdout, opened, host_files, leaked


@pytest.mark.skipif(not _strace_works(), reason='strace missing or ptrace '
                    'not permitted')
@pytest.mark.parametrize('mode_name', [sandbox.AUTO, sandbox.OFF])
def test_corpus_without_checks(tmp_path, qemu_tools, mode_name):
    """Confined, qemu-img fed the whole corpus unchecked opens no host
    file and no canary byte reaches an output; off (the control), it
    opens the canaries and copies their bytes."""
    stdout, opened, host_files, leaked = _corpus_run(tmp_path, mode_name)
    assert stdout.count('CONVERTED') >= 10, stdout   # qemu-img did work
    assert '/etc/ld.so.cache' in opened, opened   # the trace works
    if mode_name == sandbox.AUTO:
        assert host_files == set(), host_files
        assert leaked == set()
    else:
        from tests.functional.pipeline import test_hostile
        canaries = {c.canary_path for c in test_hostile.CANARIED}
        assert host_files & canaries, host_files
        assert leaked
