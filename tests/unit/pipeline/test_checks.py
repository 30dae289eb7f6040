"""The table of safety checks: complete, and the only source of refusals."""

import os
import re

import pytest

from glance_convert import errors
from glance_convert import formats
from glance_convert.formats import qcow2
from glance_convert.formats import vmdk
from glance_convert.pipeline import check_table
from glance_convert.pipeline import checks
from glance_convert.pipeline import conversion
from glance_convert.pipeline import inspection
from glance_convert.pipeline.containers import ova
from glance_convert.pipeline import qemu_img
from glance_convert.pipeline.containers import compressed
from tests.unit.pipeline import test_inspection as cases

MiB = 1024 * 1024


@pytest.mark.parametrize('check', check_table.CHECKS, ids=lambda c: c.name)
def test_every_check_is_described(check):
    assert re.fullmatch(r'[a-z][a-z0-9_]*', check.name)
    assert check_table.by_name(check.name) is check
    for text in (check.sentence, check.description, check.passed):
        assert text.strip() and not text.endswith('.'), check.name
    assert check.stages and set(check.stages) <= set(checks.STAGES)
    assert check.stage == ', '.join(check.stages)
    assert check.formats is None or set(check.formats) <= set(
        formats.CONVERTIBLE)
    # The sentence is filled in without a KeyError for its placeholders.
    fields = dict.fromkeys(re.findall(r'\{(\w+)\}', check.sentence), 'x')
    assert check.matches(check.say(**fields))


def test_names_are_unique_and_unknown_names_fail():
    names = {c.name for c in check_table.CHECKS}
    assert len(names) == len(check_table.CHECKS)
    with pytest.raises(KeyError):
        check_table.by_name('no_such_check')


def test_advisories_are_where_the_advisories_say():
    assert 'CVE-2024-32498' in checks.BACKING.advisory
    assert 'CVE-2024-32498' in qcow2.DATA_FILE.advisory
    assert 'CVE-2022-47951' in vmdk.CREATE_TYPE.advisory
    assert 'CVE-2022-47951' in vmdk.EXTENTS.advisory
    assert 'CVE-2015-5162' in checks.QEMU_INFO.advisory


def test_a_filled_in_sentence_matches_its_check_only():
    reason = checks.BACKING.say(format='qcow2')
    assert reason == 'qcow2 images with a backing file are not allowed'
    assert check_table.matching(reason) is checks.BACKING
    assert check_table.matching('something else entirely') is None
    assert not checks.EMPTY.matches(checks.EMPTY.sentence + ' and more')


@pytest.mark.parametrize('failure,check', [
    ('backing_file', checks.BACKING), ('data_file', qcow2.DATA_FILE),
    ('unknown_features', qcow2.FEATURES), ('descriptor', vmdk.EXTENTS),
    ('footer', checks.CORRUPT), ('mbr', checks.PARTITIONS),
    ('gptmbr', checks.PARTITIONS), ('something_new', checks.UNSAFE),
])
def test_inspector_failures_map_to_checks(failure, check):
    assert checks.for_inspector_failure(failure) is check


def test_qemu_img_check_runs_where_qemu_has_one():
    assert set(checks.QEMU_CHECK.formats) == {
        f.name for f in formats.FORMATS.values() if f.checkable}
    assert check_table.stages_run('qcow2') == (checks.BYTES, checks.INFO,
                                               checks.CHECK)
    assert check_table.stages_run('vhd') == (checks.BYTES, checks.INFO)
    assert check_table.stages_run('iso') == (checks.BYTES,)


def test_passed_reasons_are_the_checks_that_ran():
    as_vmdk = check_table.passed_reasons('vmdk', 64 * MiB)
    raw = check_table.passed_reasons('raw', 64 * MiB)
    iso = check_table.passed_reasons('iso', 64 * MiB)
    assert vmdk.CREATE_TYPE.passed in as_vmdk
    assert vmdk.CREATE_TYPE.passed not in raw
    assert checks.QEMU_CHECK.passed in as_vmdk
    assert checks.QEMU_CHECK.passed not in raw
    assert 'the data is a vmdk image, as claimed' in as_vmdk
    assert 'the virtual size is within the limit of 64 MiB' in iso
    assert not [r for r in iso if 'qemu-img' in r]
    # Nothing from after the checks: inspect neither converts nor outputs.
    for claimed in formats.CONVERTIBLE:
        reasons = check_table.passed_reasons(claimed, MiB)
        assert checks.OUTPUT_LIMIT.passed not in reasons
        assert checks.HIDDEN.passed not in reasons


