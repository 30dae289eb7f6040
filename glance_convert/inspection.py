"""Safety policy: what the plugin refuses to convert, and why.

Plain functions, no Glance and no processes.  The conversion pipeline calls
them in this order:

1. :func:`inspect_bytes` reads only the upload's own bytes (oslo.utils'
   ``format_inspector``), before qemu-img sees the file;
2. :func:`check_info` judges ``qemu-img info`` of the upload;
3. :func:`check_consistency` judges ``qemu-img check`` of the upload;
4. :func:`verify_output` judges the converted file.

Each refusal raises :class:`~glance_convert.errors.ImageRejected` with one
sentence for the end user and the detail for the operator's log.
"""

from __future__ import annotations

import dataclasses
import os

from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector as fi

from glance_convert import errors
from glance_convert import formats

LOG = logging.getLogger(__name__)

GiB = 1024 ** 3


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
    virtual_size: int     # from the headers; 0 when they do not say
    file_size: int
    subformat: str | None = None


# format_inspector safety check name -> sentence for the end user.
_SAFETY_REASONS = {
    'backing_file': 'qcow2 images with a backing file are not allowed',
    'data_file': 'qcow2 images with an external data file are not allowed',
    'unknown_features': 'the qcow2 image uses features that are not '
                        'supported',
    'descriptor': 'the VMDK descriptor is not allowed (only '
                  'single-file monolithicSparse and streamOptimized VMDKs '
                  'are accepted)',
    'footer': 'the VMDK footer is invalid',
    'mbr': 'the partition table is invalid',
    'version': 'encrypted images are not allowed',
    'passphrase': 'encrypted images are not allowed',
    'inner_safety': 'encrypted images are not allowed',
}


def _size(n: int) -> str:
    return '%.1f GiB' % (n / GiB) if n >= GiB else '%d MiB' % (n >> 20)


def inspect_bytes(path: str, claimed: str, policy: Policy) -> SourceFacts:
    """Detect the format from the bytes and run the inspector's checks."""
    file_size = os.path.getsize(path)
    if file_size == 0:
        raise errors.ImageRejected('the image file is empty')
    try:
        inspector = fi.detect_file_format(path)
    except fi.ImageFormatError as exc:
        raise errors.ImageRejected(
            'the image contains more than one disk format',
            'format detection of %s failed: %s' % (path, exc))
    name = str(inspector)
    detected = formats.glance_name_for_inspector(name)
    if name == 'luks':
        raise errors.ImageRejected('encrypted images are not allowed',
                                   'LUKS header found')
    if detected != claimed:
        raise errors.ImageRejected(
            'the data is not a %s image (it looks like %s)'
            % (claimed, detected),
            'claimed %s, format_inspector found %s' % (claimed, name))
    _run_safety_checks(inspector, name, policy)
    # A raw inspector's "virtual size" is only the bytes it has read.
    virtual_size = 0 if name in ('raw', 'gpt') else (
        inspector.virtual_size or 0)
    _check_virtual_size(virtual_size, policy)
    return SourceFacts(claimed=claimed, detected=detected,
                       virtual_size=virtual_size, file_size=file_size)


def _run_safety_checks(inspector, name: str, policy: Policy) -> None:
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        fatal = set(exc.failures) - (policy.gpt_nonfatal
                                     if name == 'gpt' else set())
        if not fatal:
            LOG.warning('Non-fatal GPT safety check failures: %s', exc)
            return
        first = sorted(fatal)[0]
        reason = _SAFETY_REASONS.get(
            first.replace('inner_', ''),
            'the image failed a safety check')
        raise errors.ImageRejected(
            reason, 'safety checks failed for %s: %s'
            % (name, {k: str(v) for k, v in exc.failures.items()}))
    except fi.ImageFormatError as exc:
        raise errors.ImageRejected(
            'the image is too short or corrupt to inspect',
            'inspection of %s failed: %s' % (name, exc))


