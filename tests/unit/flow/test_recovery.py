"""Release of images whose conversion died with its glance-api."""

from glance_convert.flow import plugin
from tests import fakes


class FakeTask:
    def __init__(self, status='processing'):
        self.status = status
        self.message = ''

    def fail(self, message):
        self.status = 'failure'
        self.message = message


class Repo(dict):
    def get(self, key):
        if key not in self:
            raise LookupError(key)
        return self[key]

    def save(self, obj, *args):
        self.saved = getattr(self, 'saved', 0) + 1

    def delete_property_atomic(self, image, name, value):
        assert image.extra_properties[name] == value
        del image.extra_properties[name]


def test_interrupted_import_is_released(tmp_path):
    image = fakes.FakeImage('qcow2')
    image.extra_properties['os_glance_import_task'] = 't1'
    staged = tmp_path / image.image_id
    staged.write_bytes(b'data')
    images, tasks = Repo({image.image_id: image}), Repo({'t1': FakeTask()})

    released = plugin.recover_interrupted(
        [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
        images, tasks, staging_dir=str(tmp_path))

    assert released == [image.image_id]
    assert image.status == 'queued'
    assert 'os_glance_import_task' not in image.extra_properties
    assert image.extra_properties['os_glance_failed_import'] == 'fs'
    assert image.extra_properties['os_glance_importing_to_stores'] == ''
    assert tasks['t1'].status == 'failure'
    assert 'import the image again' in tasks['t1'].message
    assert not staged.exists()


def test_image_taken_over_by_another_import_is_left_alone(tmp_path):
    image = fakes.FakeImage('qcow2')
    image.extra_properties['os_glance_import_task'] = 'newer'
    staged = tmp_path / image.image_id
    staged.write_bytes(b'data')
    released = plugin.recover_interrupted(
        [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
        Repo({image.image_id: image}), Repo({'t1': FakeTask()}),
        staging_dir=str(tmp_path))
    assert released == []
    assert image.status == 'importing'
    assert staged.exists()


def test_deleted_image_is_skipped():
    assert plugin.recover_interrupted(
        [{'owner': 'gone', 'info': {'task_id': 't1'}}], Repo(), Repo()) == []
