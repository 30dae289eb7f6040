"""``glance-convert recover`` without Glance: the workspace is real, the
repositories are the fakes of test_recovery, the dead glance-api is a
forked child that exits in the middle of its reservation."""

import argparse
import multiprocessing
import os

import pytest

from glance_convert.cmd import common as cli
from glance_convert.cmd import main
from glance_convert.cmd import recover as cmd
from glance_convert.flow import recovery
from glance_convert.host import ledger
from glance_convert.host import workspace
from tests import fakes
from tests.fakes import FakeTask
from tests.fakes import Repo

ctx = multiprocessing.get_context('fork')


class BrokenRepo(Repo):
    def save(self, obj, *args):
        raise RuntimeError('database went away')


def _die_converting(ws, image_id, task_id):
    with ws.reservation(image_id, 4096, info={'task_id': task_id}) as res:
        with open(res.path('out'), 'wb') as f:
            f.write(b'partial output')
        os._exit(0)  # no release, no clean-up: glance-api was SIGKILLed


@pytest.fixture
def host(tmp_path):
    """A work directory (= staging) and an empty ledger directory."""
    staging = tmp_path / 'staging'
    staging.mkdir()
    ws = workspace.Workspace(str(staging), lock_dir=str(tmp_path / 'locks'),
                             max_concurrent=0, reserved_bytes=0,
                             max_bytes=0)
    return ws, str(staging)


def interrupted(ws, staging, task_id='t1'):
    """An image whose import died mid-conversion; returns it and the files
    the crash left (the work file, the staged data)."""
    image = fakes.FakeImage('raw')
    image.extra_properties['os_glance_import_task'] = task_id
    staged = os.path.join(staging, image.image_id)
    with open(staged, 'wb') as f:
        f.write(b'staged')
    child = ctx.Process(target=_die_converting,
                        args=(ws, image.image_id, task_id))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    work = ws.work_path(image.image_id, 'out')
    assert os.path.exists(work)
    return image, work, staged


def test_interrupted_import_is_released_and_its_files_removed(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)
    images, tasks = Repo({image.image_id: image}), Repo({'t1': FakeTask()})

    [report] = cmd.recover(ws, images, tasks, staging)

    assert report['result'] == 'released'
    assert (report['image_id'], report['task_id']) == (image.image_id, 't1')
    assert report['removed'] == [work]
    assert report['staged_data'] == staged
    assert not os.path.exists(work) and not os.path.exists(staged)
    assert image.status == 'queued'
    assert 'os_glance_import_task' not in image.extra_properties
    assert tasks['t1'].message == recovery.INTERRUPTED
    assert cmd.recover(ws, images, tasks, staging) == []


def test_dry_run_reports_and_changes_nothing(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)
    images, tasks = Repo({image.image_id: image}), Repo({'t1': FakeTask()})

    [report] = cmd.recover(ws, images, tasks, staging, dry_run=True)

    assert report['result'] == 'would release'
    assert report['removed'] == [work]
    assert report['staged_data'] == staged
    assert os.path.exists(work) and os.path.exists(staged)
    assert image.status == 'importing'
    assert tasks['t1'].status == 'processing'
    assert not getattr(images, 'saved', 0)
    # The record is still there for the real run.
    [report] = cmd.recover(ws, images, tasks, staging)
    assert report['result'] == 'released'


def test_deleted_image_is_skipped_but_its_work_file_removed(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)

    [report] = cmd.recover(ws, Repo(), Repo(), staging)

    assert report['result'] == 'skipped'
    assert report['reason'] == 'the image no longer exists'
    assert not os.path.exists(work)
    # Glance's housekeeper owns the staged data of deleted images.
    assert report['staged_data'] is None


def test_image_another_import_holds_is_left_alone(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)
    image.extra_properties['os_glance_import_task'] = 'newer'

    [report] = cmd.recover(ws, Repo({image.image_id: image}),
                           Repo({'t1': FakeTask()}), staging)

    assert report['result'] == 'skipped'
    assert 'task newer' in report['reason']
    assert image.status == 'importing'
    assert os.path.exists(staged)


def test_a_failed_release_is_reported_and_the_others_go_on(host):
    ws, staging = host
    first, _, _ = interrupted(ws, staging, 't1')
    second, _, second_staged = interrupted(ws, staging, 't2')
    images = BrokenRepo({first.image_id: first})
    good = Repo({second.image_id: second})

    class Either:
        def get(self, image_id):
            return (images if image_id == first.image_id else good).get(
                image_id)

        def save(self, image, *args):
            (images if image is first else good).save(image)

        def delete_property_atomic(self, image, *args):
            good.delete_property_atomic(image, *args)

    reports = cmd.recover(ws, Either(),
                          Repo({'t1': FakeTask(), 't2': FakeTask()}),
                          staging)

    by_image = {r['image_id']: r for r in reports}
    assert by_image[first.image_id]['result'] == 'failed'
    assert 'database went away' in by_image[first.image_id]['reason']
    assert by_image[second.image_id]['result'] == 'released'
    assert not os.path.exists(second_staged)


def test_no_ledger_means_nothing_to_do_and_nothing_created(host, tmp_path):
    ws, staging = host
    assert cmd.recover(ws, Repo(), Repo(), staging) == []
    assert os.listdir(staging) == []
    assert not os.path.exists(str(tmp_path / 'locks'))


