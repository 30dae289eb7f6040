"""A typed, thin wrapper around the ``qemu-img`` command.

Every call forces the source format, runs under resource limits and a
wall-clock watchdog, can be cancelled, and is confined
(:mod:`~glance_convert.pipeline.sandbox`) to the files its caller names.
Where it can, nothing runs in the child before exec (``setpriv`` and
``prlimit`` set the limits, a launcher thread carries the confinement),
so Python starts qemu-img with ``vfork`` rather than forking all of
glance-api; elsewhere a ``preexec_fn`` does the same, slower (the
confinement page of the security documentation says when).  Every
command goes through :func:`run`, and :func:`using` is how a test
watches or alters those runs.  Format arguments are qemu-img's driver
names (``vpc``, not Glance's ``vhd``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from typing import Callable, Iterator, Mapping, Sequence

from oslo_log import log as logging

from glance_convert.pipeline import sandbox

LOG = logging.getLogger(__name__)

QEMU_IMG = 'qemu-img'


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one qemu-img run (``None``: not limited)."""

    address_space: int | None = None   # bytes
    cpu_time: int | None = None        # seconds
    file_size: int | None = None       # bytes, largest file it may write
    timeout: float | None = None       # wall-clock seconds, then SIGKILL

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, value) pairs to set in the child."""
        pairs = [(resource.RLIMIT_AS, self.address_space),
                 (resource.RLIMIT_CPU, self.cpu_time),
                 (resource.RLIMIT_FSIZE, self.file_size)]
        return [(res, int(value)) for res, value in pairs if value]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Performance switches of ``qemu-img convert``."""

    coroutines: int | None = None        # -m
    out_of_order: bool = False           # -W
    source_cache: str | None = None      # -T
    target_cache: str | None = None      # -t


class QemuImgError(Exception):
    """qemu-img failed; ``stderr`` holds its own explanation."""

    def __init__(self, cmd: str, exit_code: int | None, stderr: str):
        self.cmd = cmd
        self.exit_code = exit_code
        self.stderr = (stderr or '').strip()
        super().__init__('%s exited with %s: %s'
                         % (cmd, exit_code, self.stderr))


class QemuImgTimeout(QemuImgError):
    """qemu-img ran longer than its wall-clock limit and was killed."""


class QemuImgCancelled(QemuImgError):
    """The caller cancelled the run and qemu-img was killed."""


class QemuImgLimitExceeded(QemuImgError):
    """qemu-img hit a resource limit (file size, CPU time)."""


@dataclasses.dataclass(frozen=True)
class Result:
    """What one qemu-img run gave back."""

    exit_code: int
    stdout: str
    stderr: str
    started_by: str    # THREAD, DIRECT or FORK: how it was started


_ENV = {'LC_ALL': 'C', 'MALLOC_ARENA_MAX': '2'}
_PR_SET_PDEATHSIG = 1


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _child_setup(rlimits: list[tuple[int, int]],
                 confinement: sandbox.Confinement | None = None
                 ) -> Callable[[], None]:
    """What the child does between fork and exec.

    It applies the resource limits, asks for SIGKILL when the thread that
    started it dies (a glance-api killed mid-conversion takes its qemu-img
    with it instead of leaving it writing into a work file), then confines
    itself: no_new_privs, the Landlock ruleset and the seccomp filter.
    It is kept minimal (limits, ruleset and filter are prepared before the
    fork), as a child of a threaded process should do as little as it can
    before exec.
    """
    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))
        if confinement is not None:
            confinement.child_setup()
    return setup


