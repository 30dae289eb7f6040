"""The benchmark's results file and the sentences the docs open with."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

from benchlib import results  # noqa: E402


def entry(source, cache, stock=None, qemu=1.0, parallel=False, **extra):
    plugin = {'median': 1.0, 'ratio_qemu': qemu, 'ratio_paired_qemu': qemu}
    summary = {'plugin': plugin, 'qemu': {'median': 1.0 / qemu}}
    e = {'source': source, 'target': 'raw', 'cache': cache,
         'summary': summary, 'runs': {'plugin': [{'wall': 1.0}]}}
    if stock is None:
        e['stock_error'] = "Unknown driver 'vhd'"
    else:
        plugin['ratio_stock'] = plugin['ratio_paired_stock'] = stock
        summary['stock'] = {'median': 1.0 / stock}
    if parallel:
        e['plugin_parallel'] = True
    e.update(extra)
    return e


def report():
    return {'environment': {'time': '2026-12-07T10:00:00', 'cpus': 2,
                            'qemu_img': 'qemu-img version 7.2.0'},
            'rounds': 5, 'elapsed': 100.4,
            'table': [entry('qcow2', 'warm', stock=0.9, qemu=1.08),
                      entry('vmdk-stream', 'warm', stock=0.45, qemu=0.44,
                            parallel=True),
                      entry('vhd', 'cold', qemu=0.7)]}


def test_headline_gives_the_range_over_every_pair(tmp_path):
    path = str(tmp_path / 'results.json')
    results.publish(path, report(), 'tox -e bench')
    data = results.load(path)
    stock, qemu = results.headline(data, 'table')
    assert '0.45-0.90x' in stock and 'on every one of the 2 ' in stock
    assert 'fails on vhd -> raw' in stock
    assert '0.44-1.08x' in qemu
    assert '0.70-1.08x where it converts with one process' in qemu
    assert '0.44x where it splits' in qemu
    assert 'run on 2026-12-07' in results.provenance(data, 'table')


def test_publish_keeps_other_sections_and_drops_raw_runs(tmp_path):
    path = str(tmp_path / 'results.json')
    results.publish(path, report(), 'tox -e bench')
    fixed = {'environment': {}, 'image': {'virtual_size': 64 << 20},
             'fixed_cost': [{'source': 'qcow2', 'target': 'raw',
                             'cache': 'warm', 'phases': {'x': 1},
                             'summary': {'plugin': {
                                 'fixed_cost': 0.025,
                                 'fixed_cost_paired': 0.0245}}}]}
    assert results.publish(path, fixed, 'tox -e bench -- --fixed-cost') \
        == ['fixed_cost']
    with open(path) as f:
        data = json.load(f)
    assert set(data['runs']) == {'table', 'fixed_cost'}
    assert all('runs' not in e for e in data['runs']['table']['table'])
    [sentence] = results.headline(data, 'fixed_cost')
    assert '25.0 ms (paired: 24.5 ms)' in sentence


def guest_cell(disk, target, added, describe):
    stats = {'min': added - 5, 'median': added, 'max': added + 5}
    return {'disk': disk, 'handover': 'qcow2', 'target': target,
            'runs': {'on': [{'wall': 0.1}], 'off': [{'wall': 0.1}]},
            'summary': {'added_ms': stats,
                        'describe_ms': dict(stats, median=describe)}}


def test_guest_headline_says_per_target_whether_the_budget_holds(tmp_path):
    path = str(tmp_path / 'results.json')
    guest = {'budget_ms': 50.0,
             'cells': [guest_cell('linux_uefi', 'qcow2', 2.0, 1.5),
                       guest_cell('linux_bios', 'qcow2', 4.5, 1.4),
                       guest_cell('linux_uefi', 'vmdk', 61.0, 55.0)],
             'verdict': {'qcow2': {'within_budget': True},
                         'vmdk': {'within_budget': False}}}
    assert results.publish(path, {'guest': guest},
                           'tox -e bench -- --guest') == ['guest']
    data = results.load(path)
    assert all('runs' not in c for c in data['runs']['guest']['guest'][
        'cells'])
    qcow2, vmdk = results.headline(data, 'guest')
    assert 'added from 2.0 to 4.5 ms per import to a qcow2 target' in qcow2
    assert 'own L1/L2 tables' in qcow2 and 'over 2 guest images' in qcow2
    assert qcow2.endswith('within the 50 ms budget in this run.')
    assert 'added 61.0 ms' in vmdk and 'its grain tables' in vmdk
    assert 'describe phase itself taking 55.0 ms' in vmdk
    assert vmdk.endswith('over the 50 ms budget in this run.')


def test_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / 'results.json'
    path.write_text(json.dumps({'format': 99, 'runs': {}}))
    with pytest.raises(ValueError):
        results.load(str(path))


def test_the_committed_results_file_reads():
    data = results.load(os.path.join(ROOT, 'doc', 'source', 'performance',
                                     'results.json'))
    for section in data['runs']:
        assert results.headline(data, section)
