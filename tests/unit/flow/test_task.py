"""The task's execute and revert, with a fake action wrapper.

qemu-img is real here (the images are tiny); Glance is faked.
"""

import os

import pytest
from taskflow.types import failure

from glance_convert import errors
from glance_convert.flow import task as tasks
from tests import fakes
from tests import imagefactory


@pytest.fixture
def staging(tmp_path):
    d = tmp_path / 'staging'
    d.mkdir()
    return d


def stage(staging, image, fmt):
    """Build an image of ``fmt`` staged as Glance does: named by image id."""
    path = imagefactory.make_image(staging, fmt, name=image.image_id)
    return path


def test_execute_converts_and_publishes_metadata(staging):
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    reference = imagefactory.make_image(staging, 'raw', name='ref.raw')
    task, _ = fakes.make_task(image, staging)

    result = task.execute('file://' + src)

    assert result.startswith('file://')
    out = result[len('file://'):]
    assert os.path.dirname(out) == str(staging)
    assert os.path.basename(out).startswith(image.image_id + '.')
    assert not os.path.exists(src), 'staged source must be deleted'
    assert image.disk_format == 'raw'
    assert image.container_format == 'bare'
    assert image.size == os.path.getsize(out)
    assert image.virtual_size == imagefactory.DEFAULT_SIZE
    assert image.extra_properties['glance_convert_source_format'] == 'qcow2'
    assert float(image.extra_properties['glance_convert_duration_s']) >= 0
    assert imagefactory.compare(out, 'raw', reference, 'raw')


def test_the_import_log_line_names_every_phase(staging, caplog):
    from glance_convert.pipeline import phases
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    task, _ = fakes.make_task(image, staging)
    with caplog.at_level('INFO', logger='glance_convert.flow.task'):
        task.execute('file://' + src)
    line, = [r.getMessage() for r in caplog.records
             if 'import phases' in r.getMessage()]
    for name in phases.ORDER:
        assert '%s ' % name in line, (name, line)
    positions = [line.index(name + ' ') for name in phases.ORDER]
    assert positions == sorted(positions), line


def test_same_format_passes_through_untouched(staging):
    image = fakes.FakeImage('raw')
    src = stage(staging, image, 'raw')
    before = open(src, 'rb').read()
    task, _ = fakes.make_task(image, staging, target='raw')

    assert task.execute('file://' + src) == 'file://' + src
    assert open(src, 'rb').read() == before
    assert image.disk_format == 'raw'
    assert sorted(os.listdir(staging)) == [image.image_id]


@pytest.mark.parametrize('disk_format', ['iso', 'ami', 'aki'])
def test_other_formats_pass_through(staging, disk_format):
    from tests import hostile_corpus
    image = fakes.FakeImage(disk_format)
    src = staging / image.image_id
    if disk_format == 'iso':
        # Passed-through uploads are inspected too: it must be an ISO.
        hostile_corpus._iso(str(src))
    else:
        src.write_bytes(b'\x01' * 4096)
    task, _ = fakes.make_task(image, staging)
    assert task.execute('file://%s' % src) == 'file://%s' % src
    assert image.disk_format == disk_format


def test_source_formats_limit_what_is_converted(staging):
    image = fakes.FakeImage('vdi')
    src = stage(staging, image, 'vdi')
    task, _ = fakes.make_task(image, staging, source_formats=('qcow2',))
    assert task.execute('file://' + src) == 'file://' + src
    assert image.disk_format == 'vdi'


def test_failure_is_user_readable_and_leaves_nothing(staging):
    image = fakes.FakeImage('qcow2')        # claims qcow2 ...
    src = stage(staging, image, 'vmdk')     # ... but is a vmdk
    task, wrapper = fakes.make_task(image, staging)

    with pytest.raises(errors.ImageRejected) as exc_info:
        task.execute('file://' + src)
    message = str(exc_info.value)
    assert message.startswith('Image rejected: ')
    assert 'qcow2' in message

    task.revert(result=failure.Failure.from_exception(exc_info.value))
    assert os.listdir(staging) == []
    assert image.status == 'queued'
    assert image.disk_format == 'qcow2'
    props = image.extra_properties
    assert props['os_glance_importing_to_stores'] == ''
    assert props['os_glance_failed_import'] == 'fs'


