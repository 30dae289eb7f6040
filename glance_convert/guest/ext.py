"""Reading one small file from an ext2/3/4 filesystem without mounting.

Enough of the on-disk format to find ``/etc/os-release``: the superblock,
group descriptors (32- and 64-bit), inodes, extent trees and the old
block maps, directories and symbolic links.  Everything is bounded: the
bytes of a directory or a file, the depth and the count of extent nodes,
the symbolic links followed.  Anything unexpected ends the walk with
:class:`ExtError`, which the caller records as "not found".
"""

import struct

from glance_convert.guest import reader as guest_reader

ROOT_INODE = 2
MAX_DIR_BYTES = 256 * 1024
MAX_FILE_BYTES = 64 * 1024
MAX_SYMLINKS = 8
MAX_EXTENT_DEPTH = 5
MAX_EXTENT_NODES = 32
MAX_PATH_PARTS = 64

_INCOMPAT_META_BG = 0x10
_INCOMPAT_64BIT = 0x80
_INCOMPAT_INLINE_DATA = 0x8000
_FLAG_EXTENTS = 0x80000
_FLAG_INLINE = 0x10000000
_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_S_IFLNK = 0o120000


class ExtError(Exception):
    """The filesystem is not what it claims, or the walk hit a bound."""


class ExtVolume:
    def __init__(self, reader: guest_reader.Reader, start: int):
        self.reader = reader
        self.start = start
        sb = guest_reader.exact(reader, start + 1024, 1024)
        if sb is None or struct.unpack_from('<H', sb, 56)[0] != 0xEF53:
            raise ExtError('no ext superblock')
        (self.inodes_count, blocks_lo) = struct.unpack_from('<II', sb, 0)
        first_data_block, log_block = struct.unpack_from('<II', sb, 20)
        self.inodes_per_group, = struct.unpack_from('<I', sb, 40)
        rev, = struct.unpack_from('<I', sb, 76)
        self.incompat, = struct.unpack_from('<I', sb, 96)
        if log_block > 6:
            raise ExtError('block size 2^%d refused' % (10 + log_block))
        self.block = 1024 << log_block
        self.inode_size = struct.unpack_from('<H', sb, 88)[0] \
            if rev >= 1 else 128
        if self.incompat & _INCOMPAT_64BIT:
            self.desc_size = struct.unpack_from('<H', sb, 0xFE)[0] or 32
        else:
            self.desc_size = 32
        if self.incompat & _INCOMPAT_META_BG:
            raise ExtError('meta_bg group descriptors not read')
        if not (128 <= self.inode_size <= self.block) or \
                self.inodes_per_group == 0 or \
                self.desc_size < 32 or self.desc_size > 1024:
            raise ExtError('implausible ext superblock')
        self.gdt = (first_data_block + 1) * self.block
        self._dirs: dict[int, dict[str, int]] = {}

    # -- blocks and inodes -------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        data = guest_reader.exact(self.reader, self.start + offset, length)
        if data is None:
            raise ExtError('read past the end of the disk')
        return data

    def inode(self, number: int) -> bytes:
        if not 1 <= number <= self.inodes_count:
            raise ExtError('inode %d out of range' % number)
        group, index = divmod(number - 1, self.inodes_per_group)
        desc = self._read(self.gdt + group * self.desc_size,
                          self.desc_size)
        table, = struct.unpack_from('<I', desc, 8)
        if self.desc_size >= 64:
            table |= struct.unpack_from('<I', desc, 0x28)[0] << 32
        return self._read(table * self.block + index * self.inode_size,
                          min(self.inode_size, 256))

    def _blocks(self, inode: bytes, count: int):
        """(logical, physical, length) runs covering the first ``count``
        blocks of a file; physical 0 is a hole."""
        flags, = struct.unpack_from('<I', inode, 0x20)
        i_block = inode[0x28:0x28 + 60]
        if flags & _FLAG_EXTENTS:
            runs = []
            self._extents(i_block, MAX_EXTENT_DEPTH, runs, [0], count)
            return runs
        return self._block_map(i_block, count)

    def _extents(self, node: bytes, depth_left: int, runs, visited,
                 count: int) -> None:
        magic, entries, _max, depth = struct.unpack_from('<HHHH', node, 0)
        if magic != 0xF30A or not _depth_ok(depth, depth_left):
            raise ExtError('bad extent node')
        visited[0] += 1
        if visited[0] > MAX_EXTENT_NODES:
            raise ExtError('more than %d extent nodes' % MAX_EXTENT_NODES)
        entries = min(entries, (len(node) - 12) // 12)
        for i in range(entries):
            off = 12 + 12 * i
            if depth == 0:
                logical, length, hi, lo = struct.unpack_from('<IHHI', node,
                                                             off)
                if length > 32768:      # unwritten: reads as zeros
                    runs.append((logical, 0, length - 32768))
                else:
                    runs.append((logical, (hi << 32) | lo, length))
            else:
                logical, lo, hi = struct.unpack_from('<IIH', node, off)
                if logical >= count:
                    break
                child = self._read(((hi << 32) | lo) * self.block,
                                   self.block)
                self._extents(child, depth - 1, runs, visited, count)

    def _block_map(self, i_block: bytes, count: int):
        pointers = list(struct.unpack('<15I', i_block))
        per_block = self.block // 4
        runs = [(n, pointers[n], 1) for n in range(min(12, count))]
        logical = 12
        for level, top in ((1, pointers[12]), (2, pointers[13]),
                           (3, pointers[14])):
            if logical >= count:
                break
            logical = self._indirect(top, level, logical, count, runs,
                                     per_block)
        return runs

    def _indirect(self, block, level, logical, count, runs, per_block):
        span = per_block ** (level - 1)
        if block == 0:
            return logical + span * per_block
        table = struct.unpack('<%dI' % per_block,
                              self._read(block * self.block, self.block))
        for pointer in table:
            if logical >= count:
                break
            if level == 1:
                runs.append((logical, pointer, 1))
                logical += 1
            else:
                logical = self._indirect(pointer, level - 1, logical, count,
                                         runs, per_block)
        return logical

    def read_file(self, number: int, limit: int) -> bytes:
        """The first ``limit`` bytes (at most) of inode ``number``."""
        inode = self.inode(number)
        size = struct.unpack_from('<I', inode, 4)[0] | \
            (struct.unpack_from('<I', inode, 0x6C)[0] << 32)
        if size > limit:
            raise ExtError('file of %d bytes, more than %d read'
                           % (size, limit))
        flags, = struct.unpack_from('<I', inode, 0x20)
        if flags & _FLAG_INLINE:
            return (inode[0x28:0x28 + 60] + _inline_tail(inode))[:size]
        count = (size + self.block - 1) // self.block
        data = bytearray(count * self.block)
        for logical, physical, length in self._blocks(inode, count):
            if logical >= count or physical == 0:
                continue
            length = min(length, count - logical)
            chunk = self._read(physical * self.block, length * self.block)
            data[logical * self.block:(logical + length) * self.block] = \
                chunk
        return bytes(data[:size])

    # -- directories and paths ---------------------------------------------

    def mode(self, number: int) -> int:
        return struct.unpack_from('<H', self.inode(number), 0)[0] & _S_IFMT

    def directory(self, number: int) -> dict[str, int]:
        if number not in self._dirs:
            if self.mode(number) != _S_IFDIR:
                raise ExtError('inode %d is not a directory' % number)
            inode = self.inode(number)
            flags, = struct.unpack_from('<I', inode, 0x20)
            if flags & _FLAG_INLINE:
                # The parent's inode number, then entries; more entries
                # in the "system.data" attribute.
                tail = _inline_tail(inode)
                entries = list(parse_directory(inode[0x2C:0x28 + 60], 56))
                entries += parse_directory(tail, max(len(tail), 1))
            else:
                raw = self.read_file(number, MAX_DIR_BYTES)
                entries = list(parse_directory(raw, self.block))
            self._dirs[number] = dict(entries)
        return self._dirs[number]

    def symlink(self, number: int) -> str:
        inode = self.inode(number)
        size, = struct.unpack_from('<I', inode, 4)
        flags, = struct.unpack_from('<I', inode, 0x20)
        if size < 60 and not flags & (_FLAG_EXTENTS | _FLAG_INLINE):
            target = inode[0x28:0x28 + size]      # a fast symlink
        else:
            target = self.read_file(number, 4096)
        return target.decode('utf-8', 'replace')

    def lookup(self, path: str, *, max_links: int = MAX_SYMLINKS) -> int:
        """The inode of a regular file at ``path``, symlinks followed."""
        parts = [p for p in path.split('/') if p]
        directory = ROOT_INODE
        links = 0
        while parts:
            if len(parts) > MAX_PATH_PARTS:
                raise ExtError('path too long')
            name = parts.pop(0)
            if name == '.':
                continue
            number = self.directory(directory).get(name)
            if number is None:
                raise ExtError('%s not found' % name)
            kind = self.mode(number)
            if kind == _S_IFLNK:
                links += 1
                if links > max_links:
                    raise ExtError('more than %d symbolic links'
                                   % max_links)
                target = self.symlink(number)
                if target.startswith('/'):
                    directory = ROOT_INODE
                parts = [p for p in target.split('/') if p] + parts
                continue
            if parts:
                directory = number
            elif kind == _S_IFREG:
                return number
            else:
                raise ExtError('%s is not a regular file' % name)
        raise ExtError('%s names a directory' % path)


def _depth_ok(depth: int, depth_left: int) -> bool:
    """A node lies below its parent: a tree that points back up is cut."""
    return depth <= depth_left


def _inline_tail(inode: bytes) -> bytes:
    """The value of an inode's in-inode "system.data" attribute: where
    inline data longer than i_block continues."""
    if len(inode) <= 128 + 2:
        return b''
    extra, = struct.unpack_from('<H', inode, 128)
    base = 128 + extra
    if base + 4 > len(inode) or \
            struct.unpack_from('<I', inode, base)[0] != 0xEA020000:
        return b''
    first = base + 4
    offset = first
    while offset + 16 <= len(inode):
        name_len, index, value_offs, _inum, value_size = \
            struct.unpack_from('<BBHII', inode, offset)
        if name_len == 0 and index == 0:
            break
        name = inode[offset + 16:offset + 16 + name_len]
        if index == 7 and name == b'data':
            return inode[first + value_offs:first + value_offs + value_size]
        offset += (16 + name_len + 3) & ~3
    return b''


def parse_directory(raw: bytes, block: int):
    """(name, inode) of the entries of a linear ext directory."""
    offset = 0
    while offset + 8 <= len(raw):
        inode, rec_len, name_len, _ftype = struct.unpack_from('<IHBB', raw,
                                                              offset)
        if rec_len < 8 or rec_len % 4 or \
                offset % block + rec_len > block:
            # Corrupt: skip to the next block, as e2fsck would read on.
            offset = (offset // block + 1) * block
            continue
        if inode and name_len and 8 + name_len <= rec_len:
            name = raw[offset + 8:offset + 8 + name_len]
            yield name.decode('utf-8', 'replace'), inode
        offset += rec_len


OS_RELEASE_PATHS = ('/etc/os-release', '/usr/lib/os-release')


def os_release(reader: guest_reader.Reader, start: int) -> tuple[
        dict[str, str] | None, str]:
    """(the parsed os-release, where or why not) of the ext fs at start."""
    try:
        volume = ExtVolume(reader, start)
    except ExtError as exc:
        return None, str(exc)
    why = []
    for path in OS_RELEASE_PATHS:
        try:
            text = volume.read_file(volume.lookup(path), MAX_FILE_BYTES)
        except ExtError as exc:
            why.append('%s: %s' % (path, exc))
            continue
        return parse_os_release(text.decode('utf-8', 'replace')), path
    return None, '; '.join(why)


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's KEY=value lines (shell quoting, simplified)."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1].replace('\\"', '"').replace('\\\\', '\\')
        if key.isidentifier():
            found[key] = value[:256]
    return found
