"""The describe phase: the properties the stored guest needs to boot.

Nova boots an image with BIOS, i440fx and virtio devices unless its
properties say otherwise, so a UEFI guest or a Windows guest from VMware
or Hyper-V that is converted byte for byte still does not boot.  This
phase reads the guest's disk, bounded (:mod:`glance_convert.guest`),
from the cheapest copy that holds it as plain bytes: the output when it
is raw, else the source when it is raw, else whichever has a format
whose own tables the plugin reads (qcow2, sparse VMDK, VDI, VHD, VHDX, ploop),
else the output through the confined ``qemu-img dd``.
It weighs what the appliance said (an OVF, a VMDK descriptor) and
returns the properties the user did not set.  It never fails an import:
an unreadable disk gives incomplete facts.
"""

from __future__ import annotations

import dataclasses
import os

from oslo_log import log as logging

from glance_convert import formats
from glance_convert.formats import vmdk
from glance_convert.guest import decide
from glance_convert.guest import disk as guest_disk
from glance_convert.guest import hints as guest_hints
from glance_convert.guest import reader as guest_reader
from glance_convert.host import layout
from glance_convert.pipeline import guest_view
from glance_convert.pipeline.config import Settings

LOG = logging.getLogger(__name__)

#: The property that says what was found and where.
RECORD = 'glance_convert_guest'


@dataclasses.dataclass(frozen=True)
class Guest:
    """What the describe phase found and would set."""

    #: Properties to set: the decision's, less those the user set.
    properties: dict[str, str]
    #: What the decision would set, the user's own included.
    decided: dict[str, str]
    record: str
    facts: guest_disk.DiskFacts | None
    #: Where the disk was read: 'output', 'source', 'output qcow2
    #: (tables)', 'source vmdk (tables and qemu-img)', 'qemu-img', or ''.
    read_from: str


@dataclasses.dataclass(frozen=True)
class Image:
    """One copy of the guest's disk: its path and Glance disk format."""

    path: str
    disk_format: str
    virtual_size: int = 0


def describe(output: Image, source: Image, *, settings: Settings,
             image_id: str, work_dir: str,
             appliance: guest_hints.Hints | None = None,
             user_properties: dict | None = None) -> Guest | None:
    """The guest's boot properties, or None when the option is off.

    ``output`` is what will be stored, ``source`` what was uploaded (or
    unpacked); both still exist.  ``appliance``: what the container's
    metadata said.
    """
    if not settings.guest_properties:
        return None
    facts, read_from = None, ''
    if settings.guest_from_disk:
        facts, read_from = _read(output, source, settings, image_id,
                                 work_dir)
    hints = guest_hints.combined(appliance, _descriptor_hints(source))
    decision = decide.decide(
        facts, hints, source_format=source.disk_format,
        from_disk=settings.guest_from_disk,
        from_appliance=settings.guest_from_appliance,
        windows_devices=settings.windows_devices)
    user = user_properties or {}
    chosen = {k: v for k, v in decision.properties.items() if k not in user}
    # The record explains what was read and decided; with nothing read
    # and nothing decided (an ISO, a blank disk) there is nothing to say.
    if decision.record and RECORD not in user and (
            facts is not None or decision.properties):
        chosen[RECORD] = decision.record
    return Guest(chosen, dict(decision.properties), decision.record, facts,
                 read_from)


def _read(output: Image, source: Image, settings: Settings, image_id: str,
          work_dir: str) -> tuple[guest_disk.DiskFacts | None, str]:
    copies = ((output, 'output'), (source, 'source'))
    for image, where in copies:
        if image.disk_format == 'raw' and os.path.isfile(image.path):
            with guest_reader.FileReader(image.path) as reader:
                return guest_disk.read_disk(reader), where
    if not formats.is_convertible(output.disk_format) or not \
            output.virtual_size:
        return None, ''     # an ISO, or a size nobody measured
    scratch = layout.work_file(work_dir, image_id, 'guest-read')

    def through_qemu_img():
        return guest_view.ImageReader(
            output.path, formats.qemu_driver(output.disk_format),
            output.virtual_size, settings.inspect_limits, work_dir,
            scratch=scratch)
    try:
        # Both copies are checked; one whose format has a reader of its
        # own tables is read through them, and qemu-img only reads what
        # they cannot give.
        tabled = next(((image, where) for image, where in copies
                       if formats.is_convertible(image.disk_format)
                       and formats.get(image.disk_format).guest_bytes
                       and os.path.isfile(image.path)), None)
        if tabled is None:
            return guest_disk.read_disk(through_qemu_img()), 'qemu-img'
        image, where = tabled
        with open(image.path, 'rb') as f:
            reader = guest_view.TablesReader(
                f, os.fstat(f.fileno()).st_size,
                formats.get(image.disk_format).guest_bytes, through_qemu_img)
            facts = guest_disk.read_disk(reader)
        return facts, '%s %s (%s)' % (where, image.disk_format,
                                      ' and '.join(reader.used) or 'tables')
    finally:
        layout.remove(scratch)


def _descriptor_hints(source: Image) -> guest_hints.Hints | None:
    """What a VMDK's descriptor says of its guest (its controller)."""
    if source.disk_format != 'vmdk':
        return None
    try:
        with open(source.path, 'rb') as f:
            return vmdk.hints(f, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        LOG.debug('Cannot read the VMDK descriptor of %s: %s', source.path,
                  exc)
        return None