def test_revert_after_later_failure_restores_formats(staging):
    image = fakes.FakeImage('vhd')
    src = stage(staging, image, 'vhd')
    task, _ = fakes.make_task(image, staging, target='qcow2')
    out = task.execute('file://' + src)[len('file://'):]
    assert os.path.exists(out)

    # A store upload failed after us: taskflow reverts us with our result.
    task.revert(result='file://' + out)
    assert not os.path.exists(out)
    assert os.listdir(staging) == []
    assert image.status == 'queued'
    assert image.disk_format == 'vhd'
    assert image.extra_properties['os_glance_failed_import'] == 'fs'


@pytest.mark.parametrize('method', ['web-download', 'glance-download'])
def test_revert_leaves_the_status_to_the_download_task(staging, method):
    """Glance's download task, reverted after us, puts the image back to
    queued unconditionally: had we done it first, its revert would fail
    (queued -> queued) and the image would stay locked."""
    image = fakes.FakeImage('vhd')
    src = stage(staging, image, 'vhd')
    task, _ = fakes.make_task(image, staging, target='qcow2')
    task.import_method = method
    out = task.execute('file://' + src)[len('file://'):]
    task.revert(result='file://' + out)
    assert os.listdir(staging) == []
    assert image.status == 'importing'
    assert image.disk_format == 'vhd'
    assert 'os_glance_failed_import' not in image.extra_properties


def test_revert_survives_a_lost_lock(staging):
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    task, wrapper = fakes.make_task(image, staging)
    wrapper.lock_held = False  # image deleted / lock taken over
    task._source = src
    task.revert(result=None)  # must not raise
    assert not os.path.exists(src)


def test_non_file_staging_uri_is_a_clear_error(staging):
    image = fakes.FakeImage('qcow2')
    task, _ = fakes.make_task(image, staging)
    with pytest.raises(errors.ConversionError) as exc_info:
        task.execute('rbd://pool/image')
    assert 'local file' in str(exc_info.value)


def test_missing_staged_file_is_a_clear_error(staging):
    image = fakes.FakeImage('qcow2')
    task, _ = fakes.make_task(image, staging)
    with pytest.raises(errors.ConversionError) as exc_info:
        task.execute('file://%s/%s' % (staging, image.image_id))
    assert 'not found on this node' in str(exc_info.value)


def test_errors_reach_the_user_through_glance(staging):
    """Glance shows str(exc) only for UploadException subclasses."""
    from glance.common import exception as glance_exc
    exc = errors.ImageRejected('qcow2 images with a backing file are not '
                               'allowed', 'backing file /etc/passwd')
    assert isinstance(exc, glance_exc.UploadException)
    assert str(exc) == ('Image rejected: qcow2 images with a backing file '
                        'are not allowed')
    assert '/etc/passwd' not in str(exc)


def test_aborted_import_is_not_converted(staging):
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    status = fakes.RecordingStatus()
    status.aborted = True
    task, _ = fakes.make_task(image, staging, status=status)
    with pytest.raises(errors.ConversionCancelled):
        task.execute('file://' + src)
    task.revert(result=None)
    assert os.listdir(staging) == []


def test_workspace_refusal_reaches_the_user(staging, tmp_path):
    from glance_convert.host import workspace
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')

    small_workspace = workspace.Workspace(
        str(staging), lock_dir=str(tmp_path), max_concurrent=1,
        reserved_bytes=0, max_bytes=64 * 1024)
    task, _ = fakes.make_task(image, staging, workspace=small_workspace)
    with pytest.raises(errors.WorkspaceError) as exc_info:
        task.execute('file://' + src)
    assert 'Not enough space' in str(exc_info.value)
    task.revert(result=failure.Failure.from_exception(exc_info.value))
    assert os.listdir(staging) == []
    assert image.status == 'queued'


