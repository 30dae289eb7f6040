"""Stand-ins for Glance's ImportActionWrapper, for unit and functional tests.

They record what the task asks of the image so tests can assert on it; the
integration tests use a real glance-api instead.
"""

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

    def set_message(self, message):
        self.messages.append(message)

    def is_aborted(self):
        return self.aborted