def _wait(proc: subprocess.Popen, timeout: float | None,
          should_cancel: Callable[[], bool] | None,
          on_tick: Callable[[int], None] | None,
          interval: float) -> tuple[bytes, bytes, str | None]:
    """Read qemu-img's output until it exits, killing it on a timeout or
    cancellation and reporting progress in between.

    ``communicate`` in short steps, in the caller's thread: a watchdog
    thread per run cost a thread start on every one of the three runs of
    an import.  Returns (stdout, stderr, why it was killed or None).
    """
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    step = min(interval, 0.5)   # cancellation is checked this often
    next_tick = start + interval
    reason = None
    while True:
        wait = step
        if deadline is not None and reason is None:
            wait = max(0.0, min(step, deadline - time.monotonic()))
        try:
            out, err = proc.communicate(timeout=wait)
            return out, err, reason
        except subprocess.TimeoutExpired:
            pass
        if reason is not None:
            continue   # killed: wait for it to go
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            reason = 'timeout'
        elif should_cancel is not None and _asks(should_cancel):
            reason = 'cancelled'
        if reason is not None:
            LOG.warning('Killing qemu-img (pid %s): %s', proc.pid, reason)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        elif on_tick is not None and now >= next_tick:
            next_tick = now + interval
            try:
                on_tick(proc.pid)
            except Exception:  # noqa: BLE001 - progress never kills a run
                LOG.exception('Progress callback failed')


def _asks(should_cancel: Callable[[], bool]) -> bool:
    try:
        return bool(should_cancel())
    except Exception:  # noqa: BLE001 - a failing check is not a "yes"
        LOG.exception('Cancellation check failed')
        return False


#: How qemu-img was started (see the module's docstring).
THREAD, DIRECT, FORK = 'launcher-thread', 'direct', 'fork'
_RLIMIT_FLAGS = {resource.RLIMIT_AS: '--as', resource.RLIMIT_CPU: '--cpu',
                 resource.RLIMIT_FSIZE: '--fsize'}
_TOOLS_LOCK = threading.Lock()
_TOOLS: list | None = None   # [(setpriv, prlimit) or None], once tried


def launcher_tools() -> tuple[str, str] | None:
    """(setpriv, prlimit) when both work here, else None; tried once.

    Tried for real: ``setpriv --pdeathsig`` needs util-linux 2.33.
    """
    global _TOOLS
    with _TOOLS_LOCK:
        if _TOOLS is None:
            tools = (shutil.which('setpriv'), shutil.which('prlimit'))
            ok = all(tools)
            if ok:
                tools = tuple(os.path.realpath(t) for t in tools)
                try:
                    subprocess.run(
                        [tools[0], '--pdeathsig', 'KILL', '--', tools[1],
                         '--cpu=60', '--', tools[1], '--version'],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=60, check=True)
                except (OSError, subprocess.SubprocessError):
                    ok = False
            if not ok:
                LOG.info('util-linux setpriv (2.33 or later, for '
                         '--pdeathsig) and prlimit are not usable here: '
                         'each qemu-img start forks the whole process, '
                         'which costs more as it grows')
            _TOOLS = [tools if ok else None]
        return _TOOLS[0]


def start_path(confinement: sandbox.Confinement, fork: bool = False) -> str:
    """How a qemu-img run confined so will be started here.

    ``fork``: the forked child even where a launcher thread would do.
    """
    if fork or launcher_tools() is None:
        return FORK
    if not confinement.nnp:
        return DIRECT
    return THREAD if confinement.thread_safe else FORK


