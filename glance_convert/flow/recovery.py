"""Release the images of imports whose glance-api died mid-conversion.

The one implementation, used by the plugin (a task at the start of every
import flow on the host, and the look-out of every worker that ran an
import), by ``glance-convert recover`` (at glance-api start) and by
``glance-convert recover --follow`` (the look-out service beside
glance-api, which heals a host where nobody imports).  The workspace has
already removed the dead conversion's work files and killed its qemu-img
when it hands over a record; here the image goes back to ``queued`` with
its stores marked failed, the dead task fails with a message for the
user, the import lock is dropped so the image can be imported again at
once (Glance would otherwise refuse for an hour), and the staged data is
deleted.
"""

from __future__ import annotations

import os

from oslo_log import log as logging

from glance_convert import metrics
from glance_convert.flow import glance_conf
from glance_convert.host import layout
from glance_convert.host import watch

LOG = logging.getLogger(__name__)

INTERRUPTED = ('Import interrupted: the image service stopped during the '
               'conversion; please import the image again.')

RELEASED = 'released'
WOULD_RELEASE = 'would release'
SKIPPED = 'skipped'
FAILED = 'failed'


def _not_found_errors() -> tuple:
    try:
        from glance.common import exception
    except ImportError:  # pragma: no cover - outside Glance
        return (LookupError,)
    return (exception.NotFound, LookupError)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error, shortened (database errors are long)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit] + '...'


def admin_repos(context):
    """Glance's image and task repositories for an admin ``context``."""
    from glance import gateway
    gw = gateway.Gateway()
    return gw.get_repo(context), gw.get_task_repo(context)


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


def release(image, task_id, image_repo, task_repo,
            formats: list | None = None) -> None:
    """Fail the dead task, put the image back to queued, drop the lock.

    ``formats``: the image's (disk_format, container_format) before the
    import, from its import record.  A conversion sets the converted
    format; were it kept on a queued image, the user's next upload of the
    original file would be refused as not matching it.
    """
    try:
        task = task_repo.get(task_id)
        if task.status in ('pending', 'processing'):
            task.fail(INTERRUPTED)
            task_repo.save(task)
        elif task.status == 'failure' and 'Internal Error' in (
                task.message or ''):
            # A stopping glance-api (SIGTERM) fails its running flows
            # itself ("cannot schedule new futures after shutdown"), which
            # Glance reports as an internal error; say what happened.
            task.message = INTERRUPTED
            task_repo.save(task)
    except Exception as exc:  # noqa: BLE001 - task culled
        LOG.debug('Task %s of image %s not failed: %s', task_id,
                  image.image_id, exc)
    if formats and image.status in ('importing', 'queued'):
        image.disk_format, image.container_format = formats
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
    if image.status != 'active':
        remove_partial_upload(image, stores)
    image_repo.delete_property_atomic(image, 'os_glance_import_task',
                                      task_id)


def remove_partial_upload(image, stores: list[str]) -> None:
    """Delete what a killed store upload left in a filesystem store.

    The filesystem store names an image's file by its id and refuses to
    write a file that exists; its own clean-up does not run when the
    process dies, so the image could never be stored there again.  A file
    that one of the image's locations points to is kept.
    """
    used = {loc.get('url') for loc in getattr(image, 'locations', []) or []}
    for directory in glance_conf.filesystem_store_dirs(stores):
        path = os.path.join(directory, image.image_id)
        if 'file://' + path in used or not os.path.isfile(path):
            continue
        try:
            os.unlink(path)
        except OSError as exc:
            LOG.warning('Cannot remove the partial upload %s of image %s: '
                        '%s', path, image.image_id, exc)
        else:
            LOG.info('Removed the partial store upload %s of image %s',
                     path, image.image_id)


def release_all(orphans, image_repo, task_repo, staging_dir: str | None,
                dry_run: bool = False) -> tuple[list[dict], list[dict]]:
    """Release each record's image; return (reports, records to retry).

    One report per record: ``image_id``, ``task_id``, ``pid`` (the dead
    holder), ``removed`` (work files removed, or that would be),
    ``staged_data`` (the staged file deleted, or None), ``result``
    (``released``, ``would release``, ``skipped`` or ``failed``) and
    ``reason``.  A failure of one record (the database is down, say) does
    not stop the others; the records that may succeed later are returned
    to be retried.
    """
    reports, retry = [], []
    for orphan in orphans:
        report = _release_one(orphan, image_repo, task_repo, staging_dir,
                              dry_run)
        reports.append(report)
        if report.pop('retry', False):
            retry.append(orphan)
    return reports, retry


