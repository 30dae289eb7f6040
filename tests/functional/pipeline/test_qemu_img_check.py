"""qemu_img.check never opens a backing file (it may run before info)."""

import subprocess

import pytest

from glance_convert.pipeline import qemu_img

LIMITS = qemu_img.Limits(address_space=1 << 30, cpu_time=30, timeout=60)


@pytest.mark.parametrize('fmt', ['qcow2', 'vmdk'])
def test_check_does_not_open_the_backing_file(tmp_path, fmt, qemu_tools):
    base = tmp_path / ('base.' + fmt)
    top = tmp_path / ('top with, odd "name".' + fmt)
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, str(base), '16M'],
                   check=True)
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, '-b', str(base),
                    '-F', fmt, str(top)], check=True)
    base.unlink()
    # qemu-img's own check of this image fails: it opens the backing file.
    plain = subprocess.run(['qemu-img', 'check', '-f', fmt, str(top)],
                           capture_output=True, text=True)
    assert plain.returncode != 0 and 'base.' + fmt in plain.stderr
    report = qemu_img.check(str(top), fmt, LIMITS)
    assert report['exit-code'] == 0
    assert report.get('check-errors', 0) == 0


def test_check_forces_the_format(tmp_path, qemu_tools):
    path = tmp_path / 'disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path),
                    '16M'], check=True)
    with pytest.raises(qemu_img.QemuImgError):
        qemu_img.check(str(path), 'vdi', LIMITS)
