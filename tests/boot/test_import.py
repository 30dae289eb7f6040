"""Imported through a real glance-api, the stored image boots as Nova
would boot it.

Each guest is handed over as VMware and Hyper-V hand disks over
(streamOptimized VMDK, an OVA from VMware, VHDX, qcow2) and imported
with glance-direct.  The stored image is downloaded, its properties are
read from the API, and it is booted with the firmware, machine type and
disk bus those properties name.  The guest's own line on the serial
console is the proof.

Cases marked ``disk_facts`` carry no appliance metadata: only the
guest's own disk (a GPT with an EFI system partition) can tell the
plugin that it needs UEFI.  Without ``hw_firmware_type`` Nova gives it
SeaBIOS, under which it hangs (tests/boot/test_direct.py shows both).
"""

import os
import shutil

import pytest

from tests import imagefactory
from tests.boot import machine
from tests.integration import glancetest
from tests.unit.pipeline import test_ova

#: How each upload is made from the guest's raw disk, and declared.
UPLOADS = {
    'vmdk': ('vmdk', 'bare', {'subformat': 'streamOptimized'}),
    'vhdx': ('vhdx', 'bare', None),
    'qcow2': ('qcow2', 'bare', None),
    'ova': ('vmdk', 'ova', {'subformat': 'streamOptimized'}),
}


def _upload(guest, kind, directory):
    disk_format, container, options = UPLOADS[kind]
    disk = guest.as_format(disk_format, options)
    if container != 'ova':
        return disk, disk_format, container
    # An OVA as VMware exports a UEFI VM: the OVF's vmw:Config says
    # firmware=efi, and the disk's capacity is the guest's size.
    build = directory / 'ova'
    build.mkdir()
    copy = shutil.copyfile(disk, build / 'disk.vmdk')
    mib = os.path.getsize(guest.path) // imagefactory.MiB
    ovf = test_ova.ovf_text(size=os.path.getsize(copy), capacity=str(mib),
                            firmware='efi' if guest.name == 'uefi'
                            else 'bios')
    ova = imagefactory.make_ova(build, ovf, copy,
                                out=directory / 'appliance.ova')
    return ova, disk_format, container


def _import_and_boot(servers, guest, kind, tmp_path):
    """Import, download and boot; returns (image, Boot)."""
    path, disk_format, container = _upload(guest, kind, tmp_path)
    server = servers.for_target('raw')
    client = server.client()
    image = client.create_image(disk_format, container,
                                name='boot-%s-%s' % (guest.name, kind))
    try:
        client.stage(image['id'], str(path))
        client.import_image(image['id'], 'glance-direct')
        image, task = client.wait_for_import(image['id'],
                                             glancetest.IMPORT_TIMEOUT)
        assert task['status'] == 'success', task['message']
        assert image['status'] == 'active'
        stored = tmp_path / ('stored.%s' % image['disk_format'])
        assert client.download(image['id'], str(stored)) == image['size']
        image = client.get_image(image['id'])
    finally:
        client.delete_image(image['id'])
    properties = {k: v for k, v in image.items() if k.startswith('hw_')}
    result = machine.boot(stored, image['disk_format'], properties,
                          tmp_path / 'vm', guest.line)
    return image, result


@pytest.mark.quick
@pytest.mark.disk_facts
@pytest.mark.parametrize('kind', ['vmdk', 'vhdx', 'qcow2'])
def test_uefi_guest_boots_from_the_stored_image(glance_servers, guests,
                                                tmp_path, kind):
    image, result = _import_and_boot(glance_servers, guests['uefi'], kind,
                                     tmp_path)
    assert result.booted, 'properties %s: %s' % (
        {k: v for k, v in image.items() if k.startswith('hw_')},
        result.explain())
    assert image.get('hw_firmware_type') == 'uefi'


@pytest.mark.quick
def test_uefi_guest_from_an_ova_boots_from_the_stored_image(
        glance_servers, guests, tmp_path):
    guest = guests['uefi']
    image, result = _import_and_boot(glance_servers, guest, 'ova',
                                     tmp_path)
    assert image.get('hw_firmware_type') == 'uefi'
    assert result.booted, result.explain()
    # The control: the same stored image, booted as if the property were
    # not there, does not start.
    stored = tmp_path / ('stored.%s' % image['disk_format'])
    without = machine.boot(stored, image['disk_format'], {},
                           tmp_path / 'vm-without', guest.line,
                           handover_timeout=machine.WATCH_A_HANG)
    assert without.outcome == machine.SILENT, without.explain()


@pytest.mark.quick
def test_bios_guest_boots_from_the_stored_image(glance_servers, guests,
                                                tmp_path):
    image, result = _import_and_boot(glance_servers, guests['bios'],
                                     'qcow2', tmp_path)
    assert result.booted, result.explain()
    assert image.get('hw_firmware_type', 'bios') == 'bios'
