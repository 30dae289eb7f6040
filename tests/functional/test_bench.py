"""The benchmark still runs: a tiny end-to-end run of tools/bench.py.

Only that it works and that its runners agree on the output; the numbers
themselves are the benchmark's business, not a test's.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RUNNERS = ('plugin', 'stock', 'copy', 'qemu')


@pytest.fixture(scope='module')
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('bench')


@pytest.fixture(scope='module')
def report(bench_dir, qemu_tools):
    pytest.importorskip('glance.async_.flows.plugins.image_conversion')
    tmp = bench_dir
    out = tmp / 'report.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'bench.py'),
         '--size', '32M', '--rounds', '1', '--no-scaling',
         '--pairs', 'qcow2:raw,vmdk-stream:raw,raw:qcow2',
         '--runners', ','.join(RUNNERS),
         '--work-dir', str(tmp / 'work'), '--json', str(out),
         '--publish', str(tmp / 'published.json')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_every_runner_ran_every_pair(report):
    data, stdout = report
    pairs = {(e['source'], e['target']) for e in data['table']}
    assert pairs == {('qcow2', 'raw'), ('vmdk-stream', 'raw'),
                     ('raw', 'qcow2')}
    for entry in data['table']:
        for runner in RUNNERS:
            runs = entry['runs'][runner]
            assert len(runs) == 1 and 'error' not in runs[0], entry
            assert runs[0]['wall'] > 0
    assert 'a/d' in stdout


def test_published_results_make_the_docs_sentences(report, bench_dir):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from benchlib import results
    data, _ = report
    pub = results.load(str(bench_dir / 'published.json'))
    run = pub['runs']['table']
    assert run['command'].startswith('tox -e bench -- --size 32M')
    assert '--publish' not in run['command']
    assert [(e['source'], e['cache']) for e in run['table']] == \
        [(e['source'], e['cache']) for e in data['table']]
    assert all('runs' not in e for e in run['table'])
    stock, qemu = results.headline(pub, 'table')
    assert 'on every one of the 3 measured pairs' in stock
    assert 'bare qemu-img' in qemu


def test_plugin_output_matches_bare_qemu_img(report):
    data, _ = report
    for entry in data['table']:
        plugin = entry['runs']['plugin'][0]
        qemu = entry['runs']['qemu'][0]
        assert plugin['out_apparent'] == qemu['out_apparent'], entry
        # Same data, so the same allocation, give or take metadata.
        assert abs(plugin['out_allocated'] - qemu['out_allocated']) \
            <= 1024 * 1024, entry


def test_plugin_steps_are_recorded(report):
    data, _ = report
    by_pair = {(e['source'], e['target']): e for e in data['table']}
    steps = [name for name, _ in by_pair[('qcow2', 'raw')]['plugin_steps']]
    assert 'qemu-img convert' in steps
    assert by_pair[('vmdk-stream', 'raw')]['plugin_parallel'] is True


@pytest.mark.parametrize('n', [1, 2, 3, 4, 5])
def test_run_order_is_balanced(n):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        from benchlib import order
    finally:
        sys.path.pop(0)
    rows = [order.round_order(range(n), rnd)
            for rnd in range(len(order.williams_rows(n)))]
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    for row in rows:
        assert sorted(row) == list(range(n))
    # Every item takes every position equally often ...
    for pos in range(n):
        counts = [sum(row[pos] == x for row in rows) for x in range(n)]
        assert len(set(counts)) == 1
    # ... and follows every other item equally often.
    follows = {}
    for row in rows:
        for a, b in zip(row, row[1:]):
            follows[a, b] = follows.get((a, b), 0) + 1
    if n > 1:
        assert len(follows) == n * (n - 1)
        assert len(set(follows.values())) == 1


def test_chart_is_drawn_when_matplotlib_is_there(report):
    pytest.importorskip('matplotlib')
    data, _ = report
    with open(data['chart']) as f:
        assert '<svg' in f.read()


def test_fixed_cost_mode_says_where_the_time_goes(tmp_path, qemu_tools):
    pytest.importorskip('glance.async_.flows.plugins.image_conversion')
    out = tmp_path / 'fixed.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'bench.py'),
         '--fixed-cost', '--rounds', '1', '--pairs', 'qcow2:raw',
         '--work-dir', str(tmp_path / 'work'), '--json', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [entry] = json.loads(out.read_text())['fixed_cost']
    phases = entry['phases']
    # The conversion and the checks before it are timed in the run itself.
    assert phases['qemu-img convert'][0][1] == 1
    assert phases['  qemu-img info'][0][0] > 0
    plugin = entry['summary']['plugin']
    assert plugin['fixed_cost'] == pytest.approx(
        plugin['median'] - entry['summary']['qemu']['median'])
    assert 'fixed cost' in proc.stdout


def test_container_mode_runs_every_runner_to_the_same_output(
        tmp_path, qemu_tools):
    pytest.importorskip('glance.async_.flows.plugins.image_conversion')
    out = tmp_path / 'containers.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'bench.py'),
         '--containers', 'qcow2.gz,ova', '--size', '16M', '--rounds', '1',
         '--work-dir', str(tmp_path / 'work'), '--json', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = json.loads(out.read_text())['containers']
    assert [e['source'] for e in entries] == ['qcow2.gz', 'ova']
    for entry in entries:
        runs = {name: rs[0] for name, rs in entry['runs'].items()}
        assert set(runs) == {'plugin', 'nohash', 'tools', 'tools-sha'}
        sizes = {(r['out_apparent'], r['out_allocated'] // (1 << 20))
                 for r in runs.values()}
        assert len(sizes) == 1, runs   # one raw disk, whoever made it
    assert 'plugin / nohash' in proc.stdout


def test_the_nohash_runner_really_removes_the_hash(tmp_path, monkeypatch):
    """plugin/nohash is the checksum's cost only if nohash hashes nothing."""
    import gzip
    import hashlib
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        from benchlib import containers
    finally:
        sys.path.pop(0)
    from glance_convert.pipeline import upload_hash
    from glance_convert.pipeline.containers import compressed
    data = os.urandom(1 << 20)
    src = tmp_path / 'x.gz'
    src.write_bytes(gzip.compress(data))
    real = compressed.decompress(str(src), str(tmp_path / 'a'), limit=1 << 30)
    assert real.source_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert upload_hash.BackgroundHash(str(src)).result() == real.source_sha256
    monkeypatch.setattr(upload_hash, 'Hasher', upload_hash.Hasher)
    monkeypatch.setattr(upload_hash, 'BackgroundHash',
                        upload_hash.BackgroundHash)
    containers.disable_hash()
    off = compressed.decompress(str(src), str(tmp_path / 'b'), limit=1 << 30)
    assert off.source_sha256 != real.source_sha256
    assert (tmp_path / 'b').read_bytes() == data
    assert upload_hash.BackgroundHash(str(src)).result() != real.source_sha256


