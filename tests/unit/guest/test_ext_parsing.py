import struct

import pytest

from glance_convert.guest import ext
from glance_convert.guest import reader


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


def index_node(depth, child_block):
    """An extent index node of ``depth`` with one entry -> child_block."""
    return struct.pack('<HHHHI', 0xF30A, 1, 4, depth, 0) + \
        struct.pack('<IIHH', 0, child_block, 0, 0)


def volume_over(data, block=1024):
    volume = object.__new__(ext.ExtVolume)
    volume.reader = reader.Budgeted(reader.BytesReader(data))
    volume.start = 0
    volume.block = block
    return volume


def looping_tree():
    """Block 5 holds an index node that points to block 5 again."""
    data = bytearray(8 * 1024)
    node = index_node(1, 5)
    data[5 * 1024:5 * 1024 + len(node)] = node
    return bytes(data), node


def test_an_extent_tree_that_points_to_itself_is_refused():
    data, node = looping_tree()
    volume = volume_over(data)
    with pytest.raises(ext.ExtError, match='bad extent node'):
        volume._extents(node, ext.MAX_EXTENT_DEPTH, [], [0], 10)
    assert volume.reader.reads == 1


def test_without_the_depth_check_the_node_bound_holds(monkeypatch):
    data, node = looping_tree()
    volume = volume_over(data)
    monkeypatch.setattr(ext, '_depth_ok', lambda depth, left: True)
    with pytest.raises(ext.ExtError, match='more than 32 extent nodes'):
        volume._extents(node, ext.MAX_EXTENT_DEPTH, [], [0], 10)
    assert volume.reader.reads == ext.MAX_EXTENT_NODES


def test_without_both_bounds_the_loop_spends_the_budget(monkeypatch):
    data, node = looping_tree()
    volume = volume_over(data)
    monkeypatch.setattr(ext, '_depth_ok', lambda depth, left: True)
    monkeypatch.setattr(ext, 'MAX_EXTENT_NODES', 10 ** 9)
    with pytest.raises(reader.BudgetSpent):
        volume._extents(node, ext.MAX_EXTENT_DEPTH, [], [0], 10)
