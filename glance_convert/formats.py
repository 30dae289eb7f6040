"""One row per Glance disk format: what the plugin knows and does with it.

Every per-format decision lives in the row of that format: the names
qemu-img and oslo.utils' format inspector use, what ``qemu-img check`` and
``measure`` can do with it, which ``[glance_convert]`` options shape its
output and how they become ``qemu-img -o`` options, when an upload already
in that format is re-written, how large the output can be, and whether
several qemu-img processes may share the work.  The pipeline, the option
validation and the CLI read the rows; none of them names a format.  Adding
a format is adding one row.

The names matter: Glance calls the VHD format ``vhd``, qemu-img calls it
``vpc`` (VHDX is ``vhdx`` to both).  Passing Glance's name straight to
``qemu-img -f`` is why every VHD import fails with Glance's own plugin.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

from glance_convert import units

#: Where the virtual size of a converted file is read from (see
#: ``conversion._verify_output``): the file's length (qemu's raw driver
#: reads nothing else), the header just checked by the inspection, or
#: ``qemu-img info`` (geometry rounding, descriptors).
FILE_LENGTH = 'file length'
HEADER = 'header'
QEMU_INFO = 'qemu-img info'

_DEFAULT_CLUSTER = 65536


#: ``-m`` of ``qemu-img convert`` unless chosen otherwise: qemu-img's own.
DEFAULT_COROUTINES = 8
#: ``-m`` for sources with compressed clusters: the most qemu-img takes,
#: so that decompression keeps every core of the thread pool busy.
DECOMPRESSING_COROUTINES = 16


def _bound(virtual_size: int, metadata: int, cluster: int) -> int:
    return virtual_size + metadata + 16 * units.MiB + 8 * cluster


def _metadata_bound(virtual_size: int, opts: dict) -> int:
    """vmdk, vdi, vpc: grain and block tables take less than 1/64."""
    return _bound(virtual_size, virtual_size // 64, _DEFAULT_CLUSTER)


class Problem(NamedTuple):
    """An option combination that cannot work, and what to do instead."""

    message: str
    fix: str
    warning: bool = False   # True: it has no effect; False: it fails


@dataclasses.dataclass(frozen=True)
class Format:
    """What the plugin knows and does for one Glance disk format."""

    name: str                  # Glance's disk_format
    qemu_driver: str           # qemu-img's -f / -O name
    inspector: str             # oslo.utils format_inspector's name
    #: ``qemu-img check`` implements it (qemu 7.2: raw and vpc do not).
    checkable: bool
    #: ``[glance_convert]`` options that only shape this format's output.
    option_names: tuple[str, ...]
    #: group -> (``-o`` options, ``-c`` flag) for output in this format.
    output_options: Callable[[object], tuple[dict, bool]]
    #: Values of ``preallocation`` (other than off) its output accepts.
    preallocation: tuple[str, ...] = ()
    #: (group, glance_setting) -> problems of its options; see settings.
    option_problems: Callable[[object, Callable], list[Problem]] = (
        lambda group, glance: [])
    #: -o options -> whether an upload already in this format is
    #: re-written (decided from the options, not the upload, so the rule
    #: is predictable).
    rewrites_same_format: Callable[[dict, bool], bool] = (
        lambda opts, compressed: False)
    #: (virtual size, -o options) -> bytes the output takes at most,
    #: whatever the data, without running qemu-img.
    upper_bound: Callable[[int, dict], int] = _metadata_bound
    #: -o options -> the -o options of ``qemu-img measure -O qcow2`` that
    #: bound the output's need, or None where measure cannot tell.
    measure_as_qcow2: Callable[[dict], dict | None] = lambda opts: None
    #: (virtual size, -o options) -> size to ``qemu-img create`` the output
    #: with before converting into it, or None (convert creates it).
    presize: Callable[[int, dict], int | None] = lambda size, opts: None
    #: ``-W`` when ``convert_out_of_order`` is unset.
    out_of_order: bool = False
    #: Source subformats (qemu's create-type) that convert at the speed of
    #: one core in one qemu-img, so several processes finish sooner.
    parallel_subformats: tuple[str, ...] = ()
    #: Output can be written in disjoint ranges by several processes.
    parallel_output: bool = False
    #: ``qemu-img check`` counts its compressed clusters, which qemu
    #: decompresses in a thread pool: a source that has them converts at
    #: CPU speed, so it gets :data:`DECOMPRESSING_COROUTINES` requests in
    #: flight, ``-W`` where the output row allows it, and several processes
    #: to plain raw output (``conversion.source_tuning``, ``use_parallel``).
    compressed_clusters: bool = False
    #: ``-W`` (when ``convert_out_of_order`` is unset) for output in this
    #: format from a source with compressed clusters.
    out_of_order_decompressing: bool = False
    #: A valid image of it may read as raw to format_inspector (a fixed
    #: VHD is the disk followed by a footer).
    may_read_as_raw: bool = False
    #: Where the converted file's virtual size is read from.
    output_size_from: str = QEMU_INFO


# --- raw ---------------------------------------------------------------------

def _raw_options(group) -> tuple[dict, bool]:
    if group.preallocation in ('falloc', 'full'):
        return {'preallocation': group.preallocation}, False
    return {}, False


def _raw_problems(group, glance) -> list[Problem]:
    if group.preallocation == 'metadata':
        return [Problem('preallocation = metadata is for qcow2 only; raw '
                        'output has no metadata.',
                        'use preallocation = falloc or full, or off.')]
    return []


def _raw_measure(opts: dict) -> dict | None:
    """Sparse raw: ``measure -O raw`` answers the virtual size whatever the
    data (qemu 7.2), but ``measure -O qcow2`` counts the allocated clusters
    plus qcow2's own metadata, an upper bound of what a sparse raw copy
    allocates.  Preallocated raw needs its whole virtual size."""
    return None if opts.get('preallocation') else {}


RAW = Format(
    'raw', qemu_driver='raw', inspector='raw', checkable=False,
    option_names=(), output_options=_raw_options,
    preallocation=('falloc', 'full'), option_problems=_raw_problems,
    # Not re-written (the default): a copy has the same bytes, preallocated
    # or not.  At most the virtual size, less where sparse.
    upper_bound=lambda size, opts: size,
    measure_as_qcow2=_raw_measure,
    parallel_output=True, output_size_from=FILE_LENGTH,
    # In order, unless the source decompresses: then -W lets the writes
    # of finished clusters overtake the slower ones.
    out_of_order_decompressing=True)


# --- qcow2 -------------------------------------------------------------------

def _qcow2_options(group) -> tuple[dict, bool]:
    opts: dict = {'compat': group.qcow2_compat}
    if group.qcow2_cluster_size != _DEFAULT_CLUSTER:
        opts['cluster_size'] = group.qcow2_cluster_size
    compressed = group.qcow2_compression != 'none'
    # zlib is qemu's default; zstd needs compat 1.1.
    if group.qcow2_compression == 'zstd':
        opts['compression_type'] = 'zstd'
    if group.preallocation != 'off':
        opts['preallocation'] = group.preallocation
    return opts, compressed


def _qcow2_problems(group, glance) -> list[Problem]:
    found = []
    compression = group.qcow2_compression
    if compression != 'none' and group.preallocation != 'off':
        found.append(Problem(
            'qcow2_compression = %s cannot be combined with preallocation '
            '= %s (qemu-img refuses).' % (compression, group.preallocation),
            'set preallocation = off or qcow2_compression = none.'))
    if compression == 'zstd' and group.qcow2_compat == '0.10':
        found.append(Problem(
            'qcow2_compression = zstd needs qcow2_compat = 1.1.',
            'set qcow2_compat = 1.1 or qcow2_compression = zlib.'))
    if compression != 'none' and group.convert_out_of_order:
        found.append(Problem(
            'convert_out_of_order is ignored: compressed qcow2 output is '
            'always written in order.',
            'set convert_out_of_order = false to make that explicit.',
            warning=True))
    return found


def _qcow2_rewrites(opts: dict, compressed: bool) -> bool:
    """Compressing, preallocating or a non-default cluster size;
    ``qcow2_compat`` alone is no reason (1.1 reads everywhere)."""
    return (compressed or bool(opts.get('preallocation'))
            or 'cluster_size' in opts)


def _qcow2_bound(virtual_size: int, opts: dict) -> int:
    """About 10 bytes of L2 and refcount entries per cluster plus a few
    clusters: 16 bytes per cluster covers it with room."""
    cluster = int(opts.get('cluster_size') or _DEFAULT_CLUSTER)
    metadata = max(virtual_size * 16 // cluster, virtual_size // 64)
    return _bound(virtual_size, metadata, cluster)


QCOW2 = Format(
    'qcow2', qemu_driver='qcow2', inspector='qcow2', checkable=True,
    option_names=('qcow2_compat', 'qcow2_cluster_size', 'qcow2_compression'),
    output_options=_qcow2_options,
    preallocation=('metadata', 'falloc', 'full'),
    option_problems=_qcow2_problems, rewrites_same_format=_qcow2_rewrites,
    upper_bound=_qcow2_bound,
    measure_as_qcow2=lambda opts: opts,  # measured as itself
    # -W helped qcow2 output cold and warm in the benchmark; raw output
    # not consistently.
    out_of_order=True, output_size_from=HEADER,
    # Distribution cloud images: zlib or zstd compressed clusters.
    compressed_clusters=True, out_of_order_decompressing=True)


# --- vmdk --------------------------------------------------------------------

def _vmdk_problems(group, glance) -> list[Problem]:
    allowed = glance('image_format', 'vmdk_allowed_types', [])
    if group.vmdk_subformat in allowed:
        return []
    return [Problem(
        'vmdk_subformat = %s is not in Glance\'s [image_format] '
        'vmdk_allowed_types (%s): the converted images would be refused by '
        'the next conversion or copy.'
        % (group.vmdk_subformat, ', '.join(allowed) or 'empty'),
        'add %s to vmdk_allowed_types or choose another vmdk_subformat.'
        % group.vmdk_subformat)]


VMDK = Format(
    'vmdk', qemu_driver='vmdk', inspector='vmdk', checkable=True,
    option_names=('vmdk_subformat',),
    output_options=lambda group: ({'subformat': group.vmdk_subformat},
                                  False),
    option_problems=_vmdk_problems,
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'streamOptimized'),
    # Decompression (streamOptimized) or grain-table walking
    # (monolithicSparse, 0.9 CPU s for 819 MiB where a copy takes 0.35 s)
    # keep one qemu-img on one core; split, they took 0.49x and
    # 0.58-0.65x of the stock task's time in the benchmark.
    parallel_subformats=('streamOptimized', 'monolithicSparse'))


# --- vdi ---------------------------------------------------------------------

VDI = Format(
    'vdi', qemu_driver='vdi', inspector='vdi', checkable=True,
    option_names=(), output_options=lambda group: ({}, False))


# --- vhd (qemu-img: vpc) -----------------------------------------------------

def _vhd_options(group) -> tuple[dict, bool]:
    opts: dict = {'subformat': group.vhd_subformat}
    if group.vhd_force_size:
        # Exact size instead of qemu's CHS-geometry rounding; the output
        # is created first at a whole number of MiB (see _vhd_presize).
        opts['force_size'] = True
    return opts, False


def _vhd_presize(virtual_size: int, opts: dict) -> int | None:
    """``qemu-img convert`` cannot resize: with ``force_size`` the output is
    created first with the size rounded up to a whole MiB, then converted
    into with ``-n --target-is-zero``."""
    if opts.get('force_size'):
        return -(-virtual_size // units.MiB) * units.MiB
    return None


VHD = Format(
    'vhd', qemu_driver='vpc', inspector='vhd', checkable=False,
    option_names=('vhd_subformat', 'vhd_force_size'),
    output_options=_vhd_options,
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'fixed' or bool(opts.get('force_size'))),
    presize=_vhd_presize,
    may_read_as_raw=True)


# --- vhdx --------------------------------------------------------------------

#: The 1 MiB header area, a 1 MiB log and a 1 MiB metadata region, as
#: qemu-img writes them; the BAT region comes on top.
_VHDX_FIXED_OVERHEAD = 3 * units.MiB


def vhdx_default_block_size(virtual_size: int) -> int:
    """The block size qemu-img (7.2) chooses when none is given."""
    if virtual_size > 32 * units.TiB:
        return 64 * units.MiB
    if virtual_size > 100 * units.GiB:
        return 32 * units.MiB
    if virtual_size > units.GiB:
        return 16 * units.MiB
    return 8 * units.MiB


def _vhdx_bound(virtual_size: int, opts: dict) -> int:
    """Whole blocks (a block with one byte of data is written whole, and
    fixed output allocates every block), the BAT with its sector-bitmap
    entries rounded up to a MiB, and qemu's header, log and metadata."""
    block = vhdx_default_block_size(virtual_size)
    blocks = -(-virtual_size // block)
    chunk_ratio = (1 << 23) * 512 // block
    bat = (blocks + blocks // chunk_ratio + 1) * 8
    return (blocks * block + -(-bat // units.MiB) * units.MiB
            + _VHDX_FIXED_OVERHEAD + 16 * units.MiB)


VHDX = Format(
    'vhdx', qemu_driver='vhdx', inspector='vhdx', checkable=True,
    option_names=('vhdx_subformat',),
    output_options=lambda group: ({'subformat': group.vhdx_subformat},
                                  False),
    # A fixed disk is asked for because the upload may be dynamic; a
    # dynamic one reads the same either way.
    rewrites_same_format=lambda opts, compressed: (
        opts.get('subformat') == 'fixed'),
    upper_bound=_vhdx_bound,
    # The virtual size is one metadata item that verify_output has just
    # parsed and checked against the BAT; qemu reports exactly it.
    output_size_from=HEADER)


#: The rows, by Glance name, in the order they are listed to people.
FORMATS: dict[str, Format] = {
    f.name: f for f in (RAW, QCOW2, VMDK, VDI, VHD, VHDX)}

#: Glance disk formats this plugin can read and write.
CONVERTIBLE = tuple(FORMATS)


def get(disk_format: str) -> Format:
    """The row of a Glance disk format; ValueError if we do not convert it."""
    try:
        return FORMATS[disk_format]
    except KeyError:
        raise ValueError('unsupported disk format: %r' % disk_format)


def is_convertible(disk_format: str | None) -> bool:
    """True if ``disk_format`` (Glance's name) is one we convert."""
    return disk_format in FORMATS


def qemu_driver(disk_format: str) -> str:
    """The qemu-img driver name for a Glance disk format."""
    return get(disk_format).qemu_driver


def inspector_name(disk_format: str) -> str:
    """The format_inspector name for a Glance disk format."""
    return get(disk_format).inspector


def output_options(group, target: str) -> tuple[dict, bool]:
    """qemu-img ``-o`` options and the ``-c`` flag for output in ``target``.

    Only options that apply to ``target``; combinations qemu-img would
    refuse are caught at start-up by ``settings.validate_options``.
    """
    return get(target).output_options(group)


def glance_name_for_inspector(name: str) -> str:
    """The Glance disk format for a format_inspector result.

    GPT and MBR partitioned disks are raw disks to Glance.
    """
    if name == 'gpt':
        return 'raw'
    for row in FORMATS.values():
        if row.inspector == name:
            return row.name
    return name