class _Launch:
    """A launcher thread: confines itself, starts qemu-img, outlives it."""

    def __init__(self, argv, env, confinement):
        self.argv, self.env, self.confinement = argv, env, confinement
        self.caller_tid = sandbox.gettid()
        self.proc: subprocess.Popen | None = None
        self.error: BaseException | None = None
        self.gate: sandbox.ProcessGate | None = None
        self.restricted = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name='qemu-img-launcher')

    def start(self) -> subprocess.Popen:
        """Start it; qemu-img's Popen, or the launcher's error raised."""
        # Opened here: the restricted thread opens nothing.
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.stdin = stdin
            self.thread.start()
            try:
                # The launcher's start of qemu-img waits for this thread
                # to let it through; then no process may start any more.
                self.restricted.wait()
                if self.gate is not None:
                    self.gate.admit_one(self.ready.is_set)
                self.ready.wait()
            except BaseException:
                if self.gate is not None:
                    self.gate.close()   # a waiting start fails: ENOSYS
                self.ready.wait()
                if self.proc is not None:
                    _kill_and_reap(self.proc)
                raise
        finally:
            os.close(stdin)
        if self.error is not None:
            raise self.error
        return self.proc

    def _main(self) -> None:
        try:
            self.gate = self.confinement.restrict_thread(self.caller_tid)
            self.restricted.set()
            self.proc = subprocess.Popen(
                self.argv, stdin=self.stdin, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self.env, close_fds=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
            return
        finally:
            self.restricted.set()
            self.ready.set()
        # Wait for the exit without reaping: the caller's communicate()
        # reaps.  This thread ending is what fires the death signal.
        try:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass


def _kill_and_reap(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()


def _start(cmd: list[str], limits: Limits, env: dict,
           confinement: sandbox.Confinement, fork: bool
           ) -> tuple[subprocess.Popen, str, threading.Thread | None]:
    """Start qemu-img (``cmd[0]`` its full path).

    Returns its Popen, how it was started and the launcher thread (to
    join once qemu-img has exited), if any.
    """
    rlimits = limits.rlimits()
    path = start_path(confinement, fork)
    common = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                  close_fds=True)
    if path != FORK:
        setpriv, prlimit = launcher_tools()
        argv = [setpriv, '--pdeathsig', 'KILL', '--']
        if rlimits:
            argv += [prlimit] + ['%s=%d' % (_RLIMIT_FLAGS[res], value)
                                 for res, value in rlimits] + ['--']
        argv += cmd
        if path == DIRECT:
            return (subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     **common), path, None)
        launch = _Launch(argv, env, confinement)
        try:
            return launch.start(), path, launch.thread
        except sandbox.NotAThread:
            path = FORK   # green threads: one kernel thread for all
    return (subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL,
        preexec_fn=_child_setup(rlimits, confinement), **common), path, None)


def _not_confined(detail: str) -> sandbox.ConfinementUnavailable:
    LOG.error('%s', detail)
    return sandbox.ConfinementUnavailable(
        'Image conversion is not available on this cloud right now; '
        'please contact the cloud operator.', detail)


def run(args: Sequence[str], limits: Limits, *,
        check_exit_code: Sequence[int] = (0,),
        should_cancel: Callable[[], bool] | None = None,
        on_tick: Callable[[int], None] | None = None,
        tick_interval: float = 5.0,
        on_start: Callable[[int], None] | None = None,
        reads: Sequence[str] = (), writes: Sequence[str] = (),
        fork: bool = False) -> Result:
    """Run ``qemu-img ARGS`` under ``limits``, confined; its :class:`Result`.

    ``reads`` and ``writes`` are the only files it may read and write
    (besides what it needs to run); a missing ``writes`` file is created
    empty first.  An exit code outside ``check_exit_code`` raises
    :class:`QemuImgError` (or a subclass: time-out, cancelled, limit).
    Raises :class:`sandbox.ConfinementUnavailable` when it cannot be
    confined as the ``sandbox`` option asks.  Never through a shell; the
    environment is ``LC_ALL=C`` and a system PATH
    (:func:`sandbox.environment`).  ``should_cancel`` is asked, and
    ``on_tick(pid)`` called, between waits; ``on_start(pid)`` once it
    runs.  ``fork``: start it in a forked child even where a launcher
    thread could (the slower path that some hosts take).
    """
    return _RUNNERS[-1](
        args, limits, check_exit_code=check_exit_code,
        should_cancel=should_cancel, on_tick=on_tick,
        tick_interval=tick_interval, on_start=on_start, reads=reads,
        writes=writes, fork=fork)


#: What runs qemu-img: :func:`run`'s signature, returns a :class:`Result`.
Runner = Callable[..., Result]


