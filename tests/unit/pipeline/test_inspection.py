"""The safety policy's pure functions, fed dicts and headers directly."""

import struct

import pytest

from glance_convert import errors
from glance_convert import formats
from glance_convert.formats import vmdk
from glance_convert.pipeline import checks
from glance_convert.pipeline import inspection

MiB = 1024 * 1024
POLICY = inspection.Policy(max_virtual_size=64 * MiB)


def facts(claimed='qcow2', size=MiB, qemu_sizes=None):
    return inspection.SourceFacts(claimed, claimed, size, 4096, None,
                                  qemu_sizes or (size,))


def qcow2_info(**extra):
    info = {'format': 'qcow2', 'virtual-size': MiB, 'filename': '/w/img',
            'format-specific': {'type': 'qcow2', 'data': {
                'compat': '1.1', 'corrupt': False}}}
    data = extra.pop('data', {})
    info['format-specific']['data'].update(data)
    info.update(extra)
    return info


def vmdk_info(create_type='streamOptimized', extents=None):
    return {'format': 'vmdk', 'virtual-size': MiB, 'filename': '/w/img',
            'format-specific': {'type': 'vmdk', 'data': {
                'create-type': create_type,
                'extents': extents or [{'filename': '/w/img'}]}}}


def rejected(func, *args, **kwargs):
    with pytest.raises(errors.ImageRejected) as exc_info:
        func(*args, **kwargs)
    return exc_info.value.reason


# ---- check_info -------------------------------------------------------------

def test_check_info_accepts_a_plain_image_and_returns_its_size():
    assert inspection.check_info(qcow2_info(), 'qcow2', facts(),
                                 POLICY) == MiB


@pytest.mark.parametrize('info,reason', [
    (qcow2_info(**{'backing-filename': 'x'}), 'backing file'),
    (qcow2_info(**{'full-backing-filename': '/etc/passwd'}), 'backing file'),
    (qcow2_info(data={'data-file': '/etc/shadow'}), 'external data file'),
    (qcow2_info(data={'data-file-raw': True}), 'external data file'),
    (qcow2_info(encrypted=True), 'encrypted'),
    (qcow2_info(data={'encrypt': {'format': 'luks'}}), 'encrypted'),
    (qcow2_info(data={'corrupt': True}), 'corrupt'),
    (qcow2_info(format='raw'), 'not qcow2 as claimed'),
    (qcow2_info(**{'virtual-size': 2 * MiB}), 'disagree'),
])
def test_check_info_refusals(info, reason):
    assert reason in rejected(inspection.check_info, info, 'qcow2', facts(),
                              POLICY)


def test_check_info_refuses_a_size_above_the_limit():
    big = 128 * MiB
    reason = rejected(inspection.check_info,
                      qcow2_info(**{'virtual-size': big}), 'qcow2',
                      facts(size=big), POLICY)
    assert 'virtual size of 128 MiB is above the limit of 64 MiB' in reason


def test_check_info_accepts_any_size_the_headers_allow():
    # VHD: qemu reports the footer size or the CHS size, by creator.
    info = {'format': 'vpc', 'virtual-size': 1079296}
    assert inspection.check_info(
        info, 'vhd', facts('vhd', MiB, (MiB, 1079296)), POLICY) == 1079296


@pytest.mark.parametrize('create_type', ['streamOptimized',
                                         'monolithicSparse'])
def test_check_info_accepts_allowed_vmdk_types(create_type):
    inspection.check_info(vmdk_info(create_type), 'vmdk', facts('vmdk'),
                          POLICY)


@pytest.mark.parametrize('create_type', [
    'streamoptimized', 'STREAMOPTIMIZED', 'monolithicFlat', 'vmfs', None])
def test_check_info_compares_vmdk_types_exactly(create_type):
    assert 'VMDK create type' in rejected(
        inspection.check_info, vmdk_info(create_type), 'vmdk',
        facts('vmdk'), POLICY)


