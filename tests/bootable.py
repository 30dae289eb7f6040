"""Bootable guest disks, made with the tools an installer uses.

Two guests whose only job is to prove which firmware can start them: each
prints one line of its own on the first serial port and powers off.

* :func:`make_uefi_disk`: a GPT disk (``sgdisk``) with an EFI system
  partition (FAT, ``mkfs.vfat`` and mtools) holding the removable-media
  path ``EFI/BOOT/BOOTX64.EFI``, a GRUB built by ``grub-mkstandalone``.
  Its protective MBR has no boot code, as on every UEFI-only disk: BIOS
  firmware hands over to nothing.
* :func:`make_bios_disk`: an MBR disk (``parted``) with GRUB for BIOS
  placed as ``grub-install`` places it: ``boot.img`` in the MBR's code
  area, ``core.img`` (``grub-mkimage``) in the gap after the MBR.  It has
  no EFI system partition, so UEFI firmware finds nothing to start.

No loop device, no mount, no root: the filesystem is made in a file of
its own and written at the partition's offset.  Building one takes well
under a second.
"""

import os
import shutil
import struct
import tempfile

from tests import imagefactory

MiB = 1024 * 1024
SECTOR = 512

#: Every guest disk is this big: room for a 6 MiB partition at 1 MiB.
DISK_SIZE = 8 * MiB
PARTITION_START = MiB
PARTITION_SIZE = 6 * MiB

GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi'
GRUB_PC_DIR = '/usr/lib/grub/i386-pc'

#: The tools, and the Debian package each comes from (see bindep.txt).
TOOLS = {
    'sgdisk': 'gdisk',
    'parted': 'parted',
    'mkfs.vfat': 'dosfstools',
    'mmd': 'mtools',
    'mcopy': 'mtools',
    'grub-mkstandalone': 'grub-common',
    'grub-mkimage': 'grub-common',
}
PLATFORM_DIRS = {
    GRUB_EFI_DIR: 'grub-efi-amd64-bin',
    GRUB_PC_DIR: 'grub-pc-bin',
}

# Where grub-bios-setup patches boot.img and diskboot.img (GRUB's
# include/grub/i386/pc/boot.h): the LBA of core.img's first sector, the
# two-byte jump that skips the check of the BIOS's drive number (turned
# into NOPs on hard disks), and the end of the code area (the partition
# table and the disk signature that follow are the disk's own).  The last
# 12 bytes of diskboot.img (core.img's first sector) name where the rest
# of core.img lies: start LBA (8 bytes), sectors (2), load segment (2).
BOOT_KERNEL_SECTOR = 0x5c
BOOT_DRIVE_CHECK = 0x66
BOOT_CODE_END = 0x1b8
BLOCKLIST = SECTOR - 12
#: core.img goes right after the MBR, where grub-install puts it.
CORE_LBA = 1


class BuildError(Exception):
    """A tool failed while building a guest disk."""


def missing_tools():
    """The packages to install for :func:`make_uefi_disk` and
    :func:`make_bios_disk`, as "tool (package)" strings."""
    missing = ['%s (%s)' % (t, p) for t, p in TOOLS.items()
               if not shutil.which(t)]
    missing += ['%s (%s)' % (d, p) for d, p in PLATFORM_DIRS.items()
                if not os.path.isdir(d)]
    return missing


def _run(cmd):
    return imagefactory.run_tool(cmd, BuildError)


def grub_config(line):
    """A GRUB script that writes ``line`` on COM1 and powers off.

    Output goes to the serial port only: the firmware may mirror its own
    console there too, and two writers would interleave the line.
    """
    if '"' in line or '\n' in line:
        raise ValueError('the line must be plain text: %r' % line)
    return ('serial --unit=0 --speed=115200\n'
            'terminal_output serial\n'
            'echo "%s"\n'
            'halt\n' % line)


#: What GRUB needs for that script, built into the image: with no
#: /boot/grub on the disk, nothing can be loaded later.
GRUB_MODULES = ['serial', 'terminal', 'echo', 'halt']


def _blank_disk(path):
    with open(path, 'wb') as f:
        f.truncate(DISK_SIZE)


