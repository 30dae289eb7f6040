"""Container formats: from the upload to the disk image the pipeline checks.

One module per container, each with a :class:`~.base.Container` row: its
name, what it is, whether its disk is unpacked into the workspace, whether
it states the disk's format, and how it opens an upload.  :data:`CONTAINERS`
is the one table the pipeline and the CLI read.  :func:`opened`, one call
before inspection, turns the staged upload into the disk image to inspect
and convert, whatever its container, and gives the SHA-256 of the upload
as uploaded (:mod:`~glance_convert.pipeline.upload_hash`).  When the user
set ``glance_convert_source_sha256``, it is checked before the disk is
even inspected; otherwise the hash may finish while the disk is converted
and is taken when it is recorded.

Signed images (``img_signature*`` properties) are decided here too: Glance
and Nova verify the signature over the stored bytes, which a conversion
changes.
"""

from __future__ import annotations

import contextlib

from glance_convert.pipeline import checks
from glance_convert.pipeline import hold
from glance_convert.pipeline import inspection
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline.containers import bare
from glance_convert.pipeline.containers import base
from glance_convert.pipeline.containers import compressed
from glance_convert.pipeline.containers import ova

Opened = base.Opened
Container = base.Container

#: The containers the plugin opens, by Glance name, in the order they are
#: listed to people.
CONTAINERS: dict[str, Container] = {
    m.CONTAINER.name: m.CONTAINER for m in (bare, compressed, ova)}
BARE = bare.CONTAINER
#: Containers whose disk is unpacked into the workspace.
UNPACKED = tuple(c.name for c in CONTAINERS.values() if c.unpacks)


def get(container_format: str | None) -> Container:
    """The container's row: the upload itself (bare) for none and for
    Glance's container formats the plugin does not open (ovf, docker)."""
    return CONTAINERS.get(container_format or BARE.name, BARE)


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


def recognised(src: str, bare_compression: str = 'unpack') -> Container:
    """The container an upload declared bare is really in: bare, or the
    first whose ``recognise`` knows it (refused with ``bare_compression =
    refuse``)."""
    for container in CONTAINERS.values():
        if container.recognise is None:
            continue
        found = container.recognise(src)
        if found is not None:
            if bare_compression == 'refuse':
                bare.BARE_COMPRESSED.reject(compression=found)
            return container
    return BARE


@contextlib.contextmanager
def opened(src: str, *, container_format: str | None, disk_format: str,
           properties: dict, image_id: str, work_dir: str,
           policy: inspection.Policy, timeout: float | None = None,
           workspace=None, slot_timeout: float = 600,
           status: hold.Status | None = None,
           info_for_ledger: dict | None = None,
           bare_compression: str = 'unpack'):
    """Yield the :class:`Opened` disk of the upload ``src``.

    Unpacked work files are recorded in ``workspace``'s ledger before they
    exist and removed when the block ends unless :meth:`Opened.keep` was
    called, and always after an exception.  An upload declared bare whose
    container recognises it (a whole compressed stream header) is opened
    in that container, or refused with ``bare_compression = refuse``.
    """
    container = get(container_format)
    name = container_format or BARE.name
    if name == BARE.name:
        container = recognised(src, bare_compression)
        name = container.name
    request = base.Request(
        src, name, disk_format,
        upload_hash.expected_sha256(properties), policy, timeout, image_id,
        work_dir, workspace, slot_timeout, status or hold.NoStatus(),
        info_for_ledger)
    with container.open(request) as disk:
        yield disk
