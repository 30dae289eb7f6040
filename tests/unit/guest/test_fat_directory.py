import struct

from glance_convert.guest import fat


def short(name, ext, attr=0x20, cluster=5, size=10, case=0):
    entry = bytearray(32)
    entry[0:8] = name.ljust(8).encode()
    entry[8:11] = ext.ljust(3).encode()
    entry[11] = attr
    entry[12] = case
    struct.pack_into('<H', entry, 20, cluster >> 16)
    struct.pack_into('<HI', entry, 26, cluster & 0xFFFF, size)
    return bytes(entry)


def long_entries(name):
    """VFAT long-name entries for ``name``, last part first."""
    units = name.encode('utf-16-le') + b'\0\0'
    units += b'\xff' * (-len(units) % 26)
    parts = [units[i:i + 26] for i in range(0, len(units), 26)]
    entries = []
    for number, part in enumerate(parts, 1):
        entry = bytearray(32)
        entry[0] = number | (0x40 if number == len(parts) else 0)
        entry[1:11] = part[0:10]
        entry[11] = 0x0F
        entry[14:26] = part[10:22]
        entry[28:32] = part[22:26]
        entries.append(bytes(entry))
    return b''.join(reversed(entries))


def test_long_names_short_names_and_the_end():
    raw = (short('.', '', 0x10) +
           long_entries('Microsoft') + short('MICROS~1', '', 0x10, 7) +
           short('BOOT', '', 0x10, 9) +
           b'\xe5' + short('DELETED', 'EFI')[1:] +
           short('BOOTX64', 'EFI', case=0x18) +
           long_entries('a rather long loader name.efi') +
           short('ARATHE~1', 'EFI', cluster=70000) +
           bytes(32) + short('AFTER', 'END'))
    entries = list(fat.parse_directory(raw))
    assert [(e.name, e.is_dir) for e in entries] == [
        ('Microsoft', True), ('BOOT', True), ('bootx64.efi', False),
        ('a rather long loader name.efi', False)]
    assert entries[0].cluster == 7
    assert entries[3].cluster == 70000


def test_esp_contents_has_ignores_case():
    contents = fat.EspContents(('Microsoft',),
                               ('EFI/Microsoft/Boot/BOOTMGFW.EFI',))
    assert contents.has(fat.WINDOWS_LOADER)
    assert not contents.has('EFI/BOOT/BOOTX64.EFI')
