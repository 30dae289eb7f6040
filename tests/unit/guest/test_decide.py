import dataclasses

import pytest

from glance_convert.guest import decide
from glance_convert.guest import disk
from glance_convert.guest import fat
from glance_convert.guest import filesystems as fs
from glance_convert.guest import hints
from glance_convert.guest import partitions as pt

MiB = 1024 * 1024


def part(number, kind, filesystem=None, active=False):
    return disk.PartitionFacts(
        pt.Partition(number, number * MiB, MiB, kind, '', active),
        fs.Filesystem(filesystem) if filesystem else None)


WINDOWS_UEFI = disk.DiskFacts(
    scheme='gpt',
    partitions=(part(1, pt.ESP, fs.FAT16), part(2, pt.MSR),
                part(3, pt.BASIC_DATA, fs.NTFS)),
    esp=fat.EspContents(('Microsoft', 'Boot'),
                        ('EFI/Boot/bootx64.efi',
                         'EFI/Microsoft/Boot/bootmgfw.efi')),
    esp_partition=1)

LINUX_BIOS = disk.DiskFacts(
    scheme='gpt',
    partitions=(part(1, pt.BIOS_BOOT), part(2, pt.LINUX, fs.EXT4)),
    os_release={'ID': 'ubuntu', 'VERSION_ID': '22.04'},
    os_release_at='partition 2 (ext4) /etc/os-release')


def test_windows_uefi_from_vmdk():
    decision = decide.decide(WINDOWS_UEFI, None, source_format='vmdk')
    assert decision.properties == {
        'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
        'os_type': 'windows', 'os_distro': 'windows',
        'hw_disk_bus': 'sata', 'hw_vif_model': 'e1000'}
    assert decision.record.startswith('gpt, esp, msr, ntfs')
    assert 'firmware from the partition table' in decision.record


def test_windows_virtio_when_asked():
    decision = decide.decide(WINDOWS_UEFI, None, source_format='vhdx',
                             windows_devices='virtio')
    assert decision.properties['hw_disk_bus'] == 'virtio'
    assert decision.properties['hw_vif_model'] == 'virtio'


def test_windows_from_qcow2_without_hints_gets_no_devices():
    decision = decide.decide(WINDOWS_UEFI, None, source_format='qcow2')
    assert 'hw_disk_bus' not in decision.properties
    assert decision.properties['os_type'] == 'windows'


def test_windows_devices_refuses_unknown_values():
    with pytest.raises(ValueError):
        decide.decide(WINDOWS_UEFI, None, source_format='vmdk',
                      windows_devices='scsi')


def test_linux_bios_with_os_release():
    decision = decide.decide(LINUX_BIOS, None, source_format='qcow2')
    assert decision.properties == {
        'hw_firmware_type': 'bios', 'os_type': 'linux',
        'os_distro': 'ubuntu', 'os_version': '22.04'}
    assert 'os-release in partition 2' in decision.record


def test_undocumented_distro_sets_no_os_distro():
    facts = disk.DiskFacts(scheme='gpt', partitions=LINUX_BIOS.partitions,
                           os_release={'ID': 'almalinux',
                                       'VERSION_ID': '9.3'})
    decision = decide.decide(facts, None, source_format='raw')
    assert 'os_distro' not in decision.properties
    assert 'os_version' not in decision.properties
    assert decision.properties['os_type'] == 'linux'
    assert 'no os_distro for ID=almalinux' in decision.record


def test_the_disk_wins_over_the_appliance():
    ovf = hints.Hints('ovf (VMware)', firmware='bios', os_type='windows')
    decision = decide.decide(WINDOWS_UEFI, ovf, source_format='ova')
    assert decision.properties['hw_firmware_type'] == 'uefi'
    assert 'ovf (VMware) said bios' in decision.record


def test_hints_fill_what_the_disk_does_not_say():
    unreadable = disk.DiskFacts(scheme=None, complete=False)
    ovf = hints.Hints('ovf (VMware)', firmware='uefi', os_type='windows',
                      os_distro='windows', os_version='10')
    decision = decide.decide(unreadable, ovf, source_format='ova')
    assert decision.properties == {
        'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
        'os_type': 'windows', 'os_distro': 'windows', 'os_version': '10',
        'hw_disk_bus': 'sata', 'hw_vif_model': 'e1000'}
    assert '(facts incomplete)' in decision.record
    assert 'firmware from the ovf (VMware)' in decision.record


def test_each_source_can_be_turned_off():
    ovf = hints.Hints('vmdk descriptor', firmware='bios')
    only_hints = decide.decide(WINDOWS_UEFI, ovf, source_format='vmdk',
                               from_disk=False)
    assert only_hints.properties == {'hw_firmware_type': 'bios'}
    only_disk = decide.decide(WINDOWS_UEFI, ovf, source_format='qcow2',
                              from_appliance=False)
    assert only_disk.properties['hw_firmware_type'] == 'uefi'
    assert 'hw_disk_bus' not in only_disk.properties
    nothing = decide.decide(WINDOWS_UEFI, ovf, source_format='vmdk',
                            from_disk=False, from_appliance=False)
    assert nothing.properties == {}
    assert nothing.record == 'nothing found'


