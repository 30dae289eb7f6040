"""From disk facts and appliance hints to the image properties Nova reads.

Which source wins: **the disk**.  It is what will boot; an OVF written by
hand or by a tool that guessed may say otherwise.  Where the disk gives
no answer (an unreadable layout, a whole-disk filesystem, a Windows
version) the appliance's hints fill the gap; where both answer and
disagree the disk's answer is kept and the record says so.

Windows guests from another hypervisor (a VMDK, VHD, VHDX or OVA, or any
image with appliance hints) get a disk bus and NIC model their inbox
drivers know (``windows_devices='boot-safe'``: SATA/AHCI and the Intel
e1000; IDE where the source's controller was IDE and the guest boots
with BIOS, since Windows starts at boot only the storage drivers it was
installed with), or ``virtio`` when the operator says their images carry
the virtio drivers.  The plugin cannot inject drivers into a guest: a
Windows guest without virtio drivers given virtio devices stops at
INACCESSIBLE_BOOT_DEVICE, and one installed on a SCSI or NVMe controller
may need its AHCI driver enabled before it is moved.
"""

import dataclasses

from glance_convert.guest import disk as guest_disk
from glance_convert.guest import fat
from glance_convert.guest import filesystems
from glance_convert.guest import hints as guest_hints
from glance_convert.guest import partitions

BOOT_SAFE = 'boot-safe'
VIRTIO = 'virtio'
WINDOWS_DEVICES = (BOOT_SAFE, VIRTIO)

#: (hw_disk_bus, hw_vif_model): values Nova's libvirt driver accepts.
#: SATA (AHCI) and e1000 have inbox drivers since Windows Vista/2008;
#: IDE would too, but q35 (every UEFI guest) has no IDE controller.
DEVICES = {
    BOOT_SAFE: ('sata', 'e1000'),
    VIRTIO: ('virtio', 'virtio'),
}

#: Source disk formats of other hypervisors (Glance's names).
FOREIGN_FORMATS = frozenset(('vmdk', 'vhd', 'vhdx', 'ova', 'vpc'))

#: os-release ID -> Glance's documented os_distro value.  IDs without a
#: documented value (almalinux, sles, ...) set no os_distro.
OS_DISTRO = {
    'arch': 'arch',
    'centos': 'centos',
    'debian': 'debian',
    'fedora': 'fedora',
    'freebsd': 'freebsd',
    'gentoo': 'gentoo',
    'opensuse': 'opensuse',
    'opensuse-leap': 'opensuse',
    'opensuse-tumbleweed': 'opensuse',
    'rhel': 'rhel',
    'rocky': 'rocky',
    'sled': 'sled',
    'ubuntu': 'ubuntu',
}

#: An ESP's /EFI directory (lower case) -> the os-release ID it implies.
ESP_DISTROS = {
    'ubuntu': 'ubuntu', 'debian': 'debian', 'fedora': 'fedora',
    'redhat': 'rhel', 'centos': 'centos', 'rocky': 'rocky',
    'almalinux': 'almalinux', 'opensuse': 'opensuse', 'sles': 'sles',
    'arch': 'arch', 'gentoo': 'gentoo',
}
_LINUX_FS = set(filesystems.EXT) | {filesystems.XFS, filesystems.BTRFS}


@dataclasses.dataclass(frozen=True)
class Decision:
    #: Image properties to set (before the caller drops those the user
    #: set).
    properties: dict[str, str]
    #: One line saying what was found and where; the value of the
    #: record property.
    record: str


@dataclasses.dataclass
class _Answer:
    value: str | None = None
    why: str = ''


def firmware_from_disk(facts: guest_disk.DiskFacts) -> _Answer:
    kinds = facts.kinds()
    esp = facts.esp
    if facts.scheme == 'gpt':
        if partitions.ESP in kinds and partitions.BIOS_BOOT in kinds:
            return _Answer(None, 'esp and bios boot partition: either')
        if partitions.ESP in kinds:
            return _Answer('uefi', 'the partition table (gpt, esp)')
        if partitions.BIOS_BOOT in kinds:
            return _Answer('bios', 'the partition table (bios boot)')
        return _Answer()
    if facts.scheme == 'mbr':
        active = any(p.partition.active for p in facts.partitions)
        if esp is not None and esp.loaders and not active:
            return _Answer('uefi', 'the ESP\'s loaders (mbr, no active '
                                   'partition)')
        if active or facts.mbr_boot_code:
            return _Answer('bios', 'the partition table (mbr, boot code)')
    return _Answer()


