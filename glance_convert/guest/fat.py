"""The few directories of an EFI system partition that name its loaders.

Only ``/EFI`` and below are read, by following FAT cluster chains
without mounting.  Chains are bounded: a cluster seen twice ends the
chain (a loop), and a directory is read to at most
:data:`MAX_DIR_BYTES`.  Long file names are assembled where present;
names are compared without regard to case, as the firmware does.
"""

import dataclasses
import struct

from glance_convert.guest import filesystems
from glance_convert.guest import reader as guest_reader

#: Largest directory read (8192 entries of 32 bytes).
MAX_DIR_BYTES = 256 * 1024
#: Removable-media loaders the firmware falls back to, per architecture.
FALLBACK_LOADERS = ('BOOTX64.EFI', 'BOOTIA32.EFI', 'BOOTAA64.EFI')
_FAT_BLOCK = 4096
WINDOWS_LOADER = 'EFI/Microsoft/Boot/bootmgfw.efi'


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    cluster: int
    size: int


@dataclasses.dataclass(frozen=True)
class EspContents:
    #: Directories under /EFI, as named on the disk ("Microsoft",
    #: "BOOT", "debian", ...).
    vendors: tuple[str, ...] = ()
    #: Loader files found, as paths ("EFI/BOOT/BOOTX64.EFI").
    loaders: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def has(self, path: str) -> bool:
        return path.upper() in (p.upper() for p in self.loaders)