def test_dry_run_of_an_unreadable_ledger_says_so_and_keeps_it(host):
    ws, staging = host
    os.makedirs(ws.lock_dir)
    with open(ws.ledger_path, 'w') as f:
        f.write('{not json')
    with pytest.raises(cli.UsageError) as exc:
        cmd.recover(ws, Repo(), Repo(), staging, dry_run=True)
    assert str(exc.value).startswith(
        'cannot read the conversion ledger %s: ' % ws.ledger_path)
    with open(ws.ledger_path) as f:
        assert f.read() == '{not json'


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root')
def test_root_refuses_a_ledger_of_another_user(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)
    os.chown(ws.ledger_path, 65534, 65534)
    with pytest.raises(cli.UsageError) as exc:
        cmd.recover(ws, Repo(), Repo(), staging)
    assert 'run recover as the user glance-api runs as' in str(exc.value)
    assert os.path.exists(work)  # nothing was touched


def test_text_report_names_what_was_done(host, capsys):
    ws, staging = host
    image, work, staged = interrupted(ws, staging)
    reports = cmd.recover(ws, Repo({image.image_id: image}),
                          Repo({'t1': FakeTask()}), staging)
    cmd._print_recover(reports, ws, dry_run=False)
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith('Released image %s (import task t1, '
                             'glance-api pid ' % image.image_id)
    assert out[2:] == ['  removed work file %s' % work,
                       '  removed staged data %s' % staged,
                       '1 released, 0 skipped, 0 failed.']


def test_a_failed_release_is_kept_and_retried(host):
    ws, staging = host
    image, work, staged = interrupted(ws, staging, 't1')
    tasks = Repo({'t1': FakeTask()})
    first = cmd.recover(ws, BrokenRepo({image.image_id: image}), tasks,
                        staging)
    assert [r['result'] for r in first] == ['failed']
    assert not os.path.exists(work)   # the work file goes at once
    # The database is back: the next run releases the image.
    second = cmd.recover(ws, Repo({image.image_id: image}), tasks, staging)
    assert [r['result'] for r in second] == ['released']
    assert image.status == 'queued'
    assert not os.path.exists(staged)
    assert cmd.recover(ws, Repo({image.image_id: image}), tasks,
                       staging) == []


def test_a_release_that_keeps_failing_is_given_up(host):
    ws, staging = host
    image, _, _ = interrupted(ws, staging, 't1')
    broken = BrokenRepo({image.image_id: image})
    tasks = Repo({'t1': FakeTask()})
    results = []
    for _ in range(workspace.MAX_RECOVERY_ATTEMPTS + 1):
        results.append([r['result'] for r in
                        cmd.recover(ws, broken, tasks, staging)])
    assert results[:workspace.MAX_RECOVERY_ATTEMPTS] == (
        [['failed']] * workspace.MAX_RECOVERY_ATTEMPTS)
    assert results[-1] == []


def test_the_plugin_keeps_what_it_could_not_release(host, monkeypatch):
    ws, staging = host
    image, _, staged = interrupted(ws, staging, 't1')
    tasks = Repo({'t1': FakeTask()})

    class Context:
        def elevated(self):
            return self

    def database_down(context):
        raise RuntimeError('database went away')
    monkeypatch.setattr(recovery, 'admin_repos', database_down)
    recovery.recover_on_import(Context(), ws, staging)
    assert image.status == 'importing'

    # The retry waits for its delay (a database outage lasts a while).
    monkeypatch.setattr(recovery, 'admin_repos', lambda context: (
        Repo({image.image_id: image}), tasks))
    recovery.recover_on_import(Context(), ws, staging)
    assert image.status == 'importing'
    monkeypatch.setattr(ledger, 'retry_delay', lambda attempts: 0)
    [record] = ws.claim_orphans(due_only=False)
    ws.settle_orphans([], [record])  # as if the delay was over

    recovery.recover_on_import(Context(), ws, staging)
    assert image.status == 'queued'
    assert tasks['t1'].status == 'failure'
    assert not os.path.exists(staged)


def _args(config_dir, **kw):
    return argparse.Namespace(config_dir=str(config_dir), config_file=None,
                              if_needed=True, **kw)


def test_a_run_with_nothing_to_release_reads_only_the_ledger(
        host, tmp_path):
    """What a timer's runs cost: no Glance, no database, unless an import
    waits to be released."""
    ws, staging = host
    etc = tmp_path / 'etc'
    etc.mkdir()
    (etc / 'glance-api.conf').write_text(
        '[DEFAULT]\nnode_staging_uri = file://%s\n'
        '[oslo_concurrency]\nlock_path = %s\n' % (staging, ws.lock_dir))
    quiet = cmd._quiet_workspace(_args(etc))
    assert quiet is not None and quiet.ledger_path == ws.ledger_path
    interrupted(ws, staging)
    assert cmd._quiet_workspace(_args(etc)) is None
    assert cmd._quiet_workspace(_args(tmp_path / 'nowhere')) is None


@pytest.mark.parametrize('text', ['0', '-1', 'soon', '7200'])
def test_follow_interval_must_be_a_sane_number(text, capsys):
    parser = main.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(['recover', '--follow', '--interval', text])
    assert ('not a number of seconds from 0.1 to 3600: %r' % text
            in capsys.readouterr().err)
    assert parser.parse_args(
        ['recover', '--follow', '--interval', '2.5']).interval == 2.5
