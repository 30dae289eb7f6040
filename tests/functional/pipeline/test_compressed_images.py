"""Compressed disk images made with the command-line tools, decompressed
and converted by the real pipeline (qemu-img), under a real workspace."""

import hashlib
import os
import shutil
import subprocess

import pytest

from glance_convert import errors
from glance_convert import formats
from glance_convert.host import workspace as ws_mod
from glance_convert.pipeline import conversion
from glance_convert.pipeline.containers import compressed
from tests import hostile_corpus
from tests import imagefactory

MiB = 1024 * 1024
IMAGE_ID = '0b7e2f5c-1111-4222-8333-444455556666'

#: How each kind is made with its usual command-line tool.
TOOLS = {
    'gzip': ['gzip', '-c'],
    'bzip2': ['bzip2', '-c'],
    'xz': ['xz', '-c', '-T1'],
    'zstd': ['zstd', '-q', '-c'],
}


def compress(path, kind):
    """Compress ``path`` with the real tool; return the new file."""
    out = '%s.%s' % (path, kind)
    if kind == 'zip':
        subprocess.run(['zip', '-q', '-j', out, path], check=True)
        return out
    tool = TOOLS[kind]
    if not shutil.which(tool[0]):
        pytest.fail('%s not found: install it (see bindep.txt)' % tool[0],
                    pytrace=False)
    with open(out, 'wb') as f:
        subprocess.run(tool + [path], check=True, stdout=f)
    return out


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp('ref')
    return imagefactory.make_image(d, 'raw', name='reference.raw')


@pytest.fixture
def workspace(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    return ws_mod.Workspace(str(work), lock_dir=None, max_concurrent=1,
                            reserved_bytes=0, max_bytes=0)


def run_pipeline(src, claimed, workspace, target='raw'):
    """Decompress, then convert like the task does; return (path, facts)."""
    settings = hostile_corpus.pipeline_settings(target)
    with compressed.decompressed(
            src, image_id=IMAGE_ID, work_dir=workspace.work_dir,
            limit=settings.policy.max_virtual_size, workspace=workspace,
            timeout=120) as prepared:
        result = conversion.convert_image(
            prepared.path, claimed, image_id=IMAGE_ID,
            work_dir=workspace.work_dir, settings=settings,
            workspace=prepared.workspace)
        if not result.converted:
            prepared.keep()
    return result, prepared


CASES = [(fmt, kind) for fmt in formats.CONVERTIBLE
         for kind in compressed.KINDS]


@pytest.mark.parametrize('fmt,kind', CASES,
                         ids=['%s.%s' % c for c in CASES])
def test_compressed_image_converts_to_raw(tmp_path, reference, workspace,
                                          qemu_tools, fmt, kind):
    image = imagefactory.make_image(tmp_path, fmt)
    src = compress(image, kind)

    result, prepared = run_pipeline(src, fmt, workspace)

    assert prepared.unpacked.compression == kind
    with open(src, 'rb') as f:
        assert prepared.unpacked.source_sha256 == \
            hashlib.sha256(f.read()).hexdigest()
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')
    # The upload is untouched; the only work file left is the one handed
    # on (the converted image, or the decompressed raw passed through).
    assert os.path.exists(src)
    left = [n for n in os.listdir(workspace.work_dir)
            if ws_mod.WORK_FILE_TAG in n]
    assert left == [os.path.basename(result.path)]
    assert result.converted == (fmt != 'raw')


def test_gzip_hiding_an_image_with_a_backing_file_is_refused(
        tmp_path, workspace, qemu_tools):
    secret = tmp_path / 'secret'
    secret.write_bytes(b'host secret' * 1000)
    inner = tmp_path / 'inner.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b',
                    str(secret), '-F', 'raw', str(inner), '1M'], check=True)
    src = compress(str(inner), 'gzip')

    with pytest.raises(errors.ImageRejected) as exc:
        run_pipeline(src, 'qcow2', workspace)

    assert 'backing file' in str(exc.value)
    assert [n for n in os.listdir(workspace.work_dir)
            if ws_mod.WORK_FILE_TAG in n] == []
    assert workspace.usage()['paths'] == []


def test_sparse_work_file_keeps_holes(tmp_path, workspace, qemu_tools):
    """A 64 MiB raw disk with 4 MiB of data takes about 4 MiB to unpack."""
    raw = imagefactory.make_raw(tmp_path / 'big.raw', size=64 * MiB)
    src = compress(raw, 'xz')
    with compressed.decompressed(src, image_id=IMAGE_ID,
                                 work_dir=workspace.work_dir, limit=1 << 30,
                                 workspace=workspace) as prepared:
        assert os.path.getsize(prepared.path) == 64 * MiB
        assert os.stat(prepared.path).st_blocks * 512 < 8 * MiB
