"""Guest disks built with the tools an installer uses, for tests.

Partition tables by ``sgdisk`` or ``parted`` on a sparse raw file;
each filesystem made as a file of its own (``mkfs.vfat`` and mtools,
``mkfs.ntfs``, ``mkfs.ext4 -d``, ``mkfs.xfs``, ``mkfs.btrfs``) and then
copied into the disk at its partition's offset.  No loop device, no
mount, no root needed.  The layouts are what Windows and Linux installers
write; the loaders are stand-in files unless a test provides real ones.
"""

import dataclasses
import os
import shutil
import subprocess
import tempfile

MiB = 1024 * 1024

ESP = 'ef00'
MSR = '0c01'
BASIC_DATA = '0700'
LINUX_ROOT = '8304'
LINUX_FS = '8300'
BIOS_BOOT = 'ef02'

OS_RELEASE = {
    'debian': 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
              'NAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
              'VERSION="12 (bookworm)"\nID=debian\n',
    'ubuntu': 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'
              'ID_LIKE=debian\n',
    'fedora': 'NAME="Fedora Linux"\nVERSION_ID=39\nID=fedora\n',
    'almalinux': 'NAME="AlmaLinux"\nVERSION_ID="9.3"\nID="almalinux"\n'
                 'ID_LIKE="rhel centos fedora"\n',
}


def run(*argv, cwd=None):
    subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


@dataclasses.dataclass
class Part:
    size_mib: int
    gpt_type: str          # sgdisk type code
    fs: str | None = None  # 'vfat', 'ntfs', 'ext4', 'xfs', 'btrfs'
    files: dict = dataclasses.field(default_factory=dict)   # path: bytes
    symlinks: dict = dataclasses.field(default_factory=dict)  # path: target
    mbr_type: str = ''     # parted fs-type for msdos labels
    active: bool = False


def make_fs(path, fs, size_mib, files=None, symlinks=None, workdir=None):
    """A filesystem image file of ``size_mib`` holding ``files``."""
    files = files or {}
    symlinks = symlinks or {}
    with open(path, 'wb') as f:
        f.truncate(size_mib * MiB)
    if fs == 'vfat':
        run('mkfs.vfat', path)
        made = set()
        for name, data in files.items():
            parts = name.strip('/').split('/')
            for depth in range(1, len(parts)):
                folder = '/'.join(parts[:depth])
                if folder not in made:
                    run('mmd', '-i', path, '::/' + folder)
                    made.add(folder)
            local = os.path.join(workdir, 'payload')
            with open(local, 'wb') as f:
                f.write(data)
            run('mcopy', '-i', path, local, '::/' + '/'.join(parts))
    elif fs == 'ntfs':
        run('mkfs.ntfs', '-F', '-f', '-q', path)
    elif fs == 'ext4':
        tree = os.path.join(workdir, 'tree-' + os.path.basename(path))
        os.makedirs(tree)
        for name, data in files.items():
            target = os.path.join(tree, name.strip('/'))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'wb') as f:
                f.write(data)
        for name, target in symlinks.items():
            link = os.path.join(tree, name.strip('/'))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(target, link)
        run('mkfs.ext4', '-q', '-F', '-d', tree, path)
    elif fs == 'xfs':
        run('mkfs.xfs', '-q', '-f', path)
    elif fs == 'btrfs':
        run('mkfs.btrfs', '-q', '-f', path)
    else:
        raise ValueError(fs)


def copy_into(disk, src, offset):
    """Copy ``src`` into ``disk`` at ``offset``, skipping its holes."""
    with open(src, 'rb') as s, open(disk, 'r+b') as d:
        size = os.fstat(s.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data_at = os.lseek(s.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            hole_at = os.lseek(s.fileno(), data_at, os.SEEK_HOLE)
            s.seek(data_at)
            d.seek(offset + data_at)
            left = hole_at - data_at
            while left:
                chunk = s.read(min(left, 4 * MiB))
                d.write(chunk)
                left -= len(chunk)
            pos = hole_at


def build(path, parts, *, label='gpt', workdir):
    """A raw disk at ``path`` with ``parts``, each 1 MiB aligned."""
    total = 2 + sum(p.size_mib for p in parts)
    with open(path, 'wb') as f:
        f.truncate(total * MiB)
    start = 1
    offsets = []
    if label == 'gpt':
        for number, part in enumerate(parts, 1):
            new = '%d:%dM:+%dM' % (number, start, part.size_mib)
            run('sgdisk', '-n', new,
                '-t', '%d:%s' % (number, part.gpt_type), path)
            offsets.append(start * MiB)
            start += part.size_mib
    else:
        run('parted', '-s', path, 'mklabel', 'msdos')
        for number, part in enumerate(parts, 1):
            run('parted', '-s', path, 'mkpart', 'primary',
                part.mbr_type or 'ext4', '%dMiB' % start,
                '%dMiB' % (start + part.size_mib))
            if part.active:
                run('parted', '-s', path, 'set', str(number), 'boot', 'on')
            offsets.append(start * MiB)
            start += part.size_mib
    scratch = tempfile.mkdtemp(dir=workdir)
    try:
        for number, (part, offset) in enumerate(zip(parts, offsets), 1):
            if part.fs is None:
                continue
            fs_file = os.path.join(scratch, 'fs%d.img' % number)
            make_fs(fs_file, part.fs, part.size_mib, part.files,
                    part.symlinks, scratch)
            copy_into(path, fs_file, offset)
    finally:
        shutil.rmtree(scratch)
    return path


def linux_root(distro='debian', fs_type=LINUX_ROOT, size_mib=32):
    """An ext4 root whose /etc/os-release is a symlink, as systemd's."""
    return Part(size_mib, fs_type, 'ext4',
                files={'usr/lib/os-release':
                       OS_RELEASE[distro].encode(),
                       'etc/hostname': b'guest\n'},
                symlinks={'etc/os-release': '../usr/lib/os-release'},
                mbr_type='ext4')


def windows_uefi(path, workdir, loader=b'MZ stand-in bootmgfw'):
    return build(path, [
        Part(16, ESP, 'vfat', files={
            'EFI/Microsoft/Boot/bootmgfw.efi': loader,
            'EFI/Boot/bootx64.efi': loader}),
        Part(16, MSR),
        Part(16, BASIC_DATA, 'ntfs'),
    ], workdir=workdir)


def windows_bios(path, workdir):
    return build(path, [Part(16, '', 'ntfs', mbr_type='ntfs',
                             active=True)],
                 label='msdos', workdir=workdir)


def linux_uefi(path, workdir, distro='debian',
               loader=b'MZ stand-in shim'):
    return build(path, [
        Part(16, ESP, 'vfat', files={
            'EFI/BOOT/BOOTX64.EFI': loader,
            'EFI/%s/grubx64.efi' % distro: loader}),
        linux_root(distro),
    ], workdir=workdir)


def linux_bios(path, workdir, distro='debian', label='gpt'):
    if label == 'gpt':
        return build(path, [Part(1, BIOS_BOOT), linux_root(distro)],
                     workdir=workdir)
    root = linux_root(distro)
    root.active = True
    return build(path, [root], label='msdos', workdir=workdir)
