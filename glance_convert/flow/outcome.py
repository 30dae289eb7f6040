"""What one import did: its phases, its result, a summary log line and
the metrics (:mod:`glance_convert.metrics`).

The conversion task (:mod:`glance_convert.flow.task`) makes one
:class:`Outcome` per import and calls :meth:`Outcome.finish` once, with
the exception if it failed; the phases are timed by one
:class:`~glance_convert.pipeline.phases.Timings`, and the wait for a
conversion slot by :class:`TimedWorkspace`, so the pipeline needs no
hook.
"""

from __future__ import annotations

import contextlib
import os
import time

from oslo_log import log as logging

from glance_convert import errors
from glance_convert import metrics
from glance_convert.pipeline import check_table
from glance_convert.pipeline import phases

LOG = logging.getLogger(__name__)


def aborted_errors() -> tuple:
    """Glance's exceptions for an image deleted or an import taken over
    while it ran: the import was cancelled."""
    try:
        from glance.common import exception
    except ImportError:  # pragma: no cover - outside Glance
        return ()
    return (exception.NotFound, exception.TaskAbortedError)


def classify(exc: BaseException | None) -> tuple[str | None, str | None]:
    """(result, check name) of a failed import; (None, None) if none."""
    if exc is None:
        return None, None
    if isinstance(exc, errors.ImageRejected):
        check = check_table.matching(exc.reason)
        return metrics.REFUSED, check.name if check else 'unknown'
    if isinstance(exc, (errors.ConversionCancelled,) + aborted_errors()):
        return metrics.CANCELLED, None
    return metrics.FAILED, None


class Outcome:
    """One import, from the start of the conversion task to its end."""

    def __init__(self, image_id: str, task_id: str,
                 clock=time.monotonic):
        self.image_id = image_id
        self.task_id = task_id
        self.clock = clock
        self.started = clock()
        self.source_format: str | None = None
        self.target_format: str | None = None
        self.container_format: str | None = None
        self.bytes_read = 0
        self.bytes_written = 0
        #: The one timer of the import's phases and waits.
        self.timings = phases.Timings()
        self.result: str | None = None
        self.check: str | None = None
        self.workspace = None

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds by metric label: each phase that ran, each wait, and
        ``total``."""
        found = {phases.label(name): secs
                 for name, secs in self.timings.seconds.items()}
        found['total'] = self.clock() - self.started
        return found

    def upload(self, path: str, claimed: str, container: str) -> None:
        self.source_format, self.container_format = claimed, container
        try:
            self.bytes_read = os.path.getsize(path)
        except OSError:
            self.bytes_read = 0

    def stored(self, converted: bool, disk_format: str,
               size: int = 0) -> None:
        """The image leaves the task: converted (or unpacked) into
        ``disk_format`` of ``size`` bytes, or passed through."""
        self.target_format = disk_format
        if converted:
            self.result, self.bytes_written = metrics.CONVERTED, size
        else:
            self.result = metrics.PASSED_THROUGH

    def finish(self, exc: BaseException | None = None) -> None:
        """Record the import: metrics, the summary line, the textfile.

        Never raises: the import's own result or exception goes on.
        """
        try:
            seconds = self.seconds
            failed, check = classify(exc)
            if failed:
                self.result, self.check = failed, check
            metrics.import_done(
                self.source_format, self.target_format,
                self.result or metrics.FAILED, seconds,
                bytes_read=self.bytes_read,
                bytes_written=self.bytes_written, check=self.check)
            LOG.info('%s', self.summary(seconds))
            metrics.textfile_after_import(self.workspace)
        except Exception:  # noqa: BLE001 - never fail an import
            LOG.exception('Cannot record the import of image %s',
                          self.image_id)

    def summary(self, seconds: dict[str, float] | None = None) -> str:
        """One ``key=value`` line for log pipelines."""
        fields = [('image_id', self.image_id), ('task_id', self.task_id),
                  ('result', self.result or metrics.FAILED)]
        if self.check:
            fields.append(('check', self.check))
        fields += [('source_format', self.source_format or '-'),
                   ('target_format', self.target_format or '-'),
                   ('container_format', self.container_format or '-'),
                   ('bytes_read', self.bytes_read),
                   ('bytes_written', self.bytes_written)]
        fields += [('%s_s' % phase, '%.3f' % secs)
                   for phase, secs in (seconds or self.seconds).items()]
        return 'Import summary: ' + ' '.join('%s=%s' % kv for kv in fields)


class TimedWorkspace:
    """The host's workspace, as the import sees it, with the slot wait
    timed and the running and waiting gauges kept; everything else is
    the workspace's own."""

    def __init__(self, workspace, outcome: Outcome):
        self._workspace = workspace
        self._outcome = outcome

    def __getattr__(self, name):
        return getattr(self._workspace, name)

    @contextlib.contextmanager
    def slot(self, owner, timeout, on_wait=None, should_cancel=None):
        waiting = []

        def wait():
            waiting.append(1)
            metrics.waiting(1)
            if on_wait is not None:
                on_wait()
        try:
            with contextlib.ExitStack() as stack:
                with self._outcome.timings.phase(phases.SLOT_WAIT):
                    stack.enter_context(self._workspace.slot(
                        owner, timeout, on_wait=wait,
                        should_cancel=should_cancel))
                if waiting:
                    waiting.pop()
                    metrics.waiting(-1)
                metrics.running(1)
                try:
                    yield
                finally:
                    metrics.running(-1)
        finally:
            if waiting:
                metrics.waiting(-1)
