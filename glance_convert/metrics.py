"""Prometheus metrics of the imports, from every glance-api process.

Every metric is defined in :data:`METRICS`, its one home: the recording
below, ``glance-convert metrics`` and the documentation's metric
reference all read it.  Each glance-api worker is its own process and
the WSGI server respawns them, so the values live in
``prometheus_client``'s multi-process files in ``[glance_convert]
metrics_dir``: counters and histograms of a dead worker stay and keep
counting in the sums; gauges of a dead worker are dropped when the files
are collected (:func:`collector`).

Recording never blocks or fails an import: with ``metrics_dir`` unset
every call returns at once; a directory that cannot be written, a full
disk or any error of the library turns metrics off in this process with
one error in the log.  The files are allocated in full when they are
created (``posix_fallocate``), because a write into an ``mmap`` of a file
whose blocks cannot be allocated kills the process with ``SIGBUS``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import threading

from oslo_log import log as logging

from glance_convert.host import procs
from glance_convert.pipeline import phases

LOG = logging.getLogger(__name__)

PREFIX = 'glance_convert_'

#: Import results (the ``result`` label of ``imports_total``).
CONVERTED = 'converted'
PASSED_THROUGH = 'passed_through'
REFUSED = 'refused'
FAILED = 'failed'
CANCELLED = 'cancelled'
RESULTS = (CONVERTED, PASSED_THROUGH, REFUSED, FAILED, CANCELLED)

#: The ``phase`` label of ``conversion_seconds``: the import's phases
#: (:mod:`~glance_convert.pipeline.phases`), its waits, and the whole task.
PHASES = dict(
    [(phases.label(name), text) for name, text in
     list(phases.DESCRIPTIONS.items()) + list(phases.WAITS.items())]
    + [('total', 'the whole conversion task, start to end')])

#: Seconds: from a small image's inspection to a large conversion.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
           600, 1800, 3600)

#: Bytes each multi-process file gets, allocated up front: far more than
#: the label values can fill (about 60 KiB at most).
FILE_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: what the reference shows and how it is built."""

    name: str            # without the prefix, and without _total
    kind: str            # counter, gauge, histogram
    help: str
    labels: tuple[str, ...] = ()
    #: For gauges: how the values of the processes are combined.
    mode: str = ''
    #: Where the value comes from: recorded by the glance-api processes
    #: (``process``) or read from the host when collected (``host``).
    source: str = 'process'

    @property
    def full_name(self) -> str:
        return PREFIX + self.name + ('_total' if self.kind == 'counter'
                                     else '')


IMPORTS = Metric(
    'imports', 'counter',
    'Imports that ran the conversion task, by claimed disk format, stored '
    'disk format and result (converted, passed_through, refused, failed, '
    'cancelled). An unpacked upload stored without a format change counts '
    'as converted.', ('source_format', 'target_format', 'result'))
REFUSALS = Metric(
    'refusals', 'counter',
    'Imports refused by a safety check, by the check\'s name in the '
    'checks table ("unknown" when the reason matches no check).',
    ('check',))
SECONDS = Metric(
    'conversion_seconds', 'histogram',
    'Seconds an import spent in each phase (%s).' % ', '.join(PHASES),
    ('phase',))
BYTES_READ = Metric(
    'read_bytes', 'counter',
    'Bytes of uploads read by the conversion task (the staged file).')
BYTES_WRITTEN = Metric(
    'written_bytes', 'counter',
    'Bytes of images handed to Glance to store after a conversion or '
    'unpacking.')
RUNNING = Metric(
    'conversions_running', 'gauge',
    'Conversions holding a conversion slot now, on this host.',
    mode='livesum')
WAITING = Metric(
    'conversions_waiting', 'gauge',
    'Imports waiting for a conversion slot now, on this host.',
    mode='livesum')
RECOVERED = Metric(
    'imports_recovered', 'counter',
    'Images released (put back to queued) after their import was cut '
    'short by a crash, by the recovery of a glance-api process.')
SANDBOX = Metric(
    'sandbox_layer', 'gauge',
    'Confinement layers of qemu-img: 1 when a layer is in force in every '
    'live glance-api process that has converted, 0 when it is missing in '
    'one.', ('layer',), mode='livemin')
QEMU_IMG = Metric(
    'qemu_img_info', 'gauge',
    'The qemu-img version the glance-api processes run (always 1).',
    ('version',), mode='livemin')
SLOTS = Metric(
    'conversion_slots', 'gauge',
    'Conversion slots of the host ([glance_convert] '
    'max_concurrent_conversions; 0: no limit).', source='host')
RESERVED = Metric(
    'workspace_reserved_bytes', 'gauge',
    'Bytes of the work directory reserved by conversions now.',
    source='host')
FREE = Metric(
    'workspace_free_bytes', 'gauge',
    'Bytes free in the work directory\'s file system, for unprivileged '
    'users.', source='host')