def os_from_disk(facts: guest_disk.DiskFacts) -> tuple[_Answer, str | None,
                                                       str | None]:
    """(os_type, os-release ID, VERSION_ID) the disk shows."""
    esp = facts.esp
    if esp is not None and esp.has(fat.WINDOWS_LOADER):
        return _Answer('windows', 'EFI/Microsoft/Boot'), None, None
    kinds = facts.kinds()
    fss = facts.filesystems()
    ntfs = [p for p in facts.partitions if p.filesystem
            and p.filesystem.kind == filesystems.NTFS]
    if facts.os_release:
        return (_Answer('linux', 'os-release'),
                facts.os_release.get('ID', '').lower() or None,
                facts.os_release.get('VERSION_ID') or None)
    if ntfs and (partitions.MSR in kinds
                 or any(p.partition.active for p in ntfs)):
        return _Answer('windows', 'ntfs with %s' % (
            'msr' if partitions.MSR in kinds else 'boot flag')), None, None
    if esp is not None:
        for vendor in esp.vendors:
            distro = ESP_DISTROS.get(vendor.lower())
            if distro:
                return (_Answer('linux', 'EFI/%s' % vendor), distro, None)
    # A Linux filesystem on a disk made to boot: a BIOS boot partition,
    # a root partition type, or an MBR with boot code (GRUB's).
    bootable = (partitions.BIOS_BOOT in kinds
                or partitions.LINUX_ROOT in kinds
                or (facts.scheme == 'mbr' and facts.mbr_boot_code))
    if fss & _LINUX_FS and bootable:
        return _Answer('linux', 'linux filesystem'), None, None
    return _Answer(), None, None


def describe(facts: guest_disk.DiskFacts) -> str:
    """The layout in a few words: "gpt, esp, msr, ntfs"."""
    words = [facts.scheme or 'no partition table']
    for part in facts.partitions:
        if part.partition.kind in (partitions.ESP, partitions.BIOS_BOOT,
                                   partitions.MSR):
            words.append(part.partition.kind)
        elif part.filesystem is not None:
            words.append(part.filesystem.kind)
    if facts.whole_disk is not None:
        words.append(facts.whole_disk.kind)
    seen = []
    for word in words:
        if word not in seen:
            seen.append(word)
    return ', '.join(seen)


def decide(disk: guest_disk.DiskFacts | None,
           hints: guest_hints.Hints | None, *, source_format: str,
           from_disk: bool = True, from_appliance: bool = True,
           windows_devices: str = BOOT_SAFE) -> Decision:
    """The properties that make the guest boot, and the record of why."""
    if windows_devices not in WINDOWS_DEVICES:
        raise ValueError('windows_devices must be one of %s'
                         % ', '.join(WINDOWS_DEVICES))
    disk = disk if from_disk else None
    hints = hints if from_appliance else None
    said = []          # the record's parts after the layout
    props: dict[str, str] = {}

    if disk is not None:
        firmware = firmware_from_disk(disk)
        os_type, release_id, version = os_from_disk(disk)
    else:
        firmware, os_type, release_id, version = (_Answer(), _Answer(),
                                                  None, None)

    def pick(name, disk_answer: _Answer, hint_value):
        if disk_answer.value is not None:
            if hint_value and hint_value != disk_answer.value:
                said.append('%s %s from %s (%s said %s)' % (
                    name, disk_answer.value, disk_answer.why,
                    hints.source, hint_value))
            else:
                said.append('%s from %s' % (name, disk_answer.why))
            return disk_answer.value
        if hint_value:
            said.append('%s from the %s' % (name, hints.source))
            return hint_value
        return None

    value = pick('firmware', firmware, hints and hints.firmware)
    if value:
        props['hw_firmware_type'] = value
        if value == 'uefi':
            props['hw_machine_type'] = 'q35'
    kind = pick('os', os_type, hints and hints.os_type)
    if kind:
        props['os_type'] = kind
    distro = None
    if kind == 'windows':
        distro = 'windows'
    elif release_id:
        distro = OS_DISTRO.get(release_id)
        if distro is None:
            said.append('no os_distro for ID=%s' % release_id)
    if distro is None and hints and hints.os_distro and \
            (kind is None or hints.os_type in (None, kind)):
        # The appliance's distribution comes with its own version: the
        # disk's VERSION_ID belongs to an ID Glance has no name for.
        distro = hints.os_distro
        version = hints.os_version
        said.append('os_distro from the %s' % hints.source)
    elif distro and hints and hints.os_distro == distro:
        version = version or hints.os_version
    if distro:
        props['os_distro'] = distro
        if version:
            props['os_version'] = version
    foreign = source_format in FOREIGN_FORMATS or hints is not None
    if kind == 'windows' and foreign:
        bus, vif = DEVICES[windows_devices]
        if windows_devices == BOOT_SAFE and hints is not None:
            # The controller Windows was installed on has its driver
            # enabled at boot; i440fx (BIOS) has IDE, q35 has not.
            if hints.disk_controller == 'ide' and \
                    props.get('hw_firmware_type') != 'uefi':
                bus = 'ide'
            if hints.nic_model == 'e1000e':
                vif = 'e1000e'
        props['hw_disk_bus'] = bus
        props['hw_vif_model'] = vif
        said.append('%s devices for windows' % windows_devices)

    parts = []
    if disk is not None:
        layout = describe(disk)
        if disk.esp is not None and disk.esp.loaders:
            layout += ', ' + ' '.join(disk.esp.loaders)
        if disk.os_release_at:
            layout += ', os-release in ' + disk.os_release_at
        if not disk.complete:
            layout += ' (facts incomplete)'
        parts.append(layout)
    record = '; '.join(parts + said) or 'nothing found'
    return Decision(props, record[:255])
