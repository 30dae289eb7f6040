"""The safety checks, as data: one named entry per reason to refuse.

Each :class:`Check` holds the sentence the end user reads when it fails,
the sentence ``glance-convert inspect`` shows when it passes, the stage
that runs it and the advisory it answers, in the manner of oslo.utils'
``format_inspector.SafetyCheck`` (a stable name and a description) and of
Glance's ``glance-status`` table.  :mod:`glance_convert.pipeline.inspection`
and :mod:`glance_convert.pipeline.conversion` refuse through these entries
(``checks.BACKING.reject(detail, format='qcow2')``), so every sentence has
one home.  A check only one disk format can fail is defined in that
format's module (``formats.qcow2.DATA_FILE``) and collected here; a
container's checks are defined with that container.  The one table of
every check, which the documentation's security table is rendered from,
is :data:`glance_convert.pipeline.check_table.CHECKS`.
"""

from __future__ import annotations

from glance_convert import formats
from glance_convert import safety

PROPERTIES, CONTAINER = safety.PROPERTIES, safety.CONTAINER
BYTES = safety.BYTES
INFO, CHECK, CONVERT, OUTPUT = (safety.INFO, safety.CHECK, safety.CONVERT,
                                safety.OUTPUT)
STAGES = safety.STAGES
Check = safety.Check

_CONVERTIBLE = formats.CONVERTIBLE


EMPTY = Check(
    'empty', 'the image file is empty',
    'the upload has at least one byte',
    (BYTES,), 'the file is not empty')
UNREADABLE = Check(
    'unreadable', 'the image is too short or damaged to inspect',
    'the headers parse, and format_inspector reaches a decision without '
    'crashing on hostile input',
    (BYTES,), 'the headers can be read')
MISMATCH = Check(
    'format_mismatch', 'the data is in {found} format, not {claimed} as '
    'claimed',
    'the format detected from the bytes and by qemu-img is the claimed '
    'disk_format (GPT/MBR disks count as raw)',
    (BYTES, INFO), 'the data is a {format} image, as claimed',
    advisory='OSSA-2024-001; qemu CVE-2008-2004')
MULTIPLE = Check(
    'multiple_formats', 'the data matches more than one format ({formats})',
    'the bytes match one format only, e.g. not a qcow2 that is also a GPT '
    'disk or an ISO; as in Glance\'s upload path, an ISO 9660 with an '
    'MBR/GPT and nothing else (a hybrid installer ISO) claimed as iso is '
    'the ISO',
    (BYTES,), 'the data matches one format only',
    advisory='OSSA-2024-001')
BACKING = Check(
    'backing_file', '{format} images with a backing file are not allowed',
    'no backing file of any kind: absolute, relative, json:{...}, nbd:// '
    'or http://',
    (BYTES, INFO), 'no backing file',
    advisory='OSSA-2024-001 / CVE-2024-32498', formats=_CONVERTIBLE,
    inspector_checks=('backing_file',))
DIFFERENCING = Check(
    'differencing', 'differencing disks (images with a parent) are not '
    'allowed',
    'no parent disk: VMDK parentFileNameHint or parentCID, VHD disk type '
    '4, VDI differencing types or parent UUID, VHDX HasParent, parent '
    'locator or partially present blocks',
    (BYTES,), 'no parent disk',
    advisory='same class as CVE-2024-32498',
    formats=('vmdk', 'vhd', 'vdi', 'vhdx'))
ENCRYPTED = Check(
    'encrypted', 'encrypted images are not allowed',
    'no LUKS, qcow2 AES or LUKS encryption',
    (BYTES, INFO), 'not encrypted')
CORRUPT = Check(
    'corrupt', 'the image is corrupt',
    'no corrupt bit, no tables or blocks beyond the end of the file or '
    'overlapping each other, valid checksums, both VHDX region tables '
    'alike',
    (BYTES, INFO), 'the headers are consistent', formats=_CONVERTIBLE,
    inspector_checks=('footer',))
QEMU_CHECK = Check(
    'qemu_img_check', CORRUPT.sentence,
    'qemu-img check, under the same limits, finds no corruption (leaked '
    'clusters are harmless)',
    (CHECK,), 'qemu-img check found no corruption',
    formats=tuple(f.name for f in formats.FORMATS.values() if f.checkable))
