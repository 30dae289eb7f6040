"""The properties a guest needs to boot, set through a real glance-api.

Guest disks are built with the real tools (sgdisk, mkfs, mtools), handed
over as VMware and Hyper-V would (VMDK, VHDX) or as a KVM user would
(qcow2), imported with glance-direct, and the image's properties read
back from the API, as Nova would read them.  A property the user set is
never overwritten, and Glance's image property quota costs a guest
property, never the import.
"""

import os
import subprocess

import pytest

from glance_convert.testing import localglance
from tests import guestdisks
from tests.integration import glancetest

GUEST_KEYS = ('hw_firmware_type', 'hw_machine_type', 'os_type', 'os_distro',
              'os_version', 'hw_disk_bus', 'hw_vif_model')

#: name: (builder, format handed over, qemu-img options, what Nova reads)
GUESTS = {
    'windows-uefi.vhdx': (guestdisks.windows_uefi, 'vhdx', [], {
        'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
        'os_type': 'windows', 'os_distro': 'windows',
        'hw_disk_bus': 'sata', 'hw_vif_model': 'e1000'}),
    'debian-uefi.qcow2': (guestdisks.linux_uefi, 'qcow2', [], {
        'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
        'os_type': 'linux', 'os_distro': 'debian', 'os_version': '12'}),
    'debian-bios.vmdk': (guestdisks.linux_bios, 'vmdk',
                         ['-o', 'subformat=streamOptimized'], {
                             'hw_firmware_type': 'bios', 'os_type': 'linux',
                             'os_distro': 'debian', 'os_version': '12'}),
}


@pytest.fixture(scope='module')
def guests(tmp_path_factory, qemu_tools):
    d = tmp_path_factory.mktemp('guests')
    made = {}
    for name, (build, fmt, opts, _want) in GUESTS.items():
        raw = str(d / (name + '.raw'))
        build(raw, str(d))
        out = str(d / name)
        subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                        'vpc' if fmt == 'vhd' else fmt] + opts + [raw, out],
                       check=True)
        os.unlink(raw)
        made[name] = (out, fmt)
    return made


def _import(server, path, fmt, **properties):
    client = server.client()
    image = client.create_image(fmt, 'bare', **properties)
    client.stage(image['id'], path)
    client.import_image(image['id'], 'glance-direct')
    image, task = client.wait_for_import(image['id'],
                                         glancetest.IMPORT_TIMEOUT)
    return client, image, task


@pytest.mark.parametrize('name', sorted(GUESTS))
def test_a_guest_gets_what_nova_needs_to_boot_it(glance_servers, guests,
                                                 name):
    path, fmt = guests[name]
    want = GUESTS[name][3]
    client, image, task = _import(glance_servers.for_target('raw'), path,
                                  fmt)
    assert task['status'] == 'success', task['message']
    assert {k: image[k] for k in GUEST_KEYS if k in image} == want
    assert image['glance_convert_guest']
    client.delete_image(image['id'])


def test_nothing_is_set_with_the_option_off(glance_servers, guests):
    path, fmt = guests['windows-uefi.vhdx']
    server = glance_servers.get(output_format='raw', guest_properties=False)
    client, image, task = _import(server, path, fmt)
    assert task['status'] == 'success', task['message']
    assert [k for k in GUEST_KEYS + ('glance_convert_guest',)
            if k in image] == []
    client.delete_image(image['id'])


def test_what_the_user_set_is_kept(glance_servers, guests):
    path, fmt = guests['windows-uefi.vhdx']
    client, image, task = _import(
        glance_servers.for_target('qcow2'), path, fmt,
        hw_disk_bus='virtio', os_type='linux')
    assert task['status'] == 'success', task['message']
    # The user's word stands, even where the disk says otherwise...
    assert (image['hw_disk_bus'], image['os_type']) == ('virtio', 'linux')
    # ...and the rest is set, read through qemu-img from the qcow2 output.
    assert (image['hw_firmware_type'], image['hw_vif_model']) == (
        'uefi', 'e1000')
    client.delete_image(image['id'])


@pytest.fixture(scope='module')
def quota_server(tmp_path_factory, qemu_tools):
    """A glance-api whose images may carry few properties."""
    server = localglance.GlanceServer(
        str(tmp_path_factory.mktemp('glance-quota')),
        plugin_conf={'output_format': 'raw'},
        extra_conf={'DEFAULT': {'image_property_quota': QUOTA}})
    try:
        server.start()
        yield server
    finally:
        server.stop()


#: Room for what Glance and the plugin set anyway, and for some of the
#: guest's properties, not all.
QUOTA = 8


def test_the_property_quota_costs_a_property_not_the_import(
        quota_server, guests):
    path, fmt = guests['windows-uefi.vhdx']
    client, image, task = _import(quota_server, path, fmt)
    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    set_ = [k for k in GUEST_KEYS + ('glance_convert_guest',) if k in image]
    assert 0 < len(set_) < len(GUESTS['windows-uefi.vhdx'][3]) + 1, set_
    with open(quota_server.log_file) as f:
        log = f.read()
    assert 'not set' in log
    client.delete_image(image['id'])
