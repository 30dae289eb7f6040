"""Convert one image to raw with several qemu-img processes.

Some sources convert at the speed of one core (a streamOptimized VMDK is
decompressed in qemu-img's main thread; ``-m`` and ``-W`` do not help).
Raw output can be written in disjoint pieces, so N processes, each given
one range of the virtual disk through qemu's ``raw`` driver with
``offset`` and ``size`` (no backing file, the format named, the same
limits and watchdog), use N cores.  The ranges are balanced by allocated
data read without qemu (:func:`allocation_map`), and a failure of one
process kills the others and removes the output.  The figures are in the
performance documentation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

from glance_convert import formats
from glance_convert import units
from glance_convert.pipeline import qemu_img

ALIGN = units.MiB


def _opt(value: str) -> str:
    """Escape a value for qemu's key=value option syntax."""
    return str(value).replace(',', ',,')


def window(driver: str, path: str, offset: int, length: int) -> str:
    """--image-opts string of ``length`` bytes at ``offset`` of an image."""
    if driver == 'raw':
        file_opts = 'file.driver=file,file.filename=%s' % _opt(path)
    else:
        file_opts = ('file.driver=%s,file.file.driver=file,'
                     'file.file.filename=%s' % (_opt(driver), _opt(path)))
    return 'driver=raw,offset=%d,size=%d,%s' % (offset, length, file_opts)


def source_spec(driver: str, path: str, offset: int, length: int) -> str:
    """``json:`` name of ``length`` bytes at ``offset`` of a source image
    in format ``driver``, never opening a backing file."""
    image = {'driver': driver, 'file': {'driver': 'file', 'filename': path}}
    if driver != 'raw':
        image['backing'] = None
    return 'json:' + json.dumps({'driver': 'raw', 'offset': offset,
                                 'size': length, 'file': image})


def allocation_map(src: str, fmt: str = 'vmdk'
                   ) -> list[tuple[int, int]] | None:
    """Where the work of converting a sparse VMDK or a qcow2 lies:
    [(offset, bytes)], per grain table or piece of an L2 table.

    Read from the image's tables by its format's ``work_map``
    (:func:`glance_convert.formats.vmdk.vmdk_data_by_table`,
    :func:`~glance_convert.formats.qcow2.qcow2_work_map`), with
    memory and reads bounded by the virtual size, however fragmented the image:
    ``qemu-img map`` prints one JSON entry per run of data, which a
    deliberately fragmented upload turns into hundreds of MiB for Python
    to read.  None (split by length instead) if the tables are unusual.
    """
    row = formats.by_driver(fmt)
    reader = row.work_map if row else None
    if reader is None:
        return None
    try:
        with open(src, 'rb') as f:
            return reader(f, os.fstat(f.fileno()).st_size)
    except (OSError, formats.Malformed):
        return None


def split(virtual_size: int, workers: int,
          extents: list[tuple[int, int]] | None = None
          ) -> list[tuple[int, int]]:
    """Cut [0, virtual_size) into ``workers`` ranges with equal data.

    Boundaries are MiB aligned; with no map, ranges are of equal length.
    """
    workers = max(1, workers)
    total = sum(length for _o, length in extents or ())
    cuts = []
    if total:
        share = total / workers
        seen = 0
        want = share
        for offset, length in extents:
            while len(cuts) < workers - 1 and seen + length >= want:
                cuts.append(offset + int(want - seen))
                want += share
            seen += length
    else:
        cuts = [virtual_size * i // workers for i in range(1, workers)]
    bounds = [0]
    for cut in cuts:
        cut = cut // ALIGN * ALIGN
        if bounds[-1] < cut < virtual_size:
            bounds.append(cut)
    bounds.append(virtual_size)
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def convert_to_raw(src: str, fmt: str, dst: str, virtual_size: int, *,
                   workers: int = 2,
                   tuning: qemu_img.Tuning = qemu_img.Tuning(),
                   limits: qemu_img.Limits = qemu_img.Limits(),
                   should_cancel=None, on_start=None, on_progress=None,
                   progress_interval: float = 5.0
                   ) -> list[tuple[int, int]]:
    """Convert ``src`` (qemu driver ``fmt``) into a new raw file ``dst``.

    ``on_start`` gets each qemu-img's pid; ``on_progress`` the bytes all of
    them have read so far.  Returns the ranges used.  Raises
    :class:`qemu_img.QemuImgError` (or a subclass) if any process fails;
    ``dst`` is removed then.
    """
    extents = allocation_map(src, fmt) if workers > 1 else None
    ranges = split(virtual_size, workers, extents)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, virtual_size)
    finally:
        os.close(fd)
    # Every process writes inside a file that is already virtual_size long.
    limits = dataclasses.replace(
        limits, file_size=max(limits.file_size or 0, virtual_size + units.MiB))
    failed = threading.Event()
    errors: list[BaseException] = []
    read_by_pid: dict[int, int] = {}

    def tick(pid: int) -> None:
        read = qemu_img.bytes_read(pid)
        if read is not None:
            read_by_pid[pid] = read
            if on_progress is not None:
                on_progress(sum(read_by_pid.values()))

    def cancelled() -> bool:
        if failed.is_set():
            return True
        return bool(should_cancel and should_cancel())

    def work(offset: int, length: int) -> None:
        args = ['convert', '-n', '--target-is-zero']
        args += qemu_img.tuning_args(tuning)
        args += [source_spec(fmt, src, offset, length),
                 '--target-image-opts',
                 window('raw', dst, offset, length)]
        try:
            qemu_img.run(args, limits, should_cancel=cancelled,
                         on_start=on_start,
                         on_tick=tick if on_progress else None,
                         tick_interval=progress_interval,
                         reads=[src], writes=[dst])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=work, args=r, daemon=True,
                                name='qemu-img-part-%d' % i)
               for i, r in enumerate(ranges)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            # The first failure is the cause; the others were killed for it.
            first = next((e for e in errors
                          if not isinstance(e, qemu_img.QemuImgCancelled)),
                         errors[0])
            raise first
    except BaseException:
        failed.set()
        for t in threads:
            t.join()
        try:
            os.unlink(dst)
        except FileNotFoundError:
            pass
        raise
    return ranges
