"""Safety policy: what the plugin refuses to convert, and why.

Plain functions, no Glance and no processes.  The conversion pipeline calls
them in this order:

1. :func:`inspect_bytes` reads only the upload's own bytes, before any
   ``qemu-img`` call: the header parsers of :mod:`glance_convert.formats`
   and oslo.utils' ``format_inspector``.  ``qemu-img info`` already opens
   qcow2 data files and VMDK extents, so everything that could make qemu
   open another file is refused here;
2. :func:`check_info` judges ``qemu-img info`` of the upload (defence in
   depth, and qemu and the bytes must agree);
3. :func:`check_consistency` judges ``qemu-img check`` of the upload;
4. :func:`verify_output` judges the converted file.

Each refusal raises :class:`~glance_convert.errors.ImageRejected` through
its entry in :mod:`glance_convert.pipeline.checks`: one sentence for the
end user, the detail for the operator's log.  What only one format can
fail is judged by that format's module (``check_header``, ``check_info``).
"""

from __future__ import annotations

import dataclasses
import os

from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector as fi

from glance_convert import errors
from glance_convert import formats
from glance_convert import units
from glance_convert.pipeline import checks

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Policy:
    """The operator's choices that the checks apply."""

    vmdk_allowed_types: tuple[str, ...] = ('streamOptimized',
                                           'monolithicSparse')
    gpt_nonfatal: frozenset[str] = frozenset()
    max_virtual_size: int = 1 << 40


@dataclasses.dataclass(frozen=True)
class SourceFacts:
    """What the bytes of the upload say about it."""

    claimed: str          # Glance disk_format the user claimed
    detected: str         # Glance disk_format the bytes show
    virtual_size: int     # from the headers
    file_size: int
    subformat: str | None = None
    qemu_sizes: tuple = ()  # virtual sizes qemu-img may report
    compressed_clusters: int = 0  # qcow2, counted by qemu-img check


# ---- 1. the bytes -----------------------------------------------------------