@contextlib.contextmanager
def using(wrap: Callable[[Runner], Runner]) -> Iterator[None]:
    """Within the block, every :func:`run` goes through ``wrap(runner)``.

    ``runner`` is the one in place (the real one, or another test's); the
    wrapper may record the arguments or the :class:`Result`, change the
    keyword arguments (``fork=True``), act before or after it, or not call
    it at all.  Wrappers nest, and hold in every thread.

    Why: tests watch and alter qemu-img runs (the commands an import
    runs, what a hostile stand-in reports, a source changed just before
    the convert, the start path) through this one seam, instead of
    patching how this module starts and waits for qemu-img, which can
    then change without them.
    """
    runner = wrap(_RUNNERS[-1])
    _RUNNERS.append(runner)
    try:
        yield
    finally:
        _RUNNERS.remove(runner)


def _real_run(args: Sequence[str], limits: Limits, *,
              check_exit_code: Sequence[int], should_cancel, on_tick,
              tick_interval: float, on_start, reads: Sequence[str],
              writes: Sequence[str], fork: bool) -> Result:
    """The real runner (see :func:`run`)."""
    cmd = (QEMU_IMG,) + tuple(args)
    printable = ' '.join(cmd)
    # Found on glance-api's PATH, started by its full path with nothing
    # of glance-api's environment when confined.
    executable = sandbox.resolve(QEMU_IMG, os.environ)
    env = sandbox.environment(_ENV)
    if executable is None:
        raise QemuImgError(printable, None,
                           '%s not found on PATH' % QEMU_IMG)
    confinement = sandbox.prepare(reads, writes, executable,
                                  helpers=launcher_tools() or ())
    try:
        try:
            proc, path, launcher = _start([executable] + list(args), limits,
                                          env, confinement, fork)
        except sandbox.ThreadNotConfined as exc:
            raise _not_confined(str(exc))
        except OSError as exc:
            raise QemuImgError(printable, None, str(exc))
    finally:
        confinement.close()  # the child holds its domain
    LOG.debug('Running %s (pid %s, started by %s)', printable, proc.pid,
              path)
    try:
        if on_start is not None:
            on_start(proc.pid)
        out, err, killed = _wait(proc, limits.timeout, should_cancel,
                                 on_tick, tick_interval)
    except BaseException:
        # Interrupted here, not by qemu-img: it must not outlive us.
        _kill_and_reap(proc)
        raise
    finally:
        if launcher is not None:
            launcher.join()   # no restricted thread outlives the run
    code = proc.returncode
    stdout = out.decode('utf-8', 'replace')
    stderr = err.decode('utf-8', 'replace')
    if code in check_exit_code and killed is None:
        return Result(code, stdout, stderr, path)
    LOG.debug('%s exited with %s: %s', printable, code, stderr.strip())
    if (code == sandbox.EXIT_NOT_CONFINED
            and stderr.startswith(sandbox.FAILED_PREFIX)):
        raise _not_confined(stderr.strip())
    if killed == 'timeout':
        raise QemuImgTimeout(printable, code,
                             'killed after %ss' % limits.timeout)
    if killed == 'cancelled':
        raise QemuImgCancelled(printable, code, 'cancelled')
    # qemu-img ignores SIGXFSZ and reports EFBIG instead.
    if (code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ)
            or 'File too large' in stderr):
        raise QemuImgLimitExceeded(printable, code,
                                   'output file size limit exceeded')
    # RLIMIT_CPU ends in SIGKILL; without a CPU limit a SIGKILL came
    # from outside (the OOM killer, an operator): a plain failure.
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU) or (
            code == -signal.SIGKILL and limits.cpu_time):
        raise QemuImgLimitExceeded(printable, code,
                                   'CPU time limit exceeded')
    raise QemuImgError(printable, code, stderr or stdout)


#: The runners in place: the real one, then those of :func:`using`.
_RUNNERS: list[Runner] = [_real_run]


def _options_arg(options: Mapping[str, object]) -> list[str]:
    if not options:
        return []
    parts = []
    for key, value in options.items():
        if isinstance(value, bool):
            value = 'on' if value else 'off'
        parts.append('%s=%s' % (key, value))
    return ['-o', ','.join(parts)]


