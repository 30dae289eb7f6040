"""The taskflow tasks Glance runs between staging and store upload."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Protocol

from oslo_config import cfg
from oslo_log import log as logging
from taskflow import task
from taskflow.types import failure

from glance_convert.pipeline import containers
from glance_convert.pipeline import conversion
from glance_convert.pipeline import describe
from glance_convert.pipeline import phases
from glance_convert.pipeline import upload_hash
from glance_convert import errors
from glance_convert import options
from glance_convert.flow import settings
from glance_convert import units
from glance_convert.flow import glance_conf
from glance_convert.flow import outcome
from glance_convert.flow import recovery
from glance_convert.host import layout
from glance_convert.host.workspace import Workspace

LOG = logging.getLogger(__name__)

FILE_SCHEME = 'file://'
#: Import methods whose download task, earlier in Glance's flow, puts the
#: image back to ``queued`` and its stores to failed when it is reverted;
#: doing it first would make that revert fail (queued -> queued is not a
#: valid transition) and leave the image locked.
DOWNLOAD_METHODS = ('web-download', 'glance-download')


class TaskStatus(Protocol):
    """How the task talks to the end user and learns of an abort."""

    def set_message(self, message: str) -> None: ...

    def is_aborted(self) -> bool: ...

    def fail(self, message: str) -> None: ...


class SilentStatus:
    """A TaskStatus that shows nothing and never aborts."""

    def set_message(self, message: str) -> None:
        LOG.debug('Task message: %s', message)

    def is_aborted(self) -> bool:
        return False

    def fail(self, message: str) -> None:
        LOG.debug('Task failed: %s', message)


#: For a store upload that failed after the conversion with an error that
#: Glance would only call an "Internal Error".
STORE_FAILED = ('The image passed its checks but could not be saved to '
                'the image store; it is back to queued: please import it '
                'again, or ask the cloud operator if this persists.')


def _local_path(file_path: str) -> str:
    if not file_path or not file_path.startswith(FILE_SCHEME):
        raise errors.ConversionError(
            'The staged image data is not in a local file.',
            'unsupported staging URI %r' % file_path)
    return file_path[len(FILE_SCHEME):]


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What one conversion task reads from the configuration, at once."""

    settings: conversion.Settings
    workspace: Workspace
    slot_timeout: float = 600
    record_properties: bool = True

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts | None = None) -> 'TaskConfig':
        """Raises ``errors.ConversionError`` (misconfiguration) or
        ``errors.WorkspaceError`` (no work directory), for the user."""
        conf = conf or options.CONF
        group = conf[options.GROUP]
        return cls(settings=settings.from_conf(conf),
                   workspace=settings.host_workspace(conf=conf),
                   slot_timeout=group.slot_wait_timeout,
                   record_properties=group.record_properties)


class RecoverInterrupted(task.Task):
    """Release the images of this host's imports that a dead glance-api
    left in the middle of a conversion (see :mod:`recovery`).

    A task of its own, first in the flow, so that building the flow does
    nothing and the log shows when recovery runs.  Best effort: it never
    fails the import that runs it.
    """

    def __init__(self, task_id: str, task_type: str, context):
        super().__init__(name='%s-GlanceConvertRecover-%s'
                         % (task_type, task_id))
        self.context = context

    def execute(self) -> None:
        try:
            ws = settings.host_workspace()
        except errors.WorkspaceError as exc:
            LOG.debug('No recovery of interrupted conversions: %s',
                      exc.detail)
            return  # the conversion reports it to the user
        recovery.recover_on_import(self.context, ws,
                                   glance_conf.staging_dir())
        recovery.start_watch(ws)

    def revert(self, *args, **kwargs) -> None:
        """Nothing to undo: released images stay released."""


