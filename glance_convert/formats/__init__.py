"""The disk formats the plugin converts: one module each, and their table.

A format's module holds everything the tree knows of it: Glance's and
qemu-img's names, its magic and header parser, its own checks, how its
output options become ``qemu-img -o`` options, and where it has one, the
allocation map the parallel converter splits by (see
:class:`~glance_convert.formats.base.Format`).  The pipeline, the option
validation and the CLI read the rows built here; none of them names a
format.  Adding a format is adding a module and listing it below.
"""

from __future__ import annotations

import os

from glance_convert.formats import base
from glance_convert.formats import ploop
from glance_convert.formats import qcow2
from glance_convert.formats import raw
from glance_convert.formats import vdi
from glance_convert.formats import vhd
from glance_convert.formats import vhdx
from glance_convert.formats import vmdk

Format = base.Format
Header = base.Header
Malformed = base.Malformed
Problem = base.Problem
FILE_LENGTH, HEADER, QEMU_INFO = base.FILE_LENGTH, base.HEADER, base.QEMU_INFO
DEFAULT_COROUTINES = base.DEFAULT_COROUTINES
DECOMPRESSING_COROUTINES = base.DECOMPRESSING_COROUTINES

#: The rows, by Glance name, in the order they are listed to people.
FORMATS: dict[str, Format] = {
    m.FORMAT.name: m.FORMAT
    for m in (raw, qcow2, vmdk, vdi, vhd, vhdx, ploop)}

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


def by_driver(driver: str) -> Format | None:
    """The row whose qemu-img driver is ``driver``, or None."""
    return next((f for f in FORMATS.values() if f.qemu_driver == driver),
                None)


def parse(path: str, disk_format: str) -> Header | None:
    """The header facts of ``path`` read as ``disk_format`` (Glance name);
    None for a format without a header or a file without its magic."""
    row = FORMATS.get(disk_format)
    if row is None or row.parse is None:
        return None
    with open(path, 'rb') as f:
        return row.parse(f, os.fstat(f.fileno()).st_size)


def has_magic(path: str, disk_format: str) -> bool:
    """True when the file carries the magic of ``disk_format``."""
    row = FORMATS.get(disk_format)
    if row is None:
        return False
    with open(path, 'rb') as f:
        return row.has_magic(f, os.fstat(f.fileno()).st_size)


def uninspected_format(path: str) -> str | None:
    """The format format_inspector has no inspector for (it reads such a
    file as raw) whose magic the file carries, or None."""
    return next((row.name for row in FORMATS.values()
                 if row.inspector is None and has_magic(path, row.name)),
                None)


def own_checks() -> tuple:
    """Every format's own checks, in the table's order."""
    return tuple(c for row in FORMATS.values() for c in row.checks)
