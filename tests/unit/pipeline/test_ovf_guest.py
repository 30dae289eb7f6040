"""What an OVF says about its guest: VMware's, VirtualBox's and DMTF's words.

The descriptors below follow what the exporters write: VMware's
``vmw:osType`` and ``vmw:Config firmware``; VirtualBox's export
(``ApplianceImplExport.cpp``: ``vbox:OSType`` in the
OperatingSystemSection, memory in "MegaBytes", disks as
``/disk/vmdisk1``, and for OVF 2.0 ``StorageItem``/``EthernetPortItem``
with ``sasd:``/``epasd:`` children, then the machine settings in
``vbox:Machine`` with ``Hardware/Firmware type="EFI"``).
"""

import pytest
from defusedxml import ElementTree

from glance_convert import errors
from glance_convert.guest.hints import Hints
from glance_convert.pipeline.containers import ova
from glance_convert.pipeline import ovf_guest
from tests.unit.pipeline.test_ova import DISK
from tests.unit.pipeline.test_ova import make_ova
from tests.unit.pipeline.test_ova import ovf_text

RASD = ('http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/'
        'CIM_ResourceAllocationSettingData')


def vmware_ovf(os_type='windows2019srv_64Guest', os_id='102',
               firmware='efi', controller=('6', 'lsilogicsas'),
               nic='VmxNet3'):
    kind, subtype = controller
    return ('''<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-20000000"
 xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="%s"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
 <References><File ovf:href="vm-disk1.vmdk" ovf:id="file1"/></References>
 <DiskSection><Info>Virtual disk information</Info>
  <Disk ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20"
   ovf:diskId="vmdisk1" ovf:fileRef="file1"
   ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
 </DiskSection>
 <VirtualSystem ovf:id="vm">
  <Info>A virtual machine</Info>
  <OperatingSystemSection ovf:id="%s" vmw:osType="%s">
   <Info>The kind of installed guest operating system</Info>
  </OperatingSystemSection>
  <VirtualHardwareSection>
   <Info>Virtual hardware requirements</Info>
   <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
    <rasd:InstanceID>1</rasd:InstanceID>
    <rasd:ResourceType>3</rasd:ResourceType>
    <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
   <Item><rasd:Address>0</rasd:Address>
    <rasd:ElementName>Controller 0</rasd:ElementName>
    <rasd:InstanceID>3</rasd:InstanceID>
    <rasd:ResourceSubType>%s</rasd:ResourceSubType>
    <rasd:ResourceType>%s</rasd:ResourceType></Item>
   <Item><rasd:AddressOnParent>0</rasd:AddressOnParent>
    <rasd:ElementName>Hard disk 1</rasd:ElementName>
    <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
    <rasd:InstanceID>5</rasd:InstanceID>
    <rasd:Parent>3</rasd:Parent>
    <rasd:ResourceType>17</rasd:ResourceType></Item>
   <Item><rasd:AddressOnParent>7</rasd:AddressOnParent>
    <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
    <rasd:Connection>VM Network</rasd:Connection>
    <rasd:ElementName>Network adapter 1</rasd:ElementName>
    <rasd:InstanceID>7</rasd:InstanceID>
    <rasd:ResourceSubType>%s</rasd:ResourceSubType>
    <rasd:ResourceType>10</rasd:ResourceType></Item>
   <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="%s"/>
   <vmw:Config ovf:required="false" vmw:key="tools.syncTimeWithHost"
    vmw:value="false"/>
  </VirtualHardwareSection>
 </VirtualSystem>
</Envelope>''' % (RASD, os_id, os_type, subtype, kind, nic,
                  firmware)).encode()