def test_workspace_tracks_the_output_until_glance_removes_it(staging,
                                                             tmp_path):
    from glance_convert.host import workspace
    image = fakes.FakeImage('vdi')
    src = stage(staging, image, 'vdi')
    spaces = [workspace.Workspace(
        str(staging), lock_dir=str(tmp_path), max_concurrent=2,
        reserved_bytes=0, max_bytes=0)]
    task, _ = fakes.make_task(image, staging, workspace=spaces[0])
    out = task.execute('file://' + src)[len('file://'):]
    usage = spaces[0].usage()
    assert usage['reserved_bytes'] == 0, 'bytes are released after success'
    assert out in usage['paths'], 'the output stays known for crash reaping'


def test_misconfiguration_reaches_the_user_as_one_sentence(staging,
                                                           tmp_path):
    from oslo_config import cfg

    from glance_convert import options
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    path = tmp_path / 'bad.conf'
    path.write_text('[glance_convert]\noutput_format = raw\n'
                    'preallocation = metadata\n')
    conf(['--config-file', str(path)])
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    wrapper = fakes.FakeActionWrapper(image)
    task = tasks.ConvertImage(
        't', 'api_image_import', wrapper, ['fs'],
        config=lambda: tasks.TaskConfig.from_conf(conf))
    with pytest.raises(errors.ConversionError) as exc_info:
        task.execute('file://' + src)
    assert str(exc_info.value) == (
        'Image conversion is misconfigured on this cloud; please contact '
        'the cloud operator.')
    assert 'preallocation' in exc_info.value.detail


@pytest.mark.parametrize('disk_format', ['raw', 'iso'])
def test_passed_through_uploads_are_inspected_too(staging, disk_format):
    """Stored as uploaded, so refused like a conversion would be."""
    image = fakes.FakeImage(disk_format)
    src = imagefactory.make_image(staging, 'qcow2', name=image.image_id)
    task, _ = fakes.make_task(image, staging, target='raw')
    with pytest.raises(errors.ImageRejected):
        task.execute('file://' + src)
    task.revert(result=None)
    assert os.listdir(staging) == []
    assert image.status == 'queued'


def test_the_import_is_recorded_until_glance_deletes_the_upload(staging):
    ws = fakes.make_workspace(staging)
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    task, _ = fakes.make_task(image, staging, workspace=ws)
    out = task.execute('file://' + src)[len('file://'):]
    [record] = ws.imports()
    assert record['info'] == {'task_id': 'task-1',
                              'formats': ['qcow2', 'bare']}
    assert record['watch'] == [out] and not record['active']
    os.unlink(out)  # Glance's upload is done and deletes it
    assert ws.imports() == []


def test_a_store_failure_glance_calls_internal_is_explained(staging):
    from glance.common import exception
    for later, expected in [(RuntimeError('read-only store'),
                             tasks.STORE_FAILED),
                            (exception.UploadException('quota'), None)]:
        image = fakes.FakeImage('qcow2')
        src = stage(staging, image, 'qcow2')
        status = fakes.RecordingStatus()
        task, _ = fakes.make_task(image, staging, status=status)
        out = task.execute('file://' + src)
        task.revert(result=out, flow_failures={
            'upload': failure.Failure.from_exception(later)})
        assert status.failed == expected
        assert image.status == 'queued'


def test_a_revert_that_cannot_reset_the_image_leaves_it_to_recovery(
        staging):
    ws = fakes.make_workspace(staging)
    image = fakes.FakeImage('qcow2')
    src = stage(staging, image, 'qcow2')
    task, wrapper = fakes.make_task(image, staging, workspace=ws)
    out = task.execute('file://' + src)
    wrapper.lock_held = False  # the database is down (not "not found")
    task.revert(result=out)
    assert ws.imports() == []
    [orphan] = ws.peek_orphans()
    assert orphan['owner'] == image.image_id
    assert orphan['info']['task_id'] == 'task-1'
    assert 'cannot reset the image' in orphan['info']['reason']
