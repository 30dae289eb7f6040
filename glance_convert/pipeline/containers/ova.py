"""ova: a tar archive with an OVF descriptor and one disk, copied out safely.

Nothing is extracted with ``tarfile``: every member is judged from its
header (regular files only, plain relative names, inside the archive)
and the one disk's bytes are copied into a sparse work file in one pass
that also hashes them.  The OVF is parsed with ``defusedxml``.  What it
says becomes image properties (listed for users in the documentation's
page on uploads); what it says about how the guest boots is read into
:attr:`Appliance.hints` by :mod:`.ovf_guest`.  The container's checks are
defined here, where they refuse, and the disk is copied into the
import's :mod:`~glance_convert.pipeline.hold`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import re
import tarfile

from defusedxml import ElementTree

from glance_convert import errors
from glance_convert import safety
from glance_convert import units
from glance_convert.guest.hints import Hints
from glance_convert.pipeline import checks
from glance_convert.pipeline import hold
from glance_convert.pipeline import inspection
from glance_convert.pipeline import ovf_guest
from glance_convert.pipeline import sparse
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline.containers import base

# -- the checks of the ova container --------------------------------------

_OVA = ('ova',)
_STAGE = (safety.CONTAINER,)
OVA_NOT_TAR = safety.Check(
    'ova_not_tar', 'the upload is not a tar archive, as container format '
    '"ova" says',
    'the upload is an uncompressed tar with at least one member',
    _STAGE, 'the upload is a tar archive', containers=_OVA)
OVA_MEMBER = safety.Check(
    'ova_member', 'the OVA holds {what}, which is not allowed',
    'every tar member is a regular file with a plain relative name (no '
    'absolute path, no "..", no link, device, pipe, directory or sparse '
    'member) whose declared size fits in the archive; nothing is '
    'extracted with tarfile',
    _STAGE, 'every OVA member is a plain file inside the archive',
    advisory='tar path traversal (CVE-2007-4559)', containers=_OVA)
OVA_DESCRIPTOR = safety.Check(
    'ova_descriptor', 'the OVA must hold exactly one OVF descriptor, not '
    '{count}',
    'one .ovf descriptor, at most 1 MiB',
    _STAGE, 'the OVA holds one OVF descriptor', containers=_OVA)
OVF_INVALID = safety.Check(
    'ovf_invalid', 'its OVF descriptor is not valid: {what}',
    'the OVF parses with defusedxml (no entity expansion, no external '
    'entities), each disk names a file of the archive, sizes are numbers',
    _STAGE, 'the OVF descriptor is valid',
    advisory='XML entity expansion (CWE-776)', containers=_OVA)
OVA_DISKS = safety.Check(
    'ova_disks', 'the OVA must hold exactly one disk, not {count}',
    'the archive holds one disk besides the OVF, manifest and '
    'certificate, and the OVF describes one',
    _STAGE, 'the OVA holds one disk', containers=_OVA)
OVF_UNKNOWN_FORMAT = safety.Check(
    'ovf_disk_format_unknown', 'the OVF names a disk format this cloud '
    'cannot read: {uri}',
    'the OVF\'s disk format URI names one disk format (VMDK, qcow2)',
    _STAGE, 'the OVF names a known disk format', containers=_OVA)
OVF_CLAIM = safety.Check(
    'ovf_claim', 'the OVF says the disk is in {found} format, not {claimed} '
    'as claimed',
    'the disk_format the user claimed is the one the OVF states',
    _STAGE, 'the OVF agrees with the claimed disk format',
    containers=_OVA)
OVF_FORMAT = safety.Check(
    'ovf_disk_format', 'the OVF says the disk is in {format} format, but the '
    'data is not',
    'the disk\'s bytes are in the format the OVF states',
    _STAGE, 'the disk is in the format the OVF states',
    advisory='OSSA-2024-001', containers=_OVA)
OVF_SIZE = safety.Check(
    'ovf_size', 'the OVF says the disk is {stated} bytes, but it is {actual} '
    'bytes',
    'the disk file\'s size the OVF states is the member\'s size',
    _STAGE, 'the disk file has the size the OVF states',
    containers=_OVA)
OVF_CAPACITY = safety.Check(
    'ovf_capacity', 'the OVF says the disk holds {stated} bytes, but the '
    'disk image holds {actual}',
    'the capacity the OVF states is the disk image\'s virtual size',
    _STAGE, 'the disk\'s virtual size is the OVF\'s capacity',
    containers=_OVA)

#: The ova container's checks, in the order they run.
CHECKS = (OVA_NOT_TAR, OVA_MEMBER, OVA_DESCRIPTOR, OVF_INVALID, OVA_DISKS,
          OVF_UNKNOWN_FORMAT, OVF_CLAIM, OVF_FORMAT, OVF_SIZE, OVF_CAPACITY)

OVF_NS = ovf_guest.OVF_NS
RASD_NS = ('http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/'
           'CIM_ResourceAllocationSettingData')
VMW_NS = 'http://www.vmware.com/schema/ovf'

#: The OVF descriptor is small; a bigger one is refused before parsing.
MAX_OVF_BYTES = units.MiB

# ovf:format URIs -> Glance disk format.  Only those that name one format.
_FORMAT_URIS = (
    (re.compile(r'vmware\.com/.*/vmdk\.html'), 'vmdk'),
    (re.compile(r'qcow'), 'qcow2'),
)
_CONTROLLERS = {'5': 'ide', '6': 'scsi', '20': 'sata', '31': 'nvme'}
_UNITS = re.compile(r'^byte\s*(?:\*\s*2\^(\d+))?$')
#: Units exporters write in words: VirtualBox states memory in
#: "MegaBytes" (ApplianceImplExport.cpp), not DSP0004's "byte * 2^20".
_UNIT_WORDS = {'megabytes': 'byte * 2^20'}


@dataclasses.dataclass(frozen=True)
class Disk:
    """The OVA's one disk: where its bytes are and what the OVF says."""

    member: str            # name in the tar
    offset: int            # of its data in the upload
    size: int              # bytes in the tar
    disk_format: str       # Glance disk format the OVF states
    capacity: int | None   # virtual size the OVF states, bytes