def _check_virtual_size(virtual_size: int, policy: Policy) -> None:
    if virtual_size > policy.max_virtual_size:
        raise errors.ImageRejected(
            'its virtual size of %s is above the limit of %s'
            % (_size(virtual_size), _size(policy.max_virtual_size)))


def check_info(info: dict, claimed: str, facts: SourceFacts,
               policy: Policy) -> int:
    """Judge ``qemu-img info`` of the upload; return its virtual size."""
    expected = formats.qemu_driver(claimed)
    if info.get('format') != expected:
        raise errors.ImageRejected(
            'the data is not a %s image' % claimed,
            'qemu-img info reports format %r' % info.get('format'))
    if any(k in info for k in ('backing-filename', 'full-backing-filename',
                               'backing-filename-format')):
        raise errors.ImageRejected(
            '%s images with a backing file are not allowed' % claimed,
            'backing file %r' % info.get('backing-filename'))
    specific = (info.get('format-specific') or {}).get('data') or {}
    if specific.get('data-file') or specific.get('data-file-raw'):
        raise errors.ImageRejected(
            'qcow2 images with an external data file are not allowed',
            'data-file %r' % specific.get('data-file'))
    if info.get('encrypted') or specific.get('encrypt'):
        raise errors.ImageRejected('encrypted images are not allowed')
    if expected == 'vmdk':
        _check_vmdk_info(info, specific, policy)
    virtual_size = int(info.get('virtual-size') or 0)
    if facts.virtual_size and virtual_size != facts.virtual_size:
        raise errors.ImageRejected(
            'the image headers disagree about its size',
            'inspector %d bytes, qemu-img %d bytes'
            % (facts.virtual_size, virtual_size))
    _check_virtual_size(virtual_size, policy)
    return virtual_size


def _check_vmdk_info(info: dict, specific: dict, policy: Policy) -> None:
    create_type = specific.get('create-type')
    # qemu compares createType with strcmp: exact, case-sensitive.
    if create_type not in policy.vmdk_allowed_types:
        raise errors.ImageRejected(
            'VMDK images of type %s are not allowed' % create_type,
            'create-type %r not in vmdk_allowed_types %r'
            % (create_type, policy.vmdk_allowed_types))
    own = os.path.realpath(info.get('filename', ''))
    for extent in specific.get('extents') or []:
        name = extent.get('filename')
        if name and os.path.realpath(name) != own:
            raise errors.ImageRejected(
                'VMDK images that refer to other files are not allowed',
                'extent %r' % name)


def check_consistency(report: dict) -> None:
    """Judge ``qemu-img check``: refuse corrupt images."""
    if report.get('exit-code') == 2 or report.get('corruptions'):
        raise errors.ImageRejected(
            'the image is corrupt', 'qemu-img check: %r' % report)


def verify_output(path: str, target: str, subformat: str | None = None
                  ) -> None:
    """The converted file must be exactly the target format and safe."""
    try:
        inspector = fi.detect_file_format(path)
    except fi.ImageFormatError as exc:
        raise errors.ConversionFailed(
            'The converted image failed verification.', str(exc))
    found = formats.glance_name_for_inspector(str(inspector))
    if target == 'vhd' and found == 'raw' and _has_fixed_vhd_footer(path):
        return
    if found != target:
        raise errors.ConversionFailed(
            'The converted image failed verification.',
            'output of %s conversion detected as %s' % (target, found))
    try:
        inspector.safety_check()
    except (fi.SafetyCheckFailed, fi.ImageFormatError) as exc:
        raise errors.ConversionFailed(
            'The converted image failed verification.', str(exc))


def _has_fixed_vhd_footer(path: str) -> bool:
    """True if the last sector is a VHD footer of a fixed disk."""
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 512:
            return False
        f.seek(-512, os.SEEK_END)
        footer = f.read(512)
    disk_type = int.from_bytes(footer[60:64], 'big')
    return footer[:8] == b'conectix' and disk_type == 2