DISAGREE = Check(
    'size_disagreement', 'the image headers disagree about its size',
    'every size the headers state, format_inspector\'s and qemu-img\'s '
    'agree: no parser differential',
    (BYTES, INFO), 'the headers agree about the virtual size',
    formats=_CONVERTIBLE)
TOO_BIG = Check(
    'virtual_size', 'its virtual size of {size} is above the limit of '
    '{limit}',
    'the virtual size, from the headers and from qemu-img, is within '
    '[glance_convert] max_virtual_size',
    (BYTES, INFO), 'the virtual size is within the limit of {limit}')
PARTITIONS = Check(
    'partitions', 'the partition table is invalid',
    'a raw disk\'s MBR/GPT partition table is valid, honouring '
    '[image_format] gpt_safety_checks_nonfatal',
    (BYTES,), 'no invalid partition table',
    advisory='OSSA-2024-001', formats=('raw',),
    inspector_checks=('mbr', 'gptmbr'))
UNSAFE = Check(
    'inspector_safety', 'the image failed a safety check',
    'every other format_inspector safety check passes',
    (BYTES,), 'format_inspector\'s safety checks pass')
QEMU_INFO = Check(
    'qemu_img_info', 'qemu-img cannot read it as a {format} image',
    'qemu-img info reads the upload with its format forced, under '
    'address-space and CPU limits and a timeout that kills it',
    (INFO,), 'qemu-img reads it as a {format} image within the limits',
    advisory='CVE-2015-5162', formats=_CONVERTIBLE)
OUTPUT_LIMIT = Check(
    'output_size', 'its converted data would be larger than allowed',
    'qemu-img convert writes no more than the estimated output size '
    '(RLIMIT_FSIZE), within a timeout',
    (CONVERT,), 'the converted data stays within its size limit',
    formats=_CONVERTIBLE)
HIDDEN = Check(
    'hidden_image', 'the image hides another disk image ({format}) in its '
    'data',
    'a raw output reads as no disk format: the guest data was not itself '
    'an image',
    (OUTPUT,), 'the raw output hides no other disk image',
    advisory='OSSA-2024-001', formats=('raw',))


# -- the image's properties (the task only: the CLI has none) -------------

SIGNED = Check(
    'signed_image', 'the image is signed (img_signature properties) and '
    'converting it would invalidate the signature; upload it in the disk '
    'format this cloud stores, or without a signature',
    'no img_signature* property, unless [glance_convert] signed_images = '
    'passthrough stores such uploads unconverted: Glance and Nova verify '
    'the signature over the stored bytes, which a conversion changes',
    (PROPERTIES,), 'the image is not signed')
SHA256_FORMAT = Check(
    'source_sha256_format', 'the property glance_convert_source_sha256 must '
    'be a SHA-256 written as 64 hexadecimal digits',
    'a glance_convert_source_sha256 set by the user is a SHA-256, so that a '
    'typo is not reported as a mismatch',
    (PROPERTIES,), 'glance_convert_source_sha256 is a SHA-256')
SHA256 = Check(
    'source_sha256', 'the SHA-256 of the upload is {actual}, not {expected} '
    'as the property glance_convert_source_sha256 says',
    'the SHA-256 of the upload as uploaded (compressed file, OVA) equals '
    'the glance_convert_source_sha256 the user set, checked before '
    'anything is stored',
    (PROPERTIES,), 'the upload has the SHA-256 its publisher gave')

#: What the image's properties must not do, checked first.
PROPERTY_CHECKS: tuple[Check, ...] = (SIGNED, SHA256_FORMAT, SHA256)

#: What the disk image must not do, in the order they are checked; the
#: containers' checks (:mod:`.containers`) run between these two.
DISK_CHECKS: tuple[Check, ...] = (
    EMPTY, UNREADABLE, MISMATCH, MULTIPLE, BACKING) + formats.own_checks() + (
    DIFFERENCING, ENCRYPTED, CORRUPT, DISAGREE, TOO_BIG, PARTITIONS, UNSAFE,
    QEMU_INFO, QEMU_CHECK, OUTPUT_LIMIT, HIDDEN)


def for_inspector_failure(name: str) -> Check:
    """The check covering a failed format_inspector safety check."""
    return next((c for c in DISK_CHECKS if name in c.inspector_checks), UNSAFE)
