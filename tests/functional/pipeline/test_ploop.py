"""ploop (qemu: parallels): the parser against qemu-img, and why it checks.

Every pair with the other formats runs in test_pairs.py and the hostile
cases in test_hostile.py (tests/hostile_corpus.py builds them); here the
parser is held against what qemu-img 7.2 reads, and the hostile cases
against what qemu-img does with them alone.
"""

import json
import os
import subprocess

import pytest

from glance_convert import formats
from glance_convert.formats import ploop
from glance_convert.pipeline import conversion
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from tests import hostile_corpus
from tests import imagefactory
from tests.functional.pipeline import test_hostile

MiB = 1024 * 1024
LIMITS = qemu_img.Limits(timeout=60)

PLOOP_CASES = {c.name: c for c in test_hostile.CASES
               if c.claimed_format == 'ploop'}


def _qemu_img(*args):
    return subprocess.run(('qemu-img',) + args, capture_output=True,
                          text=True, timeout=60)


def _check(path):
    """qemu-img check's report of a ploop (its exit code included)."""
    proc = _qemu_img('check', '-f', 'parallels', '--output=json', path)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    report['exit-code'] = proc.returncode
    return report


def _data(size):
    """Guest data at the start, in the middle and in the last sector."""
    last = (size - 1) // 512 * 512
    return [(0, 4096, 0x11), (size // 2 // 512 * 512, 512, 0x22),
            (last, size - last, 0x33)]


@pytest.mark.parametrize('size,cluster', [
    (MiB, '1M'), (3000000, '64k'), (64 * MiB, '1M'), (40 * MiB, '256k')])
def test_the_parser_reads_what_qemu_img_reads(tmp_path, qemu_tools, size,
                                              cluster):
    raw = imagefactory.make_raw(tmp_path / 'guest.raw', size=size,
                                pattern_offsets=_data(size))
    path = str(tmp_path / 'guest.ploop')
    imagefactory.convert(raw, 'raw', path, 'ploop',
                         options={'cluster_size': cluster})
    header = formats.parse(path, 'ploop')
    info = qemu_img.info(path, 'parallels', LIMITS)
    assert header.virtual_size == info['virtual-size']
    assert header.size_claims_agree(), header.sizes
    assert header.corrupt is None and header.log is None
    with open(path, 'rb') as f:
        _cluster_sectors, entries = ploop.binary.unpack(
            '<II', f.read(64), 28)
        allocated = sum(1 for e in ploop.binary.uint32s(
            ploop.binary.read(f, 64, entries * 4)) if e)
    assert allocated == _check(path)['allocated-clusters']
    facts = inspection.inspect_bytes(path, 'ploop', inspection.Policy())
    assert facts.detected == 'ploop'
    assert facts.qemu_sizes == (info['virtual-size'],)


#: What qemu-img 7.2 alone does with each hostile ploop: whether it opens
#: it (``info``), and whether ``qemu-img check`` finds a corruption.
#: Where it opens the file and check finds nothing, only the parser
#: stands between the upload and the conversion.
QEMU_ALONE = {
    'ploop_cluster_beyond_eof': (True, True),
    'ploop_clusters_shared': (True, False),
    'ploop_cluster_in_header': (True, False),
    'ploop_size_beyond_bat': (True, False),
    'ploop_bat_smaller_than_size': (True, False),
    'ploop_old_header_size_high_bits': (True, False),
    'ploop_bat_beyond_eof': (True, True),
    'ploop_data_area_beyond_eof': (True, False),
    'ploop_extension_beyond_eof': (False, None),
    'ploop_in_use': (True, True),
    'ploop_zero_cluster_size': (False, None),
}


def test_every_hostile_ploop_is_listed():
    hostile = {n for n, c in PLOOP_CASES.items() if c.hostile
               and c.reason_substring != hostile_corpus.MISMATCH}
    assert hostile == set(QEMU_ALONE)


@pytest.mark.parametrize('name', sorted(QEMU_ALONE))
def test_what_qemu_img_does_with_a_hostile_ploop_alone(name, qemu_tools):
    case = PLOOP_CASES[name]
    opens, corrupt = QEMU_ALONE[name]
    info = _qemu_img('info', '-f', 'parallels', '--output=json', case.path)
    assert (info.returncode == 0) is opens, info.stderr
    if opens:
        report = _check(case.path)
        found = bool(report.get('corruptions')) or report['exit-code'] == 2
        assert found is corrupt, report


def test_a_size_that_lies_is_a_disk_of_zeros_without_the_check(
        tmp_path, qemu_tools):
    """The attack without the defence: qemu-img turns the 1 MiB disk whose
    header says 64 MiB into a 64 MiB one and finds nothing wrong."""
    case = PLOOP_CASES['ploop_size_beyond_bat']
    out = str(tmp_path / 'out.raw')
    proc = _qemu_img('convert', '-f', 'parallels', '-O', 'raw', case.path,
                     out)
    assert proc.returncode == 0, proc.stderr
    assert os.path.getsize(out) == 64 * MiB
    assert _check(case.path)['exit-code'] == 0
    # With the defence: refused from the bytes.
    with pytest.raises(Exception) as exc:
        inspection.inspect_bytes(case.path, 'ploop', inspection.Policy())
    assert 'disagree about its size' in str(exc.value)


def test_ploop_output_stays_within_its_bound(tmp_path, qemu_tools):
    """qemu's driver preallocates 128 MiB beyond the clusters it writes;
    the output limit allows for it, and the file is cut back after."""
    size = 48 * MiB
    raw = imagefactory.make_raw(tmp_path / 'guest.raw', size=size,
                                pattern_offsets=_data(size))
    work = tmp_path / 'work'
    work.mkdir()
    result = conversion.convert_image(
        str(raw), 'raw', image_id='img-ploop-bound', work_dir=str(work),
        settings=hostile_corpus.pipeline_settings('ploop'))
    assert result.converted and result.disk_format == 'ploop'
    written = os.path.getsize(result.path)
    assert written <= ploop.FORMAT.upper_bound(size, {})
    assert written < size + 2 * MiB       # no preallocation left behind
    assert imagefactory.compare(result.path, 'ploop', raw, 'raw')
    assert os.listdir(work) == [os.path.basename(result.path)]
