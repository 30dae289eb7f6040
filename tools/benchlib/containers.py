"""Uploads in a container: compressed images and OVA appliances.

What users bring from distribution mirrors and hypervisors: a qcow2
compressed with gzip, xz or zstd (``container_format=compressed``), and an
OVA holding a streamOptimized VMDK (``container_format=ova``).  They are
made from the benchmark's own qcow2 and VMDK with the standard tools, and
cached next to them.

The runners of this table:

``plugin``
    the task's ``execute`` with the container format set: unpacking,
    the SHA-256 of the upload on the second core, inspection, checks and
    conversion to raw;
``nohash``
    the same with the SHA-256 replaced by nothing, so ``plugin/nohash``
    is what the publisher's checksum costs in wall-clock time;
``tools``
    what an operator would type: the decompressor (or ``tar -x``) into a
    file, then ``qemu-img convert`` to raw, in sequence;
``tools-sha``
    the same preceded by ``sha256sum`` of the upload, as when the
    publisher's checksum is checked by hand.
"""

import io
import os
import shutil
import subprocess
import tarfile

#: name -> (container_format, disk_format claimed, source variant,
#: command that writes it to stdout, command that unpacks it to stdout).
KINDS = {
    'qcow2.gz': ('compressed', 'qcow2', 'qcow2', ['gzip', '-6', '-c'],
                 ['gzip', '-dc']),
    'qcow2.xz': ('compressed', 'qcow2', 'qcow2', ['xz', '-6', '-T0', '-c'],
                 ['xz', '-dc']),
    'qcow2.zst': ('compressed', 'qcow2', 'qcow2',
                  ['zstd', '-3', '-T0', '-q', '-c'], ['zstd', '-q', '-dc']),
    'ova': ('ova', 'vmdk', 'vmdk-stream', None, None),
}
DEFAULT = ('qcow2.gz', 'qcow2.xz', 'qcow2.zst', 'ova')
RUNNERS = ('plugin', 'nohash', 'tools', 'tools-sha')

_OVF = '''<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/\
CIM_ResourceAllocationSettingData">
 <References><File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="%d"/>
 </References>
 <DiskSection><Info>Virtual disks</Info>
  <Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte"
   ovf:diskId="vmdisk1" ovf:fileRef="file1"
   ovf:format="http://www.vmware.com/interfaces/specifications/\
vmdk.html#streamOptimized"/>
 </DiskSection>
 <VirtualSystem ovf:id="bench">
  <Info>benchmark appliance</Info>
  <VirtualHardwareSection><Info>hardware</Info>
   <Item><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
    <rasd:InstanceID>1</rasd:InstanceID>
    <rasd:ResourceType>17</rasd:ResourceType></Item>
  </VirtualHardwareSection>
 </VirtualSystem>
</Envelope>
'''


def source_variant(name):
    return KINDS[name][2]


def container_format(name):
    return KINDS[name][0]


def claimed(name):
    return KINDS[name][1]


def path(imgs, name):
    return os.path.join(imgs.dir, 'upload.%s' % name)


def ensure(imgs, names, log=print):
    """Make the uploads of ``names`` that are missing from ``imgs``."""
    imgs.ensure(sorted({source_variant(n) for n in names}), log=log)
    for name in names:
        dst = path(imgs, name)
        if os.path.exists(dst):
            continue
        log('making %s' % dst)
        src = imgs.path(source_variant(name))
        tmp = dst + '.part'
        if name == 'ova':
            _make_ova(src, imgs.size, tmp)
        else:
            with open(src, 'rb') as fin, open(tmp, 'wb') as fout:
                subprocess.run(KINDS[name][3], stdin=fin, stdout=fout,
                               check=True)
        os.rename(tmp, dst)


def _make_ova(vmdk, capacity, dst):
    """An OVA as VMware writes one: the OVF first, then the disk."""
    ovf = (_OVF % (os.path.getsize(vmdk), capacity)).encode()
    with tarfile.open(dst, 'w', format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo('bench.ovf')
        info.size = len(ovf)
        tar.addfile(info, io.BytesIO(ovf))
        tar.add(vmdk, arcname='disk1.vmdk')


class _NoHash:
    """Stands in for the plugin's SHA-256 threads: hashes nothing."""

    def __init__(self, path=None):
        pass

    def update(self, block):
        pass

    def close(self):
        pass

    def result(self):
        return '0' * 64

    def cancel(self):
        pass


def disable_hash():
    """In a forked run, before the clock: the plugin hashes nothing."""
    from glance_convert.pipeline import upload_hash
    upload_hash.Hasher = _NoHash          # fed by the decompression's reads
    upload_hash.BackgroundHash = _NoHash   # reading a file of its own (OVA)


def tools(name, src, run_dir, dst, with_sha=False):
    """The upload unpacked, then converted, with the standard tools."""
    kind, fmt = KINDS[name][0], KINDS[name][1]
    if with_sha:
        subprocess.run(['sha256sum', src], check=True,
                       stdout=subprocess.DEVNULL)
    if kind == 'ova':
        subprocess.run(['tar', '-xf', src, '-C', run_dir], check=True)
        disk = os.path.join(run_dir, 'disk1.vmdk')
    else:
        disk = os.path.join(run_dir, 'unpacked')
        with open(src, 'rb') as fin, open(disk, 'wb') as fout:
            subprocess.run(KINDS[name][4], stdin=fin, stdout=fout,
                           check=True)
    subprocess.run(['qemu-img', 'convert', '-f', fmt, '-O', 'raw', disk,
                    dst], check=True, stdout=subprocess.DEVNULL)
    os.unlink(disk)
    return dst


def missing_tools(names):
    """Commands this table needs that are not installed."""
    wanted = {'tar', 'sha256sum'}
    for name in names:
        if KINDS[name][3]:
            wanted.add(KINDS[name][3][0])
    return sorted(t for t in wanted if not shutil.which(t))