class FatVolume:
    """A FAT filesystem at ``start`` of a disk, read through ``reader``."""

    def __init__(self, reader: guest_reader.Reader, start: int,
                 geometry: filesystems.FatGeometry, *,
                 remember: bool = True):
        self.reader = reader
        self.start = start
        self.geo = geometry
        self.remember = remember     # the loop defence; tests turn it off
        self.notes: list[str] = []
        self._fat_cache: dict[int, bytes] = {}

    @classmethod
    def open(cls, reader, start: int) -> 'FatVolume | None':
        geometry = filesystems.fat_geometry(reader.read(start, 512))
        return None if geometry is None else cls(reader, start, geometry)

    def _fat_bytes(self, offset: int, length: int) -> bytes | None:
        """Bytes of the first FAT, read and kept 4 KiB at a time."""
        if offset + length > self.geo.fat_size:
            return None
        data = b''
        for block in range(offset // _FAT_BLOCK,
                           (offset + length - 1) // _FAT_BLOCK + 1):
            if block not in self._fat_cache:
                self._fat_cache[block] = self.reader.read(
                    self.start + self.geo.fat_start + block * _FAT_BLOCK,
                    _FAT_BLOCK)
            data += self._fat_cache[block]
        skip = offset % _FAT_BLOCK
        data = data[skip:skip + length]
        return data if len(data) == length else None

    def _next(self, cluster: int) -> int | None:
        geo = self.geo
        if geo.fat32:
            raw = self._fat_bytes(4 * cluster, 4)
            if raw is None:
                return None
            value = struct.unpack('<I', raw)[0] & 0x0FFFFFFF
            end = 0x0FFFFFF8
        elif geo.clusters < 4085:
            raw = self._fat_bytes(cluster * 3 // 2, 2)
            if raw is None:
                return None
            value = struct.unpack('<H', raw)[0]
            value = value >> 4 if cluster & 1 else value & 0xFFF
            end = 0xFF8
        else:
            raw = self._fat_bytes(2 * cluster, 2)
            if raw is None:
                return None
            value = struct.unpack('<H', raw)[0]
            end = 0xFFF8
        if value < 2 or value >= end or value >= self.geo.clusters + 2:
            return None
        return value

    def _chain_bytes(self, first: int, limit: int) -> bytes:
        data = bytearray()
        seen: set[int] = set()
        cluster = first
        while cluster is not None and 2 <= cluster < self.geo.clusters + 2:
            if self.remember and cluster in seen:
                self.notes.append('cluster chain loops')
                break
            if len(data) >= limit:
                self.notes.append('directory longer than %d bytes' % limit)
                break
            seen.add(cluster)
            offset = self.geo.data_start + (cluster - 2) * self.geo.cluster
            data += self.reader.read(self.start + offset, self.geo.cluster)
            cluster = self._next(cluster)
        return bytes(data)

    def root(self) -> list[Entry]:
        if self.geo.fat32:
            raw = self._chain_bytes(self.geo.root_cluster, MAX_DIR_BYTES)
        else:
            raw = self.reader.read(self.start + self.geo.root_start,
                                   min(self.geo.root_size, MAX_DIR_BYTES))
        return list(parse_directory(raw))

    def listdir(self, entry: Entry) -> list[Entry]:
        if not entry.is_dir or entry.cluster < 2:
            return []
        return list(parse_directory(self._chain_bytes(entry.cluster,
                                                      MAX_DIR_BYTES)))


def parse_directory(raw: bytes):
    """The entries of a FAT directory's bytes (long names where present)."""
    long_parts: dict[int, str] = {}
    for offset in range(0, len(raw) - 31, 32):
        entry = raw[offset:offset + 32]
        first = entry[0]
        if first == 0:
            return
        attr = entry[11]
        if first == 0xE5:
            long_parts.clear()
            continue
        if attr & 0x3F == 0x0F:
            sequence = first & 0x1F
            chars = entry[1:11] + entry[14:26] + entry[28:32]
            part = chars.decode('utf-16-le', 'replace')
            long_parts[sequence] = part.split('\0')[0]
            continue
        if attr & 0x08:      # volume label
            long_parts.clear()
            continue
        short = _short_name(entry)
        if long_parts:
            name = ''.join(long_parts[k] for k in sorted(long_parts))
            long_parts.clear()
        else:
            name = short
        if name in ('.', '..'):
            continue
        high, = struct.unpack_from('<H', entry, 20)
        low, size = struct.unpack_from('<HI', entry, 26)
        yield Entry(name, bool(attr & 0x10), (high << 16) | low, size)


def _short_name(entry: bytes) -> str:
    base = entry[:8].decode('latin-1').rstrip()
    ext = entry[8:11].decode('latin-1').rstrip()
    if entry[0] == 0x05:
        base = '\xe5' + base[1:]
    if entry[12] & 0x08:
        base = base.lower()
    if entry[12] & 0x10:
        ext = ext.lower()
    return base + ('.' + ext if ext else '')


def _find(entries, name):
    for entry in entries:
        if entry.name.upper() == name.upper():
            return entry
    return None


def esp_contents(reader: guest_reader.Reader, start: int) -> EspContents:
    """What /EFI of the FAT filesystem at ``start`` holds."""
    volume = FatVolume.open(reader, start)
    if volume is None:
        return EspContents(notes=('ESP without a FAT filesystem',))
    efi = _find(volume.root(), 'EFI')
    if efi is None or not efi.is_dir:
        return EspContents(notes=tuple(volume.notes) + ('no /EFI',))
    vendors = [e for e in volume.listdir(efi) if e.is_dir]
    loaders = []
    boot = _find(vendors, 'BOOT')
    if boot is not None:
        files = volume.listdir(boot)
        for loader in FALLBACK_LOADERS:
            found = _find(files, loader)
            if found is not None and not found.is_dir:
                loaders.append('EFI/%s/%s' % (boot.name, found.name))
    microsoft = _find(vendors, 'Microsoft')
    if microsoft is not None:
        mboot = _find(volume.listdir(microsoft), 'Boot')
        if mboot is not None:
            found = _find(volume.listdir(mboot), 'bootmgfw.efi')
            if found is not None and not found.is_dir:
                loaders.append('EFI/%s/%s/%s' % (microsoft.name, mboot.name,
                                                 found.name))
    return EspContents(tuple(v.name for v in vendors), tuple(loaders),
                       tuple(volume.notes))
