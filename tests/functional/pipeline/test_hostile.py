"""The hostile-image corpus through the real pipeline and real qemu-img.

Every hostile case must be refused with its reason and leave nothing in the
work directory; every benign case must convert and compare equal to its
source.  Cases that name a host file carry a canary: its bytes must appear
in no output, and (with strace) no process of the pipeline may open it.
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from glance_convert.pipeline import check_table
from glance_convert.pipeline import checks
from glance_convert.pipeline import conversion
from glance_convert import errors
from glance_convert import formats
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img
from tests import hostile_corpus
from tests import imagefactory

MiB = 1024 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

# Hostile cases whose fault only qemu-img check (or the output check)
# can see; every other refusal must happen before qemu-img runs at all.
NEEDS_QEMU = {'qcow2_truncated', 'qcow2_clusters_shared',
              'qcow2_hiding_qcow2_with_backing_file', 'qcow2_hiding_ploop'}


def _build_corpus():
    if not shutil.which('qemu-img') or not shutil.which('qemu-io'):
        return None, []
    directory = tempfile.mkdtemp(prefix='gc-hostile-corpus-')
    atexit.register(shutil.rmtree, directory, True)
    return directory, hostile_corpus.build_corpus(directory)


CORPUS_DIR, CASES = _build_corpus()
HOSTILE = [c for c in CASES if c.hostile]
BENIGN = [c for c in CASES if not c.hostile]
CANARIED = [c for c in CASES if c.canary_path]


settings = hostile_corpus.pipeline_settings


def _files(directory):
    return sorted(os.path.join(root, name)
                  for root, _dirs, names in os.walk(directory)
                  for name in names)


def _assert_no_canary_bytes(paths):
    canaries = [hostile_corpus.canary_bytes(c.canary_path)
                for c in CANARIED]
    for path in paths:
        with open(path, 'rb') as f:
            data = f.read()
        for canary in canaries:
            assert canary not in data, '%s holds canary bytes' % path


@pytest.fixture
def work_dir(tmp_path, qemu_tools):
    d = tmp_path / 'work'
    d.mkdir()
    return str(d)


@pytest.fixture
def qemu_calls():
    """Record every qemu-img command line the pipeline runs."""
    calls = []

    def recording(runner):
        def run(args, limits, **options):
            calls.append(list(args))
            return runner(args, limits, **options)
        return run

    with qemu_img.using(recording):
        yield calls


def test_corpus_is_big_enough(qemu_tools):
    assert len(HOSTILE) >= 20
    assert len(BENIGN) >= 10
    assert len({c.name for c in CASES}) == len(CASES)
    for case in HOSTILE:
        assert case.reason_substring, case
    for case in CASES:
        assert os.path.isfile(case.path), case
    # Every host-file canary exists and is unique.
    assert len({hostile_corpus.canary_bytes(c.canary_path)
                for c in CANARIED}) == len(CANARIED) >= 10


@pytest.mark.parametrize('case', HOSTILE, ids=str)
def test_hostile_image_is_refused(case, work_dir, qemu_calls):
    before = imagefactory.sha256_of(case.path)
    target = 'qcow2' if case.claimed_format == 'raw' else 'raw'
    with pytest.raises(errors.ImageRejected) as exc_info:
        conversion.convert_image(
            case.path, case.claimed_format, image_id='img-%s' % case.name,
            work_dir=work_dir, settings=settings(target, **case.policy))
    exc = exc_info.value
    assert case.reason_substring in exc.reason, (exc.reason, exc.detail)
    # Every refusal is a sentence of the checks table, and one from the
    # bytes unless only qemu-img or the output can see the fault.
    check = check_table.matching(exc.reason)
    assert check is not None, exc.reason
    if case.name not in NEEDS_QEMU:
        assert checks.BYTES in check.stages, (check.name, exc.reason)
    # One sentence for the end user, without host paths.
    assert str(exc) == 'Image rejected: %s' % exc.reason
    assert '/' not in exc.reason and '\n' not in exc.reason
    assert exc.detail
    # Nothing left behind, the upload untouched.
    assert _files(work_dir) == []
    assert imagefactory.sha256_of(case.path) == before
    if case.name not in NEEDS_QEMU:
        assert qemu_calls == [], 'qemu-img ran before the refusal'
    for args in qemu_calls:
        assert _forced_format(args) == formats.qemu_driver(
            case.claimed_format), args


def _forced_format(args):
    """The format a qemu-img call forces: ``-f FMT`` or a json: spec."""
    if '-f' in args:
        return args[args.index('-f') + 1]
    spec = json.loads(args[-1][len('json:'):])
    assert 'backing' in spec and spec['backing'] is None, spec
    return spec['driver']


def _targets(case):
    if case.claimed_format == 'iso':
        return ['raw']
    other = 'vmdk' if case.claimed_format == 'qcow2' else 'qcow2'
    targets = ['raw', other]
    if case.claimed_format == 'raw':
        targets.append('vhd')
    return targets


BENIGN_RUNS = [(c, t) for c in BENIGN for t in _targets(c)]


@pytest.mark.parametrize('case,target', BENIGN_RUNS,
                         ids=['%s-to-%s' % (c, t) for c, t in BENIGN_RUNS])
def test_benign_image_converts_and_compares_equal(case, target, work_dir):
    before = imagefactory.sha256_of(case.path)
    result = conversion.convert_image(
        case.path, case.claimed_format, image_id='img-%s' % case.name,
        work_dir=work_dir, settings=settings(target, **case.policy))
    assert imagefactory.sha256_of(case.path) == before
    if not formats.is_convertible(case.claimed_format):
        # ISO and other formats Glance does not convert pass through.
        assert not result.converted and result.path == case.path
        assert _files(work_dir) == []
        return
    if case.claimed_format == target:
        assert _files(work_dir) in ([], [result.path])
        return
    assert result.converted and result.disk_format == target
    assert _files(work_dir) == [result.path]
    assert qemu_img.compare(case.path,
                            formats.qemu_driver(case.claimed_format),
                            result.path, formats.qemu_driver(target))
    # The output passes the same byte-level policy as an upload would.
    facts = inspection.inspect_bytes(result.path, target,
                                     inspection.Policy())
    assert facts.detected == target
    _assert_no_canary_bytes([result.path])


def test_expansion_is_bounded_by_the_file_size_limit(tmp_path, qemu_tools):
    """A conversion that would write more than allowed is killed."""
    bomb = next(c for c in HOSTILE
                if c.name == 'qcow2_compressed_expansion_bomb')
    assert os.path.getsize(bomb.path) < 2 * MiB  # small upload ...
    out = str(tmp_path / 'out.raw')
    with pytest.raises(qemu_img.QemuImgLimitExceeded):
        qemu_img.convert(bomb.path, 'qcow2', out, 'raw',
                         limits=qemu_img.Limits(file_size=4 * MiB,
                                                timeout=60))
    assert os.path.getsize(out) <= 4 * MiB  # ... whose output was cut off


def _strace_works():
    if not shutil.which('strace'):
        return False
    try:
        subprocess.run(['strace', '-f', '-o', os.devnull, 'true'],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


RUNNER = r'''
import json, os, shutil, sys
from glance_convert.pipeline import conversion
from glance_convert import errors
from glance_convert.pipeline import qemu_img
from tests.hostile_corpus import pipeline_settings as settings
control, work_dir, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
# Control: qemu-img info on a VMDK descriptor opens the extent it names;
# the trace must show that, or the trace proves nothing.  (Confined, the
# open is refused and qemu-img fails, but the trace still shows it.)
try:
    qemu_img.info(control, 'vmdk', qemu_img.Limits(timeout=60))
except qemu_img.QemuImgError:
    pass
for path, claimed, policy in cases:
    target = 'qcow2' if claimed == 'raw' else 'raw'
    try:
        result = conversion.convert_image(path, claimed, image_id='x',
                                          work_dir=work_dir,
                                          settings=settings(target, **policy))
    except errors.ImageRejected as exc:
        print('REJECTED', path, exc.reason)
    except Exception as exc:
        print('FAILED', path, repr(exc))
    else:
        print('ACCEPTED', path)
        if result.converted:
            os.unlink(result.path)
'''


def _opened_paths(trace, directory):
    """Paths under ``directory`` that any traced process opened."""
    opened = set()
    for line in trace.splitlines():
        if 'open' not in line.split('(', 1)[0]:
            continue
        for part in line.split('"')[1::2]:
            if part.startswith(directory):
                opened.add(part)
    return opened


@pytest.mark.skipif(not _strace_works(), reason='strace missing or ptrace '
                    'not permitted')
def test_no_process_opens_a_host_file(tmp_path, qemu_tools):
    """strace the whole pipeline over the whole corpus.

    Nothing may open a file of the corpus directory except the uploads
    themselves: no canary, no neighbour, during checks or conversion.
    """
    control_canary = str(tmp_path / 'control-extent.bin')
    with open(control_canary, 'wb') as f:
        f.write(b'\0' * 4096)
    control = str(tmp_path / 'control.vmdk')
    with open(control, 'w') as f:
        f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\n'
                'parentCID=ffffffff\ncreateType="monolithicFlat"\n'
                'RW 8 FLAT "%s" 0\n' % control_canary)
    work = tmp_path / 'work'
    work.mkdir()
    log = str(tmp_path / 'strace.log')
    specs = json.dumps([(c.path, c.claimed_format, c.policy) for c in CASES])
    proc = subprocess.run(
        ['strace', '-f', '-qq', '-s', '4096', '-e',
         'trace=open,openat,openat2,creat,execve', '-o', log,
         sys.executable, '-c', RUNNER, control, str(work), specs],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(log) as f:
        trace = f.read()
    assert 'qemu-img' in trace           # the trace saw qemu-img run
    # The control shows the trace would see a host file being opened.
    assert _opened_paths(trace, str(tmp_path)) >= {control, control_canary}
    opened = _opened_paths(trace, CORPUS_DIR)
    assert {c.path for c in BENIGN} <= opened  # the uploads were read
    assert opened <= {c.path for c in CASES}, sorted(
        opened - {c.path for c in CASES})
    for case in CANARIED:
        assert case.canary_path not in trace, case.name
    assert proc.stdout.count('REJECTED') == len(HOSTILE), proc.stdout
    assert proc.stdout.count('ACCEPTED') == len(BENIGN), proc.stdout
    assert _files(str(work)) == []


# Uploads already in the output format are not converted, but they reach the
# store (and Nova) unchanged: they need the same checks.
PASSTHROUGH = [c for c in HOSTILE
               if c.reason_substring != hostile_corpus.HIDDEN]


@pytest.mark.parametrize('case', PASSTHROUGH, ids=str)
def test_hostile_image_is_refused_when_no_conversion_is_needed(
        case, work_dir):
    with pytest.raises(errors.ImageRejected) as exc_info:
        conversion.convert_image(
            case.path, case.claimed_format, image_id='img-%s' % case.name,
            work_dir=work_dir,
            settings=settings(case.claimed_format, **case.policy))
    assert case.reason_substring in exc_info.value.reason
    assert _files(work_dir) == []


# --- VHDX: what qemu-img alone does with the hostile cases -----------------

#: Hostile VHDX cases qemu-img 7.2 opens by itself: without our checks
#: they reach the conversion.  qemu refuses the others on its own, so for
#: them our check is a second line (and a sentence the user can read).
QEMU_OPENS_VHDX = {'vhdx_region_beyond_eof', 'vhdx_region_tables_differ'}
HOSTILE_VHDX = [c for c in HOSTILE if c.claimed_format == 'vhdx']


@pytest.mark.parametrize('case', HOSTILE_VHDX, ids=str)
def test_which_hostile_vhdx_qemu_img_opens_by_itself(case):
    try:
        qemu_img.info(case.path, 'vhdx', qemu_img.Limits(timeout=60))
        opened = True
    except qemu_img.QemuImgError:
        opened = False
    assert opened is (case.name in QEMU_OPENS_VHDX)


def _case(name):
    return next(c for c in CASES if c.name == name)


def _guest(path, fmt, out):
    qemu_img.convert(path, fmt, out, 'raw',
                     limits=qemu_img.Limits(timeout=60))
    with open(out, 'rb') as f:
        return f.read()


def test_vhdx_bat_beyond_eof_converts_to_zeros_without_the_check(
        tmp_path, qemu_tools):
    """qemu reads the missing BAT as zeros: the data blocks are still in
    the file, yet the converted disk is empty, silently."""
    case = _case('vhdx_region_beyond_eof')
    benign = _guest(_case('vhdx_dynamic').path, 'vhdx',
                    str(tmp_path / 'benign.raw'))
    assert benign.strip(b'\0')
    hostile = _guest(case.path, 'vhdx', str(tmp_path / 'hostile.raw'))
    assert len(hostile) == len(benign) and not hostile.strip(b'\0')


def test_vhdx_log_replay_changes_the_disk(tmp_path, qemu_tools):
    """The crafted log is one qemu replays (qemu-img check -r all, or any
    read-write open): the disk after replay is not the disk before, so
    which one a reader gets depends on the reader."""
    case = _case('vhdx_log_needs_replay')
    replayed = str(tmp_path / 'replayed.vhdx')
    shutil.copyfile(case.path, replayed)
    subprocess.run(['qemu-img', 'check', '-q', '-r', 'all', '-f', 'vhdx',
                    replayed], capture_output=True, timeout=60)
    after = _guest(replayed, 'vhdx', str(tmp_path / 'after.raw'))
    before = _guest(_case('vhdx_dynamic').path, 'vhdx',
                    str(tmp_path / 'before.raw'))
    # The log zeroes the first 64 KiB of the first data block.
    assert before[:64 * 1024].strip(b'\0')
    assert not after[:64 * 1024].strip(b'\0')
    assert after[64 * 1024:] == before[64 * 1024:]
