"""What a guest's own disk says about how it boots: :class:`DiskFacts`.

Read from a :class:`~glance_convert.guest.reader.Reader` at a bounded
cost: the partition table, each partition's filesystem signature, the
ESP's ``/EFI`` directories and an ext root's ``os-release``.  Reading
never fails an import: a spent budget or a malformed structure leaves
``complete`` False and what was found so far.
"""

import dataclasses
import logging
import struct

from glance_convert.guest import ext
from glance_convert.guest import fat
from glance_convert.guest import filesystems
from glance_convert.guest import partitions
from glance_convert.guest import reader as guest_reader

LOG = logging.getLogger(__name__)

#: Most partitions whose filesystem is probed, and ext filesystems
#: searched for an os-release.
MAX_PROBED = 16
MAX_ROOTS = 4


@dataclasses.dataclass(frozen=True)
class PartitionFacts:
    partition: partitions.Partition
    filesystem: filesystems.Filesystem | None


@dataclasses.dataclass(frozen=True)
class DiskFacts:
    #: 'gpt', 'mbr' or None.
    scheme: str | None = None
    partitions: tuple[PartitionFacts, ...] = ()
    #: The filesystem on the whole disk when there is no partition table.
    whole_disk: filesystems.Filesystem | None = None
    #: The MBR holds boot code (its first 440 bytes are not all zero).
    mbr_boot_code: bool = False
    esp: fat.EspContents | None = None
    #: Number of the ESP partition read.
    esp_partition: int | None = None
    os_release: dict[str, str] | None = None
    #: Where os-release was read: "partition 2 (ext4) /etc/os-release".
    os_release_at: str = ''
    #: False when reading stopped early (budget spent, malformed data).
    complete: bool = True
    notes: tuple[str, ...] = ()
    bytes_read: int = 0
    reads: int = 0

    def kinds(self) -> set[str]:
        return {p.partition.kind for p in self.partitions}

    def filesystems(self) -> set[str]:
        found = {p.filesystem.kind for p in self.partitions if p.filesystem}
        if self.whole_disk:
            found.add(self.whole_disk.kind)
        return found


def read_disk(source: guest_reader.Reader, *,
              max_bytes: int = guest_reader.MAX_BYTES,
              max_reads: int = guest_reader.MAX_READS) -> DiskFacts:
    """The facts of the disk ``source``, read within the given budget."""
    reader = guest_reader.Budgeted(source, max_bytes, max_reads)
    found: dict = {'notes': []}
    try:
        _read(reader, found)
    except (guest_reader.ReadFailed, OSError) as exc:
        found['complete'] = False
        found['notes'].append(str(exc))
    except (struct.error, ValueError, IndexError) as exc:
        # A malformed structure none of the parsers expected.
        found['complete'] = False
        found['notes'].append('unreadable structure: %s' % exc)
    notes = tuple(found.pop('notes'))
    return DiskFacts(notes=notes, bytes_read=reader.bytes_read,
                     reads=reader.reads, **found)


def _read(reader, found) -> None:
    table = partitions.read_table(reader)
    found['scheme'] = table.scheme
    found['notes'].extend(table.notes)
    if table.scheme is None:
        found['whole_disk'] = filesystems.probe(reader, 0, reader.size)
        if found['whole_disk'] and \
                found['whole_disk'].kind in filesystems.EXT:
            _os_release(reader, found, 0, None, found['whole_disk'])
        return
    head = reader.read(0, 440)
    found['mbr_boot_code'] = any(head)
    probed = []
    for part in table.partitions[:MAX_PROBED]:
        fs = None
        if part.kind not in (partitions.EXTENDED, partitions.BIOS_BOOT,
                             partitions.MSR, partitions.LINUX_SWAP):
            fs = filesystems.probe(reader, part.start, part.size)
        probed.append(PartitionFacts(part, fs))
        found['partitions'] = tuple(probed)
    if len(table.partitions) > MAX_PROBED:
        found['notes'].append('only the first %d partitions probed'
                              % MAX_PROBED)
    for facts in probed:
        if facts.partition.kind == partitions.ESP or (
                table.scheme == 'mbr' and facts.filesystem
                and facts.filesystem.kind in filesystems.FAT
                and found.get('esp') is None):
            contents = fat.esp_contents(reader, facts.partition.start)
            if contents.loaders or contents.vendors or \
                    facts.partition.kind == partitions.ESP:
                found['esp'] = contents
                found['esp_partition'] = facts.partition.number
                found['notes'].extend(contents.notes)
                break
    roots = [f for f in probed
             if f.filesystem and f.filesystem.kind in filesystems.EXT]
    for facts in roots[:MAX_ROOTS]:
        if _os_release(reader, found, facts.partition.start,
                       facts.partition.number, facts.filesystem):
            break


def _os_release(reader, found, start, number, fs) -> bool:
    values, where = ext.os_release(reader, start)
    place = 'partition %d' % number if number else 'whole disk'
    if values is None:
        found['notes'].append('%s (%s): %s' % (place, fs.kind, where))
        return False
    found['os_release'] = values
    found['os_release_at'] = '%s (%s) %s' % (place, fs.kind, where)
    return True
