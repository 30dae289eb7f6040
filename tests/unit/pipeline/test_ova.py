"""OVA judging and OVF parsing, with archives written by ``tarfile``."""

import hashlib
import io
import os
import tarfile

import pytest

from glance_convert import errors
from glance_convert import units
from glance_convert.pipeline import checks
from glance_convert.pipeline.containers import ova
from glance_convert.pipeline import upload_hash
from glance_convert.pipeline import check_table

VMDK_URI = ('http://www.vmware.com/interfaces/specifications/'
            'vmdk.html#streamOptimized')


def ovf_text(href='disk1.vmdk', size=None, fmt=VMDK_URI, capacity='4',
             units_='byte * 2^20', firmware='efi', disks=1, extra=''):
    files = ''.join(
        '<File ovf:href="%s" ovf:id="file%d"%s/>'
        % (href if i == 0 else 'disk%d.vmdk' % (i + 1), i,
           ' ovf:size="%d"' % size if size is not None else '')
        for i in range(disks))
    disk_items = ''.join(
        '<Disk ovf:capacity="%s" ovf:capacityAllocationUnits="%s" '
        'ovf:diskId="vmdisk%d" ovf:fileRef="file%d" ovf:format="%s"/>'
        % (capacity, units_, i, i, fmt) for i in range(disks))
    return ('''<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
 <References>%s</References>
 <DiskSection><Info>disks</Info>%s</DiskSection>
 <VirtualSystem ovf:id="vm">
  <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest">
   <Info>os</Info></OperatingSystemSection>
  <VirtualHardwareSection>
   <Item><rasd:InstanceID>1</rasd:InstanceID>
    <rasd:ResourceType>3</rasd:ResourceType>
    <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
   <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
    <rasd:InstanceID>2</rasd:InstanceID>
    <rasd:ResourceType>4</rasd:ResourceType>
    <rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
   <Item><rasd:InstanceID>3</rasd:InstanceID>
    <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
    <rasd:ResourceType>6</rasd:ResourceType></Item>
   <Item><rasd:HostResource>ovf:/disk/vmdisk0</rasd:HostResource>
    <rasd:InstanceID>4</rasd:InstanceID>
    <rasd:Parent>3</rasd:Parent>
    <rasd:ResourceType>17</rasd:ResourceType></Item>
   <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="%s"/>
  </VirtualHardwareSection>
 </VirtualSystem>%s
</Envelope>''' % (files, disk_items, firmware, extra)).encode()


def make_ova(path, members):
    """members: (name, bytes) or a TarInfo-ready tuple (info, bytes)."""
    with tarfile.open(path, 'w', format=tarfile.USTAR_FORMAT) as tar:
        for item in members:
            if isinstance(item[0], tarfile.TarInfo):
                info, data = item
            else:
                info, data = tarfile.TarInfo(item[0]), item[1]
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(path)


DISK = b'KDMV' + bytes(range(256)) * 64


def test_read_finds_the_disk_and_properties(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text(size=len(DISK))), ('disk1.vmdk', DISK),
        ('vm.mf', b'SHA256(disk1.vmdk)= 00\n')])
    app = ova.read(path)
    with open(path, 'rb') as f:
        f.seek(app.disk.offset)
        assert f.read(app.disk.size) == DISK
    assert app.disk.disk_format == 'vmdk'
    assert app.disk.capacity == 4 * units.MiB
    assert app.hints.firmware == 'uefi'
    assert app.properties == {
        'glance_convert_ovf_os_type': 'ubuntu64Guest',
        'glance_convert_ovf_os_id': '101',
        'glance_convert_ovf_cpus': '2',
        'glance_convert_ovf_memory_mb': '2048',
        'glance_convert_ovf_disk_controller': 'scsi:lsilogic'}


def test_extract_copies_the_disk_and_hashes_the_whole_ova(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text()), ('disk1.vmdk', DISK)])
    app = ova.read(path)
    dst = str(tmp_path / 'disk')
    digest = ova.extract(path, app, dst).result()
    with open(dst, 'rb') as f:
        assert f.read() == DISK
    with open(path, 'rb') as f:
        assert digest == hashlib.sha256(f.read()).hexdigest()


def _refused(path, words):
    with pytest.raises(errors.ImageRejected) as exc:
        ova.read(str(path))
    assert words in str(exc.value), str(exc.value)
    # Every refusal is a named container check, listed by the CLI and docs.
    check = check_table.matching(exc.value.reason)
    assert check in check_table.UPLOAD_CHECKS, exc.value.reason
    assert checks.CONTAINER in check.stages
    return str(exc.value)


def unchecked_extract(ova_path, into):
    """Extract every member as a tool with no checks would (the control).

    ``tarfile``'s ``fully_trusted`` filter is its behaviour before Python
    3.12 added filters: names and links are taken as they are.
    """
    os.makedirs(into, exist_ok=True)
    with tarfile.open(ova_path) as tar:
        tar.extractall(into, filter='fully_trusted')


def _inside(path, directory):
    real = os.path.realpath(path)
    return os.path.commonpath([real, os.path.realpath(directory)]) == \
        os.path.realpath(directory)


@pytest.mark.parametrize('name', ['{outside}/disk1.vmdk', '../disk1.vmdk',
                                  'a/../../disk1.vmdk'])