def test_hybrid_disk_leaves_firmware_to_nova():
    hybrid = disk.DiskFacts(
        scheme='gpt', partitions=(part(1, pt.BIOS_BOOT),
                                  part(2, pt.ESP, fs.FAT32),
                                  part(3, pt.LINUX_ROOT, fs.EXT4)),
        esp=fat.EspContents(('BOOT', 'ubuntu'), ('EFI/BOOT/BOOTX64.EFI',)))
    decision = decide.decide(hybrid, None, source_format='qcow2')
    assert 'hw_firmware_type' not in decision.properties
    assert decision.properties['os_type'] == 'linux'
    assert decision.properties['os_distro'] == 'ubuntu'
    assert 'os from EFI/ubuntu' in decision.record


def test_record_fits_a_property():
    many = disk.DiskFacts(scheme='gpt', partitions=tuple(
        part(n, pt.LINUX, fs.EXT4) for n in range(1, 200)),
        os_release={'ID': 'debian'}, os_release_at='x' * 1000)
    assert len(decide.decide(many, None, source_format='raw').record) \
        <= 255


def test_linux_without_os_release():
    """An XFS root (not read) behind an ESP names the distribution by
    the ESP's directory; on an MBR with boot code it is only linux."""
    rhel = disk.DiskFacts(
        scheme='gpt', partitions=(part(1, pt.ESP, fs.FAT16),
                                  part(2, pt.LINUX, fs.XFS)),
        esp=fat.EspContents(('BOOT', 'redhat'), ('EFI/BOOT/BOOTX64.EFI',)))
    props = decide.decide(rhel, None, source_format='vmdk').properties
    assert props == {'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
                     'os_type': 'linux', 'os_distro': 'rhel'}
    mbr = disk.DiskFacts(scheme='mbr', mbr_boot_code=True,
                         partitions=(part(1, pt.LINUX, fs.XFS, True),))
    assert decide.decide(mbr, None, source_format='vmdk').properties == {
        'hw_firmware_type': 'bios', 'os_type': 'linux'}
    data_disk = disk.DiskFacts(scheme='gpt',
                               partitions=(part(1, pt.LINUX, fs.XFS),))
    assert decide.decide(data_disk, None,
                         source_format='vmdk').properties == {}


def test_distribution_from_the_appliance_when_the_disk_names_none():
    lvm_root = disk.DiskFacts(
        scheme='gpt', partitions=(part(1, pt.BIOS_BOOT),
                                  part(2, pt.LINUX_LVM)))
    ovf = hints.Hints('ovf (VirtualBox)', os_type='linux',
                      os_distro='centos', os_version='7')
    decision = decide.decide(lvm_root, ovf, source_format='ova')
    assert 'os_distro from the ovf (VirtualBox)' in decision.record
    props = decision.properties
    assert props == {'hw_firmware_type': 'bios', 'os_type': 'linux',
                     'os_distro': 'centos', 'os_version': '7'}
    # The disk's os-release wins over the appliance's distribution.
    props = decide.decide(LINUX_BIOS, ovf, source_format='ova').properties
    assert (props['os_distro'], props['os_version']) == ('ubuntu', '22.04')


WINDOWS_BIOS = disk.DiskFacts(
    scheme='mbr', mbr_boot_code=True,
    partitions=(part(1, pt.BASIC_DATA, fs.NTFS, active=True),))


def devices(props):
    return props['hw_disk_bus'], props['hw_vif_model']


def test_boot_safe_devices_follow_the_source_controller():
    ide = hints.Hints('vmdk descriptor', disk_controller='ide',
                      nic_model='e1000e')
    props = decide.decide(WINDOWS_BIOS, ide, source_format='vmdk').properties
    assert devices(props) == ('ide', 'e1000e')
    # q35, which every UEFI guest gets, has no IDE controller.
    props = decide.decide(WINDOWS_UEFI, ide, source_format='vmdk').properties
    assert props['hw_disk_bus'] == 'sata'
    scsi = hints.Hints('vmdk descriptor', disk_controller='scsi')
    props = decide.decide(WINDOWS_BIOS, scsi, source_format='vmdk').properties
    assert devices(props) == ('sata', 'e1000')
    # virtio is virtio, whatever the source had.
    props = decide.decide(WINDOWS_BIOS, ide, source_format='vmdk',
                          windows_devices='virtio').properties
    assert devices(props) == ('virtio', 'virtio')


def test_the_appliance_distribution_comes_with_its_own_version():
    # AlmaLinux has no os_distro value in Glance; the OVF says rhel 9.
    alma = dataclasses.replace(LINUX_BIOS, os_release={
        'ID': 'almalinux', 'VERSION_ID': '9.3'})
    ovf = hints.Hints('ovf (VMware)', os_type='linux', os_distro='rhel',
                      os_version='9')
    props = decide.decide(alma, ovf, source_format='ova').properties
    assert (props['os_distro'], props['os_version']) == ('rhel', '9')
    # Without a version of its own, none: not the disk's 9.3 for rhel.
    bare = dataclasses.replace(ovf, os_version=None)
    props = decide.decide(alma, bare, source_format='ova').properties
    assert props['os_distro'] == 'rhel' and 'os_version' not in props


def test_combined_hints_name_only_the_sources_of_guest_facts():
    ovf = hints.Hints('ovf (VMware)', firmware='uefi', os_type='windows')
    descriptor = hints.Hints('vmdk descriptor', disk_controller='scsi',
                             disk_model='lsilogic')
    both = hints.combined(ovf, descriptor)
    assert both.source == 'ovf (VMware)'
    assert (both.firmware, both.disk_model) == ('uefi', 'lsilogic')
    assert hints.combined(descriptor).source == 'vmdk descriptor'
    assert hints.combined(None, None) is None