def info(path: str, fmt: str, limits: Limits) -> dict:
    """``qemu-img info -f FMT --output=json``; the parsed JSON."""
    out = run(['info', '-f', fmt, '--output=json', path], limits,
              reads=[path]).stdout
    try:
        return json.loads(out)
    except ValueError as exc:
        raise QemuImgError('qemu-img info', 0,
                           'unparseable output: %s' % exc)


def measure(path: str, fmt: str, out_fmt: str,
            out_options: Mapping[str, object], limits: Limits) -> int | None:
    """Bytes an ``out_fmt`` copy of the image needs at most.

    ``None`` where qemu-img cannot measure the target format (vmdk, vdi,
    vpc in qemu 7.2).
    """
    args = ['measure', '--output=json', '-f', fmt, '-O', out_fmt]
    args += _options_arg(out_options) + [path]
    try:
        out = run(args, limits, reads=[path]).stdout
    except QemuImgError as exc:
        if 'does not support size measurement' in exc.stderr:
            return None
        raise
    return int(json.loads(out)['required'])


def no_backing_spec(path: str, fmt: str) -> str:
    """A ``json:`` image name: format ``fmt`` forced, and no backing file.

    ``"backing": null`` tells qemu not to open a backing file at all (what
    ``qemu-img info`` does by itself); the same as ``-f`` otherwise.
    """
    return 'json:' + json.dumps({
        'driver': fmt, 'file': {'driver': 'file', 'filename': path},
        'backing': None})


def check(path: str, fmt: str, limits: Limits, *,
          should_cancel: Callable[[], bool] | None = None) -> dict:
    """``qemu-img check --output=json``, never opening a backing file.

    Returns the report, with ``exit-code`` added: 0 clean, 2 corruptions,
    3 leaked clusters only (harmless).  Formats without a check return
    ``{'exit-code': 0, 'unsupported': True}``; exit code 1 (the check
    itself could not run) raises :class:`QemuImgError`.  Because no
    backing file is opened, the check may run before ``qemu-img info`` has
    been judged: it opens nothing that ``info`` would not open too.
    """
    try:
        result = run(['check', '--output=json', no_backing_spec(path, fmt)],
                     limits, check_exit_code=(0, 2, 3),
                     should_cancel=should_cancel, reads=[path])
    except QemuImgError as exc:
        if exc.exit_code == 63 or 'does not support checks' in exc.stderr:
            return {'exit-code': 0, 'unsupported': True}
        raise
    out = result.stdout
    try:
        report = json.loads(out) if out.strip() else {}
    except ValueError:
        report = {'raw-output': out}
    report['exit-code'] = result.exit_code
    return report


def compare(a: str, a_fmt: str, b: str, b_fmt: str,
            limits: Limits = Limits()) -> bool:
    """True when both images hold the same guest data (``qemu-img compare``).

    Trailing zeros past the end of the shorter image count as equal, as
    qemu-img's non-strict mode says.
    """
    return run(['compare', '-f', a_fmt, '-F', b_fmt, a, b], limits,
               check_exit_code=(0, 1), reads=[a, b]).exit_code == 0


def tuning_args(tuning: Tuning, compressed: bool = False) -> list[str]:
    """``-m``, ``-W`` (never with compressed output), ``-T`` and ``-t``."""
    args = []
    if tuning.coroutines:
        args += ['-m', str(tuning.coroutines)]
    if tuning.out_of_order and not compressed:
        args.append('-W')
    if tuning.source_cache:
        args += ['-T', tuning.source_cache]
    if tuning.target_cache:
        args += ['-t', tuning.target_cache]
    return args