def _fat_partition(workdir, files):
    """A FAT filesystem of PARTITION_SIZE in a file: ``files`` maps a
    path inside it (``EFI/BOOT/BOOTX64.EFI``) to a host file."""
    fs = os.path.join(workdir, 'partition.fat')
    with open(fs, 'wb') as f:
        f.truncate(PARTITION_SIZE)
    _run(['mkfs.vfat', '-n', 'GUEST', fs])
    dirs = set()
    for inside in files:
        parts = inside.split('/')[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add('/'.join(parts[:i]))
    if dirs:
        _run(['mmd', '-i', fs] + ['::/' + d for d in sorted(dirs)])
    for inside, host in files.items():
        _run(['mcopy', '-i', fs, host, '::/' + inside])
    return fs


def _write_at(path, offset, source):
    with open(source, 'rb') as src, open(path, 'r+b') as dst:
        dst.seek(offset)
        shutil.copyfileobj(src, dst)


def make_uefi_disk(path, line):
    """A raw GPT disk that only UEFI firmware boots; it prints ``line``.
    """
    path = os.fspath(path)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
        cfg = os.path.join(work, 'grub.cfg')
        with open(cfg, 'w') as f:
            f.write(grub_config(line))
        loader = os.path.join(work, 'BOOTX64.EFI')
        # The script goes into the image's memdisk as its grub.cfg; no
        # locale, font or theme: the image stays under 1 MiB.
        _run(['grub-mkstandalone', '-O', 'x86_64-efi',
              '-d', GRUB_EFI_DIR, '-o', loader,
              '--modules=%s' % ' '.join(GRUB_MODULES),
              # normal reads the memdisk's grub.cfg at start-up.
              '--install-modules=%s' % ' '.join(GRUB_MODULES + ['normal']),
              '--locales=', '--fonts=', '--themes=',
              'boot/grub/grub.cfg=%s' % cfg])
        esp = _fat_partition(work, {'EFI/BOOT/BOOTX64.EFI': loader})
        _blank_disk(path)
        first = PARTITION_START // SECTOR
        last = first + PARTITION_SIZE // SECTOR - 1
        # ef00: the EFI system partition's type GUID.
        _run(['sgdisk', '-n', '1:%d:%d' % (first, last), '-t', '1:ef00',
              '-c', '1:EFI System Partition', path])
        _write_at(path, PARTITION_START, esp)
    return path


def make_bios_disk(path, line):
    """A raw MBR disk that only BIOS firmware boots; it prints ``line``.
    """
    path = os.fspath(path)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
        cfg = os.path.join(work, 'grub.cfg')
        with open(cfg, 'w') as f:
            f.write(grub_config(line))
        core_img = os.path.join(work, 'core.img')
        # biosdisk: core.img's own disk driver.  The prefix is required
        # and never used: the embedded script needs no other file.
        _run(['grub-mkimage', '-O', 'i386-pc', '-d', GRUB_PC_DIR,
              '-c', cfg, '-p', '/boot/grub', '-o', core_img,
              'biosdisk'] + GRUB_MODULES)
        fs = _fat_partition(work, {})
        _blank_disk(path)
        # udevadm (parted's helper) is absent in containers; harmless.
        _run(['parted', '-s', path, 'mklabel', 'msdos', 'mkpart', 'primary',
              'fat32', '%dB' % PARTITION_START,
              '%dB' % (PARTITION_START + PARTITION_SIZE - 1),
              'set', '1', 'boot', 'on'])
        _write_at(path, PARTITION_START, fs)
        with open(os.path.join(GRUB_PC_DIR, 'boot.img'), 'rb') as f:
            boot = bytearray(f.read())
        with open(core_img, 'rb') as f:
            core = bytearray(f.read())
        _install_grub_pc(path, boot, core)
    return path


def _install_grub_pc(path, boot, core):
    """What grub-bios-setup does for a hard disk, on an image file."""
    sectors = -(-len(core) // SECTOR)
    if CORE_LBA + sectors > PARTITION_START // SECTOR:
        raise BuildError('core.img (%d sectors) does not fit before the '
                         'first partition' % sectors)
    core += bytes(sectors * SECTOR - len(core))
    _start, _count, segment = struct.unpack_from('<QHH', core, BLOCKLIST)
    struct.pack_into('<QHH', core, BLOCKLIST,
                     CORE_LBA + 1, sectors - 1, segment)
    struct.pack_into('<Q', boot, BOOT_KERNEL_SECTOR, CORE_LBA)
    boot[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b'\x90\x90'
    with open(path, 'r+b') as f:
        mbr = bytearray(f.read(SECTOR))
        if mbr[510:] != b'\x55\xaa':
            raise BuildError('%s has no MBR to install into' % path)
        mbr[:BOOT_CODE_END] = boot[:BOOT_CODE_END]
        f.seek(0)
        f.write(mbr)
        f.seek(CORE_LBA * SECTOR)
        f.write(core)


def mbr_boot_code(path):
    """The code area of the disk's first sector (what BIOS runs)."""
    with open(os.fspath(path), 'rb') as f:
        return f.read(BOOT_CODE_END)