@dataclasses.dataclass(frozen=True)
class Appliance:
    disk: Disk
    properties: dict       # image properties from the OVF
    #: what the OVF says about how the guest boots
    hints: Hints = Hints(source='ovf')


def _check_member(m: tarfile.TarInfo, archive_size: int) -> None:
    name = m.name
    parts = name.split('/')
    if name.startswith('/') or '..' in parts or '\\' in name:
        OVA_MEMBER.reject(what='a file outside the archive (%r)' % name)
    if m.issym() or m.islnk():
        OVA_MEMBER.reject(what='a link (%r)' % name)
    if m.ischr() or m.isblk() or m.isfifo():
        OVA_MEMBER.reject(what='a device or pipe (%r)' % name)
    if m.isdir():
        OVA_MEMBER.reject(what='a directory (%r)' % name)
    if not m.isreg() or m.issparse():
        OVA_MEMBER.reject(what='a special file (%r)' % name)
    if m.offset_data + m.size > archive_size:
        OVA_MEMBER.reject(
            '%r: %d bytes at %d, archive %d bytes'
            % (name, m.size, m.offset_data, archive_size),
            what='a file larger than the archive (%r)' % name)


def _members(path: str) -> list[tarfile.TarInfo]:
    size = os.path.getsize(path)
    try:
        # 'r:' reads an uncompressed tar only; headers, never data.
        with tarfile.open(path, 'r:') as tar:
            members = []
            for m in tar:
                _check_member(m, size)
                members.append(m)
    except tarfile.TarError as exc:
        OVA_NOT_TAR.reject(str(exc))
    if not members:
        OVA_NOT_TAR.reject('no members')
    return members


def _ns_find(elem, local: str, namespaces=OVF_NS):
    for ns in namespaces:
        found = elem.find('.//{%s}%s' % (ns, local))
        if found is not None:
            return found
    return None


def _ns_findall(elem, local: str, namespaces=OVF_NS):
    out = []
    for ns in namespaces:
        out.extend(elem.findall('.//{%s}%s' % (ns, local)))
    return out


