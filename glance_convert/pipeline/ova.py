"""OVA uploads (``container_format=ova``): one disk out of a tar, safely.

An OVA is a tar holding an OVF descriptor (XML), the disk it describes
and optionally a manifest (``.mf``) and certificate (``.cert``).  Nothing
is extracted with ``tarfile``: its headers are read to learn where each
member's bytes are, every member is judged (regular files only, plain
relative names, inside the archive), and the one disk's byte range is
copied into a sparse work file in one sequential pass over the upload
that also hashes it.  The OVF is parsed with ``defusedxml`` (no entity
expansion, no external entities).

What the OVF says is turned into image properties (the documentation's
page on compressed images and OVA appliances lists them for users):

=====================================  =================================
OVF                                    image property
=====================================  =================================
VMware ``firmware`` = ``efi``/``bios`` ``hw_firmware_type`` = uefi/bios
OperatingSystemSection ``vmw:osType``  ``glance_convert_ovf_os_type``
OperatingSystemSection ``ovf:id``      ``glance_convert_ovf_os_id``
Item ResourceType 3 (CPU) quantity     ``glance_convert_ovf_cpus``
Item ResourceType 4 (memory), in MiB   ``glance_convert_ovf_memory_mb``
the disk's controller (IDE, SCSI,      ``glance_convert_ovf_disk_controller``
SATA, NVMe) and its ResourceSubType
=====================================  =================================

Only the firmware maps to a Nova property: it means the same thing in
both.  A VMware controller model (e.g. ``lsilogic``) has no Nova
equivalent, so it is kept for the operator, not translated.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import tarfile

from defusedxml import ElementTree

from glance_convert import errors
from glance_convert import units
from glance_convert.host import layout
from glance_convert.pipeline import checks
from glance_convert.pipeline import inspection
from glance_convert.pipeline import unpack
from glance_convert.pipeline import upload_hash

OVF_NS = ('http://schemas.dmtf.org/ovf/envelope/1',
          'http://schemas.dmtf.org/ovf/envelope/2')
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


def _check_member(m: tarfile.TarInfo, archive_size: int) -> None:
    name = m.name
    parts = name.split('/')
    if name.startswith('/') or '..' in parts or '\\' in name:
        checks.OVA_MEMBER.reject(what='a file outside the archive (%r)' % name)
    if m.issym() or m.islnk():
        checks.OVA_MEMBER.reject(what='a link (%r)' % name)
    if m.ischr() or m.isblk() or m.isfifo():
        checks.OVA_MEMBER.reject(what='a device or pipe (%r)' % name)
    if m.isdir():
        checks.OVA_MEMBER.reject(what='a directory (%r)' % name)
    if not m.isreg() or m.issparse():
        checks.OVA_MEMBER.reject(what='a special file (%r)' % name)
    if m.offset_data + m.size > archive_size:
        checks.OVA_MEMBER.reject(
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
        checks.OVA_NOT_TAR.reject(str(exc))
    if not members:
        checks.OVA_NOT_TAR.reject('no members')
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
    match = _UNITS.match((unit or 'byte').strip())
    if not value.strip().isdigit() or match is None:
        checks.OVF_INVALID.reject(what='%s %r %r' % (what, value, unit))
    return int(value) << int(match.group(1) or 0)


def _disk_format(uri: str | None) -> str:
    for pattern, name in _FORMAT_URIS:
        if uri and pattern.search(uri):
            return name
    checks.OVF_UNKNOWN_FORMAT.reject(uri=uri or 'none')


def parse_ovf(text: bytes) -> tuple[dict, dict]:
    """({file href: (size, format, capacity)}, image properties)."""
    try:
        root = ElementTree.fromstring(text)
    except Exception as exc:  # noqa: BLE001 - ParseError, defusedxml's own
        checks.OVF_INVALID.reject(repr(exc), what='unreadable XML')
    files = {}
    for f in _ns_findall(root, 'File'):
        files[_attr(f, 'id')] = (_attr(f, 'href'), _attr(f, 'size'))
    disks = {}
    for d in _ns_findall(root, 'Disk'):
        ref = _attr(d, 'fileRef')
        if ref not in files:
            checks.OVF_INVALID.reject(what='a disk refers to no file')
        href, size = files[ref]
        disks[href] = (
            _scaled(size, None, 'file size') if size else None,
            _disk_format(_attr(d, 'format')),
            _scaled(_attr(d, 'capacity'), _attr(d, 'capacityAllocationUnits'),
                    'capacity'))
    return disks, _properties(root)


def _properties(root) -> dict:
    props = {}
    for config in root.iter('{%s}Config' % VMW_NS):
        if config.get('{%s}key' % VMW_NS) == 'firmware':
            value = (config.get('{%s}value' % VMW_NS) or '').lower()
            if value in ('efi', 'bios'):
                props['hw_firmware_type'] = {'efi': 'uefi'}.get(value, value)
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
        checks.OVA_DESCRIPTOR.reject(count=0)
    if len(ovfs) > 1:
        checks.OVA_DESCRIPTOR.reject(count=len(ovfs))
    ovf = ovfs[0]
    if ovf.size > MAX_OVF_BYTES:
        checks.OVF_INVALID.reject(what='it is larger than %s'
                                  % units.human_size(MAX_OVF_BYTES))
    with open(path, 'rb') as f:
        text = os.pread(f.fileno(), ovf.size, ovf.offset_data)
    described, properties = parse_ovf(text)
    others = [m for m in members if m is not ovf and not
              m.name.lower().endswith(('.mf', '.cert'))]
    if len(others) != 1 or len(described) != 1:
        checks.OVA_DISKS.reject(count=max(len(others), len(described)))
    member = others[0]
    href = next(iter(described))
    if posixpath.normpath(href) != posixpath.normpath(member.name):
        checks.OVF_INVALID.reject(
            'OVF names %r, the archive holds %r' % (href, member.name),
            what='its disk file is not in the archive')
    stated_size, disk_format, capacity = described[href]
    if stated_size is not None and stated_size != member.size:
        checks.OVF_SIZE.reject(stated=stated_size, actual=member.size)
    return Appliance(Disk(member.name, member.offset_data, member.size,
                          disk_format, capacity), properties)


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
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o600)
    sha256 = None
    try:
        sha256 = upload_hash.BackgroundHash(path)
        with open(path, 'rb') as f:
            f.seek(disk.offset)
            writer = unpack._SparseWriter(fd)
            left = disk.size
            while left > 0:
                data = f.read(min(unpack.CHUNK, left))
                if not data:
                    checks.OVA_MEMBER.reject(what='a truncated disk')
                writer.write(data)
                left -= len(data)
            writer.finish()
            return sha256
    except BaseException:
        if sha256 is not None:
            sha256.cancel()
        os.close(fd)
        fd = None
        layout.remove(dst)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def check_disk(path: str, appliance: Appliance,
               policy: inspection.Policy) -> inspection.SourceFacts:
    """The extracted disk must be what the OVF says: format and size."""
    disk = appliance.disk
    try:
        facts = inspection.inspect_bytes(path, disk.disk_format, policy)
    except errors.ImageRejected as exc:
        if checks.MISMATCH.matches(exc.reason):
            checks.OVF_FORMAT.reject(exc.detail, format=disk.disk_format)
        raise
    if disk.capacity is not None and facts.virtual_size != disk.capacity:
        checks.OVF_CAPACITY.reject(stated=disk.capacity,
                                   actual=facts.virtual_size)
    return facts
