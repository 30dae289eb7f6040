"""Glance's entry point: the only module that knows Glance's flow kwargs.

Glance loads ``get_flow`` through stevedore (namespace
``glance.image_import.plugins``) and adds the returned flow between its
staging and store-upload tasks.
"""

from __future__ import annotations

import os
import time

from oslo_config import cfg
from oslo_log import log as logging
from taskflow.patterns import linear_flow as lf

from glance_convert.pipeline import conversion
from glance_convert import options
from glance_convert.flow import task as tasks
from glance_convert.host import workspace

LOG = logging.getLogger(__name__)
CONF = cfg.CONF


class GlanceTaskStatus:
    """Task message and abort detection through Glance's repositories.

    Saving the task message also refreshes the task's ``updated_at``, which
    keeps Glance from treating the import lock as stale during a long
    conversion.
    """

    def __init__(self, task_repo, task_id: str, action_wrapper,
                 min_interval: float = 1.0):
        self.task_repo = task_repo
        self.task_id = task_id
        self.action_wrapper = action_wrapper
        self.min_interval = min_interval
        self._last_check = 0.0
        self._aborted = False

    def _task(self):
        try:
            return self.task_repo.get(self.task_id)
        except Exception:  # noqa: BLE001 - task deleted
            return None

    def set_message(self, message: str) -> None:
        if self.task_repo is None:
            return
        try:
            task = self._task()
            if task is None or task.status != 'processing':
                return
            task.message = message
            self.task_repo.save(task)
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            LOG.debug('Could not update task %s message: %s',
                      self.task_id, exc)

    def is_aborted(self) -> bool:
        """True once the image is gone, the lock lost or the task ended."""
        if self._aborted:
            return True
        now = time.monotonic()
        if now - self._last_check < self.min_interval:
            return False
        self._last_check = now
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


INTERRUPTED = ('Import interrupted: the image service stopped during the '
               'conversion; please import the image again.')


def _not_found_errors() -> tuple:
    try:
        from glance.common import exception
    except ImportError:  # pragma: no cover - outside Glance
        return (LookupError,)
    return (exception.NotFound, LookupError)


def orphan_target(orphan, image_repo):
    """Decide what recovery does with one orphan record.

    Returns ``(image_id, task_id, image, reason)``: ``image`` is the image
    to release, or None with ``reason`` saying why it is left alone.
    Errors other than "not found" (the database is down) propagate.
    """
    image_id = orphan.get('owner')
    task_id = (orphan.get('info') or {}).get('task_id')
    if not image_id or not task_id:
        return image_id, task_id, None, 'the record names no import task'
    try:
        image = image_repo.get(image_id)
    except _not_found_errors():
        return image_id, task_id, None, 'the image no longer exists'
    holder = image.extra_properties.get('os_glance_import_task')
    if holder != task_id:
        return image_id, task_id, None, (
            'another import (task %s) holds the image' % holder if holder
            else 'the image is not locked by this import any more')
    return image_id, task_id, image, None


def recover_interrupted(orphans, image_repo, task_repo, staging_dir=None,
                        failed=None):
    """Release the images of conversions whose glance-api process died.

    The workspace has already removed their work files and killed their
    qemu-img.  Here the image goes back to ``queued`` with its stores
    marked failed, the dead task fails with a message for the user, the
    import lock is dropped so the image can be imported again at once
    (Glance would otherwise refuse for an hour), and the staged data is
    deleted.  Returns the ids of the images released.

    ``failed``: a list to which the records whose release failed (the
    database is down, say) are appended, the others going on; without it,
    a failure to save the image propagates.
    """
    released = []
    for orphan in orphans:
        try:
            image_id, task_id, image, _ = orphan_target(orphan, image_repo)
        except Exception as exc:  # noqa: BLE001 - best effort, go on
            LOG.warning('Cannot look up the image of interrupted import '
                        '%s: %s', orphan.get('owner'), exc)
            if failed is not None:
                failed.append(orphan)
            continue
        if image is None:
            continue  # deleted, or another import took over: not ours
        try:
            _release(image, image_id, task_id, image_repo, task_repo)
        except Exception as exc:  # noqa: BLE001
            if failed is None:
                raise
            LOG.warning('Cannot release image %s of interrupted import '
                        '%s: %s', image_id, task_id, exc)
            failed.append(orphan)
            continue
        if staging_dir:
            conversion.remove_file(os.path.join(staging_dir, image_id))
        LOG.warning('Released image %s after its import task %s was '
                    'interrupted by a glance-api restart', image_id, task_id)
        released.append(image_id)
    return released