def test_path_traversal_is_refused(tmp_path, name):
    # Everything happens in the test's own scratch directory: "outside"
    # is a sibling of the work directory, never a real host path.
    scratch = tmp_path / 'scratch'
    work = scratch / 'work'
    outside = scratch / 'outside'
    outside.mkdir(parents=True)
    name = name.format(outside=outside)
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', ovf_text()),
                                         (name, DISK)])
    # The attack: unpacked without the check, the disk lands outside the
    # work directory.  (For a/../../, an earlier member 'a/' would have
    # made the directory; tarfile does not make it for a name with '..'.)
    (work / 'a').mkdir(parents=True)
    unchecked_extract(path, str(work))
    landed = [os.path.join(root, f) for root, _d, files in os.walk(scratch)
              for f in files if f == 'disk1.vmdk']
    assert landed and not any(_inside(p, work) for p in landed), landed
    # The defence.
    _refused(path, 'a file outside the archive')


def test_link_reaches_outside_without_the_check(tmp_path):
    canary = tmp_path / 'host-secret'
    canary.write_bytes(b'CANARY-' + os.urandom(32))
    info = tarfile.TarInfo('disk1.vmdk')
    info.type = tarfile.SYMTYPE
    info.linkname = str(canary)
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', ovf_text()),
                                         (info, None)])
    work = tmp_path / 'work'
    unchecked_extract(path, str(work))
    # The attack: the "disk" a converter would read is the host's file.
    with open(work / 'disk1.vmdk', 'rb') as f:
        assert f.read() == canary.read_bytes()
    assert not _inside(work / 'disk1.vmdk', work)
    _refused(path, 'a link')


@pytest.mark.parametrize('kind,words', [
    (tarfile.SYMTYPE, 'a link'), (tarfile.LNKTYPE, 'a link'),
    (tarfile.CHRTYPE, 'a device'), (tarfile.BLKTYPE, 'a device'),
    (tarfile.FIFOTYPE, 'a device or pipe'), (tarfile.DIRTYPE, 'directory')])
def test_links_devices_and_directories_are_refused(tmp_path, kind, words):
    info = tarfile.TarInfo('disk1.vmdk')
    info.type = kind
    info.linkname = '/etc/shadow'
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', ovf_text()),
                                         (info, None)])
    _refused(path, words)


def test_two_disks_are_refused(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text(disks=2)), ('disk1.vmdk', DISK),
        ('disk2.vmdk', DISK)])
    assert _refused(path, 'exactly one disk') == (
        'Image rejected: the OVA must hold exactly one disk, not 2')


def test_an_unreferenced_second_file_counts_as_a_disk(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text()), ('disk1.vmdk', DISK), ('hidden.img', DISK)])
    _refused(path, 'exactly one disk, not 2')


def test_member_larger_than_the_archive_is_refused(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', ovf_text()),
                                         ('disk1.vmdk', DISK)])
    with open(path, 'rb') as f:
        data = f.read()
    # Cut the archive inside the disk's data: its header still declares
    # the whole size.
    cut = tmp_path / 'cut.ova'
    cut.write_bytes(data[:data.index(DISK) + 1000])
    _refused(cut, 'a file larger than the archive')


def test_ovf_size_disagreeing_with_the_member_is_refused(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text(size=len(DISK) + 512)), ('disk1.vmdk', DISK)])
    _refused(path, 'the OVF says the disk is %d bytes, but it is %d bytes'
             % (len(DISK) + 512, len(DISK)))


def test_unknown_disk_format_and_bad_xml_are_refused(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text(fmt='http://example.com/lha')),
        ('disk1.vmdk', DISK)])
    _refused(path, 'a disk format this cloud cannot read')
    path = make_ova(tmp_path / 'b.ova', [('vm.ovf', b'<Envelope'),
                                         ('disk1.vmdk', DISK)])
    _refused(path, 'its OVF descriptor is not valid')


def test_entity_expansion_is_refused(tmp_path):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>')
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', bomb),
                                         ('disk1.vmdk', DISK)])
    _refused(path, 'its OVF descriptor is not valid')


def test_not_a_tar_and_no_ovf_are_refused(tmp_path):
    junk = tmp_path / 'junk.ova'
    junk.write_bytes(os.urandom(4096))
    _refused(junk, 'not a tar archive')
    path = make_ova(tmp_path / 'a.ova', [('disk1.vmdk', DISK)])
    _refused(path, 'exactly one OVF descriptor, not 0')


def test_bios_firmware_and_missing_capacity(tmp_path):
    text = ovf_text(firmware='bios').replace(
        b'ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20" ', b'')
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', text),
                                         ('disk1.vmdk', DISK)])
    app = ova.read(path)
    assert app.hints.firmware == 'bios'
    assert 'hw_firmware_type' not in app.properties
    assert app.disk.capacity is None


def test_a_failed_extract_leaves_no_hash_running(tmp_path, monkeypatch):
    """The upload's hash thread must not outlive an extraction that fails,
    whether it fails before the copy (no place to write) or during it."""
    made = []

    class Recorder(upload_hash.BackgroundHash):
        def __init__(self, path):
            super().__init__(path)
            self.cancelled = False
            made.append(self)

        def cancel(self):
            self.cancelled = True
            super().cancel()

    monkeypatch.setattr(upload_hash, 'BackgroundHash', Recorder)
    path = make_ova(tmp_path / 'a.ova', [
        ('vm.ovf', ovf_text()), ('disk1.vmdk', DISK)])
    app = ova.read(path)
    with pytest.raises(OSError):
        ova.extract(path, app, str(tmp_path / 'missing' / 'disk'))
    truncated = tmp_path / 'short.ova'
    with open(path, 'rb') as f:
        truncated.write_bytes(f.read()[:app.disk.offset + 100])
    with pytest.raises(errors.ImageRejected):
        ova.extract(str(truncated), app, str(tmp_path / 'disk'))
    assert all(h.cancelled for h in made), made
    assert not (tmp_path / 'disk').exists()
