"""The safety checks, as data: one named entry per reason to refuse.

Each :class:`Check` holds the sentence the end user reads when it fails,
the sentence ``glance-convert inspect`` shows when it passes, the stage
that runs it and the advisory it answers, in the manner of oslo.utils'
``format_inspector.SafetyCheck`` (a stable name and a description) and of
Glance's ``glance-status`` table.  :mod:`glance_convert.pipeline.inspection`
and :mod:`glance_convert.pipeline.conversion` refuse through these entries
(``checks.BACKING.reject(detail, format='qcow2')``), so every sentence has
one home, and the documentation's security table is rendered from
:data:`CHECKS`.  A check only one disk format can fail is defined in that
format's module (``formats.qcow2.DATA_FILE``) and collected here.
"""

from __future__ import annotations

from glance_convert import formats
from glance_convert import safety
from glance_convert import units

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

# -- compressed uploads (container_format=compressed) ----------------------

BARE_COMPRESSED = Check(
    'bare_compressed', 'this upload is {compression}-compressed: set '
    'container_format=compressed',
    'a bare upload is not a compressed stream (recognised from its whole '
    'header); refused only with bare_compression = refuse, else unpacked',
    (CONTAINER,), 'the upload is not a compressed stream',
    containers=('bare',))
_COMPRESSED = ('compressed',)
NOT_COMPRESSED = Check(
    'not_compressed', 'the upload is not compressed with gzip, bzip2, xz, '
    'zstd or zip, as container format "compressed" says',
    'the compression is recognised from the first bytes, never from a '
    'name',
    (CONTAINER,), 'the upload is compressed with a known compression',
    containers=_COMPRESSED)
STREAM_TRUNCATED = Check(
    'truncated_stream', 'the {compression} data is truncated',
    'the compressed stream ends where its format says; zstd frames are '
    'walked first, as python-zstandard ends quietly mid-frame',
    (CONTAINER,), 'the compressed data is complete',
    containers=_COMPRESSED)
STREAM_CORRUPT = Check(
    'corrupt_stream', 'the {compression} data is corrupt',
    'the compressed stream decodes, its checksums included',
    (CONTAINER,), 'the compressed data decodes', containers=_COMPRESSED)
BOMB = Check(
    'decompressed_size', 'its decompressed data is larger than the limit of '
    '{limit}',
    'decompression stops as soon as the data crosses [glance_convert] '
    'max_virtual_size, under the conversion\'s slot, time limit and space '
    'reservation: a decompression bomb writes at most the limit',
    (CONTAINER,), 'the decompressed data is within the limit of {limit}',
    advisory='decompression bomb (CWE-409)', containers=_COMPRESSED)
COMPRESSED_EMPTY = Check(
    'compressed_empty', 'the compressed upload holds no data',
    'the decompressed data is not empty',
    (CONTAINER,), 'the compressed upload holds data',
    containers=_COMPRESSED)
ZIP_MEMBERS = Check(
    'zip_members', 'a zip upload must hold exactly one file, not {count}',
    'a zip holds one member, a plain unencrypted file: which of several '
    'files is the image would be a guess',
    (CONTAINER,), 'the zip holds one file', containers=_COMPRESSED)
ZIP_MEMBER = Check(
    'zip_member', 'the file in the zip upload is {what}',
    'the one zip member is neither a directory nor encrypted',
    (CONTAINER,), 'the zip member is a plain file', containers=_COMPRESSED)

# -- OVA appliances (container_format=ova) ---------------------------------

_OVA = ('ova',)
OVA_NOT_TAR = Check(
    'ova_not_tar', 'the upload is not a tar archive, as container format '
    '"ova" says',
    'the upload is an uncompressed tar with at least one member',
    (CONTAINER,), 'the upload is a tar archive', containers=_OVA)
OVA_MEMBER = Check(
    'ova_member', 'the OVA holds {what}, which is not allowed',
    'every tar member is a regular file with a plain relative name (no '
    'absolute path, no "..", no link, device, pipe, directory or sparse '
    'member) whose declared size fits in the archive; nothing is '
    'extracted with tarfile',
    (CONTAINER,), 'every OVA member is a plain file inside the archive',
    advisory='tar path traversal (CVE-2007-4559)', containers=_OVA)
OVA_DESCRIPTOR = Check(
    'ova_descriptor', 'the OVA must hold exactly one OVF descriptor, not '
    '{count}',
    'one .ovf descriptor, at most 1 MiB',
    (CONTAINER,), 'the OVA holds one OVF descriptor', containers=_OVA)
OVF_INVALID = Check(
    'ovf_invalid', 'its OVF descriptor is not valid: {what}',
    'the OVF parses with defusedxml (no entity expansion, no external '
    'entities), each disk names a file of the archive, sizes are numbers',
    (CONTAINER,), 'the OVF descriptor is valid',
    advisory='XML entity expansion (CWE-776)', containers=_OVA)
