"""The conversion pipeline, without Glance.

staged file -> inspect bytes -> qemu-img info -> qemu-img check -> plan
-> reserve space and a slot -> convert to a temporary name -> rename ->
verify output.  Used by the taskflow task, the CLI and the benchmark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import Callable

from oslo_log import log as logging

from glance_convert import errors
from glance_convert import formats
from glance_convert import units
from glance_convert.host import layout
from glance_convert.pipeline import checks
from glance_convert.pipeline import hold
from glance_convert.pipeline import inspection
from glance_convert.pipeline import phases
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline.config import Settings

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Result:
    """What a conversion produced."""

    path: str                 # the file Glance uploads
    converted: bool           # False: passed through untouched
    source_format: str
    disk_format: str
    virtual_size: int
    size: int
    bytes_in: int
    duration: float
    #: Seconds per phase (:mod:`~glance_convert.pipeline.phases`).
    timings: phases.Timings | None = None


def plan(claimed: str | None, settings: Settings) -> str | None:
    """The target format for a claimed format, or None to pass through.

    An upload already in the target format is re-written only when the
    target's row says the output options ask for it
    (:attr:`formats.Format.rewrites_same_format`).
    """
    if not formats.is_convertible(claimed):
        return None
    if claimed in settings.keep_formats:
        return None
    if claimed not in settings.source_formats:
        return None
    if claimed == settings.target and not formats.get(
            settings.target).rewrites_same_format(settings.out_options,
                                                  settings.compressed):
        return None
    return settings.target


def work_paths(work_dir: str, image_id: str, target: str
               ) -> tuple[str, str]:
    """(temporary, final) work file names for an image.

    Named ``<image-id>.<suffix>`` so that Glance's staging housekeeper
    reaps them if the image is deleted after a crash.
    """
    return (layout.work_file(work_dir, image_id, 'part'),
            layout.work_file(work_dir, image_id, target))


def estimate_output_bytes(src: str, claimed: str, target: str,
                          virtual_size: int, settings: Settings) -> int:
    """Bytes the output needs on disk: the target's upper bound, or less
    where ``qemu-img measure -O qcow2`` can tell
    (:attr:`formats.Format.measure_as_qcow2`)."""
    row, opts = formats.get(target), settings.out_options
    bound = row.upper_bound(virtual_size, opts)
    measure_opts = row.measure_as_qcow2(opts)
    if measure_opts is None:
        return bound
    try:
        measured = qemu_img.measure(
            src, formats.qemu_driver(claimed), 'qcow2', measure_opts,
            settings.inspect_limits)
    except qemu_img.QemuImgError as exc:
        LOG.warning('qemu-img measure failed, assuming the whole '
                    'virtual size: %s', exc)
        measured = None
    return bound if measured is None else min(bound, measured)


def _reserve(work: hold.Hold, src: str, claimed: str, target: str,
             virtual_size: int, settings: Settings,
             paths: tuple[str, ...]) -> tuple[object, int]:
    """Reserve the output's space; return (reservation, bytes reserved).

    The upper bound, computed without qemu-img, is tried first without
    waiting; only if it does not fit now is the output measured
    (``qemu-img measure``, qcow2 and sparse raw) and the smaller need
    reserved, waiting for space as configured.  Where space is plentiful,
    as usual, a conversion runs one qemu-img process less.
    """
    row, opts = formats.get(target), settings.out_options
    bound = row.upper_bound(virtual_size, opts)
    if row.measure_as_qcow2(opts) is not None:
        try:
            return work.reserve(bound, step='convert', paths=paths,
                                wait=False), bound
        except errors.WorkspaceError:
            LOG.debug('Upper bound of %d bytes does not fit now; measuring',
                      bound)
    need = estimate_output_bytes(src, claimed, target, virtual_size,
                                 settings)
    return work.reserve(need, step='convert', paths=paths), need


class _InBackground:
    """``fn(*args, **kwargs)`` in a thread; :meth:`result` waits for it."""

    def __init__(self, fn: Callable, *args, **kwargs):
        self._outcome: tuple = (None, None)
        self._thread = threading.Thread(
            target=self._run, args=(fn, args, kwargs), daemon=True,
            name='glance-convert-%s' % getattr(fn, '__name__', 'task'))
        self._thread.start()

    def _run(self, fn, args, kwargs) -> None:
        try:
            self._outcome = (fn(*args, **kwargs), None)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._outcome = (None, exc)

    def result(self):
        self._thread.join()
        value, error = self._outcome
        if error is not None:
            raise error
        return value


def inspect_source(src: str, claimed: str, settings: Settings,
                   timings: phases.Timings | None = None
                   ) -> tuple[inspection.SourceFacts, dict]:
    """Every check of the upload, bytes first, then qemu-img info/check.

    ``qemu-img check`` runs while ``info`` runs (one process start less on
    the way to the conversion); it opens no backing file, so it reads
    nothing ``info`` would not.  The verdicts keep their order: bytes,
    info, check.  When ``info`` fails or is refused, the check is killed.
    """
    timings = timings or phases.Timings()
    with timings.phase(phases.INSPECT):
        facts = inspection.inspect_bytes(src, claimed, settings.policy)
    with timings.phase(phases.CHECK):
        return _qemu_img_verdicts(src, claimed, facts, settings)


def _qemu_img_verdicts(src: str, claimed: str,
                       facts: inspection.SourceFacts, settings: Settings
                       ) -> tuple[inspection.SourceFacts, dict]:
    """qemu-img info and, beside it, qemu-img check: their verdicts."""
    fmt = formats.qemu_driver(claimed)
    stop = threading.Event()
    pending = (_InBackground(qemu_img.check, src, fmt,
                             settings.inspect_limits,
                             should_cancel=stop.is_set)
               if formats.get(claimed).checkable else None)
    try:
        try:
            info = qemu_img.info(src, fmt, settings.inspect_limits)
        except qemu_img.QemuImgError as exc:
            checks.QEMU_INFO.reject(str(exc), format=claimed)
        inspection.check_info(info, claimed, facts, settings.policy)
    except BaseException:
        if pending is not None:
            stop.set()
            with contextlib.suppress(Exception):
                pending.result()
        raise
    if pending is None:
        return facts, info
    try:
        report = pending.result()
    except qemu_img.QemuImgError as exc:
        checks.QEMU_CHECK.reject(str(exc))
    inspection.check_consistency(report)
    compressed = int(report.get('compressed-clusters') or 0)
    if compressed:
        facts = dataclasses.replace(facts, compressed_clusters=compressed)
    return facts, info


def convert_image(src: str, claimed: str, *, image_id: str, work_dir: str,
                  settings: Settings, workspace=None,
                  status: hold.Status | None = None,
                  slot_timeout: float = 600,
                  info_for_ledger: dict | None = None,
                  timings: phases.Timings | None = None) -> Result:
    """Check and convert ``src``; return the result.

    ``workspace`` is the host's workspace or the :class:`~.hold.Hold` of
    the phase that unpacked ``src``.  ``status`` hears of progress and
    waits and is asked whether the import was aborted; ``timings`` gets
    the time of each phase.  The source is never modified or removed
    here.  On failure no work file is left behind.
    """
    if not os.path.isfile(src):
        raise errors.ConversionError(
            'The staged image data was not found on this node.',
            'no such file: %s' % src)
    timings = timings or phases.Timings()
    with hold.held(workspace, image_id=image_id, work_dir=work_dir,
                   slot_timeout=slot_timeout, status=status,
                   info=info_for_ledger) as work:
        job = _Conversion(src, claimed, settings, work)
        # Nothing claimed and nothing to convert to: nothing to check.
        phases.run(phases.INSPECT if claimed or job.target else phases.DONE,
                   job.steps(), timings)
    result = job.result(timings)
    if result.converted:
        LOG.info('Converted image %(id)s from %(src)s to %(dst)s: %(in)d '
                 'bytes in, %(out)d bytes out, %(secs).1f s, %(rate).1f '
                 'MiB/s (%(phases)s)',
                 {'id': image_id, 'src': claimed, 'dst': result.disk_format,
                  'in': result.bytes_in, 'out': result.size,
                  'secs': result.duration,
                  'rate': result.bytes_in / units.MiB
                  / max(result.duration, 1e-6),
                  'phases': timings.summary()})
    return result


class _Conversion:
    """One conversion, phase by phase: each step does its work and names
    the phase that comes next (:func:`~.phases.run`), as KubeVirt CDI's
    data processor does, so that an upload stored as it is leaves after
    its checks."""

    def __init__(self, src: str, claimed: str, settings: Settings,
                 work: hold.Hold):
        self.src, self.claimed, self.settings, self.work = (
            src, claimed, settings, work)
        self.started = time.monotonic()
        self.bytes_in = os.path.getsize(src)
        self.before = _identity(src)
        self.target = plan(claimed, settings)
        self.facts: inspection.SourceFacts | None = None
        self.info: dict = {}
        self.final: str | None = None
        self.out_virtual = 0

    def steps(self) -> dict:
        return {phases.INSPECT: self.inspect, phases.CHECK: self.check,
                phases.RESERVE: self.reserve, phases.CONVERT: self.convert,
                phases.VERIFY: self.verify}

    def inspect(self) -> str | None:
        """The upload's bytes, judged without qemu-img."""
        self.facts = inspection.inspect_bytes(self.src, self.claimed,
                                              self.settings.policy)
        if self.target or formats.is_convertible(self.claimed):
            return phases.CHECK
        # A format qemu-img does not read is stored as uploaded, checked
        # as strictly as its bytes allow.
        return phases.DONE

    def check(self) -> str | None:
        """qemu-img's verdicts.  Stored as uploaded, an image is checked
        as strictly as a conversion."""
        self.facts, self.info = _qemu_img_verdicts(
            self.src, self.claimed, self.facts, self.settings)
        return phases.RESERVE if self.target else phases.DONE

    def reserve(self) -> str | None:
        """The slot, and space for the output, recorded with the work
        files before they exist: a crash leaves nothing unknown."""
        self.virtual_size = int(self.info.get('virtual-size')
                                or self.facts.virtual_size)
        self.tmp, final = work_paths(self.work.work_dir, self.work.image_id,
                                     self.target)
        self.final = final
        self.res, self.estimate = _reserve(
            self.work, self.src, self.claimed, self.target,
            self.virtual_size, self.settings, (self.tmp, final))
        return phases.CONVERT

    def convert(self) -> str | None:
        settings = self.settings
        _run_convert(self.src, self.claimed, self.tmp, self.target,
                     self.virtual_size, self.estimate, settings,
                     self.work.status, on_start=self.res.add_process,
                     parallel_source=use_parallel(
                         self.claimed, self.target, self.info, settings,
                         self.facts),
                     tuning=source_tuning(self.claimed, self.facts,
                                          settings))
        return phases.VERIFY

    def verify(self) -> str | None:
        if _identity(self.src) != self.before:
            # qemu reads past the end of a truncated file as zeros: the
            # "converted" image would silently lose data.
            raise errors.ConversionFailed(
                'The staged image data changed during the conversion; '
                'please import the image again.',
                'source %s changed during conversion' % self.src)
        os.rename(self.tmp, self.final)
        self.out_virtual = _verify_output(self.final, self.target,
                                          self.virtual_size, self.settings)
        self.work.keep(self.final)
        return phases.DONE

    def result(self, timings: phases.Timings) -> Result:
        if self.final is None:
            virtual_size = int(self.info.get('virtual-size') or 0)
            return Result(self.src, False, self.claimed, self.claimed,
                          virtual_size, self.bytes_in, self.bytes_in, 0.0,
                          timings)
        return Result(self.final, True, self.claimed, self.target,
                      self.out_virtual, os.path.getsize(self.final),
                      self.bytes_in, time.monotonic() - self.started,
                      timings)


