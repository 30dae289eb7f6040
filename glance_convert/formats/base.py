"""What every disk format module fills in: its row and its header facts.

A module in :mod:`glance_convert.formats` describes one format with a
:class:`Format` row; its header parser returns a :class:`Header` (the same
fields for every format) and never decides: the policy that reads the
facts is in :mod:`glance_convert.pipeline.inspection` and in the row's
``check_header`` and ``check_info``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

from glance_convert import units


class Malformed(Exception):
    """The file has the format's magic but its headers cannot be read."""


@dataclasses.dataclass
class Header:
    """Facts from one image's headers, the same fields for every format."""

    format: str                         # Glance name
    virtual_size: int = 0               # the size qemu will use
    # Every size the headers state, by where it comes from; all must agree
    # (see ``size_claims_agree``).
    sizes: dict = dataclasses.field(default_factory=dict)
    # Sizes qemu may legitimately report (VHD: footer size or CHS).
    qemu_sizes: tuple = ()
    backing: str | None = None          # qcow2 backing file name
    parent: str | None = None           # differencing disk's parent
    data_file: str | None = None        # qcow2 external data file
    encryption: str | None = None       # method name
    corrupt: str | None = None          # why the headers are inconsistent
    unknown_features: int = 0           # qcow2 incompatible bits we refuse
    create_type: str | None = None      # VMDK createType, as qemu reads it
    descriptor_file: bool = False       # VMDK: extents are other files
    extents: list = dataclasses.field(default_factory=list)
    subformat: str | None = None
    log: str | None = None              # why it was not closed cleanly
    unknown_required: str | None = None  # VHDX: a required item we lack

    def size_claims_agree(self) -> bool:
        return len(set(self.sizes.values())) <= 1


#: Where the virtual size of a converted file is read from (see
#: ``conversion._verify_output``): the file's length (qemu's raw driver
#: reads nothing else), the header just checked by the inspection, or
#: ``qemu-img info`` (geometry rounding, descriptors).
FILE_LENGTH = 'file length'
HEADER = 'header'
QEMU_INFO = 'qemu-img info'

DEFAULT_CLUSTER = 65536


#: ``-m`` of ``qemu-img convert`` unless chosen otherwise: qemu-img's own.
DEFAULT_COROUTINES = 8
#: ``-m`` for sources with compressed clusters: the most qemu-img takes,
#: so that decompression keeps every core of the thread pool busy.
DECOMPRESSING_COROUTINES = 16


def bound(virtual_size: int, metadata: int, cluster: int) -> int:
    return virtual_size + metadata + 16 * units.MiB + 8 * cluster


def _metadata_bound(virtual_size: int, opts: dict) -> int:
    """vmdk, vdi, vpc: grain and block tables take less than 1/64."""
    return bound(virtual_size, virtual_size // 64, DEFAULT_CLUSTER)


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
    #: oslo.utils format_inspector's name; None where it has no inspector
    #: (such a format reads as raw there: see ``may_read_as_raw``).
    inspector: str | None
    #: ``qemu-img check`` implements it (qemu 7.2: raw and vpc do not).
    checkable: bool
    #: One line for people choosing it as ``output_format``.
    description: str
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
    #: header -> True when a converted file of this format with that
    #: header is expected to read as raw to format_inspector (a fixed
    #: VHD); see ``inspection.verify_output``.
    raw_lookalike: Callable[[Header], bool] = lambda header: False
    #: (open file, its size) -> True when the file carries the magic.
    has_magic: Callable[[object, int], bool] = lambda f, size: False
    #: (open file, its size) -> the header facts, None without the magic;
    #: raises :class:`Malformed` when the magic is there but the
    #: structures cannot be read.  None: the format has no header (raw).
    parse: Callable[[object, int], Header | None] | None = None
    #: The format's own checks, collected into ``pipeline.check_table.CHECKS``.
    checks: tuple = ()
    #: (header, policy) -> refuses what only this format's header shows;
    #: the checks every format shares run in ``inspection.check_header``.
    check_header: Callable[[Header, object], None] = (
        lambda header, policy: None)
    #: (``qemu-img info``, policy) -> refuses what only this format's
    #: ``qemu-img info`` shows.
    check_info: Callable[[dict, object], None] = lambda info, policy: None
    #: (open file, its size) -> [(guest offset, bytes of work)] for the
    #: parallel converter, read from the image's tables; None: split by
    #: length (see ``parallel.allocation_map``).
    work_map: Callable[[object, int], list | None] | None = None
    #: (open file, its size) -> an object with ``size`` and ``read(offset,
    #: length)`` serving the guest's bytes from the image's own tables
    #: (raises :class:`NotPlain`); None: only qemu-img reads it.
    guest_bytes: Callable[[object, int], object] | None = None


class NotPlain(Exception):
    """An image whose guest bytes a format's own tables reader does not
    read (compressed in a way it does not decode, an unusual header,
    another file named): the caller asks qemu-img instead."""
