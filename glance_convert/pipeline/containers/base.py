"""What every container module provides: its row, and the disk it opens."""

from __future__ import annotations

import dataclasses
from typing import Callable, ContextManager

from glance_convert import safety
from glance_convert.guest.hints import Hints
from glance_convert.pipeline import upload_hash


@dataclasses.dataclass
class Opened:
    """The disk image inside an upload, ready for inspection."""

    path: str                  # the file to inspect and convert
    disk_format: str           # its format, as claimed or as the OVF says
    container_format: str      # the upload's
    workspace: object          # for convert_image (slot held if unpacked)
    properties: dict           # image properties the container gave
    #: What the container's metadata says about the guest (an OVF).
    hints: Hints | None = None
    _digest: str | None = None
    _hash: upload_hash.BackgroundHash | upload_hash.Hasher | None = None
    _expected: str | None = None
    _keep: Callable[[], None] | None = None

    @property
    def unpacked(self) -> bool:
        return self._keep is not None

    def keep(self) -> None:
        """Hand the unpacked disk on as it is (no conversion)."""
        if self._keep is not None:
            self._keep()

    def source_sha256(self) -> str | None:
        """SHA-256 of the upload; raise if the user's checksum differs.

        None for a bare upload without a checksum to check (not hashed).
        """
        if self._digest is None and self._hash is not None:
            self._digest = self._hash.result()
            upload_hash.verify_sha256(self._digest, self._expected)
        return self._digest


def checked_first(disk: Opened) -> Opened:
    """With the user's checksum: wait for the hash and check it now,
    before anything is inspected or converted."""
    if disk._expected is not None:
        disk.source_sha256()
    return disk


@dataclasses.dataclass(frozen=True)
class Request:
    """One upload to open, and what opening it may use."""

    src: str
    container_format: str
    disk_format: str | None
    expected_sha256: str | None    # the user's checksum, normalised
    policy: object                 # inspection.Policy
    timeout: float | None
    image_id: str
    work_dir: str
    workspace: object
    slot_timeout: float
    status: object                 # hold.Status
    info_for_ledger: dict | None


@dataclasses.dataclass(frozen=True)
class Container:
    """One Glance container format, as the plugin opens it."""

    name: str                  # Glance's container_format
    description: str           # one line, for the CLI's help and the docs
    #: Its disk is written into the workspace (decompressed, copied out),
    #: under the conversion's slot, and checked at the ``container`` stage.
    unpacks: bool
    #: The container states the disk's format (the OVF), so the user need
    #: not claim one.
    states_disk_format: bool
    #: request -> context manager yielding the :class:`Opened` disk; the
    #: disk's work file is removed when the block ends unless kept.
    open: Callable[[Request], ContextManager[Opened]]
    #: upload path -> what shows that an upload declared bare is really
    #: in this container (e.g. 'gzip'), or None; None: never recognised.
    recognise: Callable[[str], str | None] | None = None
    #: Its own checks (stage ``container``), defined in its module.
    checks: tuple[safety.Check, ...] = ()