def _identity(path: str) -> tuple | None:
    """What changes when a file is replaced, truncated or rewritten."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _verify_output(final: str, target: str, virtual_size: int,
                   settings: Settings) -> int:
    """Inspect the converted file; return its virtual size.

    Every output gets :func:`inspection.verify_output` (format_inspector
    and our header parser: the exact format, no backing or data file, no
    hidden image, consistent headers).  The virtual size is what qemu-img
    info would report, read without starting it where that is the same
    thing (:attr:`formats.Format.output_size_from`): for raw, qemu's raw
    driver reports the file's length and reads nothing else; for qcow2, it
    reports the header's size field, which verify_output has just parsed
    and checked against the L1 table.  Other formats (geometry rounding,
    descriptors) still ask ``qemu-img info``.
    """
    inspection.verify_output(final, target, policy=settings.policy)
    # qemu-img's output is untrusted input too (a compromised qemu-img
    # writes what it likes): every check an upload claimed as the target
    # format gets, such as the size limit.  Nothing else can write it
    # now: a confined qemu-img started no process and has been reaped.
    inspection.inspect_bytes(final, target, settings.policy)
    row = formats.get(target)
    driver = row.qemu_driver
    if row.output_size_from == formats.FILE_LENGTH:
        out_format, out_virtual = driver, os.path.getsize(final)
    elif row.output_size_from == formats.HEADER:
        header = formats.parse(final, target)
        out_format = header.format if header else None
        out_virtual = header.virtual_size if header else 0
    else:
        try:
            out_info = qemu_img.info(final, driver, settings.inspect_limits)
        except qemu_img.QemuImgError as exc:
            raise errors.ConversionFailed(
                'The converted image failed verification.', str(exc))
        out_format = out_info.get('format')
        out_virtual = int(out_info.get('virtual-size') or 0)
    if out_format != driver or out_virtual < virtual_size:
        raise errors.ConversionFailed(
            'The converted image failed verification.',
            'output: format %r, virtual size %d (source %d)'
            % (out_format, out_virtual, virtual_size))
    return out_virtual


#: Compressed clusters below which one process converts the image: a
#: second one costs more to start than it saves (64 MiB of 64 KiB
#: clusters).
PARALLEL_MIN_COMPRESSED_CLUSTERS = 1024


def _decompressing(claimed: str,
                   facts: inspection.SourceFacts | None) -> bool:
    """The source has compressed clusters its row says qemu decompresses
    in a thread pool (:attr:`formats.Format.compressed_clusters`)."""
    return bool(facts is not None and facts.compressed_clusters
                and formats.get(claimed).compressed_clusters)


def source_tuning(claimed: str, facts: inspection.SourceFacts,
                  settings: Settings) -> qemu_img.Tuning:
    """The qemu-img tuning for this upload.

    ``settings.tuning``, except for a source with compressed clusters
    (distribution cloud images), where the conversion waits for
    decompression, not for I/O: the most requests in flight qemu-img
    takes, and ``-W`` where the output's row allows it, which the
    benchmark measured to put the second core to work (the performance
    docs).  What the operator set explicitly is kept.
    """
    tuning = settings.tuning
    if not _decompressing(claimed, facts):
        return tuning
    changes: dict = {}
    if 'coroutines' not in settings.tuning_set:
        changes['coroutines'] = formats.DECOMPRESSING_COROUTINES
    if ('out_of_order' not in settings.tuning_set
            and formats.get(settings.target).out_of_order_decompressing):
        changes['out_of_order'] = True   # never with -c: see qemu_img
    return dataclasses.replace(tuning, **changes)


def use_parallel(claimed: str, target: str, info: dict,
                 settings: Settings,
                 facts: inspection.SourceFacts | None = None) -> bool:
    """True where one qemu-img is CPU-bound and the output can be split.

    The source must be one its row says converts at CPU speed: a subformat
    in :attr:`formats.Format.parallel_subformats` (sparse VMDK), or
    compressed clusters (:attr:`formats.Format.compressed_clusters`,
    cloud images); and the target must be writable in ranges with no
    options (plain raw).  On I/O-bound inputs (uncompressed qcow2, vdi,
    vhd) several processes only add processes.
    """
    if (settings.parallel_workers < 2
            or not formats.get(target).parallel_output
            or settings.out_options):
        return False
    if _decompressing(claimed, facts):
        return facts.compressed_clusters >= PARALLEL_MIN_COMPRESSED_CLUSTERS
    specific = (info.get('format-specific') or {}).get('data') or {}
    return (specific.get('create-type')
            in formats.get(claimed).parallel_subformats)


def _run_parallel(src, claimed, tmp, virtual_size, limits, settings,
                  tuning, status, on_start) -> None:
    from glance_convert.pipeline import parallel
    parallel.convert_to_raw(
        src, formats.qemu_driver(claimed), tmp, virtual_size,
        workers=settings.parallel_workers,
        tuning=tuning, limits=limits,
        should_cancel=status.is_aborted,
        on_start=on_start, on_progress=hold.progress_callback(status),
        progress_interval=settings.progress_interval)


def _run_convert(src, claimed, tmp, target, virtual_size, estimate,
                 settings, status, on_start=None,
                 parallel_source=False,
                 tuning: qemu_img.Tuning | None = None) -> None:
    # Bound the output: an expansion bomb is killed by RLIMIT_FSIZE before
    # it can fill the disk.  Raw output is as long as the virtual size.
    file_limit = (max(virtual_size, estimate) + virtual_size // 64
                  + 64 * units.MiB)
    limits = dataclasses.replace(settings.convert_limits,
                                 file_size=file_limit)
    layout.remove(tmp)
    if status.is_aborted():
        raise errors.ConversionCancelled(
            'The import was cancelled before conversion.')
    presize = formats.get(target).presize(virtual_size, settings.out_options)
    tuning = tuning or settings.tuning
    try:
        if parallel_source:
            _run_parallel(src, claimed, tmp, virtual_size, limits, settings,
                          tuning, status, on_start)
            return
        if presize is not None:
            qemu_img.create(tmp, formats.qemu_driver(target), presize,
                            settings.out_options, limits)
        qemu_img.convert(
            src, formats.qemu_driver(claimed), tmp,
            formats.qemu_driver(target), out_options=settings.out_options,
            tuning=tuning, compressed=settings.compressed,
            limits=limits, on_progress=hold.progress_callback(status),
            progress_interval=settings.progress_interval,
            should_cancel=status.is_aborted, on_start=on_start,
            existing_target=presize is not None)
    except qemu_img.QemuImgCancelled as exc:
        raise errors.ConversionCancelled(
            'The import was cancelled during conversion.', str(exc))
    except qemu_img.QemuImgTimeout as exc:
        raise errors.ConversionFailed(
            'Image conversion took longer than the time allowed.', str(exc))
    except qemu_img.QemuImgLimitExceeded as exc:
        checks.OUTPUT_LIMIT.reject(str(exc))
    except qemu_img.QemuImgError as exc:
        raise errors.ConversionFailed(
            # qemu-img's text names host paths: it goes to the log only.
            'Image conversion from %s to %s failed.' % (claimed, target),
            str(exc))