METRICS: tuple[Metric, ...] = (
    IMPORTS, REFUSALS, SECONDS, BYTES_READ, BYTES_WRITTEN, RUNNING, WAITING,
    RECOVERED, SANDBOX, QEMU_IMG, SLOTS, RESERVED, FREE)

#: The multi-process file prefixes this module writes.
_FILE_KINDS = ('counter', 'histogram', 'gauge_livesum', 'gauge_livemin')


def _identity() -> str:
    """This process in the file names: pid and start time, so that a
    reused pid never inherits the gauges of a dead process."""
    pid, start = procs.current()
    return '%d-%s' % (pid, start)


class _Recorder:
    """The metric objects of this process, once metrics are on."""

    def __init__(self, directory: str):
        from prometheus_client import values
        import prometheus_client
        self.directory = directory
        # The library reads the directory from the environment when it
        # opens a file; its value class is chosen at import time.
        os.environ['PROMETHEUS_MULTIPROC_DIR'] = directory
        values.ValueClass = values.MultiProcessValue(_identity)
        self.pid = None
        self.prepare()
        classes = {'counter': prometheus_client.Counter,
                   'gauge': prometheus_client.Gauge,
                   'histogram': prometheus_client.Histogram}
        self.by_name = {}
        for m in METRICS:
            if m.source != 'process':
                continue
            kwargs = dict(registry=None)
            if m.kind == 'gauge':
                kwargs['multiprocess_mode'] = m.mode
            if m.kind == 'histogram':
                kwargs['buckets'] = BUCKETS
            self.by_name[m.name] = classes[m.kind](
                PREFIX + m.name, m.help, m.labels, **kwargs)

    def prepare(self) -> None:
        """Allocate this process's files (again after a fork)."""
        ident = _identity()
        if ident == self.pid:
            return
        for kind in _FILE_KINDS:
            path = os.path.join(self.directory, '%s_%s.db' % (kind, ident))
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                if os.fstat(fd).st_size < FILE_BYTES:
                    os.posix_fallocate(fd, 0, FILE_BYTES)
            finally:
                os.close(fd)
        self.pid = ident

    def __getitem__(self, metric: Metric):
        return self.by_name[metric.name]


_LOCK = threading.Lock()
_STATE: dict = {'dir': None, 'recorder': None, 'failed': set()}


def _conf_dir() -> str | None:
    from glance_convert import options
    try:
        return options.CONF[options.GROUP].metrics_dir or None
    except Exception:  # noqa: BLE001 - configuration not parsed (CLI)
        return None


def setup(directory: str | None = None) -> bool:
    """Turn metrics on in this process if ``directory`` (default:
    ``[glance_convert] metrics_dir``) is set; return whether they are on.

    Cheap when called again: every recording function calls it.
    """
    recorder = _STATE['recorder']
    if directory is None:
        directory = _STATE['dir'] if recorder is not None else _conf_dir()
    if not directory:
        return False
    if recorder is not None and _STATE['dir'] == directory:
        try:
            recorder.prepare()
        except OSError as exc:
            return _give_up(directory, exc)
        return True
    if directory in _STATE['failed']:
        return False
    with _LOCK:
        if _STATE['recorder'] is not None and _STATE['dir'] == directory:
            return True
        try:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            _STATE['recorder'] = _Recorder(directory)
            _STATE['dir'] = directory
        except Exception as exc:  # noqa: BLE001 - never fail an import
            return _give_up(directory, exc)
    _report_version()
    return True


def _give_up(directory: str, exc: BaseException) -> bool:
    _STATE['failed'].add(directory)
    _STATE['recorder'] = None
    _STATE['dir'] = None
    LOG.error('Prometheus metrics are off in this glance-api process: '
              'cannot write to [glance_convert] metrics_dir %s: %s',
              directory, exc)
    return False


def _record(fn) -> None:
    """Run ``fn(recorder)`` if metrics are on; an error turns them off."""
    if not setup():
        return
    try:
        fn(_STATE['recorder'])
    except Exception as exc:  # noqa: BLE001 - never fail an import
        _give_up(_STATE['dir'], exc)


def _set_layers(r) -> None:
    """The confinement layers in force in this process now."""
    from glance_convert.pipeline import sandbox
    applied = set(sandbox.applied_layers())
    for layer in sandbox.layers():
        r[SANDBOX].labels(layer.name).set(1 if layer.name in applied else 0)


def _report_version() -> None:
    """The qemu-img version of this process, asked of qemu-img in a
    thread: no import waits for it."""
    from glance_convert.pipeline import qemu_img

    def version():
        try:
            found = qemu_img.version()
        except Exception as exc:  # noqa: BLE001
            LOG.debug('qemu-img version unknown: %s', exc)
            return
        _record(lambda r: r[QEMU_IMG].labels(found).set(1))
    threading.Thread(target=version, daemon=True,
                     name='glance-convert-metrics-version').start()


# -- what the import task records ------------------------------------------