class ConvertImage(task.Task):
    """Convert the staged image; provide the converted file's path.

    ``execute`` takes the ``file_path`` the staging task provided and
    provides a new ``file_path``, so that every later task (store upload,
    delete from staging) works on the converted file.  ``config`` returns
    the :class:`TaskConfig`; it is read when the task runs, so that a
    misconfiguration fails the import with a message for the user.
    """

    default_provides = 'file_path'

    def __init__(self, task_id: str, task_type: str, action_wrapper,
                 stores: list[str] | None,
                 status: TaskStatus | None = None,
                 config: Callable[[], TaskConfig] = TaskConfig.from_conf,
                 import_method: str | None = None):
        super().__init__(name='%s-GlanceConvert-%s' % (task_type, task_id))
        self.task_id = task_id
        self.action_wrapper = action_wrapper
        self.image_id = action_wrapper.image_id
        self.stores = list(stores or [])
        self.status = status or SilentStatus()
        self.config = config
        self.import_method = import_method
        self._source: str | None = None
        self._output: str | None = None
        self._old_formats: tuple[str, str] | None = None
        self._record = None

    # -- execute -----------------------------------------------------------

    def execute(self, file_path: str) -> str:
        # The one place where an import's metrics and summary line
        # (glance_convert.flow.outcome) and its phases' log line
        # (glance_convert.pipeline.phases) are recorded.
        report = outcome.Outcome(self.image_id, self.task_id)
        timings = report.timings
        try:
            provided = self._convert(file_path, report, timings)
        except BaseException as exc:
            report.finish(exc)
            raise
        finally:
            LOG.info('Image %s import phases: %s', self.image_id,
                     timings.summary() or 'none ran')
        report.finish()
        return provided

    def _convert(self, file_path: str, report: outcome.Outcome,
                 timings: phases.Timings) -> str:
        with timings.phase(phases.PREPARE):
            src = _local_path(file_path)
            self._source = src
            with self.action_wrapper as action:
                claimed = action.image_disk_format
                container = action.image_container_format
                properties = dict(action.image_extra_properties)
                old = (claimed, container)
            report.upload(src, claimed, container)
            config = self.config()
            # From here on, a death of this process leaves a record that
            # recovery uses to release the image, whatever the import does.
            self._record = config.workspace.begin_import(
                self.image_id,
                {'task_id': self.task_id, 'formats': list(old)})
            settings = config.settings
            report.target_format = settings.target
            report.workspace = config.workspace
            workspace = outcome.TimedWorkspace(config.workspace, report)
        if containers.check_signed(properties, settings.signed_images):
            LOG.info('Image %s is signed; storing it unconverted',
                     self.image_id)
            self.status.set_message('Signed image stored as uploaded, '
                                    'without conversion')
            self._end_record(watch=src)
            report.stored(False, claimed)
            return file_path
        if (container == 'compressed'
                and settings.compressed_images == 'keep'):
            LOG.info('Image %s is compressed and compressed_images = keep; '
                     'storing it as uploaded', self.image_id)
            self.status.set_message('Compressed image stored as uploaded, '
                                    'without unpacking')
            self._end_record(watch=src)
            report.stored(False, claimed)
            return file_path
        if container in containers.UNPACKED:
            self.status.set_message('Unpacking the %s upload' % container)
        common = dict(image_id=self.image_id,
                      work_dir=config.workspace.work_dir,
                      slot_timeout=config.slot_timeout,
                      info_for_ledger={'task_id': self.task_id})
        with contextlib.ExitStack() as stack:
            with timings.phase(phases.OPEN_CONTAINER):
                disk = stack.enter_context(containers.opened(
                    src, container_format=container, disk_format=claimed,
                    properties=properties, policy=settings.policy,
                    timeout=settings.convert_limits.timeout,
                    workspace=workspace,
                    bare_compression=settings.bare_compression,
                    status=_UserStatus(self.status, 1), **common))
            self.status.set_message('Checking the %s image'
                                    % disk.disk_format)
            result = conversion.convert_image(
                disk.path, disk.disk_format, settings=settings,
                workspace=disk.workspace,
                # qemu-img reads the allocated data.
                status=_UserStatus(self.status,
                                   units.allocated_bytes(disk.path)),
                timings=timings, **common)
            with timings.phase(phases.DESCRIBE):
                guest = self._describe(result, disk, settings, properties,
                                       config.workspace.work_dir)
            try:
                # Before anything is stored: refuses on a checksum
                # mismatch (bare uploads are hashed while qemu-img works).
                with timings.phase(phases.HASH):
                    digest = disk.source_sha256()
            except BaseException:
                if result.converted:
                    layout.remove(result.path)
                raise
            if not result.converted:
                disk.keep()
        with timings.phase(phases.HAND_ON):
            properties = dict(disk.properties)
            if digest:
                properties[upload_hash.SOURCE_SHA256] = digest
            if config.record_properties and result.converted:
                properties.update({
                    'glance_convert_source_format': result.source_format,
                    'glance_convert_duration_s': '%.1f' % result.duration,
                })
            if not result.converted and not disk.unpacked:
                # Checked like a conversion, then stored as uploaded.
                LOG.info('Image %s: disk_format %s is not converted to %s; '
                         'passing it through', self.image_id, claimed,
                         settings.target)
                with self.action_wrapper as action:
                    action.set_image_extra_properties(properties)
                self._set_guest_properties(guest)
                self._end_record(watch=src)
                report.stored(False, claimed)
                return file_path
            self._output = result.path
            self._old_formats = old
            with self.action_wrapper as action:
                attributes = dict(disk_format=result.disk_format,
                                  container_format=containers.BARE.name,
                                  size=result.size)
                if result.converted:
                    attributes['virtual_size'] = result.virtual_size
                action.set_image_attribute(**attributes)
                action.set_image_extra_properties(properties)
            self._set_guest_properties(guest)
            if result.converted:
                self.status.set_message('Converted from %s to %s'
                                        % (result.source_format,
                                           result.disk_format))
            else:
                self.status.set_message('Unpacked the %s %s image'
                                        % (disk.container_format,
                                           result.disk_format))
            # Only the image to store is kept: the staged upload goes now.
            layout.remove(src)
            self._end_record(watch=result.path)
            report.stored(True, result.disk_format, result.size)
            return FILE_SCHEME + result.path

    def _describe(self, result: conversion.Result, disk: containers.Opened,
                  settings, user_properties: dict,
                  work_dir: str) -> describe.Guest | None:
        """The guest's boot properties; None, logged, if they cannot be
        had: they are worth an import's success, not its failure."""
        try:
            guest = describe.describe(
                describe.Image(result.path, result.disk_format,
                               result.virtual_size),
                describe.Image(disk.path, disk.disk_format),
                settings=settings, image_id=self.image_id,
                work_dir=work_dir,
                appliance=disk.hints, user_properties=user_properties)
        except Exception:  # noqa: BLE001 - never fail an import for it
            LOG.exception('Image %s: cannot read what its guest needs to '
                          'boot; no guest properties set', self.image_id)
            return None
        if guest is not None:
            LOG.info('Image %s guest: %s (read from %s)%s', self.image_id,
                     guest.record or 'nothing found',
                     guest.read_from or 'nowhere',
                     '' if guest.facts is None or guest.facts.complete
                     else '; incomplete: %s' % '; '.join(guest.facts.notes))
        return guest

    def _set_guest_properties(self, guest: describe.Guest | None) -> None:
        """Set the guest's properties, each that Glance allows.

        Property protections or the image property quota may refuse one:
        it is logged and skipped, and the import goes on.
        """
        if guest is None or not guest.properties:
            return
        try:
            with self.action_wrapper as action:
                action.set_image_extra_properties(guest.properties)
            return
        except outcome.aborted_errors():
            raise
        except Exception as exc:  # noqa: BLE001 - Glance's refusals vary
            LOG.warning('Image %s: Glance refused the guest properties '
                        'together (%s); setting them one by one',
                        self.image_id, exc)
        for key, value in guest.properties.items():
            try:
                with self.action_wrapper as action:
                    action.set_image_extra_properties({key: value})
            except outcome.aborted_errors():
                raise
            except Exception as exc:  # noqa: BLE001
                LOG.warning('Image %s: property %s=%s not set: %s',
                            self.image_id, key, value, exc)

    def _end_record(self, watch: str | None = None,
                    abandon: str | None = None) -> None:
        """Hand the import record on: to Glance's upload of ``watch`` (the
        record stays until Glance deletes that file), to recovery
        (``abandon``: why), or to nobody."""
        record = self._record
        if record is None:
            return
        if not watch:
            self._record = None
        try:
            if abandon:
                record.abandon(abandon)
            else:
                record.end(watch=watch)
        except errors.WorkspaceError as exc:
            LOG.error('Cannot update the import record of image %s: %s',
                      self.image_id, exc.detail)

    # -- revert ------------------------------------------------------------

    def revert(self, result=None, flow_failures=None, **kwargs) -> None:
        """Remove every file of this import; put the image back to queued.

        Runs when this task failed and when a later task (a store upload)
        failed after this one succeeded.
        """
        if isinstance(result, failure.Failure):
            LOG.error('Conversion of image %s failed: %s', self.image_id,
                      _detail(result))
        layout.remove(self._output)
        layout.remove(self._source)
        reset = False
        try:
            with self.action_wrapper as action:
                if self._old_formats is not None:
                    disk_format, container_format = self._old_formats
                    action.set_image_attribute(
                        disk_format=disk_format,
                        container_format=container_format)
                # Where a download task ran before us, its revert does
                # the rest (see DOWNLOAD_METHODS).
                if self.import_method not in DOWNLOAD_METHODS:
                    action.set_image_attribute(status='queued')
                    if self.stores:
                        action.remove_importing_stores(self.stores)
                        action.add_failed_stores(self.stores)
            reset = True
        except Exception as exc:  # noqa: BLE001 - image deleted or lock lost
            LOG.warning('Could not reset image %s after a failed import: '
                        '%s', self.image_id, exc)
            if not _gone_or_taken(exc):
                # The database is down, say: recovery tries again later.
                self._end_record(abandon='cannot reset the image: %s'
                                 % type(exc).__name__)
        self._end_record()
        if reset and not isinstance(result, failure.Failure) and not any(
                f.check(errors.GLANCE_REPORTED)
                for f in (flow_failures or {}).values()):
            # A later task (the store upload) failed with an error Glance
            # shows the user as "Internal Error"; Glance leaves a task
            # that is already failed as it is.
            self.status.fail(STORE_FAILED)


def _gone_or_taken(exc: Exception) -> bool:
    """Whether the image was deleted or another import took its lock:
    then there is nothing for recovery to release."""
    try:
        from glance.common import exception
    except ImportError:  # pragma: no cover - outside Glance
        return isinstance(exc, LookupError)
    return isinstance(exc, (exception.NotFound, exception.TaskAbortedError,
                            LookupError))


def _detail(result: failure.Failure) -> str:
    exc = result.exception
    if isinstance(exc, errors.ConversionError):
        return '%s (%s)' % (exc, exc.detail)
    return result.exception_str


class _UserStatus:
    """The pipeline's status (hold.Status) shown in the task message.
    """

    def __init__(self, status: TaskStatus, total: int):
        self.status = status
        self.total = max(total, 1)

    def progress(self, bytes_read: int) -> None:
        percent = min(99, int(bytes_read * 100 / self.total))
        self.status.set_message('Converting: %d%%' % percent)

    def waiting_for_slot(self) -> None:
        self.status.set_message('Waiting for a conversion slot')

    def waiting_for_space(self) -> None:
        self.status.set_message('Waiting for work space to convert the '
                                'image')

    def is_aborted(self) -> bool:
        return self.status.is_aborted()
