import struct

from glance_convert.guest import ext


def test_os_release_quoting():
    values = ext.parse_os_release(
        '# comment\nNAME="Debian GNU/Linux"\nID=debian\n'
        "VERSION_ID='12'\nPRETTY_NAME=\"a \\\"quoted\\\" name\"\n"
        'not a line\n=x\n')
    assert values == {'NAME': 'Debian GNU/Linux', 'ID': 'debian',
                      'VERSION_ID': '12',
                      'PRETTY_NAME': 'a "quoted" name'}


def entry(inode, name, rec_len):
    name = name.encode()
    return struct.pack('<IHBB', inode, rec_len, len(name), 1) + name + \
        bytes(rec_len - 8 - len(name))


def test_directory_entries_and_a_corrupt_block():
    block = 64
    good = entry(2, '.', 12) + entry(2, '..', 12) + entry(12, 'etc', 40)
    # A rec_len of 0 would loop for ever: the rest of the block is
    # skipped, the next block read.
    bad = entry(13, 'lost', 16)[:4] + struct.pack('<H', 0) + bytes(58)
    after = entry(14, 'usr', 64)
    found = list(ext.parse_directory(good + bad + after, block))
    assert found == [('.', 2), ('..', 2), ('etc', 12), ('usr', 14)]
