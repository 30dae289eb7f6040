"""Deterministic benchmark images.

One seeded layout describes a sparse disk: scattered extents, half of the
bytes incompressible (PRNG output) and half compressible (PRNG output mapped
onto an 8-letter alphabet, about 2.4:1 with zlib), holes elsewhere.  The raw
image is written with ``pwrite`` into a file truncated to the virtual size;
the other formats are derived from it with ``qemu-img convert``.

Each extent's content is seeded by (seed, extent index) only, so the same
layout scaled to a bigger virtual size (offsets multiplied) holds the very
same data: that is the 2 GiB vs 64 GiB scaling check.

Images are cached in a directory named after every parameter that changes
their bytes, so a rerun reuses them.
"""

import json
import os
import random
import subprocess

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Bump when the generator changes the bytes it writes.
GENERATOR_VERSION = 1

ALIGN = 4 * KiB
MIN_EXTENT = 64 * KiB
MAX_EXTENT = 8 * MiB

_ALPHABET = b'etaoin s'
_COMPRESSIBLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))

#: Benchmark source variants: name -> (glance disk_format, qemu driver,
#: qemu-img create options, compressed).  'raw' is the generated file
#: itself.  The compressed qcow2 variants are what distributions publish
#: as cloud images (zlib; some zstd).
VARIANTS = {
    'raw': ('raw', 'raw', None, False),
    'qcow2': ('qcow2', 'qcow2', None, False),
    'qcow2-zlib': ('qcow2', 'qcow2', None, True),
    'qcow2-zstd': ('qcow2', 'qcow2', 'compression_type=zstd', True),
    'vmdk-stream': ('vmdk', 'vmdk', 'subformat=streamOptimized', False),
    'vmdk-sparse': ('vmdk', 'vmdk', 'subformat=monolithicSparse', False),
    'vdi': ('vdi', 'vdi', None, False),
    'vhd': ('vhd', 'vpc', 'subformat=dynamic,force_size=on', False),
    'vhdx': ('vhdx', 'vhdx', None, False),
}

#: The shape of a distribution cloud image: 3.5 GiB virtual, about
#: 1.8 GiB of it allocated.
CLOUD_SIZE = 3584 * MiB
CLOUD_ALLOCATED = 0.515


def layout(size, seed, allocated=0.4):
    """[(offset, length, compressible)] of a disk of ``size`` bytes.

    Extents have log-uniform lengths between 64 KiB and 8 MiB, 4 KiB
    aligned; the holes between them are random shares of the free space.
    """
    if size < 16 * MiB:
        raise ValueError('image size must be at least 16 MiB')
    rng = random.Random('layout-%d' % seed)
    want = int(size * allocated)
    lengths = []
    total = 0
    lo, hi = MIN_EXTENT.bit_length(), MAX_EXTENT.bit_length()
    while total < want:
        length = int(2 ** rng.uniform(lo - 1, hi - 1))
        length = max(ALIGN, min(length, want - total) // ALIGN * ALIGN)
        lengths.append(length)
        total += length
    free = size - total
    weights = [rng.random() for _ in range(len(lengths) + 1)]
    scale = sum(weights)
    extents = []
    offset = 0
    for i, length in enumerate(lengths):
        offset += int(free * weights[i] / scale) // ALIGN * ALIGN
        extents.append((offset, length, i % 2 == 1))
        offset += length
    assert offset <= size, 'layout overflows the disk'
    return extents


def extent_bytes(seed, index, length, compressible):
    data = random.Random('extent-%d-%d' % (seed, index)).randbytes(length)
    return data.translate(_COMPRESSIBLE) if compressible else data


def write_raw(path, size, seed, allocated=0.4, scale=1):
    """Write the sparse raw image; ``scale`` multiplies virtual size and
    offsets, keeping the data identical."""
    tmp = path + '.part'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size * scale)
        for i, (offset, length, comp) in enumerate(
                layout(size, seed, allocated)):
            data = extent_bytes(seed, i, length, comp)
            pos = offset * scale
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, pos)
                view = view[n:]
                pos += n
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def derive(raw, variant, path):
    _fmt, driver, opts, compressed = VARIANTS[variant]
    tmp = path + '.part'
    cmd = ['qemu-img', 'convert', '-f', 'raw', '-O', driver]
    if compressed:
        # Several requests in flight: qemu compresses in a thread pool.
        cmd += ['-c', '-m', '16']
    if opts:
        cmd += ['-o', opts]
    subprocess.run(cmd + [raw, tmp], check=True, stdout=subprocess.DEVNULL)
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.rename(tmp, path)


