"""Byte units, the one size formatter and the one allocated-bytes helper.

Sizes reach people in task messages, refusals, the CLI and logs; one
formatter keeps them written the same way everywhere.
"""

import os

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB


def human_size(nbytes: int) -> str:
    """A size for people: "700 MiB", "3.5 GiB", "120 GiB".

    MiB are rounded up, so a need is never shown smaller than it is.
    """
    if nbytes < GiB:
        return '%d MiB' % -(-nbytes // MiB)
    if nbytes < 100 * GiB:
        return '%.1f GiB' % (nbytes / GiB)
    return '%d GiB' % round(nbytes / GiB)


def allocated_bytes(path: str) -> int:
    """Bytes ``path`` takes on disk (holes excluded); 0 if it is gone."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0
