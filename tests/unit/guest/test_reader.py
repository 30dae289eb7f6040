import pytest

from glance_convert.guest import reader


def test_budget_of_bytes_stops_reading():
    budgeted = reader.Budgeted(reader.BytesReader(bytes(10000)),
                               max_bytes=1000, max_reads=100)
    assert len(budgeted.read(0, 600)) == 600
    with pytest.raises(reader.BudgetSpent, match='at most 100 and 1000'):
        budgeted.read(600, 600)
    assert budgeted.bytes_read == 600


def test_budget_of_reads_stops_reading():
    budgeted = reader.Budgeted(reader.BytesReader(bytes(10000)),
                               max_reads=3)
    for offset in range(3):
        budgeted.read(offset, 1)
    with pytest.raises(reader.BudgetSpent):
        budgeted.read(3, 1)


def test_reads_outside_the_disk_find_nothing_and_cost_nothing():
    budgeted = reader.Budgeted(reader.BytesReader(bytes(100)), max_reads=1)
    assert budgeted.read(100, 10) == b''
    assert budgeted.read(-5, 10) == b''
    assert budgeted.reads == 0
    # A read across the end is cut at the end and charged that much.
    assert len(budgeted.read(90, 1000)) == 10
    assert budgeted.bytes_read == 10


def test_file_reader(tmp_path):
    path = tmp_path / 'disk'
    path.write_bytes(b'abcdef')
    with reader.FileReader(str(path)) as disk:
        assert disk.size == 6
        assert disk.read(2, 3) == b'cde'
        assert reader.exact(disk, 4, 4) is None
