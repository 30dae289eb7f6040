"""The one call before inspection: containers, checksum, signed images."""

import gzip
import hashlib
import os

import pytest

from glance_convert import errors
from glance_convert.pipeline import containers
from glance_convert.pipeline import inspection
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline import check_table
from tests.unit.pipeline import test_ova

IMAGE_ID = '5a3e9b41-3333-4444-8555-666677778888'
POLICY = inspection.Policy(max_virtual_size=64 * 1024 * 1024)


def _open(src, work, container, disk_format='raw', properties=None):
    return containers.opened(
        str(src), container_format=container, disk_format=disk_format,
        properties=properties or {}, image_id=IMAGE_ID, work_dir=str(work),
        policy=POLICY)


def _left(work):
    return [n for n in os.listdir(work) if '.glance-convert.' in n]


def test_compressed_gives_the_inner_disk_and_the_upload_hash(tmp_path):
    data = b'\x5a' * 100000
    src = tmp_path / 'up'
    src.write_bytes(gzip.compress(data))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    with _open(src, tmp_path, 'compressed',
               properties={upload_hash.SOURCE_SHA256: sha.upper()}) as disk:
        assert open(disk.path, 'rb').read() == data
        assert disk.unpacked and disk.disk_format == 'raw'
        assert disk.source_sha256() == sha
    assert _left(tmp_path) == []


def test_compressed_checksum_mismatch_is_refused_before_inspection(
        tmp_path):
    src = tmp_path / 'up'
    src.write_bytes(gzip.compress(b'x' * 1000))
    reached = []
    with pytest.raises(errors.ImageRejected) as exc:
        with _open(src, tmp_path, 'compressed',
                   properties={upload_hash.SOURCE_SHA256: '0' * 64}):
            reached.append(True)
    assert 'the SHA-256 of the upload is' in str(exc.value)
    assert reached == [] and _left(tmp_path) == []


def test_bare_is_hashed_only_to_check_a_given_checksum(tmp_path):
    src = tmp_path / 'up'
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    with _open(src, tmp_path, 'bare') as disk:
        assert disk.path == str(src) and not disk.unpacked
        assert disk.source_sha256() is None
    with _open(src, tmp_path, 'bare',
               properties={upload_hash.SOURCE_SHA256: sha.upper()}) as disk:
        assert disk.source_sha256() == sha
    with _open(src, tmp_path, 'bare',
               properties={upload_hash.SOURCE_SHA256: 'f' * 64}) as disk:
        with pytest.raises(errors.ImageRejected) as exc:
            disk.source_sha256()
    assert 'not %s as the property' % ('f' * 64) in str(exc.value)


def test_ova_claimed_as_another_format_is_refused(tmp_path):
    src = test_ova.make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', test_ova.ovf_text()), ('disk1.vmdk', test_ova.DISK)])
    with pytest.raises(errors.ImageRejected) as exc:
        with _open(src, tmp_path, 'ova', disk_format='qcow2'):
            pass
    assert str(exc.value) == ('Image rejected: the OVF says the disk is in '
                              'vmdk format, not qcow2 as claimed')
    assert _left(tmp_path) == []


def test_signed_images():
    signed = {'img_signature': 'abc', 'img_signature_hash_method': 'SHA-256'}
    assert containers.check_signed({}, 'refuse') is False
    assert containers.check_signed(signed, 'passthrough') is True
    with pytest.raises(errors.ImageRejected) as exc:
        containers.check_signed(signed, 'refuse')
    assert 'would invalidate the signature' in str(exc.value)


def test_ova_disk_is_a_ledger_work_file_before_it_exists(tmp_path,
                                                         monkeypatch):
    """A crash while the disk is copied out leaves nothing the workspace
    reaper does not know: the work file is recorded with the reservation,
    under the conversion slot, and removed after a refusal."""
    from glance_convert.pipeline.containers import ova
    from tests import fakes
    work = tmp_path / 'work'
    work.mkdir()
    ws = fakes.make_workspace(work, max_concurrent=1)
    src = test_ova.make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', test_ova.ovf_text()), ('disk1.vmdk', test_ova.DISK)])
    seen = []
    real_extract = ova.extract

    def extract(path, appliance, dst):
        seen.append((os.path.exists(dst), list(ws.usage()['paths'])))
        return real_extract(path, appliance, dst)

    def check_disk(path, appliance, policy):
        raise errors.ImageRejected('refused for the test')
    monkeypatch.setattr(ova, 'extract', extract)
    monkeypatch.setattr(ova, 'check_disk', check_disk)
    with pytest.raises(errors.ImageRejected):
        with containers.opened(
                str(src), container_format='ova', disk_format='vmdk',
                properties={}, image_id=IMAGE_ID, work_dir=str(work),
                policy=POLICY, workspace=ws):
            pass
    [(existed, recorded)] = seen
    assert not existed
    assert recorded == [str(work / (IMAGE_ID + '.glance-convert.ova-disk'))]
    assert ws.usage()['paths'] == []
    assert os.listdir(work) == []


def test_one_table_of_containers_that_the_cli_reads():
    from glance_convert.cmd import common as cli
    from glance_convert.pipeline import checks
    assert tuple(containers.CONTAINERS) == ('bare', 'compressed', 'ova')
    assert cli.CONTAINER_FORMATS == tuple(containers.CONTAINERS)
    assert containers.UNPACKED == ('compressed', 'ova')
    assert [c.name for c in containers.CONTAINERS.values()
            if c.states_disk_format] == ['ova']
    # Uploads without a container, or in one the plugin does not open,
    # are the disk itself.
    for name in (None, 'ovf', 'docker'):
        assert containers.get(name) is containers.BARE
    # The container checks name containers of the table: the unpacked ones
    # have checks (and the container stage) of their own, and bare one, the
    # compression found in an upload declared bare.
    named = {n for c in check_table.CHECKS for n in (c.containers or ())}
    assert named == set(containers.UNPACKED) | {containers.BARE.name}
    for name in containers.CONTAINERS:
        ran = check_table.stages_run('qcow2', name)
        assert (checks.CONTAINER in ran) is (name in named)


def test_an_unknown_container_is_opened_as_the_upload_itself(tmp_path):
    src = tmp_path / 'disk.raw'
    src.write_bytes(b'\0' * 4096)
    with _open(src, tmp_path, 'ovf') as disk:
        assert (disk.path, disk.container_format) == (str(src), 'ovf')
        assert not disk.unpacked
