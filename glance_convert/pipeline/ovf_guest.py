"""What an OVF descriptor says about how its guest boots.

Three vocabularies name the guest's OS in an OVF, and each exporter
writes the ones it knows:

* VMware's ``vmw:osType`` on the OperatingSystemSection, a vSphere guest
  identifier (``windows2019srv_64Guest``, ``rhel8_64Guest``), and its
  ``vmw:Config`` ``firmware`` = ``efi`` / ``bios``;
* VirtualBox's ``vbox:Machine`` element (its machine settings, with the
  ``OSType`` attribute such as ``Windows10_64`` or ``Ubuntu_64`` and
  ``Hardware/Firmware type="EFI"``; VirtualBox writes the Firmware
  element only for EFI) and ``vbox:OSType`` in the OperatingSystemSection;
* the standard ``ovf:id``, a DMTF CIM_OperatingSystem OSType number.
  Exporters fall back to a generic number (VMware writes 102, "Other
  64-Bit", for Windows 10 and later), so it is read last.

The VirtualHardwareSection names the disk's controller (the parent of
the disk item) and the NIC (the first Ethernet item): OVF 1 writes both
as ``Item`` with ``rasd:`` children, VirtualBox's OVF 2 as
``StorageItem`` and ``EthernetPortItem`` with children of other
namespaces, so their children are read by local name.

Everything here is a hint: a value out of the vocabularies is left out,
never refused, and a value that is not a short plain word is ignored.
"""

from __future__ import annotations

import re

from glance_convert.guest.hints import Hints

OVF_NS = ('http://schemas.dmtf.org/ovf/envelope/1',
          'http://schemas.dmtf.org/ovf/envelope/2')
VMW_NS = 'http://www.vmware.com/schema/ovf'
VBOX_NS = 'http://www.virtualbox.org/ovf/machine'

#: Longest value quoted in ``Hints.said``; longer ones are not read.
MAX_WORD = 64
_WORD = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,%d}$' % (MAX_WORD - 1))

# -- OS names -----------------------------------------------------------
# (pattern, os_type, os_distro); the first match wins.  os_distro values
# are those Glance documents ("Useful image properties"); a distribution
# it does not list (SUSE Linux Enterprise Server, Oracle Linux,
# AlmaLinux...) gets os_type only.

#: vSphere guest identifiers (VirtualMachineGuestOsIdentifier), matched
#: lowercased.
_VMWARE_OS = (
    (r'^win', 'windows', 'windows'),
    (r'^rhel\d', 'linux', 'rhel'),
    (r'^centos', 'linux', 'centos'),
    (r'^debian', 'linux', 'debian'),
    (r'^ubuntu', 'linux', 'ubuntu'),
    (r'^fedora', 'linux', 'fedora'),
    (r'^opensuse', 'linux', 'opensuse'),
    (r'^rockylinux', 'linux', 'rocky'),
    (r'^mandrake', 'linux', 'mandrake'),
    (r'^mandriva', 'linux', 'mandriva'),
    (r'^(redhat|sles|suse|oraclelinux|asianux|almalinux|amazonlinux|'
     r'coreos|vmwarephoton|miraclelinux|pardus|fusionos|prolinux|'
     r'kylinlinux|turbolinux|genericlinux|other(\d+x)?linux|nld\d|oes|'
     r'sjds)', 'linux', None),
    (r'^freebsd', None, 'freebsd'),
    (r'^dos', None, 'msdos'),
    (r'^netware', None, 'netware'),
)
#: Windows versions vSphere's identifiers name one product for.
_VMWARE_WINDOWS = {
    'windows9guest': '10', 'windows9_64guest': '10',
    'windows11_64guest': '11', 'windows9server64guest': '2016',
    'windows2019srv_64guest': '2019', 'windows2019srvnext_64guest': '2022',
    'windows2022srvnext_64guest': '2025',
}
#: rhel8_64Guest, centos7Guest, debian11_64Guest: the major release.
_VMWARE_RELEASE = re.compile(r'^(rhel|centos|debian|freebsd)(\d+)(_64)?guest$')

#: VirtualBox OS type ids (Global.cpp's table), matched lowercased.
_VBOX_OS = (
    (r'^windows', 'windows', 'windows'),
    (r'^archlinux', 'linux', 'arch'),
    (r'^debian', 'linux', 'debian'),
    (r'^fedora', 'linux', 'fedora'),
    (r'^gentoo', 'linux', 'gentoo'),
    (r'^mandriva', 'linux', 'mandriva'),
    (r'^redhat', 'linux', 'rhel'),
    (r'^opensuse', 'linux', 'opensuse'),
    (r'^ubuntu', 'linux', 'ubuntu'),
    (r'^(linux|openmandriva|pclinuxos|mageia|oracle|suse_le|turbolinux|'
     r'lubuntu|xubuntu|xandros)', 'linux', None),
    (r'^freebsd', None, 'freebsd'),
    (r'^openbsd', None, 'openbsd'),
    (r'^netbsd', None, 'netbsd'),
    (r'^opensolaris', None, 'opensolaris'),
    (r'^dos$', None, 'msdos'),
)
_VBOX_RELEASE = (
    (re.compile(r'^windows(10|11|2016|2019|2022|2025)(_64)?$'), 1, ''),
    # Debian31 is 3.1; Debian4 ... Debian12 are the major release.
    (re.compile(r'^debian([1-9]\d?)(_64)?$'), 1, ''),
    (re.compile(r'^redhat([3-9]|1\d)(_64)?$'), 1, ''),
    # Ubuntu22_LTS is 22.04; the others name two releases.
    (re.compile(r'^ubuntu(\d\d)_lts(_64)?$'), 1, '.04'),
)