VBOX_OVF1 = '''<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US"
 xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="%s"
 xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References><File ovf:id="file1" ovf:href="vm-disk001.vmdk"/></References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="4194304" ovf:diskId="vmdisk1" ovf:fileRef="file1"
     ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
     vbox:uuid="0b8d4f4e-6a4c-4a3b-9f1e-2f0e4c1d2a3b"/>
  </DiskSection>
  <NetworkSection><Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this
     appliance.</Description></Network></NetworkSection>
  <VirtualSystem ovf:id="vm">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="%s">
      <Info>The kind of installed guest operating system</Info>
      <Description>%s</Description>
      <vbox:OSType ovf:required="false">%s</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>vm</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item><rasd:Caption>2 virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>2048 MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>2048 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address>
        <rasd:Caption>ideController0</rasd:Caption>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>ideController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType>
        <rasd:ResourceType>5</rasd:ResourceType></Item>
      <Item><rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>%s</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceSubType>%s</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.19-linux"
     uuid="{5a1c0e9e-7d3f-4b8a-9c2d-1e0f3a4b5c6d}" name="vm"
     OSType="%s" snapshotFolder="Snapshots">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox
       format</ovf:Info>
      <Hardware>
        <CPU count="2"><PAE enabled="true"/></CPU>
        <Memory RAMSize="2048"/>
        %s
        <Boot><Order position="1" device="HardDisk"/></Boot>
      </Hardware>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>'''


def vbox_ovf(os_type='Windows10_64', os_id='120', parent='4',
             nic='E1000', firmware='<Firmware type="EFI"/>'):
    return (VBOX_OVF1 % (RASD, os_id, os_type, os_type, parent, nic,
                         os_type, firmware)).encode()


VBOX_OVF2 = '''<?xml version="1.0"?>
<Envelope ovf:version="2.0" xml:lang="en-US"
 xmlns="http://schemas.dmtf.org/ovf/envelope/2"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"
 xmlns:rasd="%s"
 xmlns:vbox="http://www.virtualbox.org/ovf/machine"
 xmlns:epasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData.xsd"
 xmlns:sasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData.xsd">
  <References><File ovf:id="file1" ovf:href="vm-disk001.vmdk"/></References>
  <DiskSection><Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="4194304" ovf:diskId="vmdisk1" ovf:fileRef="file1"
     ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian12_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <Item><rasd:Address>0</rasd:Address>
        <rasd:Caption>NVMeController0</rasd:Caption>
        <rasd:Description>NVMe Controller</rasd:Description>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>NVMe</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType></Item>
      <StorageItem>
        <sasd:AddressOnParent>0</sasd:AddressOnParent>
        <sasd:Caption>disk1</sasd:Caption>
        <sasd:Description>Disk Image</sasd:Description>
        <sasd:HostResource>/disk/vmdisk1</sasd:HostResource>
        <sasd:InstanceID>4</sasd:InstanceID>
        <sasd:Parent>3</sasd:Parent>
        <sasd:ResourceType>17</sasd:ResourceType>
      </StorageItem>
      <EthernetPortItem>
        <epasd:AutomaticAllocation>true</epasd:AutomaticAllocation>
        <epasd:Caption>Ethernet adapter on 'NAT'</epasd:Caption>
        <epasd:Connection>NAT</epasd:Connection>
        <epasd:InstanceID>5</epasd:InstanceID>
        <epasd:ResourceSubType>PCNet32</epasd:ResourceSubType>
        <epasd:ResourceType>10</epasd:ResourceType>
      </EthernetPortItem>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>''' % RASD


def hints_of(text: bytes) -> Hints:
    return ovf_guest.read(ElementTree.fromstring(text))


# -- VMware -------------------------------------------------------------

def test_vmware_windows_server_uefi_on_lsi_sas():
    h = hints_of(vmware_ovf())
    assert h == Hints(
        source='ovf (VMware)', firmware='uefi', os_type='windows',
        os_distro='windows', os_version='2019', disk_controller='scsi',
        disk_model='lsisas1068', nic_model='vmxnet3',
        said=('vmw:Config firmware=efi',
              'vmw:osType=windows2019srv_64Guest', 'ovf:id=102',
              'disk controller: ResourceType 6 lsilogicsas',
              'NIC: ResourceSubType vmxnet3'))


