"""bare: the upload is the disk image itself.

So are uploads in a container format the plugin does not open (``ovf``,
``docker``, ...): nothing is unpacked.  The upload is hashed only when the
user gave a checksum to check, by a second thread while qemu-img works:
reading an uncompressed upload once more costs more than converting it on
a 2-core host, and Glance's own hash covers what it stores.
"""

from __future__ import annotations

import contextlib

from glance_convert import safety
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline.containers import base


#: An upload declared bare that a container recognises
#: (``containers.recognised``).
BARE_COMPRESSED = safety.Check(
    'bare_compressed', 'this upload is {compression}-compressed: set '
    'container_format=compressed',
    'a bare upload is not a compressed stream (recognised from its whole '
    'header); refused only with bare_compression = refuse, else unpacked',
    (safety.CONTAINER,), 'the upload is not a compressed stream',
    containers=('bare',))


@contextlib.contextmanager
def open_upload(request: base.Request):
    expected = request.expected_sha256
    hasher = upload_hash.BackgroundHash(request.src) if expected else None
    try:
        yield base.Opened(request.src, request.disk_format,
                          request.container_format, request.workspace, {},
                          _hash=hasher, _expected=expected)
    finally:
        if hasher is not None:
            hasher.cancel()


CONTAINER = base.Container(
    'bare', 'the disk image itself (the default)', unpacks=False,
    states_disk_format=False, open=open_upload,
    checks=(BARE_COMPRESSED,))
