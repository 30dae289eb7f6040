"""ova: a tar archive with an OVF descriptor and one disk, copied out.

The archive and its OVF are read and checked by
:mod:`glance_convert.pipeline.ova`; here the disk is copied into the
workspace under the conversion's slot and a reservation of its size.
"""

from __future__ import annotations

import contextlib

from glance_convert.host import layout
from glance_convert.pipeline import checks
from glance_convert.pipeline import conversion
from glance_convert.pipeline import ova
from glance_convert.pipeline import unpack
from glance_convert.pipeline.containers import base


@contextlib.contextmanager
def open_upload(request: base.Request):
    appliance = ova.read(request.src)
    disk_format = request.disk_format
    if disk_format and disk_format != appliance.disk.disk_format:
        checks.OVF_CLAIM.reject(found=appliance.disk.disk_format,
                                claimed=disk_format)
    workspace = request.workspace or conversion.NoWorkspace()
    status, image_id = request.status, request.image_id
    path = layout.work_file(request.work_dir, image_id, 'ova-disk')
    kept = []
    with workspace.slot(image_id, request.slot_timeout,
                        on_wait=status.waiting_for_slot,
                        should_cancel=status.is_aborted):
        # The copy is exactly as long as the member, at most.
        with workspace.reservation(
                image_id, appliance.disk.size, paths=(path,),
                timeout=request.slot_timeout,
                on_wait=status.waiting_for_space,
                should_cancel=status.is_aborted,
                info=dict(request.info_for_ledger or {}, step='ova')) as res:
            path = res.track(path)
            sha256 = None
            try:
                sha256 = ova.extract(request.src, appliance, path)
                disk = base.checked_first(base.Opened(
                    path, appliance.disk.disk_format, request.container_format,
                    unpack.HeldSlot(workspace), dict(appliance.properties),
                    _hash=sha256, _expected=request.expected_sha256,
                    _keep=lambda: kept.append(True)))
                ova.check_disk(path, appliance, request.policy)
                yield disk
            except BaseException:
                layout.remove(path)
                raise
            finally:
                if sha256 is not None:
                    sha256.cancel()   # no-op once taken
            if not kept:
                layout.remove(path)


CONTAINER = base.Container(
    'ova', 'a tar archive with an OVF descriptor and one disk, whose format '
    'the OVF states', unpacks=True, states_disk_format=True,
    open=open_upload)
