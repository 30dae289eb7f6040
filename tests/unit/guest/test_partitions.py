import pytest

from glance_convert.guest import partitions
from glance_convert.guest import reader
from tests.unit.guest import tables

MiB = 1024 * 1024


def read(data, **budget):
    return partitions.read_table(reader.Budgeted(reader.BytesReader(data),
                                                 **budget))


def test_mbr_primaries_and_kinds():
    mbr = tables.sector_with([
        tables.mbr_entry(0x07, 2048, 2048, active=True),
        tables.mbr_entry(0x83, 4096, 2048),
        tables.mbr_entry(0xEF, 6144, 1024)])
    table = read(tables.disk(4 * MiB, {0: mbr}))
    assert table.scheme == 'mbr'
    assert [(p.number, p.kind, p.active) for p in table.partitions] == [
        (1, partitions.BASIC_DATA, True), (2, partitions.LINUX, False),
        (3, partitions.ESP, False)]
    assert table.partitions[1].start == 4096 * 512


def ebr_chain(links, loop_to=None):
    """An MBR with an extended partition at 1 MiB holding ``links``
    logical partitions, each EBR 1 sector before its 1-sector partition;
    the last EBR points back to ``loop_to`` (an EBR index) if given."""
    ext_lba = 2048
    span = 4 * (links + 1)
    pieces = {0: tables.sector_with([tables.mbr_entry(0x05, ext_lba,
                                                      span)])}
    for index in range(links):
        here = 4 * index
        if index + 1 < links:
            following = here + 4
        else:
            following = None if loop_to is None else 4 * loop_to
        entries = [tables.mbr_entry(0x83, 1, 1)]
        if following is not None:
            entries.append(tables.mbr_entry(0x05, following, 4))
        pieces[(ext_lba + here) * 512] = tables.sector_with(entries)
    return tables.disk((ext_lba + span + 8) * 512, pieces)


def test_logical_partitions_follow_the_ebr_chain():
    table = read(ebr_chain(3))
    numbers = [p.number for p in table.partitions]
    assert numbers == [1, 5, 6, 7]
    assert table.partitions[1].start == (2048 + 1) * 512


def test_looping_ebr_chain_is_cut_and_costs_little():
    data = ebr_chain(3, loop_to=1)
    budgeted = reader.Budgeted(reader.BytesReader(data))
    table = partitions.read_table(budgeted)
    assert 'extended partition chain loops' in table.notes
    assert [p.number for p in table.partitions] == [1, 5, 6, 7]
    assert budgeted.reads <= 5


def test_without_the_defences_a_looping_chain_spends_the_budget():
    data = ebr_chain(3, loop_to=1)
    budgeted = reader.Budgeted(reader.BytesReader(data), max_reads=200)
    found = partitions._Collector(budgeted.size)
    extended = partitions.Partition(1, 2048 * 512, 16 * 512,
                                    partitions.EXTENDED, '0x05')
    with pytest.raises(reader.BudgetSpent):
        partitions._read_logical(budgeted, extended, found,
                                 max_logical=None, remember=False)


def test_long_ebr_chain_stops_at_the_bound():
    links = partitions.MAX_LOGICAL * 4
    budgeted = reader.Budgeted(reader.BytesReader(ebr_chain(links)))
    table = partitions.read_table(budgeted)
    assert len(table.partitions) == 1 + partitions.MAX_LOGICAL
    assert budgeted.reads <= partitions.MAX_LOGICAL + 2
    # Without the bound every one of them is read.
    found = partitions._Collector(budgeted.size)
    extended = partitions.Partition(1, 2048 * 512, 4 * (links + 1) * 512,
                                    partitions.EXTENDED, '0x05')
    counting = reader.Budgeted(reader.BytesReader(ebr_chain(links)),
                               max_reads=10 ** 6)
    partitions._read_logical(counting, extended, found, max_logical=None)
    assert counting.reads == links > partitions.MAX_LOGICAL


def test_gpt_kinds():
    table = read(tables.gpt(8 * MiB, [
        (tables.ESP, 2048, 4095), (tables.MSR, 4096, 6143),
        (tables.BASIC_DATA, 6144, 10239), (tables.BIOS_BOOT, 10240, 10241),
        (tables.LINUX, 10242, 12287)]))
    assert table.scheme == 'gpt'
    assert [p.kind for p in table.partitions] == [
        partitions.ESP, partitions.MSR, partitions.BASIC_DATA,
        partitions.BIOS_BOOT, partitions.LINUX]
    assert table.partitions[0].start == 1 * MiB
    assert table.partitions[0].size == 1 * MiB


def test_gpt_header_crc_is_checked():
    table = read(tables.gpt(8 * MiB, [(tables.ESP, 2048, 4095)],
                            break_header=True))
    assert table.scheme == 'mbr'
    assert table.partitions == ()
    assert 'protective MBR without a valid GPT' in table.notes


def test_gpt_entry_crc_is_checked():
    table = read(tables.gpt(8 * MiB, [(tables.ESP, 2048, 4095)],
                            break_entries=True))
    assert table.partitions == ()
    assert any('CRC' in note for note in table.notes)


def test_overlapping_and_outside_entries_are_dropped():
    table = read(tables.gpt(8 * MiB, [
        (tables.ESP, 2048, 4095), (tables.BASIC_DATA, 3000, 5000),
        (tables.LINUX, 6000, 10 ** 9), (tables.LINUX, 9000, 8000)]))
    assert [p.number for p in table.partitions] == [1]
    assert 'partition 2 overlaps partition 1' in table.notes
    assert 'partition 3 outside the usable area' in table.notes
    assert 'partition 4 outside the usable area' in table.notes


def test_mbr_partition_past_the_end_is_dropped():
    mbr = tables.sector_with([tables.mbr_entry(0x83, 2048, 2048),
                              tables.mbr_entry(0x83, 2 ** 31, 2048)])
    table = read(tables.disk(4 * MiB, {0: mbr}))
    assert [p.number for p in table.partitions] == [1]
    assert 'partition 2 outside the disk' in table.notes


def test_thousands_of_gpt_entries_are_refused_unread(monkeypatch):
    claimed = 100000
    data = tables.gpt(64 * MiB, [(tables.ESP, 2048, 4095)],
                      claim_count=claimed)
    budgeted = reader.Budgeted(reader.BytesReader(data))
    table = partitions.read_table(budgeted)
    assert table.partitions == ()
    assert budgeted.bytes_read < 4096
    # Without the bound the whole claimed array is read: more than the
    # budget of one disk.
    monkeypatch.setattr(partitions, 'MAX_GPT_ENTRIES', claimed)
    with pytest.raises(reader.BudgetSpent):
        partitions.read_table(reader.Budgeted(reader.BytesReader(data)))


def test_no_table_and_whole_disk_boot_sector():
    assert read(bytes(4096)).scheme is None
    ntfs = bytearray(512)
    ntfs[3:11] = b'NTFS    '
    ntfs[510:512] = b'\x55\xaa'
    assert read(bytes(ntfs) + bytes(4096)).scheme is None
