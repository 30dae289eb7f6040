"""Disk format names: Glance's, qemu-img's and oslo.utils' format inspector's.

This is the only place where the names are mapped.  Glance calls the VHD
format ``vhd``; qemu-img calls it ``vpc``.  Passing Glance's name straight
to ``qemu-img -f`` is why every VHD import fails with Glance's own plugin.
"""

# Glance disk_format -> qemu-img driver name.
_QEMU_DRIVER = {
    'raw': 'raw',
    'qcow2': 'qcow2',
    'vmdk': 'vmdk',
    'vdi': 'vdi',
    'vhd': 'vpc',
}

# Glance disk_format -> oslo.utils format_inspector name.
_INSPECTOR_NAME = {
    'raw': 'raw',
    'qcow2': 'qcow2',
    'vmdk': 'vmdk',
    'vdi': 'vdi',
    'vhd': 'vhd',
}

#: Glance disk formats this plugin can read and write.
CONVERTIBLE = tuple(_QEMU_DRIVER)


def is_convertible(disk_format: str | None) -> bool:
    """True if ``disk_format`` (Glance's name) is one we convert."""
    return disk_format in _QEMU_DRIVER


def qemu_driver(disk_format: str) -> str:
    """The qemu-img driver name for a Glance disk format."""
    try:
        return _QEMU_DRIVER[disk_format]
    except KeyError:
        raise ValueError('unsupported disk format: %r' % disk_format)


def inspector_name(disk_format: str) -> str:
    """The format_inspector name for a Glance disk format."""
    try:
        return _INSPECTOR_NAME[disk_format]
    except KeyError:
        raise ValueError('unsupported disk format: %r' % disk_format)


def glance_name_for_inspector(name: str) -> str:
    """The Glance disk format for a format_inspector result.

    GPT and MBR partitioned disks are raw disks to Glance.
    """
    if name == 'gpt':
        return 'raw'
    for glance_name, inspector in _INSPECTOR_NAME.items():
        if inspector == name:
            return glance_name
    return name