@pytest.mark.parametrize('os_type,expected', [
    ('windows9_64Guest', ('windows', 'windows', '10')),
    ('windows11_64Guest', ('windows', 'windows', '11')),
    ('windows2019srvNext_64Guest', ('windows', 'windows', '2022')),
    ('windows7Server64Guest', ('windows', 'windows', None)),
    ('winNetStandardGuest', ('windows', 'windows', None)),
    ('ubuntu64Guest', ('linux', 'ubuntu', None)),
    ('rhel8_64Guest', ('linux', 'rhel', '8')),
    ('rhel10_64Guest', ('linux', 'rhel', '10')),
    ('debian11_64Guest', ('linux', 'debian', '11')),
    ('centos7_64Guest', ('linux', 'centos', '7')),
    # "CentOS 4/5 (64-bit)": the 64 is not a release.
    ('centos64Guest', ('linux', 'centos', None)),
    ('rockylinux_64Guest', ('linux', 'rocky', None)),
    ('sles15_64Guest', ('linux', None, None)),
    ('oracleLinux9_64Guest', ('linux', None, None)),
    ('otherLinux64Guest', ('linux', None, None)),
    ('other5xLinux64Guest', ('linux', None, None)),
    ('freebsd13_64Guest', (None, 'freebsd', '13')),
    ('darwin19_64Guest', (None, None, None)),
    ('solaris11_64Guest', (None, None, None)),
])
def test_vmware_guest_ids(os_type, expected):
    # ovf:id 1 ("Other") adds nothing: the OS comes from vmw:osType.
    h = hints_of(vmware_ovf(os_type=os_type, os_id='1'))
    assert (h.os_type, h.os_distro, h.os_version) == expected


@pytest.mark.parametrize('firmware,expected', [
    ('efi', 'uefi'), ('bios', 'bios'), ('EFI', 'uefi'), ('pxe', None)])
def test_vmware_firmware(firmware, expected):
    assert hints_of(vmware_ovf(firmware=firmware)).firmware == expected


@pytest.mark.parametrize('controller,expected', [
    (('5', ''), ('ide', None)),
    (('6', 'lsilogic'), ('scsi', 'lsilogic')),
    (('6', 'buslogic'), ('scsi', 'buslogic')),
    (('6', 'VirtualSCSI'), ('scsi', 'vmpvscsi')),
    (('6', 'someday'), ('scsi', None)),
    (('20', 'vmware.sata.ahci'), ('sata', None)),
    (('20', 'vmware.nvme.controller'), ('nvme', None)),
    (('20', 'vmware.nvdimm.controller'), (None, None)),
    (('14', ''), (None, None)),
])
def test_the_disks_controller(controller, expected):
    h = hints_of(vmware_ovf(controller=controller))
    assert (h.disk_controller, h.disk_model) == expected


@pytest.mark.parametrize('nic,expected', [
    ('E1000', 'e1000'), ('E1000e', 'e1000e'), ('VmxNet3', 'vmxnet3'),
    ('VmxNet2', 'vmxnet'), ('PCNet32', 'pcnet'), ('virtio', 'virtio'),
    ('Tulip', None)])
def test_nic_models(nic, expected):
    assert hints_of(vmware_ovf(nic=nic)).nic_model == expected


# -- VirtualBox ---------------------------------------------------------

def test_virtualbox_windows_uefi_on_sata():
    h = hints_of(vbox_ovf())
    assert h == Hints(
        source='ovf (VirtualBox)', firmware='uefi', os_type='windows',
        os_distro='windows', os_version='10', disk_controller='sata',
        nic_model='e1000',
        said=('vbox:Machine OSType=Windows10_64',
              'vbox:Firmware type=EFI', 'ovf:id=120',
              'disk controller: ResourceType 20 ahci',
              'NIC: ResourceSubType e1000'))


def test_virtualbox_writes_no_firmware_element_for_bios():
    # Settings.cpp writes <Firmware> only for EFI: its absence is not
    # read as BIOS (an older or hand-made descriptor may just omit it).
    h = hints_of(vbox_ovf(os_type='Ubuntu22_LTS_64', os_id='94',
                          parent='3', nic='PCNet32', firmware=''))
    assert (h.firmware, h.os_type, h.os_distro, h.os_version) == (
        None, 'linux', 'ubuntu', '22.04')
    assert (h.disk_controller, h.nic_model) == ('ide', 'pcnet')


