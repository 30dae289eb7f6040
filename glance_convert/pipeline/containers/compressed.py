"""compressed: gzip, bzip2, xz, zstd or a one-file zip, decompressed.

The decompression itself, bounded and checked, is
:mod:`glance_convert.pipeline.unpack`; the SHA-256 of the upload comes
from the bytes it reads.
"""

from __future__ import annotations

import contextlib

from glance_convert.pipeline import stream_headers
from glance_convert.pipeline import unpack
from glance_convert.pipeline.containers import base


@contextlib.contextmanager
def open_upload(request: base.Request):
    with unpack.decompressed(
            request.src, limit=request.policy.max_virtual_size,
            timeout=request.timeout, image_id=request.image_id,
            work_dir=request.work_dir, workspace=request.workspace,
            slot_timeout=request.slot_timeout, status=request.status,
            info_for_ledger=request.info_for_ledger) as prepared:
        sha256 = prepared.unpacked.sha256
        try:
            yield base.checked_first(base.Opened(
                prepared.path, request.disk_format, request.container_format,
                prepared.workspace, {}, _hash=sha256,
                _expected=request.expected_sha256, _keep=prepared.keep))
        finally:
            sha256.cancel()   # no-op once taken


CONTAINER = base.Container(
    'compressed', 'gzip, bzip2, xz, zstd or a one-file zip', unpacks=True,
    states_disk_format=False, open=open_upload,
    # Only from whole stream headers: a raw disk may start with a magic.
    recognise=stream_headers.compression_of)