def convert_args(src: str, src_fmt: str, dst: str, dst_fmt: str, *,
                 out_options: Mapping[str, object], tuning: Tuning,
                 compressed: bool = False,
                 existing_target: bool = False) -> list[str]:
    """The argument list of ``qemu-img convert`` (without ``qemu-img``).

    ``existing_target``: ``dst`` was just made by :func:`create` (so it
    reads as zeros); convert into it (``-n --target-is-zero``, no ``-o``).
    """
    args = ['convert', '-f', src_fmt, '-O', dst_fmt]
    if existing_target:
        args += ['-n', '--target-is-zero']
    if compressed:
        args.append('-c')
    args += tuning_args(tuning, compressed)
    if not existing_target:
        args += _options_arg(out_options)
    args += [src, dst]
    return args


def create(path: str, fmt: str, size: int,
           options: Mapping[str, object], limits: Limits) -> None:
    """``qemu-img create -f FMT -o OPTIONS PATH SIZE``: a new, empty image."""
    run(['create', '-q', '-f', fmt] + _options_arg(options)
        + [path, str(size)], limits, writes=[path])


def convert(src: str, src_fmt: str, dst: str, dst_fmt: str, *,
            out_options: Mapping[str, object] | None = None,
            tuning: Tuning = Tuning(), compressed: bool = False,
            limits: Limits = Limits(),
            on_progress: Callable[[int], None] | None = None,
            progress_interval: float = 5.0,
            should_cancel: Callable[[], bool] | None = None,
            on_start: Callable[[int], None] | None = None,
            existing_target: bool = False) -> None:
    """``qemu-img convert`` the image ``src`` into a new file ``dst``.

    ``on_progress`` is called every ``progress_interval`` seconds with the
    number of bytes qemu-img has read so far (from ``/proc/PID/io``);
    ``on_start`` with qemu-img's pid as soon as it runs.
    """
    args = convert_args(src, src_fmt, dst, dst_fmt,
                        out_options=out_options or {}, tuning=tuning,
                        compressed=compressed,
                        existing_target=existing_target)

    def tick(pid: int) -> None:
        read = bytes_read(pid)
        if read is not None and on_progress is not None:
            on_progress(read)

    run(args, limits, should_cancel=should_cancel,
        on_tick=tick if on_progress else None,
        tick_interval=progress_interval, on_start=on_start,
        reads=[src], writes=[dst])


def bytes_read(pid: int) -> int | None:
    """Bytes process ``pid`` has read, or None if that is unknown."""
    try:
        with open('/proc/%d/io' % pid) as f:
            for line in f:
                if line.startswith('rchar:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def version() -> str:
    """qemu-img's version string, e.g. ``7.2.22``."""
    out = run(['--version'], Limits(timeout=30)).stdout
    first = out.splitlines()[0] if out else ''
    parts = first.split()
    return parts[2] if len(parts) > 2 else first


def read_range(path: str, fmt: str, offset: int, length: int,
               limits: Limits, scratch_dir: str, *,
               scratch: str | None = None) -> bytes:
    """``length`` guest bytes at ``offset`` of an image, through
    ``qemu-img dd`` (fewer at the end of the disk).

    ``offset`` and ``length`` must be multiples of ``length``'s block
    (the caller reads aligned chunks).  qemu-img 7.2 counts ``count``
    from the start of the image, not from ``skip``, so ``count`` is
    ``skip`` plus the blocks wanted; the output file size limit is
    ``length``, so a qemu-img that counts otherwise fails at once
    instead of copying the rest of the disk.  No backing file is opened.
    ``scratch`` names the file qemu-img writes (an import's work file, so
    the reaper knows it after a crash); by default one in ``scratch_dir``.
    """
    if length <= 0 or offset % length:
        raise ValueError('offset must be a multiple of length')
    skip = offset // length
    scratch = scratch or os.path.join(
        scratch_dir, 'guest-read-%d-%d.raw' % (os.getpid(),
                                               threading.get_ident()))
    try:
        run(['dd', '-O', 'raw', 'bs=%d' % length, 'skip=%d' % skip,
             'count=%d' % (skip + 1), 'if=' + no_backing_spec(path, fmt),
             'of=' + scratch],
            dataclasses.replace(limits, file_size=length),
            reads=[path], writes=[scratch])
        with open(scratch, 'rb') as f:
            return f.read(length + 1)[:length]
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