def test_check_info_refuses_vmdk_extents_naming_other_files():
    info = vmdk_info(extents=[{'filename': '/w/img'},
                              {'filename': '/etc/passwd'}])
    assert 'refer to other files' in rejected(
        inspection.check_info, info, 'vmdk', facts('vmdk'), POLICY)


def test_check_info_honours_the_operators_vmdk_types():
    policy = inspection.Policy(vmdk_allowed_types=('monolithicSparse',))
    assert 'streamOptimized' in rejected(
        inspection.check_info, vmdk_info('streamOptimized'), 'vmdk',
        facts('vmdk'), policy)


# ---- check_consistency ------------------------------------------------------

@pytest.mark.parametrize('report', [
    {'exit-code': 0}, {'exit-code': 3, 'leaks': 4},
    {'exit-code': 0, 'unsupported': True}])
def test_check_consistency_accepts_clean_and_leaking_images(report):
    inspection.check_consistency(report)


@pytest.mark.parametrize('report', [
    {'exit-code': 2, 'corruptions': 1}, {'exit-code': 0, 'corruptions': 3},
    {'exit-code': 0, 'check-errors': 1}])
def test_check_consistency_refuses_corruption(report):
    assert rejected(inspection.check_consistency, report) == \
        'the image is corrupt'


# ---- check_header (facts from the bytes) ------------------------------------

def header(**kw):
    values = dict(format='qcow2', virtual_size=MiB, sizes={'header': MiB})
    values.update(kw)
    return formats.Header(**values)


def vmdk_header(create_type='streamOptimized', extents=None, **kw):
    kw.setdefault('subformat', 'sparse')
    return header(format='vmdk', create_type=create_type,
                  extents=extents if extents is not None else [
                      ('RW', 2048, 'SPARSE', 'img.vmdk',
                       'RW 2048 SPARSE "img.vmdk"')], **kw)


def test_check_header_accepts_a_clean_header():
    inspection.check_header(header(), 'qcow2', POLICY)
    inspection.check_header(vmdk_header(), 'vmdk', POLICY)


