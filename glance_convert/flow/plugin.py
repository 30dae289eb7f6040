"""Glance's entry point: the only module that knows Glance's flow kwargs.

Glance loads ``get_flow`` through stevedore (namespace
``glance.image_import.plugins``) and adds the returned flow between its
staging and store-upload task.
"""

from __future__ import annotations

import time

from oslo_log import log as logging
from taskflow.patterns import linear_flow as lf

from glance_convert import options
from glance_convert.flow import task

LOG = logging.getLogger(__name__)


class GlanceTaskStatus:
    """Task message and abort detection through Glance's repositories.

    Saving the task refreshes its ``updated_at``.  Glance lets a new import
    take over an image whose import task has not been updated for 60
    minutes, so the task is saved again every ``refresh_interval`` seconds
    while the import runs, whatever it is doing: waiting for a slot,
    unpacking, checking or converting (:meth:`is_aborted` is polled
    throughout).
    """

    def __init__(self, task_repo, task_id: str, action_wrapper,
                 min_interval: float = 1.0, refresh_interval: float = 300.0):
        self.task_repo = task_repo
        self.task_id = task_id
        self.action_wrapper = action_wrapper
        self.min_interval = min_interval
        self.refresh_interval = refresh_interval
        self._last_check = 0.0
        self._last_saved = time.monotonic()
        self._message = 'Importing'
        self._aborted = False

    def _task(self):
        try:
            return self.task_repo.get(self.task_id)
        except Exception:  # noqa: BLE001 - task deleted
            return None

    def _update(self, change) -> None:
        """Apply ``change(task)`` and save, if the task still runs."""
        if self.task_repo is None:
            return
        task = self._task()
        if task is None or task.status != 'processing':
            return
        change(task)
        self.task_repo.save(task)

    def set_message(self, message: str) -> None:
        self._message = message
        self._last_saved = time.monotonic()
        try:
            self._update(lambda task: setattr(task, 'message', message))
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            LOG.debug('Could not update task %s message: %s',
                      self.task_id, exc)

    def refresh(self) -> None:
        """Save the task again if it was not saved for a while, so that
        Glance's import lock stays fresh."""
        if time.monotonic() - self._last_saved >= self.refresh_interval:
            self.set_message(self._message)

    def fail(self, message: str) -> None:
        """Fail the task with ``message`` now, unless it has ended.

        Glance's executor then keeps this message instead of its own
        "Internal Error" (it does not touch a task that has failed).
        """
        try:
            self._update(lambda task: task.fail(message))
        except Exception as exc:  # noqa: BLE001 - Glance fails it anyway
            LOG.warning('Could not fail task %s: %s', self.task_id, exc)

    def is_aborted(self) -> bool:
        """True once the image is gone, the lock lost or the task ended."""
        if self._aborted:
            return True
        now = time.monotonic()
        if now - self._last_check < self.min_interval:
            return False
        self._last_check = now
        self.refresh()
        try:
            self.action_wrapper.assert_task_lock()
        except Exception as exc:  # noqa: BLE001 - NotFound, TaskAborted
            LOG.warning('Import task %s aborted: %s', self.task_id,
                        type(exc).__name__)
            self._aborted = True
            return True
        if self.task_repo is not None:
            task = self._task()
            if task is None or task.status != 'processing':
                self._aborted = True
        return self._aborted


def _refresh_interval() -> float:
    """The configured task refresh interval; its default if unreadable
    (the import then fails on the bad value with a message of its own)."""
    try:
        return options.CONF[options.GROUP].task_refresh_interval
    except Exception:  # noqa: BLE001 - reported by TaskConfig.from_conf
        return 300.0


def get_flow(**kwargs):
    """Return the conversion flow for one import; build it, nothing else.

    The flow: :class:`~glance_convert.flow.task.RecoverInterrupted` (when
    Glance passes a request context), then
    :class:`~glance_convert.flow.task.ConvertImage`.

    :param task_id: the import task's id
    :param task_type: the task type
    :param task_repo: Glance's task repository (messages, abort detection)
    :param action_wrapper: Glance's ImportActionWrapper for the image
    :param backend: the stores the image is imported to, or None
    :param context: the request context (recovery uses it elevated)
    :param import_req: the import request (its method decides who puts
        the image back to ``queued`` on failure)
    """
    task_id = kwargs.get('task_id')
    task_type = kwargs.get('task_type')
    action_wrapper = kwargs.get('action_wrapper')
    context = kwargs.get('context')
    status = GlanceTaskStatus(
        kwargs.get('task_repo'), task_id, action_wrapper,
        refresh_interval=_refresh_interval())
    flow = lf.Flow(task_type)
    if context is not None:
        flow.add(task.RecoverInterrupted(task_id, task_type, context))
    method = ((kwargs.get('import_req') or {}).get('method') or {}).get(
        'name')
    return flow.add(task.ConvertImage(task_id, task_type, action_wrapper,
                                      kwargs.get('backend') or [],
                                      status=status, import_method=method))
