"""Release of images whose conversion died with its glance-api."""

import logging

from glance_convert.flow import recovery
from tests import fakes
from tests.fakes import FakeTask
from tests.fakes import Repo


def released(reports):
    return [r['image_id'] for r in reports if r['result'] == 'released']


def test_interrupted_import_is_released(tmp_path, caplog):
    image = fakes.FakeImage('qcow2')
    image.extra_properties['os_glance_import_task'] = 't1'
    staged = tmp_path / image.image_id
    staged.write_bytes(b'data')
    images, tasks = Repo({image.image_id: image}), Repo({'t1': FakeTask()})

    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        reports, retry = recovery.release_all(
            [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
            images, tasks, staging_dir=str(tmp_path))

    assert released(reports) == [image.image_id]
    assert retry == []
    assert reports[0]['staged_data'] == str(staged)
    assert image.status == 'queued'
    assert 'os_glance_import_task' not in image.extra_properties
    assert image.extra_properties['os_glance_failed_import'] == 'fs'
    assert image.extra_properties['os_glance_importing_to_stores'] == ''
    assert tasks['t1'].status == 'failure'
    assert 'import the image again' in tasks['t1'].message
    assert not staged.exists()
    [line] = [r for r in caplog.records if image.image_id in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith('Released image %s' % image.image_id)


def test_image_taken_over_by_another_import_is_left_alone(tmp_path):
    image = fakes.FakeImage('qcow2')
    image.extra_properties['os_glance_import_task'] = 'newer'
    staged = tmp_path / image.image_id
    staged.write_bytes(b'data')
    reports, retry = recovery.release_all(
        [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
        Repo({image.image_id: image}), Repo({'t1': FakeTask()}),
        staging_dir=str(tmp_path))
    assert released(reports) == []
    assert [r['result'] for r in reports] == ['skipped']
    assert retry == []
    assert image.status == 'importing'
    assert staged.exists()


def test_deleted_image_is_skipped():
    reports, retry = recovery.release_all(
        [{'owner': 'gone', 'info': {'task_id': 't1'}}], Repo(), Repo(),
        staging_dir=None)
    assert released(reports) == []
    assert reports[0]['reason'] == 'the image no longer exists'
    assert retry == []


class _Ledger:
    """The two workspace calls recovery makes, over a list."""

    def __init__(self, records):
        self.records = list(records)
        self.work_dir = '/work'

    def claim_orphans(self, due_only=True):
        self.due_only = due_only
        return list(self.records)

    def settle_orphans(self, done, retry):
        self.records = [r for r in self.records if r not in done]
        assert self.records == retry


def test_recover_logs_a_summary_and_keeps_failures(caplog):
    image = fakes.FakeImage('qcow2')
    image.extra_properties['os_glance_import_task'] = 't1'
    ledger = _Ledger([{'owner': image.image_id, 'info': {'task_id': 't1'}},
                      {'owner': 'gone', 'info': {'task_id': 't2'}}])

    class Broken(Repo):
        def save(self, obj, *args):
            raise RuntimeError('database went away')

    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        reports = recovery.recover(
            ledger, lambda: (Broken({image.image_id: image}),
                             Repo({'t1': FakeTask()})), None)
    assert [r['result'] for r in reports] == ['failed', 'skipped']
    assert [r['owner'] for r in ledger.records] == [image.image_id]
    assert ('Recovery of interrupted conversions in /work ran: 0 image(s) '
            'released, 1 skipped, 1 failed') in caplog.text


def test_recover_without_records_does_not_touch_glance():
    def no_database():
        raise AssertionError('Glance asked for nothing to recover')
    assert recovery.recover(_Ledger([]), no_database, None) == []


def test_recover_from_the_plugin_leaves_records_waiting_for_a_retry():
    ledger = _Ledger([])
    recovery.recover(ledger, None, None)
    assert ledger.due_only is True
    recovery.recover(ledger, None, None, due_only=False)
    assert ledger.due_only is False


def test_internal_error_of_a_stopping_glance_api_is_explained(tmp_path):
    # glance-api stopping (SIGTERM) fails its running flows itself, and
    # Glance calls that an internal error; other failures keep their text.
    for before, after in [('Task failed due to Internal Error',
                           recovery.INTERRUPTED),
                          ('Image rejected: too big', 'Image rejected: '
                           'too big')]:
        image = fakes.FakeImage('qcow2')
        image.extra_properties['os_glance_import_task'] = 't1'
        task = FakeTask('failure')
        task.message = before
        reports, _ = recovery.release_all(
            [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
            Repo({image.image_id: image}), Repo({'t1': task}),
            staging_dir=str(tmp_path))
        assert released(reports) == [image.image_id]
        assert task.message == after
        assert image.status == 'queued'


def test_the_formats_before_the_conversion_come_back(tmp_path):
    # Killed during the store upload: the image carries the converted
    # format, which the user's next upload of the original would not match.
    for status, formats in [('importing', ('qcow2', 'bare')),
                            ('active', ('raw', 'bare'))]:
        image = fakes.FakeImage('raw', status=status)
        image.extra_properties['os_glance_import_task'] = 't1'
        recovery.release_all(
            [{'owner': image.image_id,
              'info': {'task_id': 't1', 'formats': ['qcow2', 'bare']}}],
            Repo({image.image_id: image}), Repo({'t1': FakeTask()}),
            staging_dir=str(tmp_path))
        # An image whose upload completed keeps the data's format.
        assert (image.disk_format, image.container_format) == formats


def test_a_partial_store_upload_is_removed(tmp_path, monkeypatch):
    # Killed while Glance wrote the filesystem store: the file blocks
    # every later upload of the image there ("already exists").
    from glance_convert.flow import glance_conf
    store = tmp_path / 'store'
    store.mkdir()
    asked = []
    monkeypatch.setattr(glance_conf, 'filesystem_store_dirs',
                        lambda stores: asked.append(stores) or [str(store)])
    for status, locations, kept in [('importing', [], False),
                                    ('importing', True, True),
                                    ('active', [], True)]:
        image = fakes.FakeImage('raw', status=status)
        image.extra_properties['os_glance_import_task'] = 't1'
        partial = store / image.image_id
        partial.write_bytes(b'half')
        image.locations = ([{'url': 'file://%s' % partial}] if locations
                           else [])
        recovery.release_all(
            [{'owner': image.image_id, 'info': {'task_id': 't1'}}],
            Repo({image.image_id: image}), Repo({'t1': FakeTask()}),
            staging_dir=str(tmp_path))
        assert partial.exists() == kept, (status, locations)
    assert asked[0] == ['fs']


def test_filesystem_store_dirs_as_glance_configures_them():
    from oslo_config import cfg
    from glance_convert.flow import glance_conf
    conf = cfg.ConfigOpts()
    assert glance_conf.filesystem_store_dirs(['fs'], conf) == []
    conf.register_opt(cfg.DictOpt('enabled_backends'))
    conf.register_opts([cfg.StrOpt('default_store'),
                        cfg.StrOpt('filesystem_store_datadir')],
                       group='glance_store')
    for name in ('fs', 'ceph'):
        conf.register_opt(cfg.StrOpt('filesystem_store_datadir'),
                          group=name)
    conf([])
    conf.set_override('default_store', 'file', group='glance_store')
    conf.set_override('filesystem_store_datadir', '/single',
                      group='glance_store')
    assert glance_conf.filesystem_store_dirs([], conf) == ['/single']
    conf.set_override('enabled_backends', {'fs': 'file', 'ceph': 'rbd'})
    conf.set_override('filesystem_store_datadir', '/multi', group='fs')
    conf.set_override('filesystem_store_datadir', '/x', group='ceph')
    assert glance_conf.filesystem_store_dirs(['fs', 'ceph'], conf) == [
        '/multi']
