"""glance-convert inspect shows the properties a guest needs to boot."""

import json
import subprocess

import pytest

from tests import guestdisks
from tests.functional.cmd.test_cli import run


@pytest.fixture(scope='module')
def windows_vmdk(tmp_path_factory):
    work = tmp_path_factory.mktemp('guest')
    raw = str(work / 'windows.raw')
    guestdisks.windows_uefi(raw, str(work))
    vmdk = str(work / 'windows.vmdk')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vmdk', raw,
                    vmdk], check=True)
    return vmdk


def test_inspect_shows_what_a_windows_guest_gets_and_why(
        tmp_path, windows_vmdk):
    proc = run(['inspect', windows_vmdk, '--disk-format', 'vmdk',
                '--json'], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    props = report['guest_properties']
    assert props['hw_firmware_type'] == 'uefi'
    assert props['hw_machine_type'] == 'q35'
    assert props['os_type'] == 'windows'
    # From VMware: devices its inbox drivers know (boot-safe, the default).
    assert (props['hw_disk_bus'], props['hw_vif_model']) == ('sata',
                                                             'e1000')
    assert 'esp' in report['guest']['record']
    # Through the VMDK's own grain tables: no qemu-img needed.
    assert report['guest']['read_from'] == 'output vmdk (tables)'


def test_inspect_leaves_out_what_the_user_set(tmp_path, windows_vmdk):
    proc = run(['inspect', windows_vmdk, '--disk-format', 'vmdk',
                '--property', 'hw_disk_bus=virtio'], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Would set:        os_type=windows' in proc.stdout
    assert 'hw_disk_bus' not in proc.stdout