@pytest.mark.parametrize('firmware,expected', [
    ('<Firmware type="BIOS"/>', 'bios'), ('<Firmware type="EFI64"/>', 'uefi'),
    ('<Firmware type="EFIDUAL"/>', 'uefi'), ('<Firmware type="EFI32"/>', None),
    ('<Firmware type="EFI"><AutoSerialNumGen enabled="true"/></Firmware>',
     'uefi')])
def test_virtualbox_firmware_types(firmware, expected):
    assert hints_of(vbox_ovf(firmware=firmware)).firmware == expected


@pytest.mark.parametrize('os_type,expected', [
    ('Windows11_64', ('windows', 'windows', '11')),
    ('Windows2022_64', ('windows', 'windows', '2022')),
    ('WindowsXP', ('windows', 'windows', None)),
    ('RedHat_64', ('linux', 'rhel', None)),
    ('RedHat9_64', ('linux', 'rhel', '9')),
    ('Debian_64', ('linux', 'debian', None)),
    ('Debian31', ('linux', 'debian', None)),
    ('Debian11_64', ('linux', 'debian', '11')),
    ('Ubuntu_64', ('linux', 'ubuntu', None)),
    ('Ubuntu21_64', ('linux', 'ubuntu', None)),
    ('ArchLinux_64', ('linux', 'arch', None)),
    ('OpenSUSE_Leap_64', ('linux', 'opensuse', None)),
    ('Oracle8_64', ('linux', None, None)),
    ('Linux26_64', ('linux', None, None)),
    ('FreeBSD_64', (None, 'freebsd', None)),
    ('MacOS_64', (None, None, None)),
])
def test_virtualbox_os_types(os_type, expected):
    h = hints_of(vbox_ovf(os_type=os_type, os_id='1'))
    assert (h.os_type, h.os_distro, h.os_version) == expected


def test_virtualbox_ovf2_storage_and_ethernet_items():
    h = hints_of(VBOX_OVF2.encode())
    assert (h.source, h.os_type, h.os_distro, h.os_version) == (
        'ovf (VirtualBox)', 'linux', 'debian', '12')
    assert (h.disk_controller, h.nic_model) == ('nvme', 'pcnet')
    assert h.said[0] == 'vbox:OSType=Debian12_64'


def test_a_virtualbox_ova_is_read_with_its_megabytes(tmp_path):
    """VirtualBox states memory in "MegaBytes"; such an OVA was refused."""
    path = make_ova(tmp_path / 'vbox.ova', [
        ('vm.ovf', vbox_ovf().replace(b'vm-disk001.vmdk', b'disk1.vmdk')
         .replace(b'ovf:capacity="4194304" ', b'')),
        ('disk1.vmdk', DISK)])
    app = ova.read(path)
    assert app.properties['glance_convert_ovf_memory_mb'] == '2048'
    assert (app.hints.firmware, app.hints.os_type) == ('uefi', 'windows')


# -- the standard ovf:id ------------------------------------------------

@pytest.mark.parametrize('os_id,expected', [
    ('67', ('windows', 'windows', None)),     # Windows XP
    ('118', ('windows', 'windows', '2016')),
    ('120', ('windows', 'windows', '10')),
    ('80', ('linux', 'rhel', None)),
    ('94', ('linux', 'ubuntu', None)),
    ('96', ('linux', 'debian', None)),
    ('107', ('linux', 'centos', None)),
    ('85', ('linux', None, None)),            # SLES 64-bit
    ('101', ('linux', None, None)),           # Linux 64-bit
    ('78', (None, 'freebsd', None)),
    ('102', (None, None, None)),              # Other 64-bit
    ('19', (None, None, None)),               # Windows CE
    ('99999999', (None, None, None)),
    ('-1', (None, None, None)),
])
def test_cim_os_ids(os_id, expected):
    text = ovf_text().replace(b'ovf:id="101" vmw:osType="ubuntu64Guest"',
                              b'ovf:id="%s"' % os_id.encode())
    h = hints_of(text)
    assert (h.os_type, h.os_distro, h.os_version) == expected


def test_vmware_wins_over_the_generic_cim_id():
    # VMware writes ovf:id 101 (Linux 64-bit) with ubuntu64Guest.
    h = hints_of(ovf_text())
    assert (h.os_type, h.os_distro) == ('linux', 'ubuntu')
    h = hints_of(vmware_ovf(os_type='rhel9_64Guest', os_id='94'))
    assert (h.os_distro, h.os_version) == ('rhel', '9')


