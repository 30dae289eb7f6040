"""Hints from real VMDKs made by qemu-img and from OVAs made with ``tar``."""

import os
import subprocess

import pytest

from glance_convert.formats import vmdk
from glance_convert.pipeline.containers import ova
from tests import hostile_corpus
from tests import imagefactory
from tests.unit.pipeline.test_ovf_guest import vbox_ovf
from tests.unit.pipeline.test_ovf_guest import vmware_ovf


def vmdk_hints(path):
    with open(path, 'rb') as f:
        return vmdk.hints(f, os.path.getsize(path))


def qemu_vmdk(tmp_path, options):
    path = str(tmp_path / 'disk.vmdk')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'vmdk', '-o',
                    ','.join('%s=%s' % kv for kv in options.items()),
                    path, '16M'], check=True)
    return path


@pytest.mark.parametrize('subformat', ['streamOptimized', 'monolithicSparse'])
@pytest.mark.parametrize('adapter,controller,model', [
    ('ide', 'ide', None), ('lsilogic', 'scsi', 'lsilogic'),
    ('buslogic', 'scsi', 'buslogic'), ('legacyESX', 'scsi', None)])
def test_qemu_img_adapter_types(tmp_path, qemu_tools, subformat, adapter,
                                controller, model):
    path = qemu_vmdk(tmp_path, {'adapter_type': adapter,
                                'subformat': subformat})
    h = vmdk_hints(path)
    assert (h.source, h.disk_controller, h.disk_model) == (
        'vmdk descriptor', controller, model)
    assert h.said == ('ddb.adapterType=%s' % adapter,
                      'ddb.virtualHWVersion=4')


def test_qemu_img_compat6_writes_hardware_version_6(tmp_path, qemu_tools):
    path = qemu_vmdk(tmp_path, {'subformat': 'monolithicSparse',
                                'compat6': 'on'})
    assert vmdk_hints(path).said == ('ddb.adapterType=ide',
                                     'ddb.virtualHWVersion=6')


def test_other_formats_give_no_vmdk_hints(tmp_path, qemu_tools):
    path = imagefactory.make_image(tmp_path, 'qcow2')
    assert vmdk_hints(path) is None


def _ova(tmp_path, ovf, adapter):
    disk = imagefactory.make_image(
        tmp_path, 'vmdk', options={'subformat': 'streamOptimized',
                                   'adapter_type': adapter})
    return imagefactory.make_ova(tmp_path, ovf, disk)


def test_vmware_ova_hints_and_its_disks_agree(tmp_path, qemu_tools):
    ovf = vmware_ovf(os_type='windows2019srv_64Guest',
                     controller=('6', 'lsilogic')).replace(
        b'vm-disk1.vmdk', b'disk1.vmdk')
    src = _ova(tmp_path, ovf, 'lsilogic')
    app = ova.read(src)
    disk = str(tmp_path / 'extracted')
    ova.extract(src, app, disk).result()
    ova.check_disk(disk, app, hostile_corpus.pipeline_settings('raw').policy)

    assert (app.hints.firmware, app.hints.os_type, app.hints.os_version,
            app.hints.disk_controller, app.hints.disk_model) == (
        'uefi', 'windows', '2019', 'scsi', 'lsilogic')
    from_disk = vmdk_hints(disk)
    assert (from_disk.disk_controller, from_disk.disk_model) == (
        app.hints.disk_controller, app.hints.disk_model)
    # The firmware is a hint for the guest's decision, not a property.
    assert app.hints.firmware == 'uefi'
    assert 'hw_firmware_type' not in app.properties
    assert app.properties['glance_convert_ovf_disk_controller'] == \
        'scsi:lsilogic'


def test_virtualbox_ova_is_read_and_checked(tmp_path, qemu_tools):
    """A VirtualBox export: memory in MegaBytes, vbox:Machine, SATA."""
    ovf = vbox_ovf(os_type='Ubuntu22_LTS_64', os_id='94').replace(
        b'vm-disk001.vmdk', b'disk1.vmdk')
    src = _ova(tmp_path, ovf, 'ide')
    app = ova.read(src)
    disk = str(tmp_path / 'extracted')
    ova.extract(src, app, disk).result()
    ova.check_disk(disk, app, hostile_corpus.pipeline_settings('raw').policy)

    assert app.properties['glance_convert_ovf_memory_mb'] == '2048'
    assert (app.hints.source, app.hints.firmware, app.hints.os_distro,
            app.hints.os_version, app.hints.disk_controller) == (
        'ovf (VirtualBox)', 'uefi', 'ubuntu', '22.04', 'sata')
