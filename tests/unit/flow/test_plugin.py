"""get_flow builds the flow and does nothing else."""

from glance_convert.flow import plugin
from glance_convert.flow import recovery
from glance_convert.flow import task as tasks
from tests import fakes


class Context:
    def elevated(self):
        return self


def test_get_flow_only_builds_the_flow(monkeypatch):
    calls = []
    monkeypatch.setattr(recovery, 'recover_on_import',
                        lambda *args: calls.append(args))
    image = fakes.FakeImage('qcow2')
    flow = plugin.get_flow(task_id='t1', task_type='api_image_import',
                           action_wrapper=fakes.FakeActionWrapper(image),
                           backend=['fs'], task_repo=None,
                           context=Context(),
                           import_req={'method': {'name': 'web-download'}})
    assert calls == [], 'building the flow must not recover anything'
    recover, convert = [node for node, _ in flow.iter_nodes()]
    assert isinstance(recover, tasks.RecoverInterrupted)
    assert isinstance(convert, tasks.ConvertImage)
    assert convert.stores == ['fs']
    assert convert.import_method == 'web-download'
    assert recover.name == 'api_image_import-GlanceConvertRecover-t1'


def test_the_recovery_task_runs_recovery_in_the_work_dir(monkeypatch,
                                                         tmp_path):
    from glance_convert import options
    calls, watched = [], []
    monkeypatch.setattr(recovery, 'recover_on_import',
                        lambda *args: calls.append(args))
    monkeypatch.setattr(recovery, 'start_watch', watched.append)
    options.CONF.set_override('work_dir', str(tmp_path),
                              group=options.GROUP)
    try:
        context = Context()
        tasks.RecoverInterrupted('t1', 'import', context).execute()
    finally:
        options.CONF.clear_override('work_dir', group=options.GROUP)
    [(ctx, ws, staging)] = calls
    assert ctx is context and ws.work_dir == str(tmp_path)
    assert watched == [ws], 'the look-out watches the same work dir'


def test_the_recovery_task_without_a_work_dir_does_nothing(monkeypatch):
    from glance_convert.flow import glance_conf
    calls = []
    # Neither work_dir nor a local staging directory.
    monkeypatch.setattr(glance_conf, 'staging_dir', lambda conf=None: None)
    monkeypatch.setattr(recovery, 'recover_on_import',
                        lambda *args: calls.append(args))
    monkeypatch.setattr(recovery, 'start_watch', calls.append)
    tasks.RecoverInterrupted('t1', 'import', Context()).execute()
    assert calls == []