def test_ova_read_carries_the_hints(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', ovf_text()),
                                         ('disk1.vmdk', DISK)])
    app = ova.read(path)
    assert app.hints.source == 'ovf (VMware)'
    assert (app.hints.firmware, app.hints.disk_controller,
            app.hints.disk_model) == ('uefi', 'scsi', 'lsilogic')


# -- hostile or odd metadata ---------------------------------------------

def test_an_ovf_without_any_hint():
    text = (b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">'
            b'<VirtualSystem/></Envelope>')
    assert hints_of(text) == Hints(source='ovf')


@pytest.mark.parametrize('text', [
    # values that are not plain words
    vmware_ovf(os_type='windows9_64Guest\u202e', firmware='efi x',
               controller=('6 6', 'lsilogic'), nic='VmxNet3 x'),
    vmware_ovf(os_type='a' * 100, firmware='e' * 100,
               controller=('6' * 100, 'lsilogic'), nic='e' * 100),
    vmware_ovf(os_type='', os_id='', firmware='', controller=('', ''),
               nic=''),
    # a Parent naming nothing, items without children, nested items
    vmware_ovf(os_type='-', os_id='-', firmware='-').replace(
        b'<rasd:Parent>3</rasd:Parent>', b'<rasd:Parent>9</rasd:Parent>'
        b'<Item><Item/></Item>').replace(
        b'<rasd:ResourceType>10</rasd:ResourceType>',
        b'<rasd:ResourceType>10 </rasd:ResourceType><Item/>'),
])
def test_odd_values_give_no_hint(text):
    h = hints_of(text)
    assert h.os_type is None and h.firmware is None, h
    assert h.disk_controller is None and h.disk_model is None, h
    assert all(len(s) < 100 for s in h.said)


def test_repeated_and_conflicting_values_take_the_first():
    text = vmware_ovf(os_type='ubuntu64Guest', firmware='bios').replace(
        b'</VirtualHardwareSection>',
        b'<vmw:Config ovf:required="false" vmw:key="firmware" '
        b'vmw:value="efi"/></VirtualHardwareSection>'
        b'<OperatingSystemSection vmw:osType="windows9_64Guest"/>')
    h = hints_of(text)
    assert (h.firmware, h.os_type) == ('bios', 'linux')


def test_too_many_items_give_no_hardware_hints():
    """A machine has a few dozen items; thousands (well inside the 1 MiB
    limit) are not read past ovf_guest.MAX_ITEMS."""
    item = (b'<Item><rasd:InstanceID>%d</rasd:InstanceID>'
            b'<rasd:ResourceType>6</rasd:ResourceType></Item>')

    def padded(count):
        many = b''.join(item % (100 + i) for i in range(count))
        return vmware_ovf().replace(b'<vmw:Config', many + b'<vmw:Config', 1)

    # Controllers, then the disk: what the hardware hints need to see.
    h = hints_of(padded(ovf_guest.MAX_ITEMS - 10))
    assert (h.disk_controller, h.disk_model) == ('scsi', 'lsisas1068')
    text = padded(10000)
    assert len(text) < ova.MAX_OVF_BYTES
    h = hints_of(text)
    assert (h.disk_controller, h.nic_model) == (None, None)
    assert (h.firmware, h.os_type) == ('uefi', 'windows')


def test_an_unreadable_ovf_is_still_refused_as_before(tmp_path):
    path = make_ova(tmp_path / 'a.ova', [('vm.ovf', b'<Envelope><vbox:M'),
                                         ('disk1.vmdk', DISK)])
    with pytest.raises(errors.ImageRejected):
        ova.read(path)


def test_a_machine_without_ostype_falls_back_to_vbox_ostype():
    text = vbox_ovf(os_type='RedHat8_64', os_id='80').replace(
        b'OSType="RedHat8_64" ', b'')
    h = hints_of(text)
    assert (h.source, h.os_distro, h.os_version) == (
        'ovf (VirtualBox)', 'rhel', '8')
    assert 'vbox:OSType=RedHat8_64' in h.said
