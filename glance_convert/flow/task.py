"""The taskflow task Glance runs between staging and store upload."""

from __future__ import annotations

import os
from typing import Callable, Protocol

from oslo_log import log as logging
from taskflow import task
from taskflow.types import failure

from glance_convert.pipeline import conversion
from glance_convert import errors
from glance_convert import units

LOG = logging.getLogger(__name__)

FILE_SCHEME = 'file://'


class TaskStatus(Protocol):
    """How the task talks to the end user and learns of an abort."""

    def set_message(self, message: str) -> None: ...

    def is_aborted(self) -> bool: ...


class SilentStatus:
    """A TaskStatus that shows nothing and never aborts."""

    def set_message(self, message: str) -> None:
        LOG.debug('Task message: %s', message)

    def is_aborted(self) -> bool:
        return False


def _local_path(file_path: str) -> str:
    if not file_path or not file_path.startswith(FILE_SCHEME):
        raise errors.ConversionError(
            'The staged image data is not in a local file.',
            'unsupported staging URI %r' % file_path)
    return file_path[len(FILE_SCHEME):]


class ConvertImage(task.Task):
    """Convert the staged image; provide the converted file's path.

    ``execute`` takes the ``file_path`` the staging task provided and
    provides a new ``file_path``, so that every later task (store upload,
    delete from staging) works on the converted file.
    """

    default_provides = 'file_path'

    def __init__(self, task_id: str, task_type: str, action_wrapper,
                 stores: list[str] | None,
                 settings_factory: Callable[[], conversion.Settings],
                 status: TaskStatus | None = None,
                 work_dir: str | None = None,
                 workspace_factory: Callable[[str], object] | None = None,
                 slot_timeout: float = 600,
                 record_properties: bool = True):
        super().__init__(name='%s-GlanceConvert-%s' % (task_type, task_id))
        self.task_id = task_id
        self.action_wrapper = action_wrapper
        self.image_id = action_wrapper.image_id
        self.stores = list(stores or [])
        self.settings_factory = settings_factory
        self.status = status or SilentStatus()
        self.work_dir = work_dir
        self.workspace_factory = workspace_factory
        self.slot_timeout = slot_timeout
        self.record_properties = record_properties
        self._source: str | None = None
        self._output: str | None = None
        self._old_formats: tuple[str, str] | None = None

    # -- execute -----------------------------------------------------------

    def execute(self, file_path: str) -> str:
        src = _local_path(file_path)
        self._source = src
        with self.action_wrapper as action:
            claimed = action.image_disk_format
            old = (action.image_disk_format, action.image_container_format)
        settings = self.settings_factory()
        work_dir = self.work_dir or os.path.dirname(src)
        workspace = (self.workspace_factory(work_dir)
                     if self.workspace_factory else None)
        # qemu-img reads the allocated data.
        progress = _Progress(self.status, units.allocated_bytes(src))
        self.status.set_message('Checking the %s image' % claimed)
        result = conversion.convert_image(
            src, claimed, image_id=self.image_id, work_dir=work_dir,
            settings=settings, workspace=workspace,
            on_progress=progress.update,
            on_wait=lambda: self.status.set_message(
                'Waiting for a conversion slot'),
            on_wait_space=lambda: self.status.set_message(
                'Waiting for work space to convert the image'),
            should_cancel=self.status.is_aborted,
            slot_timeout=self.slot_timeout,
            info_for_ledger={'task_id': self.task_id})
        if not result.converted:
            # Checked like a conversion, then stored as uploaded.
            LOG.info('Image %s: disk_format %s is not converted to %s; '
                     'passing it through', self.image_id, claimed,
                     settings.target)
            return file_path
        self._output = result.path
        self._old_formats = old
        with self.action_wrapper as action:
            action.set_image_attribute(disk_format=result.disk_format,
                                       container_format='bare',
                                       size=result.size,
                                       virtual_size=result.virtual_size)
            if self.record_properties:
                action.set_image_extra_properties({
                    'glance_convert_source_format': result.source_format,
                    'glance_convert_duration_s': '%.1f' % result.duration,
                })
        self.status.set_message('Converted from %s to %s'
                                % (result.source_format, result.disk_format))
        # Only the converted image is kept: the staged source goes now.
        conversion.remove_file(src)
        return FILE_SCHEME + result.path

    # -- revert ------------------------------------------------------------

    def revert(self, result=None, **kwargs) -> None:
        """Remove every file of this import; put the image back to queued.

        Runs when this task failed and when a later task (a store upload)
        failed after this one succeeded.
        """
        if isinstance(result, failure.Failure):
            LOG.error('Conversion of image %s failed: %s', self.image_id,
                      _detail(result))
        conversion.remove_file(self._output)
        conversion.remove_file(self._source)
        try:
            with self.action_wrapper as action:
                if self._old_formats is not None:
                    disk_format, container_format = self._old_formats
                    action.set_image_attribute(
                        disk_format=disk_format,
                        container_format=container_format)
                action.set_image_attribute(status='queued')
                if self.stores:
                    action.remove_importing_stores(self.stores)
                    action.add_failed_stores(self.stores)
        except Exception as exc:  # noqa: BLE001 - image deleted or lock lost
            LOG.warning('Could not reset image %s after a failed import: '
                        '%s', self.image_id, exc)


def _detail(result: failure.Failure) -> str:
    exc = result.exception
    if isinstance(exc, errors.ConversionError):
        return '%s (%s)' % (exc, exc.detail)
    return result.exception_str


class _Progress:
    """Turns bytes read by qemu-img into a percentage in the task message."""

    def __init__(self, status: TaskStatus, total: int):
        self.status = status
        self.total = max(total, 1)

    def update(self, bytes_read: int) -> None:
        percent = min(99, int(bytes_read * 100 / self.total))
        self.status.set_message('Converting: %d%%' % percent)