def _release(image, image_id, task_id, image_repo, task_repo):
    """Fail the dead task, put the image back to queued, drop the lock."""
    try:
        task = task_repo.get(task_id)
        if task.status in ('pending', 'processing'):
            task.fail(INTERRUPTED)
            task_repo.save(task)
    except Exception as exc:  # noqa: BLE001 - task culled
        LOG.debug('Task %s of image %s not failed: %s', task_id,
                  image_id, exc)
    props = image.extra_properties
    stores = [s for s in props.get('os_glance_importing_to_stores',
                                   '').split(',') if s]
    if stores:
        failed = set(filter(None, props.get('os_glance_failed_import',
                                            '').split(',')))
        props['os_glance_failed_import'] = ','.join(
            sorted(failed | set(stores)))
        props['os_glance_importing_to_stores'] = ''
    if image.status == 'importing':
        image.status = 'queued'
    image_repo.save(image)
    image_repo.delete_property_atomic(image, 'os_glance_import_task',
                                      task_id)


def admin_repos(context):
    """Glance's image and task repositories for an admin ``context``.

    Shared by the plugin (the importing user's context, elevated) and
    ``glance-convert recover`` (Glance's admin context).
    """
    from glance import gateway
    gw = gateway.Gateway()
    return gw.get_repo(context), gw.get_task_repo(context)


def _recover(context, ws):
    """Best effort: never let recovery break the import that runs it.

    Records whose release failed go back to the ledger, for the next
    import on this host to retry.
    """
    try:
        orphans = ws.take_orphans()
    except Exception:  # noqa: BLE001
        LOG.exception('Cannot read the records of interrupted conversions')
        return
    if not orphans:
        return
    failed = []
    try:
        image_repo, task_repo = admin_repos(context.elevated())
        recover_interrupted(orphans, image_repo, task_repo,
                            staging_dir=workspace.staging_dir(),
                            failed=failed)
    except Exception:  # noqa: BLE001
        LOG.exception('Recovery of interrupted conversions failed')
        failed = orphans
    if failed:
        try:
            ws.return_orphans(failed)
        except Exception:  # noqa: BLE001
            LOG.exception('Cannot keep the records of %d interrupted '
                          'conversions for a later try', len(failed))


def get_flow(**kwargs):
    """Return the conversion flow for one import.

    :param task_id: the import task's id
    :param task_type: the task type
    :param task_repo: Glance's task repository (messages, abort detection)
    :param action_wrapper: Glance's ImportActionWrapper for the image
    :param backend: the stores the image is imported to, or None
    """
    task_id = kwargs.get('task_id')
    task_type = kwargs.get('task_type')
    action_wrapper = kwargs.get('action_wrapper')
    stores = kwargs.get('backend') or []
    task_repo = kwargs.get('task_repo')
    group = CONF[options.GROUP]
    status = GlanceTaskStatus(task_repo, task_id, action_wrapper)
    context = kwargs.get('context')
    if context is not None:
        try:
            ws = workspace.from_conf(group.work_dir)
        except Exception:  # noqa: BLE001 - reported when converting
            ws = None
        if ws is not None:
            _recover(context, ws)
    task = tasks.ConvertImage(
        task_id, task_type, action_wrapper, stores,
        settings_factory=conversion.Settings.from_conf,
        status=status,
        work_dir=group.work_dir,
        workspace_factory=workspace.from_conf,
        slot_timeout=group.slot_wait_timeout,
        record_properties=group.record_properties)
    return lf.Flow(task_type).add(task)