def _attr(elem, local: str) -> str | None:
    for ns in OVF_NS:
        value = elem.get('{%s}%s' % (ns, local))
        if value is not None:
            return value
    return elem.get(local)


def _child_text(item, local: str) -> str | None:
    found = item.find('{%s}%s' % (RASD_NS, local))
    return found.text.strip() if found is not None and found.text else None


def _scaled(value: str | None, unit: str | None, what: str) -> int | None:
    if value is None:
        return None
    unit = (unit or 'byte').strip()
    match = _UNITS.match(_UNIT_WORDS.get(unit.lower(), unit))
    if not value.strip().isdigit() or match is None:
        OVF_INVALID.reject(what='%s %r %r' % (what, value, unit))
    return int(value) << int(match.group(1) or 0)


def _disk_format(uri: str | None) -> str:
    for pattern, name in _FORMAT_URIS:
        if uri and pattern.search(uri):
            return name
    OVF_UNKNOWN_FORMAT.reject(uri=uri or 'none')


def parse_ovf(text: bytes) -> tuple[dict, dict, Hints]:
    """({file href: (size, format, capacity)}, image properties, hints)."""
    try:
        root = ElementTree.fromstring(text)
    except Exception as exc:  # noqa: BLE001 - ParseError, defusedxml's own
        OVF_INVALID.reject(repr(exc), what='unreadable XML')
    files = {}
    for f in _ns_findall(root, 'File'):
        files[_attr(f, 'id')] = (_attr(f, 'href'), _attr(f, 'size'))
    disks = {}
    for d in _ns_findall(root, 'Disk'):
        ref = _attr(d, 'fileRef')
        if ref not in files:
            OVF_INVALID.reject(what='a disk refers to no file')
        href, size = files[ref]
        disks[href] = (
            _scaled(size, None, 'file size') if size else None,
            _disk_format(_attr(d, 'format')),
            _scaled(_attr(d, 'capacity'), _attr(d, 'capacityAllocationUnits'),
                    'capacity'))
    return disks, _properties(root), ovf_guest.read(root)


