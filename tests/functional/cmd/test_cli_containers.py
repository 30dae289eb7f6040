"""``glance-convert inspect`` and ``convert`` on compressed files and OVAs.

The commands unpack the upload as the plugin does, judge the disk inside,
report the upload's SHA-256 (and check the publisher's) and leave no work
file behind.
"""

import json
import os
import tarfile

import pytest

from tests import imagefactory
from tests.functional.cmd.test_cli import run
from tests.functional.pipeline.test_compressed_images import compress
from tests.unit.pipeline import test_ova


@pytest.fixture
def uploads(tmp_path, qemu_tools):
    d = tmp_path / 'uploads'
    d.mkdir()
    made = {}
    for fmt, kind in (('qcow2', 'xz'), ('vmdk', 'zstd'), ('raw', 'gzip')):
        inner = imagefactory.make_image(d, fmt, name='inner.%s' % fmt)
        made[kind] = (compress(inner, kind), fmt, inner)
    build = tmp_path / 'ova-build'
    build.mkdir()
    disk = imagefactory.make_image(build, 'vmdk', name='disk1.vmdk',
                                   options={'subformat': 'streamOptimized'})
    ova = imagefactory.make_ova(
        build, test_ova.ovf_text(size=os.path.getsize(disk)), disk,
        out=d / 'appliance.ova', tar_format='gnu')
    made['ova'] = (ova, 'vmdk', disk)
    return made


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """$TMPDIR of the command: inspect unpacks there and must clean up."""
    d = tmp_path / 'tmpdir'
    d.mkdir()
    monkeypatch.setenv('TMPDIR', str(d))
    return d


def test_inspect_compressed_reports_the_disk_inside(tmp_path, uploads,
                                                    private_tmp):
    path, fmt, _inner = uploads['xz']
    proc = run(['inspect', path, '--container-format', 'compressed',
                '--json'], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report['verdict'] == 'accepted'
    assert report['container_format'] == 'compressed'
    assert report['claimed_format'] == report['detected_format'] == fmt
    assert report['upload_size'] == os.path.getsize(path)
    assert report['source_sha256'] == imagefactory.sha256_of(path)
    assert 'the compressed data is complete' in report['reasons']
    assert 'no backing file' in report['reasons']
    assert os.listdir(private_tmp) == []


def test_inspect_ova_takes_the_format_and_properties_from_the_ovf(
        tmp_path, uploads, private_tmp):
    path, _fmt, _disk = uploads['ova']
    proc = run(['inspect', path, '--container-format', 'ova'], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Claimed format:   vmdk' in proc.stdout
    # The OVF's firmware, for a disk that holds no partition table.
    assert 'Would set:        hw_firmware_type=uefi' in proc.stdout
    assert 'Guest:            ' in proc.stdout
    assert 'Upload SHA-256:   %s' % imagefactory.sha256_of(path) in proc.stdout
    assert 'every OVA member is a plain file inside the archive' in \
        proc.stdout
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize('container', ['bare', 'compressed'])
def test_inspect_checks_the_publishers_checksum(tmp_path, uploads,
                                                private_tmp, container):
    path, fmt, inner = uploads['zstd']
    if container == 'bare':
        path = inner
    proc = run(['inspect', path, '--container-format', container,
                '--source-sha256', 'ab' * 32], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ('Image rejected: the SHA-256 of the upload is %s, not %s'
            % (imagefactory.sha256_of(path), 'ab' * 32)) in proc.stdout
    ok = run(['inspect', path, '--container-format', container,
              '--source-sha256', imagefactory.sha256_of(path).upper()],
             tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert os.listdir(private_tmp) == []


def test_inspect_refuses_a_hostile_ova(tmp_path, private_tmp):
    path = str(tmp_path / 'evil.ova')
    ovf = tmp_path / 'vm.ovf'
    ovf.write_bytes(test_ova.ovf_text())
    with tarfile.open(path, 'w', format=tarfile.USTAR_FORMAT) as tar:
        tar.add(str(ovf), arcname='vm.ovf')
        member = tarfile.TarInfo('../disk1.vmdk')
        member.size = 0
        tar.addfile(member)
    proc = run(['inspect', path, '--container-format', 'ova', '--json'],
               tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report['reasons'] == [
        "Image rejected: the OVA holds a file outside the archive "
        "('../disk1.vmdk'), which is not allowed"]
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize('kind', ['zstd', 'ova'])
def test_convert_unpacks_and_converts(tmp_path, uploads, kind):
    path, fmt, inner = uploads[kind]
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    out = out_dir / 'disk.raw'
    args = ['convert', path, '--container-format',
            'ova' if kind == 'ova' else 'compressed', '--to', 'raw',
            '-o', out, '--source-sha256', imagefactory.sha256_of(path)]
    if kind != 'ova':
        args += ['--disk-format', fmt]
    proc = run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert imagefactory.compare(inner, fmt, out, 'raw')
    assert 'Upload SHA-256: %s' % imagefactory.sha256_of(path) in proc.stdout
    assert os.listdir(out_dir) == ['disk.raw']


def test_convert_stores_an_unpacked_image_already_in_the_target_format(
        tmp_path, uploads):
    path, fmt, inner = uploads['gzip']
    out = tmp_path / 'out.raw'
    proc = run(['convert', path, '--container-format', 'compressed',
                '--disk-format', fmt, '--to', 'raw', '-o', out], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Unpacked' in proc.stdout
    with open(out, 'rb') as a, open(inner, 'rb') as b:
        assert a.read() == b.read()
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['out.raw', 'uploads', 'ova-build', 'no-config'])


def test_convert_checksum_mismatch_writes_nothing(tmp_path, uploads):
    path, fmt, _inner = uploads['xz']
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    proc = run(['convert', path, '--container-format', 'compressed',
                '--disk-format', fmt, '--to', 'raw', '-o',
                out_dir / 'disk.raw', '--source-sha256', '0' * 64],
               tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'the SHA-256 of the upload is' in proc.stdout + proc.stderr
    assert os.listdir(out_dir) == []
