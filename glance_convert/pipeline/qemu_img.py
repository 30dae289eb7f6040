"""A typed, thin wrapper around the ``qemu-img`` command.

Every call goes through :func:`oslo_concurrency.processutils.execute` with
the source format forced (``-f``), resource limits and a watchdog thread
that kills qemu-img on a wall-clock timeout or when the caller cancels:
processutils' own timeout stops waiting but leaves the child running.

The limits (address space, CPU time, output file size) are the ones
``processutils.ProcessLimits`` offers, but they are set with ``setrlimit``
in the child between fork and exec instead of through ``python -m
oslo_concurrency.prlimit``: the kernel enforces the same limits, and a
conversion no longer pays for starting a Python interpreter five times
(30 ms idle, up to 170 ms on a loaded host, per qemu-img call).  It also
removes the dependency on ``[wsgi] python_interpreter``.

Every run is confined (:mod:`glance_convert.pipeline.sandbox`): each
caller names the files qemu-img may read (``reads``) and write
(``writes``), and the child applies Landlock and seccomp after the limits.

Format arguments are qemu-img driver names (``vpc``, not Glance's ``vhd``);
see :mod:`glance_convert.formats`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import resource
import signal
import threading
import time
from typing import Callable, Mapping, Sequence

from oslo_concurrency import processutils
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


class _Watchdog:
    """Kills the child on timeout or cancellation; reports progress."""

    def __init__(self, timeout: float | None,
                 should_cancel: Callable[[], bool] | None,
                 on_tick: Callable[[int], None] | None,
                 interval: float,
                 on_start: Callable[[int], None] | None = None):
        self.on_start = on_start
        self.timeout = timeout
        self.should_cancel = should_cancel
        self.on_tick = on_tick
        self.interval = interval
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, proc) -> None:
        if self.on_start is not None:
            self.on_start(proc.pid)
        self._thread = threading.Thread(target=self._run, args=(proc,),
                                        name='qemu-img-watchdog',
                                        daemon=True)
        self._thread.start()

    def stop(self, _proc=None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, proc) -> None:
        deadline = (time.monotonic() + self.timeout) if self.timeout else None
        # Cancellation is checked often, progress at the caller's interval.
        step = min(self.interval, 0.5)
        next_tick = time.monotonic() + self.interval
        while not self._done.wait(step):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self._kill(proc, 'timeout')
                return
            if self.should_cancel is not None:
                try:
                    cancel = self.should_cancel()
                except Exception:  # noqa: BLE001 - never kill the watchdog
                    LOG.exception('Cancellation check failed')
                    cancel = False
                if cancel:
                    self._kill(proc, 'cancelled')
                    return
            if self.on_tick is not None and now >= next_tick:
                next_tick = now + self.interval
                try:
                    self.on_tick(proc.pid)
                except Exception:  # noqa: BLE001
                    LOG.exception('Progress callback failed')

    def _kill(self, proc, reason: str) -> None:
        self.reason = reason
        LOG.warning('Killing qemu-img (pid %s): %s', proc.pid, reason)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _run(args: Sequence[str], limits: Limits, *,
         check_exit_code: Sequence[int] = (0,),
         should_cancel: Callable[[], bool] | None = None,
         on_tick: Callable[[int], None] | None = None,
         tick_interval: float = 5.0,
         on_start: Callable[[int], None] | None = None,
         reads: Sequence[str] = (), writes: Sequence[str] = ()
         ) -> tuple[int, str, str]:
    """Run qemu-img; return (exit code, stdout, stderr).

    ``reads`` and ``writes`` are the only files it may read and write
    (besides what it needs to run); a missing ``writes`` file is created
    empty first.  Raises :class:`sandbox.ConfinementUnavailable` when it
    cannot be confined as the ``sandbox`` option asks.
    """
    cmd = (QEMU_IMG,) + tuple(args)
    watchdog = _Watchdog(limits.timeout, should_cancel, on_tick,
                         tick_interval, on_start)
    env = dict(os.environ)
    env.update(_ENV)
    printable = ' '.join(cmd)
    confinement = sandbox.prepare(reads, writes,
                                  sandbox.resolve(QEMU_IMG, env))

    exit_codes: list[int] = []

    def started(proc) -> None:
        confinement.close()  # the child has its own copy of the ruleset
        watchdog.start(proc)

    def completed(proc) -> None:
        # processutils returns no exit code: the accepted non-zero ones
        # (compare's 1, check's 2 and 3) must not read as 0.
        exit_codes.append(proc.returncode)
        watchdog.stop(proc)

    try:
        stdout, stderr = processutils.execute(
            *cmd, env_variables=env, check_exit_code=list(check_exit_code),
            on_execute=started, on_completion=completed,
            preexec_fn=_child_setup(limits.rlimits(), confinement),
            log_errors=processutils.LOG_FINAL_ERROR)
        return (exit_codes[-1] if exit_codes else 0), stdout, stderr
    except processutils.ProcessExecutionError as exc:
        code = exc.exit_code
        if (code == sandbox.EXIT_NOT_CONFINED
                and (exc.stderr or '').startswith(sandbox.FAILED_PREFIX)):
            LOG.error('%s', exc.stderr.strip())
            raise sandbox.ConfinementUnavailable(
                'Image conversion is not available on this cloud right '
                'now; please contact the cloud operator.',
                exc.stderr.strip())
        if watchdog.reason == 'timeout':
            raise QemuImgTimeout(printable, code,
                                 'killed after %ss' % limits.timeout)
        if watchdog.reason == 'cancelled':
            raise QemuImgCancelled(printable, code, 'cancelled')
        stderr = exc.stderr or ''
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
        if code in check_exit_code:  # pragma: no cover - defensive
            return code, exc.stdout, exc.stderr
        raise QemuImgError(printable, code, exc.stderr or exc.stdout)
    except OSError as exc:
        raise QemuImgError(printable, None, str(exc))
    finally:
        confinement.close()


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
    _code, out, _err = _run(['info', '-f', fmt, '--output=json', path],
                            limits, reads=[path])
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
        _code, out, _err = _run(args, limits, reads=[path])
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
        code, out, err = _run(['check', '--output=json',
                               no_backing_spec(path, fmt)],
                              limits, check_exit_code=(0, 2, 3),
                              should_cancel=should_cancel, reads=[path])
    except QemuImgError as exc:
        if exc.exit_code == 63 or 'does not support checks' in exc.stderr:
            return {'exit-code': 0, 'unsupported': True}
        raise
    try:
        report = json.loads(out) if out.strip() else {}
    except ValueError:
        report = {'raw-output': out}
    report['exit-code'] = code
    return report


def compare(a: str, a_fmt: str, b: str, b_fmt: str,
            limits: Limits = Limits()) -> bool:
    """True when both images hold the same guest data (``qemu-img compare``).

    Trailing zeros past the end of the shorter image count as equal, as
    qemu-img's non-strict mode says.
    """
    code, _out, _err = _run(['compare', '-f', a_fmt, '-F', b_fmt, a, b],
                            limits, check_exit_code=(0, 1), reads=[a, b])
    return code == 0


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
    _run(['create', '-q', '-f', fmt] + _options_arg(options)
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

    _run(args, limits, should_cancel=should_cancel,
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
    _code, out, _err = _run(['--version'], Limits(timeout=30))
    first = out.splitlines()[0] if out else ''
    parts = first.split()
    return parts[2] if len(parts) > 2 else first
