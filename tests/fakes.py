"""Stand-ins for Glance (ImportActionWrapper, repositories, tasks) and
ready-made plugin settings and tasks, for unit and functional tests.

They record what the task asks of the image so tests can assert on it; the
integration tests use a real glance-api instead.
"""

import os
import uuid

SETTABLE = {'status', 'disk_format', 'container_format', 'virtual_size',
            'size'}


class FakeImage:
    def __init__(self, disk_format, container_format='bare',
                 status='importing', stores=('fs',)):
        self.image_id = str(uuid.uuid4())
        self.disk_format = disk_format
        self.container_format = container_format
        self.status = status
        self.size = None
        self.virtual_size = None
        self.extra_properties = {
            'os_glance_importing_to_stores': ','.join(stores)}


class FakeActions:
    """The subset of glance's _ImportActions the plugin may use."""

    def __init__(self, image):
        self._image = image

    @property
    def image_id(self):
        return self._image.image_id

    @property
    def image_disk_format(self):
        return self._image.disk_format

    @property
    def image_container_format(self):
        return self._image.container_format

    @property
    def image_extra_properties(self):
        return dict(self._image.extra_properties)

    @property
    def image_status(self):
        return self._image.status

    def set_image_attribute(self, **attrs):
        unknown = set(attrs) - SETTABLE
        if unknown:  # Glance raises AttributeError for these too
            raise AttributeError('not settable: %s' % unknown)
        for key, value in attrs.items():
            setattr(self._image, key, value)

    def set_image_extra_properties(self, props):
        for key, value in props.items():
            if not key.startswith('os_glance'):
                self._image.extra_properties[key] = value

    def _merge(self, key, stores, subtract=False):
        existing = set(filter(None, self._image.extra_properties.get(
            key, '').split(',')))
        merged = existing - set(stores) if subtract else existing | set(
            stores)
        self._image.extra_properties[key] = ','.join(sorted(merged))

    def remove_importing_stores(self, stores):
        self._merge('os_glance_importing_to_stores', stores, subtract=True)

    def add_failed_stores(self, stores):
        self._merge('os_glance_failed_import', stores)


class FakeActionWrapper:
    """Context manager like glance's ImportActionWrapper.

    Changes made inside a ``with`` block that raises are discarded, as
    Glance does not save the image then.
    """

    def __init__(self, image, lock_held=True):
        self.image = image
        self.lock_held = lock_held
        self.entered = 0

    @property
    def image_id(self):
        return self.image.image_id

    def __enter__(self):
        self.entered += 1
        self.assert_task_lock()
        return FakeActions(self.image)

    def __exit__(self, *exc):
        return False

    def assert_task_lock(self):
        if not self.lock_held:
            raise RuntimeError('TaskAbortedError')


class RecordingStatus:
    """A TaskStatus that records messages and aborts on demand."""

    def __init__(self):
        self.messages = []
        self.aborted = False
        self.failed = None

    def set_message(self, message):
        self.messages.append(message)

    def is_aborted(self):
        return self.aborted

    def fail(self, message):
        self.failed = message


class FakeTask:
    """A Glance task as recovery sees it."""

    def __init__(self, status='processing'):
        self.status = status
        self.message = ''

    def fail(self, message):
        self.status = 'failure'
        self.message = message


class Repo(dict):
    """Glance's image or task repository over a dict of id -> object."""

    def get(self, key):
        if key not in self:
            raise LookupError(key)
        return self[key]

    def save(self, obj, *args):
        self.saved = getattr(self, 'saved', 0) + 1

    def delete_property_atomic(self, image, name, value):
        assert image.extra_properties[name] == value
        del image.extra_properties[name]


def settings(target='raw', **overrides):
    """The plugin's Settings with test limits, ``overrides`` applied."""
    from glance_convert import formats
    from glance_convert.pipeline import conversion
    from glance_convert.pipeline import inspection
    from glance_convert.pipeline import qemu_img
    values = dict(
        target=target,
        source_formats=formats.CONVERTIBLE,
        keep_formats=('iso',),
        policy=inspection.Policy(),
        inspect_limits=qemu_img.Limits(timeout=30),
        convert_limits=qemu_img.Limits(timeout=60),
        tuning=qemu_img.Tuning(),
        out_options={},
        compressed=False,
        progress_interval=1.0)
    values.update(overrides)
    return conversion.Settings(**values)


def make_workspace(work_dir, **limits):
    """A Workspace in ``work_dir`` whose lock files live next to it (so
    that tests can expect ``work_dir`` to hold only their files)."""
    from glance_convert.host import workspace as workspaces
    values = dict(max_concurrent=0, reserved_bytes=0, max_bytes=0)
    values.update(limits)
    return workspaces.Workspace(
        str(work_dir), lock_dir=os.path.join(os.path.dirname(
            str(work_dir).rstrip('/')), 'locks'), **values)


def make_task(image, staging, target='raw', status=None, workspace=None,
              **kw):
    """A ConvertImage task for ``image`` staged in ``staging``: returns
    (task, action wrapper)."""
    from glance_convert.flow import task as tasks
    wrapper = FakeActionWrapper(image)
    ws = workspace if workspace is not None else make_workspace(staging)
    task = tasks.ConvertImage(
        'task-1', 'api_image_import', wrapper, ['fs'],
        status=status or RecordingStatus(),
        config=lambda: tasks.TaskConfig(settings(target, **kw), ws))
    return task, wrapper