OVA_DISKS = Check(
    'ova_disks', 'the OVA must hold exactly one disk, not {count}',
    'the archive holds one disk besides the OVF, manifest and '
    'certificate, and the OVF describes one',
    (CONTAINER,), 'the OVA holds one disk', containers=_OVA)
OVF_UNKNOWN_FORMAT = Check(
    'ovf_disk_format_unknown', 'the OVF names a disk format this cloud '
    'cannot read: {uri}',
    'the OVF\'s disk format URI names one disk format (VMDK, qcow2)',
    (CONTAINER,), 'the OVF names a known disk format', containers=_OVA)
OVF_CLAIM = Check(
    'ovf_claim', 'the OVF says the disk is in {found} format, not {claimed} '
    'as claimed',
    'the disk_format the user claimed is the one the OVF states',
    (CONTAINER,), 'the OVF agrees with the claimed disk format',
    containers=_OVA)
OVF_FORMAT = Check(
    'ovf_disk_format', 'the OVF says the disk is in {format} format, but the '
    'data is not',
    'the disk\'s bytes are in the format the OVF states',
    (CONTAINER,), 'the disk is in the format the OVF states',
    advisory='OSSA-2024-001', containers=_OVA)
OVF_SIZE = Check(
    'ovf_size', 'the OVF says the disk is {stated} bytes, but it is {actual} '
    'bytes',
    'the disk file\'s size the OVF states is the member\'s size',
    (CONTAINER,), 'the disk file has the size the OVF states',
    containers=_OVA)
OVF_CAPACITY = Check(
    'ovf_capacity', 'the OVF says the disk holds {stated} bytes, but the '
    'disk image holds {actual}',
    'the capacity the OVF states is the disk image\'s virtual size',
    (CONTAINER,), 'the disk\'s virtual size is the OVF\'s capacity',
    containers=_OVA)

UPLOAD_CHECKS: tuple[Check, ...] = (
    SIGNED, SHA256_FORMAT, SHA256, BARE_COMPRESSED, NOT_COMPRESSED,
    STREAM_TRUNCATED,
    STREAM_CORRUPT, BOMB, COMPRESSED_EMPTY, ZIP_MEMBERS, ZIP_MEMBER,
    OVA_NOT_TAR, OVA_MEMBER, OVA_DESCRIPTOR, OVF_INVALID, OVA_DISKS,
    OVF_UNKNOWN_FORMAT, OVF_CLAIM, OVF_FORMAT, OVF_SIZE, OVF_CAPACITY)

#: Every check, in the order the pipeline runs them.
CHECKS: tuple[Check, ...] = UPLOAD_CHECKS + (
    EMPTY, UNREADABLE, MISMATCH, MULTIPLE, BACKING) + formats.own_checks() + (
    DIFFERENCING, ENCRYPTED, CORRUPT, DISAGREE, TOO_BIG, PARTITIONS, UNSAFE,
    QEMU_INFO, QEMU_CHECK, OUTPUT_LIMIT, HIDDEN)

_BY_NAME = {c.name: c for c in CHECKS}


def by_name(name: str) -> Check:
    """The check called ``name``; KeyError if there is none."""
    return _BY_NAME[name]


def for_inspector_failure(name: str) -> Check:
    """The check covering a failed format_inspector safety check."""
    return next((c for c in CHECKS if name in c.inspector_checks), UNSAFE)


def matching(reason: str) -> Check | None:
    """The first check whose sentence ``reason`` is, or None."""
    return next((c for c in CHECKS if c.matches(reason)), None)


def stages_run(claimed: str, container: str | None = None
               ) -> tuple[str, ...]:
    """The stages an upload claiming ``claimed`` in ``container`` goes
    through before it is converted or stored.

    An upload in a container that has checks of its own (compressed,
    OVA: see their ``containers``) is unpacked first.  Every disk is judged
    from its bytes, converted or not (it reaches the store and the next
    reader); formats we convert are also read by ``qemu-img info`` and,
    where qemu implements it, ``qemu-img check``.  The image-property
    checks run in the task only: neither ``inspect`` nor ``convert`` has
    an image.
    """
    first = (CONTAINER,) if any(
        container in (c.containers or ()) for c in CHECKS) else ()
    if not formats.is_convertible(claimed):
        return first + (BYTES,)
    if formats.get(claimed).checkable:
        return first + (BYTES, INFO, CHECK)
    return first + (BYTES, INFO)


def passed_reasons(claimed: str, max_virtual_size: int,
                   container: str | None = None) -> list[str]:
    """What an accepted upload claiming ``claimed`` was found not to do."""
    ran = set(stages_run(claimed, container))
    return [c.passed.format(format=claimed,
                            limit=units.human_size(max_virtual_size))
            for c in CHECKS
            if c.applies_to(claimed, container)
            and ran.intersection(c.stages)]
