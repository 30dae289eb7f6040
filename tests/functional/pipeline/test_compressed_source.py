"""Compressed qcow2 sources (cloud images) get their own qemu-img tuning,
and the output is the same guest data."""

import dataclasses
import os
import subprocess

import pytest

from glance_convert import formats
from glance_convert.pipeline import conversion
from glance_convert.pipeline import qemu_img
from tests import hostile_corpus
from tests import imagefactory

MiB = 1024 * 1024
SIZE = 16 * MiB
PATTERNS = [(i * MiB + 4096 * i, 300 * 1024, 0x20 + i) for i in range(12)]


def _compressed_qcow2(tmp_path, compression):
    raw = imagefactory.make_raw(tmp_path / 'ref.raw', SIZE, PATTERNS)
    path = str(tmp_path / ('img-%s.qcow2' % compression))
    cmd = ['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2']
    if compression:
        cmd += ['-c', '-o', 'compression_type=%s' % compression]
    subprocess.run(cmd + [raw, path], check=True)
    return path, raw


def _convert(tmp_path, src, settings, monkeypatch):
    used = []
    real = qemu_img.convert

    def spy(*args, **kwargs):
        used.append(kwargs['tuning'])
        return real(*args, **kwargs)
    monkeypatch.setattr(qemu_img, 'convert', spy)
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    result = conversion.convert_image(src, 'qcow2', image_id='img',
                                      work_dir=str(work), settings=settings)
    return result, used


@pytest.mark.parametrize('compression', ['zlib', 'zstd'])
def test_compressed_source_runs_more_requests_in_flight(
        tmp_path, monkeypatch, compression, qemu_tools):
    src, reference = _compressed_qcow2(tmp_path, compression)
    facts, _info = conversion.inspect_source(
        src, 'qcow2', hostile_corpus.pipeline_settings('raw'))
    assert facts.compressed_clusters > 0

    result, used = _convert(tmp_path, src,
                            hostile_corpus.pipeline_settings('raw'),
                            monkeypatch)

    assert used == [qemu_img.Tuning(
        coroutines=formats.DECOMPRESSING_COROUTINES,
        out_of_order=True)]
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')


def test_uncompressed_source_keeps_the_configured_tuning(
        tmp_path, monkeypatch, qemu_tools):
    src, reference = _compressed_qcow2(tmp_path, None)
    settings = hostile_corpus.pipeline_settings('raw')
    result, used = _convert(tmp_path, src, settings, monkeypatch)
    assert used == [settings.tuning]
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')


def test_operator_choices_are_kept_for_compressed_sources(
        tmp_path, monkeypatch, qemu_tools):
    src, reference = _compressed_qcow2(tmp_path, 'zlib')
    settings = dataclasses.replace(
        hostile_corpus.pipeline_settings('raw'),
        tuning=qemu_img.Tuning(coroutines=2, out_of_order=False),
        tuning_set=frozenset({'coroutines', 'out_of_order'}))
    result, used = _convert(tmp_path, src, settings, monkeypatch)
    assert used == [settings.tuning]
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')


def test_compressed_source_to_raw_runs_over_ranges(tmp_path, monkeypatch,
                                                   qemu_tools):
    """Several qemu-img processes, balanced by the L2 tables, same data."""
    from glance_convert.pipeline import parallel
    src, reference = _compressed_qcow2(tmp_path, 'zlib')
    calls = []
    real = parallel.convert_to_raw

    def spy(*args, **kwargs):
        ranges = real(*args, **kwargs)
        calls.append((args[1], kwargs['workers'], kwargs['tuning'], ranges))
        return ranges
    monkeypatch.setattr(parallel, 'convert_to_raw', spy)
    settings = dataclasses.replace(hostile_corpus.pipeline_settings('raw'),
                                   parallel_workers=2)
    # A small image takes one process ...
    result, used = _convert(tmp_path, src, settings, monkeypatch)
    assert len(used) == 1 and calls == []
    # ... a larger one (here: a lower threshold) several.
    facts, _ = conversion.inspect_source(src, 'qcow2', settings)
    monkeypatch.setattr(conversion, 'PARALLEL_MIN_COMPRESSED_CLUSTERS',
                        facts.compressed_clusters)
    os.unlink(result.path)
    result, used = _convert(tmp_path, src, settings, monkeypatch)

    assert used == [], 'one qemu-img converted it all'
    [(driver, workers, tuning, ranges)] = calls
    assert (driver, workers) == ('qcow2', 2)
    assert tuning == qemu_img.Tuning(
        coroutines=formats.DECOMPRESSING_COROUTINES,
        out_of_order=True)
    assert len(ranges) == 2
    assert imagefactory.compare(result.path, 'raw', reference, 'raw')


def test_qcow2_work_map_weighs_compressed_clusters(tmp_path, qemu_tools):
    from glance_convert.formats import qcow2
    from glance_convert.pipeline import parallel
    clusters = set()
    for offset, length, _byte in PATTERNS:
        clusters.update(range(offset // 65536,
                              (offset + length - 1) // 65536 + 1))
    compressed, _ = _compressed_qcow2(tmp_path, 'zstd')
    (tmp_path / 'ref.raw').unlink()
    plain, _ = _compressed_qcow2(tmp_path, None)
    # 16 MiB: one piece of an L2 table.  Every pattern cluster compresses;
    # uncompressed, the same clusters weigh less.
    assert parallel.allocation_map(compressed, 'qcow2') == [
        (0, len(clusters) * 65536)]
    assert parallel.allocation_map(plain, 'qcow2') == [
        (0, len(clusters) * 65536 // qcow2.QCOW2_COMPRESSED_COST)]


def test_ranges_never_read_a_backing_file(tmp_path, qemu_tools):
    """The info check refuses backing files; the ranges do not open one
    either, should one get that far."""
    from glance_convert.pipeline import parallel
    base = imagefactory.make_raw(tmp_path / 'base.raw', SIZE, PATTERNS)
    top = str(tmp_path / 'top.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'raw', top], check=True)
    out = str(tmp_path / 'out.raw')
    parallel.convert_to_raw(top, 'qcow2', out, SIZE, workers=2)
    blank = imagefactory.make_raw(tmp_path / 'blank.raw', SIZE, [])
    assert imagefactory.compare(out, 'raw', blank, 'raw')
    assert not imagefactory.compare(out, 'raw', base, 'raw')
