"""The byte inspection reads headers and footers, never the whole image.

``inspection._detect_file_format`` skips the middle of a file once the
only thing the format inspectors still want is its tail (the footer of a
VMware-style streamOptimized VMDK).  These tests prove it decides exactly
as ``format_inspector.detect_file_format`` does, on the whole hostile
corpus and on footer VMDKs with each footer fault, and that it reads a few
KiB of a big footer VMDK instead of all of it.
"""

import os
import struct

import pytest
from oslo_utils.imageutils import format_inspector as fi

from glance_convert import errors
from glance_convert.pipeline import inspection
from tests import hostile_corpus

MiB = 1024 * 1024
GD_AT_END = 0xffffffffffffffff
MARKER_FOOTER, MARKER_EOS = 3, 0


def _marker(kind, val=0, size=0, pad=b''):
    return struct.pack('<QII', val, size, kind) + pad.ljust(496, b'\0')


def footer_vmdk(src, dst, *, fill=0, footer_gd=None, marker=MARKER_FOOTER,
                eos=MARKER_EOS, footer_version=None, footer_capacity=None):
    """A VMware-style streamOptimized VMDK made from a qemu-written one.

    The header says "grain directory at the end"; the real header follows
    a footer marker 1536 bytes before the end, then an end-of-stream
    marker, which is where qemu and format_inspector read it.  ``fill``
    bytes of sparse padding make the file big without using disk space.
    """
    with open(src, 'rb') as f:
        data = bytearray(f.read())
    real = bytearray(data[:512])
    struct.pack_into('<Q', data, 56, GD_AT_END)
    if footer_gd is not None:
        struct.pack_into('<Q', real, 56, footer_gd)
    if footer_version is not None:
        struct.pack_into('<I', real, 4, footer_version)
    if footer_capacity is not None:
        struct.pack_into('<Q', real, 12, footer_capacity)
    end = -(-len(data) // 512) * 512 + fill
    with open(dst, 'wb') as f:
        f.write(data)
        f.truncate(end)
        f.seek(end)
        f.write(_marker(marker) + bytes(real) + _marker(eos))
    return dst


class CountingOpen:
    """Counts the bytes read through files that inspection opens."""

    def __init__(self, monkeypatch):
        self.read = 0
        real_open = open

        counter = self

        class Counted:
            def __init__(self, f):
                self._f = f

            def read(self, n=-1):
                data = self._f.read(n)
                counter.read += len(data)
                return data

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

        def fake_open(path, mode='r', *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            return Counted(f) if 'b' in mode else f

        monkeypatch.setattr(inspection, 'open', fake_open, raising=False)


@pytest.fixture(scope='module')
def stream_vmdk(tmp_path_factory, qemu_tools):
    d = tmp_path_factory.mktemp('tail')
    raw = d / 'disk.raw'
    with open(raw, 'wb') as f:
        f.truncate(8 * MiB)
        for i in range(0, 8 * MiB, MiB):
            f.seek(i)
            f.write(os.urandom(4096))
    path = str(d / 'qemu-stream.vmdk')
    hostile_corpus._run('qemu-img', 'convert', '-f', 'raw', '-O', 'vmdk',
                        '-o', 'subformat=streamOptimized', str(raw), path)
    return path


def _verdict(detect, path):
    """(format name, failed safety checks) or ('error', message)."""
    try:
        inspector = detect(path)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return ('error', type(exc).__name__)
    if inspector is None:
        return (None, None)
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        return (str(inspector), tuple(sorted(exc.failures)))
    except Exception as exc:  # noqa: BLE001
        return (str(inspector), type(exc).__name__)
    try:
        size = inspector.virtual_size
    except Exception as exc:  # noqa: BLE001 - the inspector's own bugs
        size = type(exc).__name__
    return (str(inspector), (), size)


FOOTER_FAULTS = {
    'good': {},
    'footer_points_to_another_footer': {'footer_gd': GD_AT_END},
    'bad_footer_marker': {'marker': 7},
    'bad_eos_marker': {'eos': 9},
    'footer_version_differs': {'footer_version': 2},
    'footer_capacity_differs': {'footer_capacity': 4},
}


@pytest.mark.parametrize('fault', sorted(FOOTER_FAULTS))
def test_footer_vmdk_verdict_is_format_inspectors(fault, stream_vmdk,
                                                  tmp_path):
    path = footer_vmdk(stream_vmdk, str(tmp_path / 'f.vmdk'),
                       fill=3 * MiB, **FOOTER_FAULTS[fault])
    ours = _verdict(inspection._detect_file_format, path)
    theirs = _verdict(fi.detect_file_format, path)
    assert ours == theirs
    assert ours[0] == 'vmdk'
    if fault in ('bad_footer_marker', 'bad_eos_marker',
                 'footer_points_to_another_footer'):
        assert ours[1] == ('footer',)


def test_footer_faults_are_still_refused(stream_vmdk, tmp_path):
    path = footer_vmdk(stream_vmdk, str(tmp_path / 'f.vmdk'), marker=7)
    with pytest.raises(errors.ImageRejected) as exc_info:
        inspection.inspect_bytes(path, 'vmdk', inspection.Policy())
    assert 'corrupt' in str(exc_info.value)


def test_big_footer_vmdk_is_inspected_from_head_and_tail(
        stream_vmdk, tmp_path, monkeypatch):
    path = footer_vmdk(stream_vmdk, str(tmp_path / 'big.vmdk'),
                       fill=512 * MiB)
    counter = CountingOpen(monkeypatch)
    facts = inspection.inspect_bytes(path, 'vmdk', inspection.Policy())
    assert facts.detected == 'vmdk'
    assert facts.virtual_size == 8 * MiB
    assert os.path.getsize(path) > 512 * MiB
    # Headers, descriptor and footer: far less than the file.
    assert 0 < counter.read < 2 * MiB, counter.read


def test_qemu_written_stream_vmdk_is_not_read_whole(stream_vmdk, tmp_path,
                                                    monkeypatch):
    counter = CountingOpen(monkeypatch)
    inspection.inspect_bytes(stream_vmdk, 'vmdk', inspection.Policy())
    assert 0 < counter.read < 2 * MiB


@pytest.fixture(scope='module')
def corpus(tmp_path_factory, qemu_tools):
    d = tmp_path_factory.mktemp('corpus')
    return hostile_corpus.build_corpus(str(d))


def test_every_corpus_case_gets_format_inspectors_verdict(corpus):
    assert len(corpus) > 20
    for case in corpus:
        assert (_verdict(inspection._detect_file_format, case.path)
                == _verdict(fi.detect_file_format, case.path)), case.name