def _properties(root) -> dict:
    # The firmware, the OS and the devices are hints for the guest's
    # decision (ovf_guest), which weighs them against the disk.
    props = {}
    os_section = _ns_find(root, 'OperatingSystemSection')
    if os_section is not None:
        if os_section.get('{%s}osType' % VMW_NS):
            props['glance_convert_ovf_os_type'] = os_section.get(
                '{%s}osType' % VMW_NS)
        if _attr(os_section, 'id'):
            props['glance_convert_ovf_os_id'] = _attr(os_section, 'id')
    controllers = {}
    for item in _ns_findall(root, 'Item'):
        kind = _child_text(item, 'ResourceType')
        quantity = _child_text(item, 'VirtualQuantity')
        if kind == '3' and quantity and quantity.isdigit():
            props['glance_convert_ovf_cpus'] = quantity
        elif kind == '4' and quantity:
            nbytes = _scaled(quantity, _child_text(item, 'AllocationUnits'),
                             'memory')
            props['glance_convert_ovf_memory_mb'] = str(nbytes // units.MiB)
        elif kind in _CONTROLLERS:
            controllers[_child_text(item, 'InstanceID')] = '%s%s' % (
                _CONTROLLERS[kind],
                ':%s' % _child_text(item, 'ResourceSubType')
                if _child_text(item, 'ResourceSubType') else '')
        elif kind == '17':
            parent = controllers.get(_child_text(item, 'Parent'))
            if parent:
                props['glance_convert_ovf_disk_controller'] = parent
    return props


def read(path: str) -> Appliance:
    """Judge the OVA ``path`` and its OVF; where its one disk is."""
    members = _members(path)
    ovfs = [m for m in members if m.name.lower().endswith('.ovf')]
    if not ovfs:
        OVA_DESCRIPTOR.reject(count=0)
    if len(ovfs) > 1:
        OVA_DESCRIPTOR.reject(count=len(ovfs))
    ovf = ovfs[0]
    if ovf.size > MAX_OVF_BYTES:
        OVF_INVALID.reject(what='it is larger than %s'
                           % units.human_size(MAX_OVF_BYTES))
    with open(path, 'rb') as f:
        text = os.pread(f.fileno(), ovf.size, ovf.offset_data)
    described, properties, hints = parse_ovf(text)
    others = [m for m in members if m is not ovf and not
              m.name.lower().endswith(('.mf', '.cert'))]
    if len(others) != 1 or len(described) != 1:
        OVA_DISKS.reject(count=max(len(others), len(described)))
    member = others[0]
    href = next(iter(described))
    if posixpath.normpath(href) != posixpath.normpath(member.name):
        OVF_INVALID.reject(
            'OVF names %r, the archive holds %r' % (href, member.name),
            what='its disk file is not in the archive')
    stated_size, disk_format, capacity = described[href]
    if stated_size is not None and stated_size != member.size:
        OVF_SIZE.reject(stated=stated_size, actual=member.size)
    return Appliance(Disk(member.name, member.offset_data, member.size,
                          disk_format, capacity), properties, hints)


def extract(path: str, appliance: Appliance, dst: str):
    """Copy the disk's bytes to the new sparse file ``dst``; hash ``path``.

    The hash reads the upload in a thread of its own
    (:class:`~glance_convert.pipeline.upload_hash.BackgroundHash`) rather
    than taking the copy's blocks: a copy is several times faster than
    SHA-256, and fed block by block the copy went at the hash's pace.  The
    second read comes from the page cache the first one fills.  Returns the
    hash (``result()`` waits for the hex digest, ``cancel()`` stops it).
    ``dst`` is removed on failure.
    """
    disk = appliance.disk
    sha256 = upload_hash.BackgroundHash(path)
    try:
        with open(path, 'rb') as f, sparse.written(dst) as writer:
            f.seek(disk.offset)
            left = disk.size
            while left > 0:
                data = f.read(min(sparse.CHUNK, left))
                if not data:
                    OVA_MEMBER.reject(what='a truncated disk')
                writer.write(data)
                left -= len(data)
        return sha256
    except BaseException:
        sha256.cancel()
        raise


def check_disk(path: str, appliance: Appliance,
               policy: inspection.Policy) -> inspection.SourceFacts:
    """The extracted disk must be what the OVF says: format and size."""
    disk = appliance.disk
    try:
        facts = inspection.inspect_bytes(path, disk.disk_format, policy)
    except errors.ImageRejected as exc:
        if checks.MISMATCH.matches(exc.reason):
            OVF_FORMAT.reject(exc.detail, format=disk.disk_format)
        raise
    if disk.capacity is not None and facts.virtual_size != disk.capacity:
        OVF_CAPACITY.reject(stated=disk.capacity,
                            actual=facts.virtual_size)
    return facts


@contextlib.contextmanager
def open_upload(request: base.Request):
    appliance = read(request.src)
    disk_format = request.disk_format
    if disk_format and disk_format != appliance.disk.disk_format:
        OVF_CLAIM.reject(found=appliance.disk.disk_format,
                         claimed=disk_format)
    with hold.held(request.workspace, image_id=request.image_id,
                   work_dir=request.work_dir,
                   slot_timeout=request.slot_timeout, status=request.status,
                   info=request.info_for_ledger) as work:
        path = work.work_file('ova-disk')
        # The copy is exactly as long as the member, at most.
        work.reserve(appliance.disk.size, step='ova', paths=(path,))
        sha256 = extract(request.src, appliance, path)
        try:
            disk = base.checked_first(base.Opened(
                path, appliance.disk.disk_format, request.container_format,
                work, dict(appliance.properties), hints=appliance.hints,
                _hash=sha256,
                _expected=request.expected_sha256,
                _keep=lambda: work.keep(path)))
            check_disk(path, appliance, request.policy)
            yield disk
        finally:
            sha256.cancel()   # no-op once taken


CONTAINER = base.Container(
    'ova', 'a tar archive with an OVF descriptor and one disk, whose format '
    'the OVF states', unpacks=True, states_disk_format=True,
    open=open_upload, checks=CHECKS)
