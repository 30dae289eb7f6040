"""What a VMDK descriptor says about its guest's disk controller.

Descriptors as qemu-img and VMware write them (``ddb.adapterType``,
``ddb.virtualHWVersion``), as a descriptor file and embedded in a sparse
extent; hostile ones give no hints and no error.
"""

import io
import struct

import pytest

from glance_convert.formats import vmdk
from glance_convert.guest.hints import Hints

DESCRIPTOR = '''# Disk DescriptorFile
version=1
CID=128c5731
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW 32768 SPARSE "disk.vmdk"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "%s"
ddb.geometry.cylinders = "2"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.adapterType = "%s"
ddb.toolsVersion = "2147483647"
'''


def descriptor(adapter='lsilogic', hw='4'):
    return (DESCRIPTOR % (hw, adapter)).encode()


def sparse(text: bytes, desc_sector=1, desc_sectors=20, size=None):
    """A sparse extent's header with ``text`` embedded as qemu places it."""
    header = struct.pack('<4sIIQQQQIQQ', b'KDMV', 1, 3, 32768, 128,
                         desc_sector, desc_sectors, 512, 0, 21)
    data = header.ljust(512, b'\0') + text.ljust(desc_sectors * 512, b'\0')
    return data if size is None else data[:size]


def hints(data: bytes):
    return vmdk.hints(io.BytesIO(data), len(data))


@pytest.mark.parametrize('adapter,controller,model', [
    ('ide', 'ide', None),
    ('lsilogic', 'scsi', 'lsilogic'),
    ('buslogic', 'scsi', 'buslogic'),
    ('legacyESX', 'scsi', None),
    ('lsisas1068', 'scsi', 'lsisas1068'),
    ('pvscsi', 'scsi', 'vmpvscsi'),
])
def test_adapter_types(adapter, controller, model):
    expected = Hints(
        source='vmdk descriptor', disk_controller=controller,
        disk_model=model,
        said=('ddb.adapterType=%s' % adapter, 'ddb.virtualHWVersion=4'))
    assert hints(sparse(descriptor(adapter))) == expected
    assert hints(descriptor(adapter)) == expected


def test_an_unknown_adapter_keeps_the_hardware_version():
    h = hints(sparse(descriptor('nvme', hw='21')))
    assert h == Hints(source='vmdk descriptor',
                      said=('ddb.virtualHWVersion=21',))


def test_a_descriptor_without_ddb_gives_none():
    text = b'# Disk DescriptorFile\nversion=1\ncreateType="monolithicSparse"\n'
    assert hints(sparse(text)) is None
    assert hints(text) is None


@pytest.mark.parametrize('data', [
    # repeated keys: which one would a reader take?
    descriptor() + b'ddb.adapterType = "ide"\n',
    descriptor() + b'DDB.ADAPTERTYPE = "ide"\n',
    # binary, not ASCII
    descriptor().replace(b'# Disk', b'# \xff\xfeDisk'),
    # a descriptor file larger than any real one
    descriptor() + b'#' * vmdk.MAX_HINT_DESCRIPTOR,
    # an embedded descriptor declared huge, or beyond the end
    sparse(descriptor(), desc_sectors=1 << 20, size=512 + 20 * 512),
    sparse(descriptor(), desc_sector=1 << 40),
    sparse(descriptor(), desc_sectors=0),
    # a header cut short; not a VMDK
    sparse(descriptor())[:40],
    b'QFI\xfb' + bytes(508),
    b'',
])
def test_hostile_descriptors_give_no_hints(data):
    assert hints(data) is None


def test_a_key_in_a_comment_or_value_is_not_read():
    text = descriptor('ide').replace(
        b'ddb.adapterType = "ide"',
        b'# ddb.adapterType = "lsilogic"\nddb.uuid = "ddb.adapterType"')
    assert hints(text) == Hints(source='vmdk descriptor',
                                said=('ddb.virtualHWVersion=4',))


def test_the_text_after_a_nul_is_not_read():
    text = descriptor('ide').replace(b'ddb.adapterType', b'\0ddb.adapterType')
    assert hints(sparse(text)).disk_controller is None
