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

from oslo_config import cfg
from oslo_log import log as logging

from glance_convert.pipeline import headers
from glance_convert import settings as config_check
from glance_convert import errors
from glance_convert import formats
from glance_convert.pipeline import inspection
from glance_convert import options
from glance_convert import units
from glance_convert.pipeline import qemu_img

LOG = logging.getLogger(__name__)

# qemu-img drivers that implement "qemu-img check" (7.2); raw and vpc
# answer "does not support checks".
CHECKABLE = ('qcow2', 'vmdk', 'vdi')
WORK_TAG = 'glance-convert'


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs from the configuration."""

    target: str
    source_formats: tuple[str, ...]
    keep_formats: tuple[str, ...]
    policy: inspection.Policy
    inspect_limits: qemu_img.Limits
    convert_limits: qemu_img.Limits
    tuning: qemu_img.Tuning
    out_options: dict
    compressed: bool
    progress_interval: float
    parallel_workers: int = 1

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts | None = None) -> 'Settings':
        conf = conf or cfg.CONF
        try:
            config_check.ensure_valid(conf)
        except config_check.InvalidConfiguration as exc:
            LOG.error('%s', exc)
            raise errors.ConversionError(
                'Image conversion is misconfigured on this cloud; please '
                'contact the cloud operator.', str(exc))
        group = conf[options.GROUP]
        target = group.output_format
        out_options, compressed = output_options(group, target)
        return cls(
            target=target,
            source_formats=tuple(group.source_formats),
            keep_formats=tuple(group.keep_formats),
            policy=inspection.Policy(
                vmdk_allowed_types=tuple(options.glance_setting(
                    'image_format', 'vmdk_allowed_types', conf)),
                gpt_nonfatal=frozenset(options.glance_setting(
                    'image_format', 'gpt_safety_checks_nonfatal', conf)),
                max_virtual_size=options.max_virtual_size(conf)),
            inspect_limits=qemu_img.Limits(
                address_space=group.inspect_address_space_mb * units.MiB,
                cpu_time=group.inspect_cpu_time,
                timeout=group.inspect_timeout),
            convert_limits=qemu_img.Limits(
                address_space=group.convert_address_space_mb * units.MiB,
                timeout=group.convert_timeout or None),
            tuning=qemu_img.Tuning(
                coroutines=group.convert_coroutines,
                out_of_order=out_of_order(group.convert_out_of_order,
                                          target),
                source_cache=group.convert_source_cache,
                target_cache=group.convert_target_cache),
            out_options=out_options,
            compressed=compressed,
            parallel_workers=group.parallel_workers,
            progress_interval=group.progress_interval)


def out_of_order(setting: bool | None, target: str) -> bool:
    """Whether to pass ``-W``; qemu_img leaves it out for compressed output.

    Unset: for qcow2 output only, where the benchmark shows it helps cold
    and warm; for raw output it did not consistently.
    """
    if setting is None:
        return target == 'qcow2'
    return setting


def output_options(group, target: str) -> tuple[dict, bool]:
    """qemu-img ``-o`` options and the ``-c`` flag for a target format.

    Only options that apply to ``target`` are returned; combinations that
    qemu-img would refuse are caught earlier, at start-up, by
    :func:`glance_convert.settings.validate_options`.
    """
    opts: dict = {}
    compressed = False
    preallocation = group.preallocation
    if target == 'qcow2':
        opts['compat'] = group.qcow2_compat
        if group.qcow2_cluster_size != 65536:
            opts['cluster_size'] = group.qcow2_cluster_size
        if group.qcow2_compression != 'none':
            compressed = True
            # zlib is qemu's default; zstd needs compat 1.1.
            if group.qcow2_compression == 'zstd':
                opts['compression_type'] = 'zstd'
        if preallocation != 'off':
            opts['preallocation'] = preallocation
    elif target == 'raw':
        if preallocation in ('falloc', 'full'):
            opts['preallocation'] = preallocation
    elif target == 'vmdk':
        opts['subformat'] = group.vmdk_subformat
    elif target == 'vhd':
        opts['subformat'] = group.vhd_subformat
        if group.vhd_force_size:
            # Exact size instead of qemu's CHS-geometry rounding; the
            # pipeline creates the output at a whole number of MiB first
            # (see presized_output).
            opts['force_size'] = True
    return opts, compressed


def presized_output(target: str, out_options: dict, virtual_size: int
                    ) -> int | None:
    """Virtual size to create the output with before converting into it.

    ``qemu-img convert`` cannot resize.  For VHD with ``force_size`` the
    output is created first (``qemu-img create``) with the virtual size
    rounded up to a whole MiB, then converted into with ``-n
    --target-is-zero``.  None: let ``qemu-img convert`` create it.
    """
    if target == 'vhd' and out_options.get('force_size'):
        return -(-virtual_size // units.MiB) * units.MiB
    return None


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


class _NoReservation:
    def track(self, path):
        return path

    def add_process(self, pid):
        pass


class NoWorkspace:
    """No per-host limits: every slot and reservation is granted."""

    @contextlib.contextmanager
    def slot(self, owner, timeout, on_wait=None, should_cancel=None):
        yield

    @contextlib.contextmanager
    def reservation(self, owner, nbytes, **kwargs):
        yield _NoReservation()


def plan(claimed: str | None, settings: Settings) -> str | None:
    """The target format for a claimed format, or None to pass through."""
    if not formats.is_convertible(claimed):
        return None
    if claimed in settings.keep_formats:
        return None
    if claimed not in settings.source_formats:
        return None
    if claimed == settings.target and not rewrite_same_format(settings):
        return None
    return settings.target


def rewrite_same_format(settings: Settings) -> bool:
    """True when output options ask to re-write a same-format image.

    Decided from the options, not from the upload, so the rule is
    predictable: an upload that already has the requested shape is
    re-written too (same guest data).  Re-written:

    * qcow2 when compressing, preallocating or with a non-default cluster
      size (``qcow2_compat`` alone is no reason: 1.1 reads everywhere);
    * vhd when ``vhd_subformat = fixed`` or ``vhd_force_size`` is on;
    * vmdk when ``vmdk_subformat = streamOptimized``;
    * raw never: a raw copy has the same bytes, preallocated or not.
    """
    opts = settings.out_options
    if settings.target == 'qcow2':
        return (settings.compressed or bool(opts.get('preallocation'))
                or 'cluster_size' in opts)
    if settings.target == 'vhd':
        return opts.get('subformat') == 'fixed' or bool(
            opts.get('force_size'))
    if settings.target == 'vmdk':
        return opts.get('subformat') == 'streamOptimized'
    return False


def work_paths(work_dir: str, image_id: str, target: str
               ) -> tuple[str, str]:
    """(temporary, final) work file names for an image.

    Named ``<image-id>.<suffix>`` so that Glance's staging housekeeper
    reaps them if the image is deleted after a crash.
    """
    base = os.path.join(work_dir, '%s.%s' % (image_id, WORK_TAG))
    return base + '.part', '%s.%s' % (base, target)


def output_upper_bound(target: str, virtual_size: int,
                       settings: Settings | None = None) -> int:
    """Bytes the output can take at most, whatever the data: no qemu-img.

    Raw output is at most its virtual size (less where sparse).  Other
    formats add metadata: qcow2 about 10 bytes of L2 and refcount entries
    per cluster plus a few clusters (``virtual_size * 16 / cluster``
    covers it with room), vmdk, vdi and vpc less than ``virtual_size // 64``
    (grain and block tables).
    """
    if target == 'raw':
        return virtual_size
    cluster = int((settings.out_options if settings else {}).get(
        'cluster_size') or 65536)
    per_cluster = virtual_size * 16 // cluster if target == 'qcow2' else 0
    return (virtual_size + max(per_cluster, virtual_size // 64)
            + 16 * units.MiB + 8 * cluster)


def measurable(target: str, settings: Settings | None = None) -> bool:
    """Whether ``qemu-img measure`` can tell the output's need.

    qcow2: measured as itself.  Sparse raw: ``measure -O raw`` answers the
    virtual size whatever the data (qemu 7.2), but ``measure -O qcow2``
    counts the source's allocated clusters plus qcow2's own metadata, an
    upper bound of what a sparse raw copy allocates (zero detection only
    allocates less).  Preallocated raw needs its whole virtual size; vmdk,
    vdi and vpc cannot be measured.
    """
    if target == 'qcow2':
        return True
    opts = settings.out_options if settings else {}
    return target == 'raw' and not opts.get('preallocation')


def estimate_output_bytes(src: str, claimed: str, target: str,
                          virtual_size: int, settings: Settings) -> int:
    """Bytes the output needs on disk (an upper bound); see
    :func:`measurable`."""
    bound = output_upper_bound(target, virtual_size, settings)
    if not measurable(target, settings):
        return bound
    try:
        measured = qemu_img.measure(
            src, formats.qemu_driver(claimed), 'qcow2',
            settings.out_options if target == 'qcow2' else {},
            settings.inspect_limits)
    except qemu_img.QemuImgError as exc:
        LOG.warning('qemu-img measure failed, assuming the whole '
                    'virtual size: %s', exc)
        measured = None
    return bound if measured is None else min(bound, measured)


def _reserve(stack: contextlib.ExitStack, workspace, owner: str, src: str,
             claimed: str, target: str, virtual_size: int,
             settings: Settings, **kwargs) -> tuple[object, int]:
    """Reserve the output's space; return (reservation, bytes reserved).

    The upper bound, computed without qemu-img, is tried first without
    waiting; only if it does not fit now is the output measured
    (``qemu-img measure``, qcow2 and sparse raw) and the smaller need
    reserved, waiting for space as configured.  Where space is plentiful,
    as usual, a conversion runs one qemu-img process less.
    """
    bound = output_upper_bound(target, virtual_size, settings)
    if measurable(target, settings):
        quick = dict(kwargs, timeout=0, on_wait=None)
        try:
            return stack.enter_context(
                workspace.reservation(owner, bound, **quick)), bound
        except errors.WorkspaceError:
            LOG.debug('Upper bound of %d bytes does not fit now; measuring',
                      bound)
    need = estimate_output_bytes(src, claimed, target, virtual_size,
                                 settings)
    return stack.enter_context(
        workspace.reservation(owner, need, **kwargs)), need


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


def inspect_source(src: str, claimed: str, settings: Settings
                   ) -> tuple[inspection.SourceFacts, dict]:
    """Every check of the upload, bytes first, then qemu-img info/check.

    ``qemu-img check`` runs while ``info`` runs (one process start less on
    the way to the conversion); it opens no backing file, so it reads
    nothing ``info`` would not.  The verdicts keep their order: bytes,
    info, check.  When ``info`` fails or is refused, the check is killed.
    """
    facts = inspection.inspect_bytes(src, claimed, settings.policy)
    fmt = formats.qemu_driver(claimed)
    stop = threading.Event()
    pending = (_InBackground(qemu_img.check, src, fmt,
                             settings.inspect_limits,
                             should_cancel=stop.is_set)
               if fmt in CHECKABLE else None)
    try:
        try:
            info = qemu_img.info(src, fmt, settings.inspect_limits)
        except qemu_img.QemuImgError as exc:
            raise errors.ImageRejected(
                'qemu-img cannot read it as a %s image' % claimed, str(exc))
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
        raise errors.ImageRejected('the image is corrupt', str(exc))
    inspection.check_consistency(report)
    return facts, info


def remove_file(path: str | None) -> None:
    """Remove ``path`` if it exists; log, never raise.

    Called while another exception propagates: a failed unlink must not
    replace the reason the user is shown.
    """
    if not path:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        LOG.exception('Could not remove %s', path)


def convert_image(src: str, claimed: str, *, image_id: str, work_dir: str,
                  settings: Settings, workspace=None,
                  on_progress: Callable[[int], None] | None = None,
                  on_wait: Callable[[], None] | None = None,
                  should_cancel: Callable[[], bool] | None = None,
                  slot_timeout: float = 600,
                  info_for_ledger: dict | None = None,
                  on_wait_space: Callable[[], None] | None = None
                  ) -> Result:
    """Check and convert ``src``; return the result.

    The source is never modified or removed here.  On failure no work file
    is left behind.
    """
    started = time.monotonic()
    if not os.path.isfile(src):
        raise errors.ConversionError(
            'The staged image data was not found on this node.',
            'no such file: %s' % src)
    bytes_in = os.path.getsize(src)
    target = plan(claimed, settings)
    if target is None:
        # Stored as uploaded, so checked as strictly as a conversion.
        if formats.is_convertible(claimed):
            inspect_source(src, claimed, settings)
        elif claimed:
            inspection.inspect_bytes(src, claimed, settings.policy)
        return Result(src, False, claimed, claimed, 0, bytes_in, bytes_in,
                      0.0)
    facts, info = inspect_source(src, claimed, settings)
    virtual_size = int(info.get('virtual-size') or facts.virtual_size)
    tmp, final = work_paths(work_dir, image_id, target)
    workspace = workspace or NoWorkspace()
    owner = image_id
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(workspace.slot(
                owner, slot_timeout, on_wait=on_wait,
                should_cancel=should_cancel))
            # The work files are recorded with the reservation, before
            # they exist: a crash leaves nothing unknown (and one ledger
            # write does it, not three).
            res, estimate = _reserve(
                stack, workspace, owner, src, claimed, target, virtual_size,
                settings, timeout=slot_timeout, on_wait=on_wait_space,
                should_cancel=should_cancel, info=info_for_ledger or {},
                paths=(tmp, final))
            tmp, final = res.track(tmp), res.track(final)
            _run_convert(src, claimed, tmp, target, virtual_size, estimate,
                         settings, on_progress, should_cancel,
                         on_start=res.add_process,
                         parallel_source=use_parallel(claimed, target, info,
                                                      settings))
            os.rename(tmp, final)
            out_virtual = _verify_output(final, target, virtual_size,
                                         settings)
    except BaseException:
        remove_file(tmp)
        remove_file(final)
        raise
    size = os.path.getsize(final)
    duration = time.monotonic() - started
    LOG.info('Converted image %(id)s from %(src)s to %(dst)s: %(in)d bytes '
             'in, %(out)d bytes out, %(secs).1f s, %(rate).1f MiB/s',
             {'id': image_id, 'src': claimed, 'dst': target, 'in': bytes_in,
              'out': size, 'secs': duration,
              'rate': bytes_in / units.MiB / max(duration, 1e-6)})
    return Result(final, True, claimed, target, out_virtual, size, bytes_in,
                  duration)


def _verify_output(final: str, target: str, virtual_size: int,
                   settings: Settings) -> int:
    """Inspect the converted file; return its virtual size.

    Every output gets :func:`inspection.verify_output` (format_inspector
    and our header parser: the exact format, no backing or data file, no
    hidden image, consistent headers).  The virtual size is what qemu-img
    info would report, read without starting it where that is the same
    thing: for raw, qemu's raw driver reports the file's length and reads
    nothing else; for qcow2, it reports the header's size field, which
    verify_output has just parsed and checked against the L1 table.  Other
    formats (vmdk, vdi, vpc: geometry rounding, descriptors) still ask
    ``qemu-img info``.
    """
    inspection.verify_output(final, target, policy=settings.policy)
    driver = formats.qemu_driver(target)
    if target == 'raw':
        out_format, out_virtual = driver, os.path.getsize(final)
    elif target == 'qcow2':
        header = headers.parse(final, target)
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


#: VMDK create types whose conversion to raw is CPU-bound in qemu-img:
#: decompression (streamOptimized) or grain-table walking
#: (monolithicSparse, 0.9 CPU s for 819 MiB where a copy takes 0.35 s).
PARALLEL_VMDK_TYPES = ('streamOptimized', 'monolithicSparse')


def use_parallel(claimed: str, target: str, info: dict,
                 settings: Settings) -> bool:
    """True for a sparse VMDK to plain raw: CPU-bound in one qemu-img.

    The benchmark shows one qemu-img process is CPU-bound on these inputs
    and that several processes over disjoint ranges finish sooner
    (streamOptimized 0.49x, monolithicSparse 0.58-0.65x of the stock
    task's time, warm and cold); on the I/O-bound inputs (qcow2, vdi, vhd)
    they only add processes.
    """
    specific = (info.get('format-specific') or {}).get('data') or {}
    return (settings.parallel_workers > 1 and claimed == 'vmdk'
            and target == 'raw' and not settings.out_options
            and specific.get('create-type') in PARALLEL_VMDK_TYPES)


def _run_parallel(src, tmp, virtual_size, limits, settings, on_progress,
                  should_cancel, on_start) -> None:
    from glance_convert.pipeline import parallel
    parallel.convert_to_raw(
        src, 'vmdk', tmp, virtual_size, workers=settings.parallel_workers,
        tuning=settings.tuning, limits=limits,
        should_cancel=should_cancel,
        on_start=on_start, on_progress=on_progress,
        progress_interval=settings.progress_interval)


def _run_convert(src, claimed, tmp, target, virtual_size, estimate,
                 settings, on_progress, should_cancel,
                 on_start=None, parallel_source=False) -> None:
    # Bound the output: an expansion bomb is killed by RLIMIT_FSIZE before
    # it can fill the disk.  Raw output is as long as the virtual size.
    file_limit = (max(virtual_size, estimate) + virtual_size // 64
                  + 64 * units.MiB)
    limits = dataclasses.replace(settings.convert_limits,
                                 file_size=file_limit)
    remove_file(tmp)
    if should_cancel is not None and should_cancel():
        raise errors.ConversionCancelled(
            'The import was cancelled before conversion.')
    presize = presized_output(target, settings.out_options, virtual_size)
    try:
        if parallel_source:
            _run_parallel(src, tmp, virtual_size, limits, settings,
                          on_progress, should_cancel, on_start)
            return
        if presize is not None:
            qemu_img.create(tmp, formats.qemu_driver(target), presize,
                            settings.out_options, limits)
        qemu_img.convert(
            src, formats.qemu_driver(claimed), tmp,
            formats.qemu_driver(target), out_options=settings.out_options,
            tuning=settings.tuning, compressed=settings.compressed,
            limits=limits, on_progress=on_progress,
            progress_interval=settings.progress_interval,
            should_cancel=should_cancel, on_start=on_start,
            existing_target=presize is not None)
    except qemu_img.QemuImgCancelled as exc:
        raise errors.ConversionCancelled(
            'The import was cancelled during conversion.', str(exc))
    except qemu_img.QemuImgTimeout as exc:
        raise errors.ConversionFailed(
            'Image conversion took longer than the time allowed.', str(exc))
    except qemu_img.QemuImgLimitExceeded as exc:
        raise errors.ImageRejected(
            'its converted data would be larger than allowed', str(exc))
    except qemu_img.QemuImgError as exc:
        raise errors.ConversionFailed(
            # qemu-img's text names host paths: it goes to the log only.
            'Image conversion from %s to %s failed.' % (claimed, target),
            str(exc))