@pytest.fixture(scope='module')
def guest_report(bench_dir, qemu_tools):
    pytest.importorskip('glance.async_.flows.plugins.image_conversion')
    out = bench_dir / 'guest.json'
    published = bench_dir / 'guest-published.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'bench.py'),
         '--guest', '--rounds', '2', '--work-dir', str(bench_dir / 'gwork'),
         '--json', str(out), '--publish', str(published)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())['guest'], proc.stdout, published


def test_guest_mode_runs_every_disk_handover_and_target(guest_report):
    data, stdout, _ = guest_report
    cells = {(c['disk'], c['handover'], c['target']) for c in data['cells']}
    assert cells == {(d, h, t)
                     for d in ('windows_uefi', 'linux_uefi', 'linux_bios')
                     for h in ('qcow2', 'vmdk')
                     for t in ('raw', 'qcow2', 'vmdk', 'vhdx')}
    for cell in data['cells']:
        s = cell['summary']
        assert s['n'] == 2 and len(cell['runs']['off']) == 2
        # The added time is the paired difference, not of the medians.
        added = sorted(a['wall'] - b['wall'] for a, b in
                       zip(cell['runs']['on'], cell['runs']['off']))
        assert s['added_ms']['min'] == pytest.approx(added[0] * 1e3)
        assert s['added_ms']['max'] == pytest.approx(added[-1] * 1e3)
    assert set(data['verdict']) == {'raw', 'qcow2', 'vmdk', 'vhdx'}
    assert 'worst median added' in stdout


def test_guest_mode_compares_describe_on_with_off(guest_report):
    """"on" really reads the disk and sets the properties, "off" reads
    nothing: otherwise the difference would measure nothing."""
    data, _, _ = guest_report

    def expected(cell):
        # Raw bytes first, then the tables of a qcow2 or sparse VMDK.
        if cell['target'] == 'raw':
            return 'output'
        return 'output %s (tables)' % cell['target']
    for cell in data['cells']:
        firmware = 'bios' if cell['disk'].endswith('bios') else 'uefi'
        for run in cell['runs']['on']:
            assert run['properties']['hw_firmware_type'] == firmware, cell
            assert run['describe'] is not None
            assert run['read_from'] == expected(cell), cell
            assert (run['dd_runs'] > 0) == (expected(cell) == 'qemu-img')
        for run in cell['runs']['off']:
            assert 'hw_firmware_type' not in run['properties'], cell
            assert run['read_from'] is None and run['dd_runs'] == 0


def test_guest_results_make_the_docs_sentences(guest_report):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from benchlib import results
    _, _, published = guest_report
    pub = results.load(str(published))
    run = pub['runs']['guest']
    assert run['command'].startswith('tox -e bench -- --guest')
    assert all('runs' not in c for c in run['guest']['cells'])
    sentences = results.headline(pub, 'guest')
    assert len(sentences) == 4      # raw, qcow2, vmdk, vhdx
    assert any('qcow2 target (read through its own L1/L2 tables' in s
               for s in sentences)
    assert any('vmdk target (read through its grain tables' in s
               for s in sentences)
