"""Every source/target pair, through the task, with the real qemu-img."""

import os

import pytest

from glance_convert import formats
from tests import fakes
from tests import imagefactory

PAIRS = [(s, t) for s in formats.CONVERTIBLE for t in formats.CONVERTIBLE]


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The raw guest data every source image is built from."""
    d = tmp_path_factory.mktemp('ref')
    return imagefactory.make_image(d, 'raw', name='reference.raw')


@pytest.mark.parametrize('source,target', PAIRS,
                         ids=['%s-to-%s' % p for p in PAIRS])
def test_pair(tmp_path, reference, source, target):
    staging = tmp_path / 'staging'
    staging.mkdir()
    image = fakes.FakeImage(source)
    src = imagefactory.make_image(staging, source, name=image.image_id)
    task, _ = fakes.make_task(image, staging, target=target)

    result = task.execute('file://' + src)
    out = result[len('file://'):]

    assert imagefactory.compare(out, target, reference, 'raw'), (
        'guest data differs after %s -> %s' % (source, target))
    assert imagefactory.info(out, target)['format'] == \
        formats.qemu_driver(target)
    assert image.disk_format == target
    if source == target:
        assert out == src, 'same-format images pass through untouched'
        assert os.listdir(staging) == [image.image_id]
        return
    assert image.container_format == 'bare'
    assert image.size == os.path.getsize(out)
    assert image.virtual_size >= imagefactory.DEFAULT_SIZE
    # Only the converted file is left; the staged source is gone.
    assert os.listdir(staging) == [os.path.basename(out)]
    # Glance deletes the file it uploaded; nothing else may remain.
    os.unlink(out)
    assert os.listdir(staging) == []
