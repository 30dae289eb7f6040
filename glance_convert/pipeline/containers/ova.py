"""ova: a tar archive with an OVF descriptor and one disk, copied out.

The archive and its OVF are read and checked by
:mod:`glance_convert.pipeline.ova`; here the disk is copied into the
workspace, in the import's :mod:`~glance_convert.pipeline.hold`, with
space reserved for its size.
"""

from __future__ import annotations

import contextlib

from glance_convert.pipeline import hold
from glance_convert.pipeline import ova
from glance_convert.pipeline.containers import base


@contextlib.contextmanager
def open_upload(request: base.Request):
    appliance = ova.read(request.src)
    disk_format = request.disk_format
    if disk_format and disk_format != appliance.disk.disk_format:
        ova.OVF_CLAIM.reject(found=appliance.disk.disk_format,
                             claimed=disk_format)
    with hold.held(request.workspace, image_id=request.image_id,
                   work_dir=request.work_dir,
                   slot_timeout=request.slot_timeout, status=request.status,
                   info=request.info_for_ledger) as work:
        path = work.work_file('ova-disk')
        # The copy is exactly as long as the member, at most.
        work.reserve(appliance.disk.size, step='ova', paths=(path,))
        sha256 = ova.extract(request.src, appliance, path)
        try:
            disk = base.checked_first(base.Opened(
                path, appliance.disk.disk_format, request.container_format,
                work, dict(appliance.properties), hints=appliance.hints,
                _hash=sha256,
                _expected=request.expected_sha256,
                _keep=lambda: work.keep(path)))
            ova.check_disk(path, appliance, request.policy)
            yield disk
        finally:
            sha256.cancel()   # no-op once taken


CONTAINER = base.Container(
    'ova', 'a tar archive with an OVF descriptor and one disk, whose format '
    'the OVF states', unpacks=True, states_disk_format=True,
    open=open_upload, checks=ova.CHECKS)