def import_done(source_format: str, target_format: str, result: str,
                seconds: dict, bytes_read: int = 0, bytes_written: int = 0,
                check: str | None = None) -> None:
    """Count one import and its phases."""
    def record(r):
        r[IMPORTS].labels(source_format or 'unknown',
                          target_format or 'unknown', result).inc()
        if result == REFUSED:
            r[REFUSALS].labels(check or 'unknown').inc()
        for phase, secs in seconds.items():
            r[SECONDS].labels(phase).observe(secs)
        if bytes_read:
            r[BYTES_READ].inc(bytes_read)
        if bytes_written:
            r[BYTES_WRITTEN].inc(bytes_written)
        _set_layers(r)
    _record(record)


def waiting(delta: int) -> None:
    _record(lambda r: r[WAITING].inc(delta))


def running(delta: int) -> None:
    _record(lambda r: r[RUNNING].inc(delta))


def recovered(count: int) -> None:
    """Count images released by recovery."""
    if count:
        _record(lambda r: r[RECOVERED].inc(count))


# -- reading them ----------------------------------------------------------

_LIVE_FILE = re.compile(r'^gauge_live[a-z]+_(\d+)-(\d+|None)\.db$')


def forget_dead(directory: str) -> list[str]:
    """Remove the live-gauge files of processes that are gone.

    Their counters and histograms stay: the counts survive the process.
    Must run where glance-api's processes are visible (same host, same
    pid namespace): a process that cannot be seen counts as dead.
    """
    removed = []
    for path in glob.glob(os.path.join(directory, 'gauge_live*.db')):
        m = _LIVE_FILE.match(os.path.basename(path))
        if not m:
            continue
        pid = int(m.group(1))
        start = None if m.group(2) == 'None' else int(m.group(2))
        if procs.alive(pid, start):
            continue
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


class HostCollector:
    """The host's facts, read when collected: slots and work space."""

    def __init__(self, workspace):
        self.workspace = workspace

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        ws = self.workspace
        values = {SLOTS: ws.max_concurrent}
        try:
            values[RESERVED] = ws.usage()['reserved_bytes']
        except Exception as exc:  # noqa: BLE001 - a scrape must answer
            LOG.warning('Cannot read the work space reservations: %s', exc)
        try:
            st = os.statvfs(ws.work_dir)
            values[FREE] = st.f_bavail * st.f_frsize
        except OSError as exc:
            LOG.warning('Cannot read the free space of %s: %s',
                        ws.work_dir, exc)
        for metric, value in values.items():
            yield GaugeMetricFamily(metric.full_name, metric.help,
                                    value=value)


class _Collector:
    """Every process's files (dead processes' gauges dropped first) and
    the host's facts."""

    def __init__(self, directory: str, workspace=None):
        from prometheus_client import multiprocess
        self.directory = directory
        self.files = multiprocess.MultiProcessCollector(None, directory)
        self.host = HostCollector(workspace) if workspace else None

    def collect(self):
        forget_dead(self.directory)
        yield from self.files.collect()
        if self.host is not None:
            yield from self.host.collect()


def registry(directory: str, workspace=None):
    """A registry that collects every process's metrics in
    ``directory`` and, with ``workspace``, the host's."""
    from prometheus_client import CollectorRegistry
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(directory, workspace))
    return reg


def exposition(reg) -> bytes:
    """The Prometheus text exposition format."""
    from prometheus_client import generate_latest
    return generate_latest(reg)


def write_textfile(path: str, reg) -> None:
    """Write the exposition to ``path`` atomically (a temporary file in
    the same directory, renamed): node_exporter never reads half a file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, '.%s.%d.%d.tmp' % (
        os.path.basename(path), os.getpid(), threading.get_ident()))
    try:
        with open(tmp, 'wb') as f:
            f.write(exposition(reg))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class TextfileWriter:
    """Rewrites the textfile after imports, in a thread of its own, so
    that no import waits for it; requests made while it writes are
    served by one more write."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = None
        self._busy = False

    def request(self, path: str, directory: str, workspace=None) -> None:
        with self._lock:
            self._pending = (path, directory, workspace)
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._run, daemon=True,
                         name='glance-convert-textfile').start()

    def _run(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._busy = False
                    return
            path, directory, workspace = job
            try:
                write_textfile(path, registry(directory, workspace))
            except Exception as exc:  # noqa: BLE001 - costs a log line
                LOG.error('Cannot write the metrics textfile %s: %s', path,
                          exc)


_TEXTFILE = TextfileWriter()


def textfile_after_import(workspace=None) -> None:
    """Rewrite ``[glance_convert] metrics_textfile``, if set, in the
    background."""
    from glance_convert import options
    if not setup():
        return
    try:
        path = options.CONF[options.GROUP].metrics_textfile
    except Exception:  # noqa: BLE001
        return
    if path:
        _TEXTFILE.request(path, _STATE['dir'], workspace)