# Every refusal the pure checks can raise, with the check it must name.
REFUSALS = [
    (inspection.check_info, (cases.qcow2_info(**{'backing-filename': 'x'}),
                             'qcow2', cases.facts(), cases.POLICY),
     checks.BACKING),
    (inspection.check_info, (cases.qcow2_info(data={'data-file': '/x'}),
                             'qcow2', cases.facts(), cases.POLICY),
     qcow2.DATA_FILE),
    (inspection.check_info, (cases.qcow2_info(encrypted=True), 'qcow2',
                             cases.facts(), cases.POLICY), checks.ENCRYPTED),
    (inspection.check_info, (cases.qcow2_info(data={'corrupt': True}),
                             'qcow2', cases.facts(), cases.POLICY),
     checks.CORRUPT),
    (inspection.check_info, (cases.qcow2_info(format='raw'), 'qcow2',
                             cases.facts(), cases.POLICY), checks.MISMATCH),
    (inspection.check_info, (cases.qcow2_info(**{'virtual-size': 2 * MiB}),
                             'qcow2', cases.facts(), cases.POLICY),
     checks.DISAGREE),
    (inspection.check_info, (cases.vmdk_info('monolithicFlat'), 'vmdk',
                             cases.facts('vmdk'), cases.POLICY),
     vmdk.CREATE_TYPE),
    (inspection.check_info, (cases.vmdk_info(extents=[{'filename': '/x'}]),
                             'vmdk', cases.facts('vmdk'), cases.POLICY),
     vmdk.EXTENTS),
    (inspection.check_header, (cases.header(parent='p', format='vhd'),
                               'vhd', cases.POLICY), checks.DIFFERENCING),
    (inspection.check_header, (cases.header(unknown_features=1 << 9),
                               'qcow2', cases.POLICY), qcow2.FEATURES),
    (inspection.check_virtual_size, (2 * MiB,
                                     inspection.Policy(max_virtual_size=MiB)),
     checks.TOO_BIG),
    (inspection.check_consistency, ({'exit-code': 2},), checks.QEMU_CHECK),
]


@pytest.mark.parametrize('func,args,check', REFUSALS,
                         ids=[c.name for _f, _a, c in REFUSALS])
def test_every_refusal_is_a_table_sentence(func, args, check):
    with pytest.raises(errors.ImageRejected) as exc_info:
        func(*args)
    reason = exc_info.value.reason
    assert check.matches(reason), reason
    assert str(exc_info.value) == 'Image rejected: %s' % reason


def test_refusals_from_the_bytes_are_table_sentences(tmp_path):
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')
    short = tmp_path / 'short.qcow2'
    short.write_bytes(b'QFI\xfb\0\0')
    for path, claimed, check in [(empty, 'raw', checks.EMPTY),
                                 (short, 'qcow2', checks.UNREADABLE)]:
        with pytest.raises(errors.ImageRejected) as exc_info:
            inspection.inspect_bytes(str(path), claimed, cases.POLICY)
        assert check.matches(exc_info.value.reason), exc_info.value.reason


def _failing(command, error):
    """A qemu-img whose ``command`` fails with ``error``, without running
    (qemu_img.using); the other commands run."""
    def wrap(runner):
        def run(args, limits, **options):
            if args[0] == command:
                raise error
            return runner(args, limits, **options)
        return run
    return wrap


