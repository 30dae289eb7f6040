"""Container formats: from the upload to the disk image the pipeline checks.

One call before inspection, :func:`opened`, turns the staged upload into
the disk image to inspect and convert, whatever its container:

* ``compressed``: decompressed (:mod:`~glance_convert.pipeline.unpack`);
* ``ova``: its one disk copied out (:mod:`~glance_convert.pipeline.ova`);
* anything else (``bare``): the upload itself, unless its whole stream
  header shows it is compressed (:mod:`stream_headers`): then it is
  unpacked as ``compressed`` or, with ``bare_compression = refuse``,
  refused with the fix in one sentence.

and gives the SHA-256 of the upload as uploaded.  For ``compressed`` and
``ova`` it comes from the bytes already read.  When the user set
``glance_convert_source_sha256``, it is checked before the disk is even
inspected; otherwise the hash may finish while the disk is converted (a
copy, and zstd, are faster than SHA-256 without SHA instructions) and is
taken when it is recorded.  A ``bare`` upload is hashed only when the
user gave a checksum to check, by a second thread while qemu-img works,
and the check happens before anything is stored: reading an uncompressed
upload once more costs more than converting it on a 2-core host (0.60 s
to hash an 847 MiB qcow2 against 0.32 s for qemu-img to convert it), and
Glance's own hash covers what it stores.

Signed images (``img_signature*`` properties) are decided here too: Glance
and Nova verify the signature over the stored bytes, which a conversion
changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

from glance_convert.host import layout
from glance_convert.pipeline import checks
from glance_convert.pipeline import conversion
from glance_convert.pipeline import inspection
from glance_convert.pipeline import ova
from glance_convert.pipeline import stream_headers
from glance_convert.pipeline import unpack
from glance_convert.pipeline import upload_hash

#: Containers whose data this module unpacks.
UNPACKED = ('compressed', 'ova')


def is_signed(properties: dict) -> bool:
    return any(k.startswith('img_signature') for k in properties)


def check_signed(properties: dict, policy: str) -> bool:
    """True: pass the signed upload through unconverted; raise to refuse.

    ``policy`` is ``refuse`` (the default: a stored image that fails
    verification at boot is worse than a clear refusal now) or
    ``passthrough`` (store the upload as it is, signature intact).
    """
    if not is_signed(properties):
        return False
    if policy == 'passthrough':
        return True
    checks.SIGNED.reject()


@dataclasses.dataclass
class Opened:
    """The disk image inside an upload, ready for inspection."""

    path: str                  # the file to inspect and convert
    disk_format: str           # its format, as claimed or as the OVF says
    container_format: str      # the upload's
    workspace: object          # for convert_image (slot held if unpacked)
    properties: dict           # image properties the container gave
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


@contextlib.contextmanager
def opened(src: str, *, container_format: str | None, disk_format: str,
           properties: dict, image_id: str, work_dir: str,
           policy: inspection.Policy, timeout: float | None = None,
           workspace=None, slot_timeout: float = 600,
           status: conversion.Status | None = None,
           info_for_ledger: dict | None = None,
           bare_compression: str = 'unpack'):
    """Yield the :class:`Opened` disk of the upload ``src``.

    Unpacked work files are recorded in ``workspace``'s ledger before they
    exist and removed when the block ends unless :meth:`Opened.keep` was
    called, and always after an exception.
    """
    if container_format in (None, 'bare'):
        compression = stream_headers.compression_of(src)
        if compression is not None:
            if bare_compression == 'refuse':
                checks.BARE_COMPRESSED.reject(compression=compression)
            container_format = 'compressed'
    expected = upload_hash.expected_sha256(properties)
    status = status or conversion.NoStatus()
    common = dict(image_id=image_id, work_dir=work_dir,
                  workspace=workspace, slot_timeout=slot_timeout,
                  status=status, info_for_ledger=info_for_ledger)
    if container_format == 'compressed':
        with unpack.decompressed(src, limit=policy.max_virtual_size,
                                 timeout=timeout, **common) as prepared:
            sha256 = prepared.unpacked.sha256
            try:
                yield _checked_first(
                    Opened(prepared.path, disk_format, container_format,
                           prepared.workspace, {}, _hash=sha256,
                           _expected=expected, _keep=prepared.keep))
            finally:
                sha256.cancel()   # no-op once taken
        return
    if container_format == 'ova':
        with _ova_disk(src, disk_format, policy, expected,
                       **common) as result:
            yield result
        return
    hasher = upload_hash.BackgroundHash(src) if expected else None
    try:
        yield Opened(src, disk_format, container_format or 'bare',
                     workspace, {}, _hash=hasher, _expected=expected)
    finally:
        if hasher is not None:
            hasher.cancel()


def _checked_first(disk: Opened) -> Opened:
    """With the user's checksum: wait for the hash and check it now,
    before anything is inspected or converted."""
    if disk._expected is not None:
        disk.source_sha256()
    return disk


@contextlib.contextmanager
def _ova_disk(src, disk_format, policy, expected, *, image_id, work_dir,
              workspace, slot_timeout, status, info_for_ledger):
    appliance = ova.read(src)
    if disk_format and disk_format != appliance.disk.disk_format:
        checks.OVF_CLAIM.reject(found=appliance.disk.disk_format,
                                claimed=disk_format)
    workspace = workspace or conversion.NoWorkspace()
    path = layout.work_file(work_dir, image_id, 'ova-disk')
    kept = []
    with workspace.slot(image_id, slot_timeout,
                        on_wait=status.waiting_for_slot,
                        should_cancel=status.is_aborted):
        # The copy is exactly as long as the member, at most.
        with workspace.reservation(
                image_id, appliance.disk.size, paths=(path,),
                timeout=slot_timeout, on_wait=status.waiting_for_space,
                should_cancel=status.is_aborted,
                info=dict(info_for_ledger or {}, step='ova')) as res:
            path = res.track(path)
            sha256 = None
            try:
                sha256 = ova.extract(src, appliance, path)
                disk = _checked_first(Opened(
                    path, appliance.disk.disk_format, 'ova',
                    unpack.HeldSlot(workspace), dict(appliance.properties),
                    _hash=sha256, _expected=expected,
                    _keep=lambda: kept.append(True)))
                ova.check_disk(path, appliance, policy)
                yield disk
            except BaseException:
                layout.remove(path)
                raise
            finally:
                if sha256 is not None:
                    sha256.cancel()   # no-op once taken
            if not kept:
                layout.remove(path)