#: DMTF CIM_OperatingSystem OSType values (CIM schema 2.52; as listed in
#: VirtualBox's ovfreader.h and govmomi's ovf package).
_CIM_OS = {
    **dict.fromkeys(
        (15, 16, 17, 18, 58, 63, 67, 69, 70, 71, 72, 73, 74, 75, 76, 77,
         103, 105, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120),
        ('windows', 'windows')),
    **dict.fromkeys((36, 82, 83, 84, 85, 86, 87, 88, 91, 92, 97, 98, 99,
                     100, 101, 108, 109), ('linux', None)),
    79: ('linux', 'rhel'), 80: ('linux', 'rhel'),
    89: ('linux', 'mandriva'), 90: ('linux', 'mandriva'),
    93: ('linux', 'ubuntu'), 94: ('linux', 'ubuntu'),
    95: ('linux', 'debian'), 96: ('linux', 'debian'),
    106: ('linux', 'centos'), 107: ('linux', 'centos'),
    14: (None, 'msdos'), 21: (None, 'netware'), 42: (None, 'freebsd'),
    78: (None, 'freebsd'), 43: (None, 'netbsd'), 65: (None, 'openbsd'),
}
_CIM_WINDOWS = {118: '2016', 119: '10', 120: '10'}

# -- virtual hardware ---------------------------------------------------
#: (ResourceType, ResourceSubType lowercased or None for any) ->
#: (Hints.disk_controller, Hints.disk_model).  CIM ResourceType 5 is an
#: IDE controller, 6 a parallel SCSI HBA, 20 "other storage device";
#: subtypes as VMware (vmware.sata.ahci, VirtualSCSI...) and VirtualBox
#: (AHCI, NVMe, VirtioSCSI, lsilogicsas) export them.
_CONTROLLERS = {
    ('5', None): ('ide', None),
    ('6', 'lsilogic'): ('scsi', 'lsilogic'),
    ('6', 'buslogic'): ('scsi', 'buslogic'),
    ('6', 'lsilogicsas'): ('scsi', 'lsisas1068'),
    ('6', 'virtualscsi'): ('scsi', 'vmpvscsi'),
    ('6', None): ('scsi', None),
    ('20', 'vmware.sata.ahci'): ('sata', None),
    ('20', 'ahci'): ('sata', None),
    ('20', 'vmware.nvme.controller'): ('nvme', None),
    ('20', 'nvme'): ('nvme', None),
    ('20', 'virtioscsi'): ('scsi', 'virtio-scsi'),
}
#: Ethernet ResourceSubType lowercased -> Nova's hw_vif_model word.
_NICS = {
    'e1000': 'e1000', 'e1000e': 'e1000e', 'vmxnet3': 'vmxnet3',
    'vmxnet': 'vmxnet', 'vmxnet2': 'vmxnet', 'pcnet32': 'pcnet',
    'virtio': 'virtio',
}
_ITEMS = ('Item', 'StorageItem', 'EthernetPortItem')
#: A machine has a few dozen hardware items; a descriptor with more
#: than this many gives no hardware hints (and costs no more to read).
MAX_ITEMS = 1024
#: VirtualBox firmware types (FirmwareType enum); EFI32 is a 32-bit
#: UEFI that an x86_64 OVMF cannot start, so it says nothing usable.
_VBOX_FIRMWARE = {'bios': 'bios', 'efi': 'uefi', 'efi64': 'uefi',
                  'efidual': 'uefi'}


def _local(tag) -> str:
    return tag.rsplit('}', 1)[-1] if isinstance(tag, str) else ''


def _word(value) -> str | None:
    """``value`` stripped if it is a short plain word, else None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _WORD.match(value) else None


def _match(table, name: str):
    for pattern, os_type, os_distro in table:
        if re.match(pattern, name):
            return os_type, os_distro
    return None, None


def _vmware_os(name: str) -> tuple:
    low = name.lower()
    os_type, os_distro = _match(_VMWARE_OS, low)
    version = _VMWARE_WINDOWS.get(low)
    release = _VMWARE_RELEASE.match(low)
    # centos64Guest is "CentOS 4/5 (64-bit)", not CentOS 64.
    if release and not (release.group(2) == '64' and not release.group(3)):
        version = release.group(2)
    return os_type, os_distro, version if os_distro else None


def _vbox_os(name: str) -> tuple:
    low = name.lower()
    os_type, os_distro = _match(_VBOX_OS, low)
    version = None
    for pattern, group, suffix in _VBOX_RELEASE:
        found = pattern.match(low)
        if found and found.group(group) != '31':
            version = found.group(group) + suffix
            break
    return os_type, os_distro, version if os_distro else None


def _cim_os(number: str) -> tuple:
    if not number.isdigit() or len(number) > 5:
        return None, None, None
    os_type, os_distro = _CIM_OS.get(int(number), (None, None))
    return os_type, os_distro, _CIM_WINDOWS.get(int(number))


def _children(item) -> dict:
    """An item's first child of each local name, as plain words."""
    out = {}
    for child in item:
        out.setdefault(_local(child.tag), _word(child.text))
    return out


