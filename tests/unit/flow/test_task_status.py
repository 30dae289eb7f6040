"""GlanceTaskStatus keeps the import's task, and so its lock, fresh."""

from glance_convert.flow import plugin


class Task:
    status = 'processing'
    message = ''


class Repo:
    """Glance's task repository, as far as the status uses it."""

    def __init__(self):
        self.task = Task()
        self.saves = []

    def get(self, task_id):
        return self.task

    def save(self, task):
        self.saves.append(task.message)


class Wrapper:
    def assert_task_lock(self):
        pass


def status(refresh_interval):
    repo = Repo()
    return repo, plugin.GlanceTaskStatus(repo, 'task-1', Wrapper(),
                                         min_interval=0,
                                         refresh_interval=refresh_interval)


def test_polling_saves_the_task_again_once_the_interval_passed():
    repo, st = status(refresh_interval=0)
    st.set_message('Waiting for a conversion slot')
    assert not st.is_aborted()
    assert not st.is_aborted()
    # Each poll saved the same message again: updated_at moves on.
    assert repo.saves == ['Waiting for a conversion slot'] * 3


def test_no_extra_save_within_the_interval():
    repo, st = status(refresh_interval=3600)
    st.set_message('Converting: 10%')
    for _ in range(5):
        assert not st.is_aborted()
    assert repo.saves == ['Converting: 10%']


def test_a_task_that_ended_is_not_saved():
    repo, st = status(refresh_interval=0)
    repo.task.status = 'failure'
    assert st.is_aborted()
    assert repo.saves == []