def _release_one(orphan, image_repo, task_repo, staging_dir, dry_run):
    report = {'image_id': orphan.get('owner'),
              'task_id': (orphan.get('info') or {}).get('task_id'),
              'pid': orphan.get('pid'),
              'removed': list(orphan.get('removed') or []),
              'staged_data': None, 'result': None, 'reason': None}
    try:
        image_id, task_id, image, reason = orphan_target(orphan, image_repo)
    except Exception as exc:  # noqa: BLE001 - reported, retried
        LOG.warning('Cannot look up image %s of interrupted import task '
                    '%s: %s', report['image_id'], report['task_id'], exc)
        return dict(report, result=FAILED, retry=True,
                    reason='cannot read the image: %s' % one_line(exc))
    if image is None:
        LOG.info('Interrupted import task %s of image %s left alone: %s',
                 task_id, image_id, reason)
        return dict(report, result=SKIPPED, reason=reason)
    staged = os.path.join(staging_dir, image_id) if staging_dir else None
    if staged and os.path.lexists(staged):
        report['staged_data'] = staged
    if dry_run:
        return dict(report, result=WOULD_RELEASE)
    try:
        release(image, task_id, image_repo, task_repo,
                (orphan.get('info') or {}).get('formats'))
    except Exception as exc:  # noqa: BLE001 - reported, retried
        LOG.warning('Cannot release image %s of interrupted import task '
                    '%s: %s', image_id, task_id, exc)
        return dict(report, result=FAILED, retry=True,
                    reason=one_line(exc))
    if staged:
        layout.remove(staged)
        if os.path.lexists(staged):
            return dict(report, result=FAILED, reason='the staged data %s '
                        'was not removed' % staged)
    LOG.warning('Released image %s after its import task %s was '
                'interrupted by a glance-api restart', image_id, task_id)
    return dict(report, result=RELEASED)


def recover(ws, get_repos, staging_dir: str | None,
            due_only: bool = True) -> list[dict]:
    """Claim the workspace's records, release their images; log a summary.

    ``get_repos()`` returns Glance's (image, task) repositories; it is only
    called when there is something to release.  The records stay in the
    ledger, claimed by this process, until they are settled here: a
    recovery killed half-way loses none, and concurrent recoveries (two
    glance-api, the look-out of each worker) never release one twice.
    Those whose release failed are offered again after a delay (all of
    them if ``get_repos`` fails); ``due_only=False`` also takes the records
    whose delay still runs (an operator's ``glance-convert recover``).
    Raises ``errors.WorkspaceError`` when the records cannot be read.
    """
    orphans = ws.claim_orphans(due_only=due_only)
    reports: list[dict] = []
    retry: list[dict] = orphans
    try:
        if orphans:
            image_repo, task_repo = get_repos()
            reports, retry = release_all(orphans, image_repo, task_repo,
                                         staging_dir)
    finally:
        if orphans:
            ws.settle_orphans([o for o in orphans if o not in retry], retry)
    log_summary(ws.work_dir, reports)
    return reports


def log_summary(work_dir: str, reports: list[dict]) -> None:
    if not reports:
        LOG.debug('Recovery in %s: no interrupted conversion', work_dir)
        return
    counts = {k: sum(r['result'] == k for r in reports)
              for k in (RELEASED, SKIPPED, FAILED)}
    metrics.recovered(counts[RELEASED])
    LOG.info('Recovery of interrupted conversions in %s ran: %d image(s) '
             'released, %d skipped, %d failed', work_dir,
             counts[RELEASED], counts[SKIPPED], counts[FAILED])


def recover_on_import(context, ws, staging_dir: str | None) -> None:
    """Best effort, for the plugin: never let recovery break the import.

    Uses Glance's repositories with ``context`` (the importing user's)
    elevated to admin.
    """
    try:
        recover(ws, lambda: admin_repos(context.elevated()), staging_dir)
    except Exception:  # noqa: BLE001
        LOG.exception('Recovery of interrupted conversions in %s failed',
                      ws.work_dir)


def follow(ws, get_repos, staging_dir: str | None, interval: float,
           stop) -> None:
    """Recover now and whenever the ledger names a dead holder, until
    ``stop`` (a ``threading.Event``) is set.

    While no import is interrupted this reads the ledger once per
    ``interval`` and nothing else: ``get_repos`` (Glance's database) is
    called only when there is something to release.
    """
    watch.OrphanWatch(
        lambda: ws, lambda w: recover(w, get_repos, staging_dir),
        interval).run(stop)


def start_watch(ws) -> None:
    """Start this process's look-out (:mod:`glance_convert.host.watch`),
    once: a WSGI server replaces a dead worker without restarting
    glance-api, so without it the dead worker's images would stay locked
    until the next import on the host."""
    watch.ensure_started(lambda: ws, _recover_as_admin)


def _recover_as_admin(ws) -> None:
    """Recovery for the look-out, with Glance's admin context."""
    from glance import context
    try:
        recover(ws, lambda: admin_repos(context.get_admin_context()),
                glance_conf.staging_dir())
    except Exception:  # noqa: BLE001
        LOG.exception('Recovery of interrupted conversions in %s failed',
                      ws.work_dir)