def inspect_bytes(path: str, claimed: str, policy: Policy) -> SourceFacts:
    """Judge the upload from its bytes alone, before qemu-img sees it.

    Also for uploads that are not converted (same format, ``iso``, ...):
    they reach the store, and the next reader, unchanged.
    """
    file_size = os.path.getsize(path)
    if file_size == 0:
        checks.EMPTY.reject()
    header = _parse_header(path, claimed)
    if header is not None:
        check_header(header, claimed, policy)
    name, inspector = _detect(path, claimed)
    detected = formats.glance_name_for_inspector(name)
    # Formats the inspector does not know (ami, aki, ari) must at least
    # not be a disk format it knows.
    expected = claimed if (formats.is_convertible(claimed)
                           or claimed in fi.ALL_FORMATS) else 'raw'
    if name == 'luks':
        checks.ENCRYPTED.reject('LUKS header found')
    if (detected == 'raw' and header is not None
            and formats.get(claimed).may_read_as_raw):
        detected = claimed  # e.g. a fixed VHD: only a footer, at the end
    elif detected == 'raw' and formats.uninspected_format(path):
        # A format format_inspector cannot see, found by its magic.
        checks.MISMATCH.reject('magic found', claimed=claimed,
                               found=formats.uninspected_format(path))
    elif detected != expected:
        if header is None and formats.has_magic(path, claimed):
            checks.UNREADABLE.reject('format_inspector found %s' % name)
        checks.MISMATCH.reject('format_inspector: %s' % name,
                               found=detected, claimed=claimed)
    else:
        _safety_checks(inspector, name, policy)
    if header is not None:
        seen = inspector.virtual_size if name == claimed else 0
        if seen and seen not in header.qemu_sizes + (header.virtual_size,):
            checks.DISAGREE.reject('format_inspector %d, headers %r'
                                   % (seen, header.sizes))
        virtual_size, qemu_sizes = header.virtual_size, header.qemu_sizes
    else:  # raw (and GPT/MBR disks): the file is the disk
        virtual_size = file_size  # qemu rounds up to whole sectors
        qemu_sizes = (file_size, -(-file_size // 512) * 512)
    check_virtual_size(virtual_size, policy)
    return SourceFacts(claimed, detected, virtual_size, file_size,
                       header.subformat if header else None, qemu_sizes)


def check_header(h: formats.Header, claimed: str, policy: Policy) -> None:
    """The policy on header facts, most specific reason first: what every
    format shares, and in between, the claimed format's own checks."""
    if h.encryption:
        checks.ENCRYPTED.reject(h.encryption)
    if h.backing:
        checks.BACKING.reject('backing file %r' % h.backing, format=claimed)
    formats.get(claimed).check_header(h, policy)
    if h.parent:
        checks.DIFFERENCING.reject('parent %r' % h.parent)
    if h.corrupt:
        checks.CORRUPT.reject(h.corrupt)
    if not h.size_claims_agree():
        checks.DISAGREE.reject('sizes in the headers: %r' % h.sizes)


def check_virtual_size(virtual_size: int, policy: Policy) -> None:
    if virtual_size > policy.max_virtual_size:
        checks.TOO_BIG.reject(size=units.human_size(virtual_size),
                              limit=units.human_size(policy.max_virtual_size))


def _parse_header(path: str, claimed: str) -> formats.Header | None:
    try:
        return formats.parse(path, claimed)
    except (formats.Malformed, OSError, ValueError) as exc:
        checks.UNREADABLE.reject('header of %s: %s' % (claimed, exc))


class _TailSkippingReader:
    """The file, as format_inspector reads it, minus what nobody wants.

    ``format_inspector`` reads a file until every inspector has decided.
    One of them, the VMDK inspector of a streamOptimized image whose grain
    directory is at the end (as VMware writes them), wants the footer in
    the last 1536 bytes; it can only say so with an ``EndCaptureRegion``,
    which completes at end of file, so the whole image was read, 4 KiB at
    a time through ten inspectors (5 s for a 600 MiB image).

    Once every inspector's only unfinished regions are end regions, the
    bytes before the tail cannot change any verdict: finished regions no
    longer capture, and an end region keeps only the last N bytes it was
    given.  This reader then seeks to the tail, so those inspectors still
    see exactly the bytes they would have kept.  If it cannot tell, it
    reads on, as ``detect_file_format`` does.
    """

    def __init__(self, f, size: int):
        self._f = f
        self._size = size
        self.inspectors: list = []
        self.skipped = 0

    def read(self, n: int) -> bytes:
        if not self.skipped:
            tail = self._tail_wanted()
            pos = self._f.tell()
            if tail and self._size - tail > pos + 4096:
                start = (self._size - tail) // 4096 * 4096
                self._f.seek(start)
                self.skipped = start - pos
        return self._f.read(n)

    def _tail_wanted(self) -> int:
        """Bytes of tail all unfinished regions want; 0: read on."""
        longest = 0
        for inspector in self.inspectors:
            if inspector.NAME == 'raw':
                continue  # never decides anything (see InspectWrapper)
            try:
                names = list(inspector.context_info)
                for name in names:
                    region = inspector.region(name)
                    if isinstance(region, fi.EndCaptureRegion):
                        longest = max(longest, region.length)
                    elif not region.complete:
                        return 0
            except Exception:  # noqa: BLE001 - unknown shape: read on
                return 0
        return longest


#: What installer ISOs are: ISO 9660 plus an MBR or GPT, so that they also
#: boot from a USB stick.  Claimed as ``iso``, Glance's own upload path
#: accepts exactly this pair as an ISO; any other combination is refused.
HYBRID_ISO = frozenset({'iso', 'gpt'})


def _detect_file_format(path: str, claimed: str | None = None):
    """``format_inspector.detect_file_format`` without reading the middle.

    The same wrapper, inspectors and decision; only the bytes no inspector
    needs are not read (see :class:`_TailSkippingReader`), and they are
    read 64 KiB at a time.  The one difference is Glance's: an upload
    claimed as ``iso`` that matches ISO 9660 and an MBR/GPT, and nothing
    else, is the ISO (:data:`HYBRID_ISO`).
    """
    with open(path, 'rb') as f:
        reader = _TailSkippingReader(f, os.fstat(f.fileno()).st_size)
        wrapper = fi.InspectWrapper(reader)
        # The wrapper's inspectors, to ask which regions they still want;
        # without them the reader simply reads everything.
        reader.inspectors = list(getattr(wrapper, '_inspectors', ()))
        try:
            # 64 KiB reads, as Glance's own uploads feed the inspectors,
            # instead of 4 KiB: the same verdicts, a fifth of the time.
            while wrapper.read(65536):
                if wrapper.formats is not None:
                    break
        finally:
            wrapper.close()
        matches = wrapper.formats or []
        if claimed == 'iso' and {str(m) for m in matches} == HYBRID_ISO:
            LOG.debug('%s is an ISO 9660 with an MBR/GPT: a hybrid ISO',
                      path)
            return next(m for m in matches if str(m) == 'iso')
        return wrapper.format


def _detect(path: str, claimed: str) -> tuple:
    try:
        inspector = _detect_file_format(path, claimed)
    except fi.ImageFormatError as exc:
        if 'Multiple formats' in str(exc):
            checks.MULTIPLE.reject(str(exc),
                                   formats=str(exc).split(': ', 1)[-1])
        checks.UNREADABLE.reject('format_inspector: %s' % exc)
    except Exception as exc:  # the inspector's own bugs on hostile input
        checks.UNREADABLE.reject('format_inspector crashed: %r' % exc)
    if inspector is None:
        checks.UNREADABLE.reject('format_inspector reached no decision')
    return str(inspector), inspector


def _safety_checks(inspector, name: str, policy: Policy) -> None:
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        fatal = set(exc.failures) - (policy.gpt_nonfatal if name == 'gpt'
                                     else set())
        detail = '%s: %s' % (name, {k: str(v)
                                    for k, v in exc.failures.items()})
        if not fatal:
            LOG.warning('Non-fatal GPT safety check failures: %s', detail)
            return
        checks.for_inspector_failure(sorted(fatal)[0]).reject(
            detail, format=name)
    except Exception as exc:
        checks.UNREADABLE.reject('safety check of %s: %r' % (name, exc))


# ---- 2. and 3. what qemu-img says -------------------------------------------

def check_info(info: dict, claimed: str, facts: SourceFacts,
               policy: Policy) -> int:
    """Judge ``qemu-img info`` of the upload; return its virtual size."""
    if info.get('format') != formats.qemu_driver(claimed):
        checks.MISMATCH.reject('qemu-img info', found=info.get('format'),
                               claimed=claimed)
    specific = (info.get('format-specific') or {}).get('data') or {}
    if {'backing-filename', 'full-backing-filename'} & set(info):
        checks.BACKING.reject('backing %r' % info.get('backing-filename'),
                              format=claimed)
    formats.get(claimed).check_info(info, policy)
    if info.get('encrypted') or specific.get('encrypt'):
        checks.ENCRYPTED.reject('qemu-img info')
    if specific.get('corrupt'):
        checks.CORRUPT.reject('qemu-img info: corrupt flag')
    virtual_size = int(info.get('virtual-size') or 0)
    if virtual_size not in facts.qemu_sizes:
        checks.DISAGREE.reject('qemu-img %d bytes, headers %r'
                               % (virtual_size, facts.qemu_sizes))
    check_virtual_size(virtual_size, policy)
    return virtual_size


def check_consistency(report: dict) -> None:
    """Judge ``qemu-img check``: refuse corrupt images (leaks are fine)."""
    if (report.get('exit-code') == 2 or report.get('corruptions')
            or report.get('check-errors')):
        checks.QEMU_CHECK.reject('qemu-img check: %r' % report)


# ---- 4. the output ----------------------------------------------------------

def verify_output(path: str, target: str, subformat: str | None = None,
                  policy: Policy | None = None) -> None:
    """The converted file must be exactly the target format and safe.

    A raw output that reads as another format means the guest data was a
    disk image itself: handing it on would let the next reader probe it.
    """
    policy = policy or Policy()
    try:
        name, inspector = _detect(path, target)
    except errors.ImageRejected as exc:
        if target == 'raw':
            checks.HIDDEN.reject(exc.detail, format='several formats')
        raise errors.ConversionFailed(
            'The converted image failed verification.', exc.detail)
    found = formats.glance_name_for_inspector(name)
    row = formats.get(target)
    if found == 'raw' and row.may_read_as_raw:
        header = formats.parse(path, target)
        if header is not None and row.raw_lookalike(header):
            check_header(header, target, policy)
            return
    if found == 'raw':  # or a format format_inspector cannot see
        name = found = formats.uninspected_format(path) or found
    if found != target:
        if target == 'raw':
            checks.HIDDEN.reject('output of %s detected as %s'
                                 % (target, name), format=name)
        raise errors.ConversionFailed(
            'The converted image failed verification.',
            'output of %s conversion detected as %s' % (target, found))
    _safety_checks(inspector, name, policy)
    header = formats.parse(path, target)
    if header is not None:
        check_header(header, target, policy)
