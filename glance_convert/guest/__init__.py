"""What decides how a converted guest boots.

Facts come from two places: the appliance's metadata (an OVF, a VMDK
descriptor; :mod:`.hints`) and the guest's own disk (its partition table,
filesystems and the files that name its OS).  From them the plugin sets
the image properties Nova reads, and only those the user left unset.

The disk is read without mounting, by pure byte parsing, through a
:class:`.reader.Reader` (a raw file, or the confined qemu-img for other
formats: :mod:`glance_convert.pipeline.guest_view`):

* :mod:`.reader`: the Reader protocol and the byte and read budgets;
* :mod:`.partitions`: MBR (with logical partitions) and GPT;
* :mod:`.filesystems`: FAT, NTFS, ext2/3/4, XFS, Btrfs signatures;
* :mod:`.fat`: an EFI system partition's ``/EFI`` directories;
* :mod:`.ext`: ``/etc/os-release`` of an ext2/3/4 root;
* :mod:`.disk`: :func:`.disk.read_disk`, all of the above as
  :class:`.disk.DiskFacts`;
* :mod:`.decide`: :func:`.decide.decide`, facts and hints to properties
  and the record of why.
"""