class ImageSet:
    """The cached images of one (size, seed, allocated, scale) tuple."""

    def __init__(self, work_dir, size, seed, allocated=0.4, scale=1):
        self.size, self.seed = size, seed
        self.allocated, self.scale = allocated, scale
        key = 'img-v%d-%d-s%d-a%g-x%d' % (GENERATOR_VERSION, size, seed,
                                          allocated, scale)
        self.dir = os.path.join(work_dir, key)

    def path(self, variant):
        return os.path.join(self.dir, 'disk.%s' % variant)

    def fmt(self, variant):
        return VARIANTS[variant][0]

    def raw_path(self, _variant=None):
        return self.path('raw')

    def ensure(self, variants, log=print):
        """Create what is missing; return {variant: path}."""
        os.makedirs(self.dir, exist_ok=True)
        raw = self.path('raw')
        if not os.path.exists(raw):
            log('generating %s (%d MiB virtual, seed %d)'
                % (raw, self.size * self.scale // MiB, self.seed))
            write_raw(raw, self.size, self.seed, self.allocated, self.scale)
        paths = {'raw': raw}
        for variant in variants:
            path = self.path(variant)
            if variant != 'raw' and not os.path.exists(path):
                log('deriving %s' % path)
                derive(raw, variant, path)
            paths[variant] = path
        self._write_manifest(paths)
        return paths

    def _write_manifest(self, paths):
        manifest = {
            'generator_version': GENERATOR_VERSION, 'size': self.size,
            'seed': self.seed, 'allocated': self.allocated,
            'scale': self.scale,
            'files': {v: {'apparent': os.stat(p).st_size,
                          'allocated': os.stat(p).st_blocks * 512}
                      for v, p in paths.items()},
        }
        with open(os.path.join(self.dir, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)

    def data_bytes(self, _variant=None):
        return sum(length for _o, length, _c in
                   layout(self.size, self.seed, self.allocated))


#: Sources named ``cloud-<variant>`` come from an image of the cloud
#: image shape (:data:`CLOUD_SIZE`, :data:`CLOUD_ALLOCATED`) rather than
#: of ``--size``.
CLOUD_PREFIX = 'cloud-'
CLOUD_SOURCES = ('cloud-zlib', 'cloud-zstd')


def source_names():
    """Every name a benchmark pair may use as its source."""
    return list(VARIANTS) + list(CLOUD_SOURCES)


class Catalog:
    """The image sets of one run: ``--size`` and the cloud image shape.

    Pair sources are names of :func:`source_names`; ``cloud-zlib`` is the
    ``qcow2-zlib`` variant of the cloud-shaped set, and so on.
    """

    def __init__(self, work_dir, size, seed):
        self.base = ImageSet(work_dir, size, seed)
        self.cloud = ImageSet(work_dir, CLOUD_SIZE, seed, CLOUD_ALLOCATED)

    def resolve(self, source):
        """(ImageSet, variant) of a pair's source name."""
        if source.startswith(CLOUD_PREFIX):
            return self.cloud, 'qcow2-' + source[len(CLOUD_PREFIX):]
        return self.base, source

    def path(self, source):
        imgs, variant = self.resolve(source)
        return imgs.path(variant)

    def raw_path(self, source):
        """The raw image holding the same data as ``source``."""
        return self.resolve(source)[0].path('raw')

    def fmt(self, source):
        imgs, variant = self.resolve(source)
        return imgs.fmt(variant)

    def data_bytes(self, source):
        return self.resolve(source)[0].data_bytes()

    def virtual_size(self, source):
        return self.resolve(source)[0].size

    def ensure(self, sources, log=print):
        wanted = {}
        for source in sources:
            imgs, variant = self.resolve(source)
            wanted.setdefault(imgs.dir, (imgs, set()))[1].add(variant)
        for imgs, variants in wanted.values():
            imgs.ensure(sorted(variants), log=log)
