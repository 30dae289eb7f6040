"""Exceptions whose text reaches the end user.

Glance's task executor copies ``str(exc)`` into the task message only for
``glance.common.exception.UploadException`` and its subclasses; any other
exception becomes "Task failed due to Internal Error".  Every failure the
plugin raises on purpose is therefore an ``UploadException`` whose text is
one sentence written for the end user.  Details go to the operator's log.
"""

try:  # pragma: no cover - depends on the environment
    from glance.common.exception import UploadException as _Base
except ImportError:  # pragma: no cover - CLI outside a Glance environment
    _Base = Exception

#: The exceptions whose text Glance's executor shows the user.
GLANCE_REPORTED = _Base


class ConversionError(_Base):
    """An import failed; ``str(self)`` is the sentence for the end user."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.user_message = message
        self.detail = detail or message

    def __str__(self) -> str:
        return self.user_message


class ImageRejected(ConversionError):
    """The image failed a safety or format check."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__('Image rejected: %s' % reason, detail)
        self.reason = reason


class ConversionFailed(ConversionError):
    """qemu-img could not convert an image that passed the checks."""


class WorkspaceError(ConversionError):
    """No room or no conversion slot for the conversion."""


class ConversionCancelled(ConversionError):
    """The import was aborted (image deleted, task no longer processing)."""