def _hardware(root, said: list) -> dict:
    controllers, disks, nics = {}, [], []
    count = 0
    for elem in root.iter():
        if _local(elem.tag) not in _ITEMS:
            continue
        count += 1
        if count > MAX_ITEMS:
            return {}
        item = _children(elem)
        kind = item.get('ResourceType')
        subtype = (item.get('ResourceSubType') or '').lower() or None
        if kind in ('5', '6', '20') and item.get('InstanceID'):
            found = (_CONTROLLERS.get((kind, subtype))
                     or _CONTROLLERS.get((kind, None)))
            controllers.setdefault(item['InstanceID'],
                                   (found, kind, subtype))
        elif kind == '17':
            disks.append(item.get('Parent'))
        elif kind == '10':
            nics.append(subtype)
    out = {}
    parent = controllers.get(disks[0]) if disks else None
    if parent and parent[0]:
        (out['disk_controller'], out['disk_model']), kind, subtype = parent
        said.append('disk controller: ResourceType %s%s'
                    % (kind, ' %s' % subtype if subtype else ''))
    if nics and nics[0] in _NICS:
        out['nic_model'] = _NICS[nics[0]]
        said.append('NIC: ResourceSubType %s' % nics[0])
    return out


def _first(found: dict, os_type, os_distro, version) -> None:
    """Fill what ``found`` lacks from one source, keeping it coherent."""
    if os_type is None and os_distro is None:
        return
    if 'os_type' not in found and 'os_distro' not in found:
        if os_type:
            found['os_type'] = os_type
        if os_distro:
            found['os_distro'] = os_distro
            if version:
                found['os_version'] = version


def _vmware(root, section, found: dict, said: list) -> bool:
    """vmw:Config firmware and vmw:osType; whether either was there."""
    before = len(said)
    for config in root.iter('{%s}Config' % VMW_NS):
        if config.get('{%s}key' % VMW_NS) == 'firmware':
            value = _word(config.get('{%s}value' % VMW_NS)) or ''
            if value.lower() in ('efi', 'bios'):
                found['firmware'] = {'efi': 'uefi'}.get(value.lower(),
                                                        'bios')
                said.append('vmw:Config firmware=%s' % value)
            break
    name = _word(section.get('{%s}osType' % VMW_NS)) \
        if section is not None else None
    if name:
        said.append('vmw:osType=%s' % name)
        _first(found, *_vmware_os(name))
    return len(said) > before


def _virtualbox(root, section, found: dict, said: list) -> bool:
    """vbox:Machine (OSType, Hardware/Firmware) or vbox:OSType."""
    machine = next(root.iter('{%s}Machine' % VBOX_NS), None)
    name = None
    if machine is not None:
        name = _word(machine.get('OSType'))
        if name:
            said.append('vbox:Machine OSType=%s' % name)
        hardware = next((e for e in machine
                         if _local(e.tag) == 'Hardware'), [])
        firmware = next((e for e in hardware
                         if _local(e.tag) == 'Firmware'), None)
        value = _word(firmware.get('type')) if firmware is not None else ''
        if value and value.lower() in _VBOX_FIRMWARE:
            found.setdefault('firmware', _VBOX_FIRMWARE[value.lower()])
            said.append('vbox:Firmware type=%s' % value)
    if name is None and section is not None:
        name = _word(section.findtext('{%s}OSType' % VBOX_NS))
        if name:
            said.append('vbox:OSType=%s' % name)
    if name:
        _first(found, *_vbox_os(name))
    return machine is not None or name is not None


def read(root) -> Hints:
    """The :class:`Hints` in a parsed OVF envelope (never raises)."""
    said, dialects, found = [], [], {}
    section = next((e for e in root.iter()
                    if _local(e.tag) == 'OperatingSystemSection'), None)
    if _vmware(root, section, found, said):
        dialects.append('VMware')
    if _virtualbox(root, section, found, said):
        dialects.append('VirtualBox')
    cim = None
    if section is not None:
        cim = _word(section.get('{%s}id' % OVF_NS[0])
                    or section.get('{%s}id' % OVF_NS[1]))
    if cim:
        said.append('ovf:id=%s' % cim)
        _first(found, *_cim_os(cim))
    found.update(_hardware(root, said))
    return Hints(source='ovf (%s)' % ', '.join(dialects) if dialects
                 else 'ovf', said=tuple(said), **found)