@pytest.mark.parametrize('h,claimed,reason', [
    (header(backing='json:{}'), 'qcow2', 'backing file'),
    (header(data_file='/etc/shadow'), 'qcow2', 'external data file'),
    (header(encryption='qcow2 AES'), 'qcow2', 'encrypted'),
    (header(parent='(VHD parent)', format='vhd'), 'vhd', 'differencing'),
    (header(corrupt='the corrupt bit is set'), 'qcow2', 'corrupt'),
    (header(unknown_features=1 << 9), 'qcow2', 'unsupported qcow2 features'),
    (header(sizes={'header': MiB, 'L1 table': MiB // 2}), 'qcow2',
     'disagree'),
    (vmdk_header('monolithicFlat'), 'vmdk', 'VMDK create type'),
    (vmdk_header(extents=[]), 'vmdk', 'refer to other files'),
    (vmdk_header(extents=[('RW', 8, 'FLAT', 'x', 'RW 8 FLAT "x" 0')]),
     'vmdk', 'refer to other files'),
    (vmdk_header(extents=[('RW', 8, 'SPARSE', '/etc/passwd', 'l')]),
     'vmdk', 'refer to other files'),
    (vmdk_header(descriptor_file=True), 'vmdk', 'refer to other files'),
    (vmdk_header(subformat='descriptor'), 'vmdk', 'refer to other files'),
    (vmdk_header(parent='/etc/passwd'), 'vmdk', 'differencing'),
    (header(format='vhdx', log='log GUID 01'), 'vhdx', 'not closed cleanly'),
    (header(format='vhdx', unknown_required='required region 01'), 'vhdx',
     'requires regions or metadata'),
])
def test_check_header_refusals(h, claimed, reason):
    assert reason in rejected(inspection.check_header, h, claimed, POLICY)


def test_check_header_reports_encryption_before_anything_else():
    h = header(encryption='qcow2 LUKS', backing='x', corrupt='y')
    assert rejected(inspection.check_header, h, 'qcow2', POLICY) == \
        checks.ENCRYPTED.sentence


# ---- the VMDK descriptor, read as qemu reads it -----------------------------

def test_descriptor_value_is_the_first_occurrence_even_in_a_comment():
    text = ('# createType="monolithicFlat"\n'
            'createType="streamOptimized"\n')
    assert vmdk.qemu_descriptor_value(text, 'createType') == \
        'monolithicFlat'


def test_descriptor_value_is_case_sensitive():
    assert vmdk.qemu_descriptor_value(
        'createtype="monolithicFlat"\n', 'createType') is None
    assert vmdk.qemu_descriptor_value(
        'createType="streamoptimized"\n', 'createType') == 'streamoptimized'


def test_every_extent_like_line_is_reported():
    text = ('RW 2048 SPARSE "a.vmdk"\n'
            'rdonly 8 FLAT "/etc/passwd" 0\n'
            'NOACCESS junk\n'
            'ddb.adapterType = "ide"\n')
    extents = vmdk.vmdk_extents(text)
    assert [(e[0], e[1], e[2], e[3]) for e in extents] == [
        ('RW', 2048, 'SPARSE', 'a.vmdk'),
        ('rdonly', 8, 'FLAT', '/etc/passwd'),
        ('NOACCESS', None, None, None)]


def sparse_vmdk(path, descriptor):
    """A hand-made sparse VMDK header (1 MiB) and its embedded descriptor
    in the next sector, parsed."""
    head = struct.pack('<4sIIQQQQIQQ', vmdk.MAGIC, 1, 0, 2048, 128, 1, 1,
                       512, 0, 2)
    data = head.ljust(512, b'\0') + descriptor.encode().ljust(512, b'\0')
    path.write_bytes(data)
    with open(path, 'rb') as f:
        return vmdk.parse(f, len(data))


def test_a_descriptor_with_two_create_types_is_not_trusted(tmp_path):
    extent = 'RW 2048 SPARSE "img.vmdk"\n'
    one = sparse_vmdk(tmp_path / 'one.vmdk',
                      'createType="streamOptimized"\n' + extent)
    inspection.check_header(one, 'vmdk', POLICY)      # the control
    two = sparse_vmdk(tmp_path / 'two.vmdk', 'createType="streamOptimized"'
                      '\nCREATETYPE="vmfs"\n' + extent)
    with pytest.raises(errors.ImageRejected) as exc_info:
        inspection.check_header(two, 'vmdk', POLICY)
    assert vmdk.CREATE_TYPE.matches(exc_info.value.reason), exc_info.value


# ---- inspect_bytes on tiny hand-made files ----------------------------------

def mbr_disk(path, boot_flag):
    data = bytearray(MiB)
    data[446:462] = struct.pack('<B3BB3BII', boot_flag, 0, 2, 0, 0x83,
                                0xfe, 0xff, 0xff, 2048, 0)
    data[510:512] = b'\x55\xaa'
    path.write_bytes(bytes(data))
    return str(path)


def test_gpt_safety_checks_can_be_made_nonfatal(tmp_path):
    path = mbr_disk(tmp_path / 'disk.raw', boot_flag=0x42)
    assert 'partition table' in rejected(inspection.inspect_bytes, path,
                                         'raw', inspection.Policy())
    lenient = inspection.Policy(gpt_nonfatal=frozenset({'mbr'}))
    result = inspection.inspect_bytes(path, 'raw', lenient)
    assert result.detected == 'raw' and result.virtual_size == MiB


def test_raw_sizes_allow_qemus_rounding_to_sectors(tmp_path):
    path = tmp_path / 'odd.raw'
    path.write_bytes(b'x' * 1000)
    result = inspection.inspect_bytes(str(path), 'raw', POLICY)
    assert result.qemu_sizes == (1000, 1024)


def test_raw_upload_above_the_size_limit_is_refused(tmp_path):
    path = tmp_path / 'big.raw'
    with open(path, 'wb') as f:
        f.truncate(128 * MiB)  # sparse: no disk used
    assert 'virtual size' in rejected(inspection.inspect_bytes, str(path),
                                      'raw', POLICY)


def test_output_that_reads_as_another_format_is_refused(tmp_path):
    path = tmp_path / 'out.raw'
    header = struct.pack('>4sIQIIQ', b'QFI\xfb', 3, 0, 0, 16, MiB)
    path.write_bytes(header.ljust(MiB, b'\0'))
    assert 'hides another disk image' in rejected(
        inspection.verify_output, str(path), 'raw')


def test_output_of_the_wrong_format_fails_conversion(tmp_path):
    path = tmp_path / 'out.qcow2'
    path.write_bytes(b'\0' * MiB)
    with pytest.raises(errors.ConversionFailed):
        inspection.verify_output(str(path), 'qcow2')


def fixed_vhd_footer(size, disk_type=2):
    footer = bytearray(512)
    footer[0:8] = b'conectix'
    footer[16:24] = b'\xff' * 8
    footer[28:32] = b'qem2'
    footer[40:56] = struct.pack('>QQ', size, size)
    footer[56:60] = struct.pack('>HBB', 2, 16, 63)
    footer[60:64] = struct.pack('>I', disk_type)
    footer[64:68] = struct.pack('>I', ~sum(footer) & 0xffffffff)
    return bytes(footer)


def test_fixed_vhd_output_is_recognised_by_its_footer(tmp_path):
    path = tmp_path / 'out.vhd'
    path.write_bytes(b'\0' * MiB + fixed_vhd_footer(MiB))
    inspection.verify_output(str(path), 'vhd')


def test_raw_output_claiming_to_be_vhd_fails(tmp_path):
    path = tmp_path / 'out.vhd'
    path.write_bytes(b'\0' * (MiB + 512))
    with pytest.raises(errors.ConversionFailed):
        inspection.verify_output(str(path), 'vhd')


def test_fixed_vhd_with_a_bad_checksum_is_corrupt(tmp_path):
    footer = bytearray(fixed_vhd_footer(MiB))
    footer[100] ^= 0xff
    path = tmp_path / 'up.vhd'
    path.write_bytes(b'\0' * MiB + bytes(footer))
    assert rejected(inspection.inspect_bytes, str(path), 'vhd', POLICY) == \
        checks.CORRUPT.sentence


def iso(path):
    data = bytearray(64 * 2048)
    data[16 * 2048:16 * 2048 + 7] = b'\x01CD001\x01'
    data[16 * 2048 + 80:16 * 2048 + 84] = struct.pack('<I', 64)
    data[16 * 2048 + 128:16 * 2048 + 130] = struct.pack('<H', 2048)
    path.write_bytes(bytes(data))
    return str(path)


def test_formats_that_are_not_converted_are_inspected_too(tmp_path):
    disc = iso(tmp_path / 'disc.iso')
    assert inspection.inspect_bytes(disc, 'iso', POLICY).detected == 'iso'
    assert 'iso format, not raw as claimed' in rejected(
        inspection.inspect_bytes, disc, 'raw', POLICY)
    # Formats the inspector does not know must look like plain data.
    assert 'not aki as claimed' in rejected(inspection.inspect_bytes, disc,
                                            'aki', POLICY)
    kernel = tmp_path / 'vmlinuz'
    kernel.write_bytes(b'MZ' + bytes(4094))
    assert inspection.inspect_bytes(str(kernel), 'aki', POLICY).detected \
        == 'raw'


@pytest.mark.parametrize('value,shown', [
    ('monolithicFlat', 'monolithicFlat'), ('/etc/passwd', 'unrecognised'),
    ('a\nb', 'unrecognised'), ('x' * 33, 'unrecognised'), (None, 'None')])
def test_values_from_the_upload_reach_the_user_only_when_harmless(value,
                                                                  shown):
    h = vmdk_header(value)
    assert rejected(inspection.check_header, h, 'vmdk', POLICY) == \
        'VMDK create type "%s" is not allowed' % shown
