"""One import's hold on the host: its conversion slot, its space and its
work files.

Decompressing an upload, copying a disk out of an OVA and converting all
write into the workspace, and all need the same three things: one of the
host's conversion slots, space reserved (and the work files recorded in
the ledger) before a file exists, and the removal of their files when
they fail.  :func:`held` gives them these in one place.

A phase that runs inside another's hold (the conversion of an unpacked
disk) joins it: it shares the slot, since taking a second one could wait
for ever on a host with one slot, and keeps its own reservations and
files.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Protocol

from glance_convert.host import layout


class Status(Protocol):
    """What a long phase tells the user and asks of them."""

    def progress(self, bytes_read: int) -> None:
        """``bytes_read`` of the source are converted."""

    def waiting_for_slot(self) -> None:
        """Other conversions hold every slot of this host."""

    def waiting_for_space(self) -> None:
        """Other conversions hold the work space this one needs."""

    def is_aborted(self) -> bool:
        """The user deleted the image or its import was cancelled."""


class NoStatus:
    """Tells nobody anything, and nothing is ever aborted."""

    def progress(self, bytes_read: int) -> None:
        pass

    def waiting_for_slot(self) -> None:
        pass

    def waiting_for_space(self) -> None:
        pass

    def is_aborted(self) -> bool:
        return False


class _NoReservation:
    def add_process(self, pid):
        pass


class NoWorkspace:
    """No per-host limits: every slot and reservation is granted (the CLI
    and tests without a workspace)."""

    @contextlib.contextmanager
    def slot(self, owner, timeout, on_wait=None, should_cancel=None):
        yield

    @contextlib.contextmanager
    def reservation(self, owner, nbytes, **kwargs):
        yield _NoReservation()


class Hold:
    """What one phase holds; made by :func:`held`.

    The slot is taken at the first :meth:`reserve`, not before: reading
    and checking a source need no slot, and a host's slots go to the
    imports that write.
    """

    def __init__(self, workspace, *, image_id: str, work_dir: str,
                 slot_timeout: float, status: Status, info: dict,
                 stack: contextlib.ExitStack, parent: Hold | None = None):
        self.workspace = workspace
        self.image_id = image_id
        self.work_dir = work_dir
        self.slot_timeout = slot_timeout
        self.status = status
        self._info = info
        self._stack = stack
        self._root = parent._root if parent is not None else self
        self._has_slot = False
        self._files: list[str] = []
        self._kept: set[str] = set()

    def work_file(self, suffix: str) -> str:
        """The name of this image's work file ``suffix`` (not recorded)."""
        return layout.work_file(self.work_dir, self.image_id, suffix)

    def reserve(self, nbytes: int, *, step: str,
                paths: tuple[str, ...] = (), wait: bool = True):
        """Reserve ``nbytes`` for ``paths`` until the phase ends.

        Takes the slot first if this import holds none.  ``wait``: wait
        for space (as long as for a slot) or fail at once.  ``paths``
        become this phase's files: removed if it fails, and when it ends
        unless :meth:`keep` was called.  Returns the reservation.
        """
        self._take_slot()
        status = self.status
        res = self._stack.enter_context(self.workspace.reservation(
            self.image_id, nbytes, paths=paths,
            timeout=self.slot_timeout if wait else 0,
            on_wait=status.waiting_for_space if wait else None,
            should_cancel=status.is_aborted,
            info=dict(self._info, step=step)))
        self._files.extend(paths)
        return res

    def keep(self, path: str) -> None:
        """Hand ``path`` on: it outlives this phase."""
        self._kept.add(path)

    def _take_slot(self) -> None:
        root = self._root
        if root._has_slot:
            return
        status = self.status
        root._stack.enter_context(self.workspace.slot(
            self.image_id, self.slot_timeout,
            on_wait=status.waiting_for_slot,
            should_cancel=status.is_aborted))
        root._has_slot = True

    def _remove(self, failed: bool) -> None:
        for path in self._files:
            if failed or path not in self._kept:
                layout.remove(path)


@contextlib.contextmanager
def held(workspace, *, image_id: str, work_dir: str,
         slot_timeout: float = 600, status: Status | None = None,
         info: dict | None = None) -> Iterator[Hold]:
    """Hold ``workspace`` for one phase of image ``image_id``.

    ``workspace`` is the host's workspace, None (no limits), or the
    :class:`Hold` of an enclosing phase, which this one joins.  When the
    block ends, the phase's files are removed (all of them after an
    exception, the unkept ones otherwise) and then its reservations and,
    unless joined, the slot are released.
    """
    parent = workspace if isinstance(workspace, Hold) else None
    if parent is not None:
        workspace = parent.workspace
        status = status or parent.status
        info = info if info is not None else parent._info
    with contextlib.ExitStack() as stack:
        hold = Hold(workspace or NoWorkspace(), image_id=image_id,
                    work_dir=work_dir, slot_timeout=slot_timeout,
                    status=status or NoStatus(), info=dict(info or {}),
                    stack=stack, parent=parent)
        try:
            yield hold
        except BaseException:
            hold._remove(failed=True)
            raise
        hold._remove(failed=False)


def progress_callback(status: Status) -> Callable[[int], None] | None:
    """``status.progress``, or None when it listens to nothing: qemu-img's
    progress is then not polled at all."""
    if type(status).progress is NoStatus.progress:
        return None
    return status.progress
