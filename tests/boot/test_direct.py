"""The guests boot with the right firmware, and only with it (no Glance).

These show that the harness can tell a boot from a failure, and that
the firmware property decides it: the UEFI guest hangs under SeaBIOS,
which is what Nova gives an image without ``hw_firmware_type``.
"""

import pytest

from tests import bootable
from tests import imagefactory
from tests.boot import machine

UEFI = {'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35'}


def test_a_missing_emulator_or_tool_is_named_with_its_package(
        monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    assert 'qemu-system-x86_64 (qemu-system-x86)' in machine.missing()
    assert 'mcopy (mtools)' in bootable.missing_tools()
    with pytest.raises(machine.MachineError, match='qemu-system-x86'):
        machine.Machine(tmp_path / 'disk', 'raw', {}, tmp_path).start()


@pytest.mark.quick
def test_uefi_guest_boots_with_ovmf(guests, tmp_path):
    guest = guests['uefi']
    result = machine.boot(guest.path, 'raw', UEFI, tmp_path, guest.line)
    assert result.booted, result.explain()
    assert result.firmware == 'ovmf'


@pytest.mark.quick
def test_uefi_guest_does_not_boot_without_the_property(guests, tmp_path):
    guest = guests['uefi']
    assert bootable.mbr_boot_code(guest.path) == bytes(
        bootable.BOOT_CODE_END)
    result = machine.boot(guest.path, 'raw', {}, tmp_path, guest.line,
                          handover_timeout=machine.WATCH_A_HANG)
    assert result.firmware == 'seabios'
    assert result.outcome == machine.SILENT, result.explain()
    assert 'Booting from Hard Disk...' in result.serial
    assert guest.line not in result.console


def test_bios_guest_boots_with_seabios(guests, tmp_path):
    guest = guests['bios']
    result = machine.boot(guest.path, 'raw', {}, tmp_path, guest.line)
    assert result.booted, result.explain()
    assert result.firmware == 'seabios'
    assert 'GRUB loading.' in result.serial


def test_bios_guest_does_not_boot_with_ovmf(guests, tmp_path):
    # hw_firmware_type=uefi on a BIOS guest is as wrong as its absence on
    # a UEFI guest: OVMF finds no EFI system partition and says so.
    guest = guests['bios']
    result = machine.boot(guest.path, 'raw', UEFI, tmp_path, guest.line)
    assert result.outcome == machine.NO_BOOT_DEVICE, result.explain()
    assert result.evidence in machine.FAILURE_TEXT['ovmf']
    assert guest.line not in result.console


def test_bios_guest_with_a_blank_mbr_is_refused_by_seabios(guests,
                                                           tmp_path):
    # The control for SeaBIOS's own failure text: without the boot
    # signature, SeaBIOS does not even try the disk.
    guest = guests['bios']
    blank = tmp_path / 'blank.raw'
    with open(guest.path, 'rb') as src:
        data = bytearray(src.read())
    data[510:512] = b'\0\0'
    blank.write_bytes(bytes(data))
    result = machine.boot(blank, 'raw', {}, tmp_path / 'vm', guest.line)
    assert result.outcome == machine.NO_BOOT_DEVICE, result.explain()
    assert result.evidence == 'No bootable device'


@pytest.mark.parametrize('properties', [
    {'hw_disk_bus': 'ide'},
    {'hw_disk_bus': 'sata'},
    {'hw_disk_bus': 'scsi'},
    {'hw_disk_bus': 'scsi', 'hw_scsi_model': 'virtio-scsi'},
    {'hw_disk_bus': 'sata', 'hw_machine_type': 'q35'},
], ids=lambda p: '-'.join(p.values()))
def test_bios_guest_boots_on_each_disk_bus(guests, tmp_path, properties):
    guest = guests['bios']
    result = machine.boot(guest.path, 'raw', properties, tmp_path,
                          guest.line)
    assert result.booted, result.explain()


def test_uefi_guest_boots_from_sata_on_q35(guests, tmp_path):
    guest = guests['uefi']
    result = machine.boot(guest.path, 'raw', dict(UEFI, hw_disk_bus='sata'),
                          tmp_path, guest.line)
    assert result.booted, result.explain()


#: The formats the end-to-end tests hand over, as qemu-img writes them.
FORMATS = {
    'vmdk': {'subformat': 'streamOptimized'},
    'vhdx': None,
    'qcow2': None,
}
PROPERTIES = {'uefi': UEFI, 'bios': {}}


@pytest.mark.parametrize('back', [False, True],
                         ids=['as-is', 'back-to-raw'])
@pytest.mark.parametrize('fmt', sorted(FORMATS))
@pytest.mark.parametrize('name', ['uefi', 'bios'])
def test_converted_guest_boots(guests, tmp_path, name, fmt, back):
    guest = guests[name]
    path = guest.as_format(fmt, FORMATS[fmt])
    if back:
        path, fmt = imagefactory.convert(path, fmt, tmp_path / 'back.raw',
                                         'raw'), 'raw'
    result = machine.boot(path, fmt, PROPERTIES[name], tmp_path / 'vm',
                          guest.line)
    assert result.booted, result.explain()