def test_qemu_img_refusals_are_table_sentences(tmp_path):
    """qemu-img info failing, and the conversion hitting its size limit."""
    src = tmp_path / 'disk.raw'
    src.write_bytes(b'\0' * MiB)
    settings = conversion.Settings(
        target='qcow2', source_formats=formats.CONVERTIBLE, keep_formats=(),
        policy=inspection.Policy(), inspect_limits=qemu_img.Limits(),
        convert_limits=qemu_img.Limits(), tuning=qemu_img.Tuning(),
        out_options={}, compressed=False, progress_interval=5)

    with qemu_img.using(_failing('info', qemu_img.QemuImgError(
            'qemu-img info', 1, 'no'))):
        with pytest.raises(errors.ImageRejected) as exc_info:
            conversion.inspect_source(str(src), 'raw', settings)
    assert checks.QEMU_INFO.matches(exc_info.value.reason)
    assert 'raw' in exc_info.value.reason

    work = tmp_path / 'work'
    work.mkdir()
    with qemu_img.using(_failing('convert', qemu_img.QemuImgLimitExceeded(
            'qemu-img convert', 1, 'big'))):
        with pytest.raises(errors.ImageRejected) as exc_info:
            conversion.convert_image(
                str(src), 'raw', image_id='0b5f0c3e-1111-4c4c-8e8e-'
                '00112233aabb', work_dir=str(work), settings=settings)
    assert exc_info.value.reason == checks.OUTPUT_LIMIT.sentence
    assert os.listdir(work) == []


def test_upload_refusals_are_table_sentences(tmp_path):
    """Compressed and OVA uploads, checksums and signatures refuse through
    named checks too, so ``inspect`` and the security table list them."""
    import gzip
    import zipfile

    from glance_convert.pipeline import containers
    from glance_convert.pipeline import upload_hash

    def refusal(func, *args, **kwargs):
        with pytest.raises(errors.ImageRejected) as exc_info:
            func(*args, **kwargs)
        return exc_info.value.reason

    bomb = tmp_path / 'bomb.gz'
    bomb.write_bytes(gzip.compress(bytes(4 * MiB)))
    cut = tmp_path / 'cut.gz'
    cut.write_bytes(gzip.compress(bytes(range(256)) * 4096)[:-20])
    two = tmp_path / 'two.zip'
    with zipfile.ZipFile(two, 'w') as z:
        z.writestr('a', b'a')
        z.writestr('b', b'b')
    plain = tmp_path / 'plain'
    plain.write_bytes(b'\1' * 4096)
    out = str(tmp_path / 'out')
    cases = [
        (refusal(compressed.decompress, str(bomb), out, limit=MiB),
         compressed.BOMB),
        (refusal(compressed.decompress, str(cut), out, limit=4 * MiB),
         compressed.STREAM_TRUNCATED),
        (refusal(compressed.decompress, str(two), out, limit=MiB),
         compressed.ZIP_MEMBERS),
        (refusal(compressed.decompress, str(plain), out, limit=MiB),
         compressed.NOT_COMPRESSED),
        (refusal(ova.read, str(plain)), ova.OVA_NOT_TAR),
        (refusal(upload_hash.verify_sha256, 'a' * 64, 'b' * 64),
         checks.SHA256),
        (refusal(upload_hash.expected_sha256,
                 {upload_hash.SOURCE_SHA256: 'md5:abc'}),
         checks.SHA256_FORMAT),
        (refusal(containers.check_signed, {'img_signature': 'x'}, 'refuse'),
         checks.SIGNED),
    ]
    for reason, check in cases:
        assert check_table.matching(reason) is check, reason
        assert check in check_table.CHECKS


def test_container_checks_are_listed_for_their_container_only():
    xz = check_table.passed_reasons('qcow2', MiB, container='compressed')
    appliance = check_table.passed_reasons('vmdk', MiB, container='ova')
    bare = check_table.passed_reasons('qcow2', MiB)
    assert compressed.BOMB.passed.format(limit='1 MiB') in xz
    assert ova.OVA_MEMBER.passed not in xz
    assert ova.OVA_MEMBER.passed in appliance
    assert compressed.BOMB.passed.format(limit='1 MiB') not in appliance
    for check in check_table.UPLOAD_CHECKS:
        assert check.passed not in bare
    # The disk inside is judged like any upload.
    assert checks.BACKING.passed in xz and checks.BACKING.passed in appliance
    # Image properties exist in the task only.
    assert checks.SHA256.passed not in xz + appliance
