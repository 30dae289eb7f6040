"""raw: the disk itself, byte for byte; qemu's raw driver reads no header.

There is nothing to parse: the file's length is the virtual size, and a
raw disk is judged by format_inspector (MBR/GPT partition tables) and by
whether its data reads as another format.
"""

from __future__ import annotations

from glance_convert.formats import base


def _raw_options(group) -> tuple[dict, bool]:
    if group.preallocation in ('falloc', 'full'):
        return {'preallocation': group.preallocation}, False
    return {}, False


def _raw_problems(group, glance) -> list[base.Problem]:
    if group.preallocation == 'metadata':
        return [base.Problem('preallocation = metadata is for qcow2 only; '
                             'raw output has no metadata.',
                             'use preallocation = falloc or full, or off.')]
    return []


def _raw_measure(opts: dict) -> dict | None:
    """Sparse raw: ``measure -O raw`` answers the virtual size whatever the
    data (qemu 7.2), but ``measure -O qcow2`` counts the allocated clusters
    plus qcow2's own metadata, an upper bound of what a sparse raw copy
    allocates.  Preallocated raw needs its whole virtual size."""
    return None if opts.get('preallocation') else {}


FORMAT = base.Format(
    'raw', qemu_driver='raw', inspector='raw', checkable=False,
    description='Plain disk bytes; what Ceph RBD and thin-provisioned '
                'stores want.',
    option_names=(), output_options=_raw_options,
    preallocation=('falloc', 'full'), option_problems=_raw_problems,
    # Not re-written (the default): a copy has the same bytes, preallocated
    # or not.  At most the virtual size, less where sparse.
    upper_bound=lambda size, opts: size,
    measure_as_qcow2=_raw_measure,
    parallel_output=True, output_size_from=base.FILE_LENGTH,
    # In order, unless the source decompresses: then -W lets the writes
    # of finished clusters overtake the slower ones.
    out_of_order_decompressing=True)
