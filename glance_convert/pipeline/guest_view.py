"""A guest disk in any format, read through the confined ``qemu-img``.

:class:`ImageReader` serves the guest parsers' reads
(:mod:`glance_convert.guest`) from aligned chunks that one
``qemu-img dd`` each copies out of the image; the chunks are kept, at
most :data:`MAX_CHUNKS` of them, so the many small reads of a partition
table or a directory cost one qemu-img run per chunk.  For a raw image
use :class:`glance_convert.guest.reader.FileReader`, and for a format
with a reader of its own tables (qcow2, sparse VMDK, VDI, VHD, VHDX, ploop)
:class:`TablesReader`: no qemu-img at all.
"""

from glance_convert.formats import base
from glance_convert.formats import binary
from glance_convert.guest import reader as guest_reader
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox

#: Bytes copied out per qemu-img run, and chunks kept.
CHUNK = 256 * 1024
MAX_CHUNKS = 32
#: qemu-img runs per disk: the test guests take 2 to 5; a hostile one
#: that scatters its structures stops here (each run is ~10-20 ms).
MAX_RUNS = 12


class ImageReader:
    """A :class:`~glance_convert.guest.reader.Reader` over an image file.

    ``size`` is the virtual size (from ``qemu-img info``, which the
    pipeline has already run).  ``max_runs`` bounds the qemu-img runs;
    past it :class:`TooManyRuns` is raised, which the guest reader's own
    budget normally prevents.  A failed qemu-img raises
    :class:`~glance_convert.guest.reader.ReadFailed`: the facts are then
    incomplete, and the import goes on.
    """

    def __init__(self, path: str, fmt: str, virtual_size: int,
                 limits: qemu_img.Limits, scratch_dir: str, *,
                 chunk: int = CHUNK, max_chunks: int = MAX_CHUNKS,
                 max_runs: int = MAX_RUNS, scratch: str | None = None):
        self.path = path
        self.fmt = fmt
        self.size = virtual_size
        self.limits = limits
        self.scratch_dir = scratch_dir
        self.scratch = scratch
        self.chunk = chunk
        self.max_chunks = max_chunks
        self.max_runs = max_runs
        self.runs = 0
        self._chunks = binary.Recent(max_chunks)

    def _get(self, index: int) -> bytes:
        return self._chunks.get(index, lambda: self._copy_out(index))

    def _copy_out(self, index: int) -> bytes:
        if self.runs >= self.max_runs:
            raise TooManyRuns('more than %d qemu-img reads of %s'
                              % (self.max_runs, self.path))
        self.runs += 1
        try:
            return qemu_img.read_range(self.path, self.fmt,
                                       index * self.chunk, self.chunk,
                                       self.limits, self.scratch_dir,
                                       scratch=self.scratch)
        except (qemu_img.QemuImgError, sandbox.ConfinementUnavailable,
                OSError) as exc:
            raise guest_reader.ReadFailed(
                'qemu-img could not read the guest disk: %s' % exc)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b''
        end = min(offset + length, self.size)
        out = bytearray()
        position = offset
        while position < end:
            index, skip = divmod(position, self.chunk)
            data = self._get(index)
            piece = data[skip:skip + end - position]
            if not piece:
                break
            out += piece
            position += len(piece)
        return bytes(out)


class TooManyRuns(guest_reader.ReadFailed):
    """More qemu-img runs than a guest's reading may cost."""


class TablesReader:
    """A checked image (the plugin's own output, or an upload) read
    through its own tables, where its format has a reader of them
    (:attr:`glance_convert.formats.base.Format.guest_bytes`): no
    qemu-img start for a few guest sectors.  From the
    first thing the tables cannot give, the reads go to ``fallback()``,
    an :class:`ImageReader`."""

    def __init__(self, f, file_size: int, guest_bytes, fallback):
        try:
            self._plain = guest_bytes(f, file_size)
        except base.NotPlain:
            self._plain = None
        self._fallback = fallback
        self._other = None
        self.size = (self._plain.size if self._plain is not None
                     else self._qemu_img().size)
        #: Where the bytes came from: 'tables', then 'qemu-img'.
        self.used = []

    def _qemu_img(self):
        if self._other is None:
            self._other = self._fallback()
        return self._other

    def read(self, offset: int, length: int) -> bytes:
        if self._plain is not None:
            try:
                data = self._plain.read(offset, length)
                if 'tables' not in self.used:
                    self.used.append('tables')
                return data
            except base.NotPlain:
                self._plain = None
        if 'qemu-img' not in self.used:
            self.used.append('qemu-img')
        return self._qemu_img().read(offset, length)
