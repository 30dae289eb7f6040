"""What the describe phase adds to an import: guest properties on vs off.

The describe phase reads the converted guest's disk (partition table,
filesystems, the EFI system partition, os-release) and decides the
properties Nova needs to boot it.  Its budget is 50 ms per import.  To
show the cost as an import sees it, the plugin's whole task runs (the
``ConvertImage.execute`` Glance runs, as the ``plugin`` runner does), on
the test suite's guest disks handed over as qcow2 and as a
streamOptimized VMDK, to a raw and a qcow2 target, with
``guest_properties`` on and off, the two interleaved in a balanced order
in each round (``order.py``).  A raw output is read directly, a qcow2
output through its own L1/L2 tables; any other is read through the
confined ``qemu-img dd``, one run per 256 KiB chunk
(``glance_convert.pipeline.guest_view``), so a VMDK target shows that
path's cost.

The guest disks come from ``tests/guestdisks.py``, the same builders the
boot and property tests use, so the bench measures the layouts those
tests prove right (a copy here would drift from them).  They need
sgdisk, parted, mkfs.vfat, mtools, mkfs.ntfs and mkfs.ext4.

Reported per cell: the added wall time (median over rounds of the
on-minus-off difference of a round's two back-to-back imports, and the
ratio of the medians), min/median/max of both variants, the describe
phase's own time from the task's ``Timings``, and the ``qemu-img dd``
runs it took.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys

from benchlib import measure
from benchlib import order
from benchlib import runners

DISKS = ('windows_uefi', 'linux_uefi', 'linux_bios')
#: How the guest is handed over: Glance disk format, qemu-img options.
HANDOVERS = {
    'qcow2': ('qcow2', ['-O', 'qcow2']),
    'vmdk': ('vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']),
}
#: raw: read from the file; qcow2, vmdk and vhdx: through the output's
#: own tables (a format without a tables reader, ploop, goes through the
#: confined ``qemu-img dd``).
TARGETS = ('raw', 'qcow2', 'vmdk', 'vhdx')
VARIANTS = ('off', 'on')
#: The issue's budget: milliseconds the describe phase may add per import.
BUDGET_MS = 50.0


def _builders():
    """``tests.guestdisks``, importable from the repository's root."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests import guestdisks
    return guestdisks


def ensure_disks(work_dir, disks=DISKS, handovers=tuple(HANDOVERS),
                 log=print):
    """{(disk, handover): path}: built once, cached in ``work_dir``."""
    base = os.path.join(work_dir, 'guest-disks')
    os.makedirs(base, exist_ok=True)
    paths = {}
    for name in disks:
        raw = os.path.join(base, name + '.raw')
        if not os.path.exists(raw):
            log('building guest disk %s' % name)
            scratch = os.path.join(base, 'scratch')
            os.makedirs(scratch, exist_ok=True)
            getattr(_builders(), name)(raw + '.tmp', scratch)
            shutil.rmtree(scratch, ignore_errors=True)
            os.replace(raw + '.tmp', raw)
        for handover in handovers:
            fmt, opts = HANDOVERS[handover]
            path = os.path.join(base, '%s.%s' % (name, handover))
            if not os.path.exists(path):
                subprocess.run(['qemu-img', 'convert', '-f', 'raw'] + opts
                               + [raw, path + '.tmp'], check=True)
                os.replace(path + '.tmp', path)
            paths[name, handover] = path
    return paths


# ------------------------------------------------------ in the forked child

#: Every Timings of the run (the task makes one per import).
_TIMINGS = []
#: Where each describe read the guest's disk (Guest.read_from).
_READ_FROM = []


def _prepare(variant):
    """Set the option and watch the task's Timings and processes."""
    from oslo_config import cfg
    from glance_convert import options
    from glance_convert.pipeline import describe
    from glance_convert.pipeline import phases
    cfg.CONF.set_override('guest_properties', variant == 'on',
                          group=options.GROUP)
    original = phases.Timings.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        _TIMINGS.append(self)
    phases.Timings.__init__ = init
    original_describe = describe.describe

    def described(*a, **kw):
        guest = original_describe(*a, **kw)
        if guest is not None:
            _READ_FROM.append(guest.read_from)
        return guest
    describe.describe = described
    runners.start_capture()


def _import(src, claimed, target, run_dir, facts_file):
    """The plugin's task on ``src``; what it found goes to ``facts_file``
    after the clock-relevant work (a few microseconds)."""
    from oslo_config import cfg
    from glance_convert import options
    from glance_convert.flow import task as tasks
    cfg.CONF.set_override('output_format', target, group=options.GROUP)
    cfg.CONF.set_override('work_dir', run_dir, group=options.GROUP)
    wrapper = runners._FakeActionWrapper(os.path.basename(src), claimed)
    task = tasks.ConvertImage('bench', 'import', wrapper, [],
                              status=tasks.SilentStatus())
    out = task.execute('file://' + src).split('file://')[-1]
    seconds = _TIMINGS[-1].seconds if _TIMINGS else {}
    dd = [secs for name, secs in runners.timing_breakdown()
          if name.startswith('qemu-img dd')]
    with open(facts_file, 'w') as f:
        json.dump({'phases': seconds, 'dd_runs': len(dd),
                   'dd_seconds': sum(dd),
                   'read_from': _READ_FROM[-1] if _READ_FROM else None,
                   'properties': wrapper.action.properties,
                   'disk_format': wrapper.action.attributes.get(
                       'disk_format')}, f)
    return out


# ------------------------------------------------------------ in the parent

def one(bench, path, claimed, target, variant):
    """One measured import; the run's measurements and what it found."""
    run_dir = bench.fresh_run_dir()
    facts_file = os.path.join(run_dir, 'facts.json')
    link = runners.fresh_link(path, run_dir)
    bench.cache.apply('warm', [path])
    result = measure.run_forked(
        lambda: _import(link, claimed, target, run_dir, facts_file),
        prepare=lambda: _prepare(variant))
    if 'error' in result:
        raise RuntimeError('guest %s %s -> %s failed: %s\n%s' % (
            variant, os.path.basename(path), target, result['error'],
            result.get('traceback', '')))
    with open(facts_file) as f:
        found = json.load(f)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {'wall': result['wall'],
            'describe': found['phases'].get('describe'),
            'dd_runs': found['dd_runs'], 'dd_seconds': found['dd_seconds'],
            'read_from': found['read_from'],
            'properties': found['properties'],
            'disk_format': found['disk_format']}


def _stats_ms(values):
    values = [v * 1e3 for v in values if v is not None]
    if not values:
        return None
    return {'min': min(values), 'median': statistics.median(values),
            'max': max(values)}


def summarize(runs):
    """Per cell: on, off, the added time and the describe phase, in ms."""
    on, off = runs['on'], runs['off']
    added = [a['wall'] - b['wall'] for a, b in zip(on, off)]
    return {
        'n': len(on),
        'off_ms': _stats_ms(r['wall'] for r in off),
        'on_ms': _stats_ms(r['wall'] for r in on),
        'added_ms': _stats_ms(added),
        'ratio': (statistics.median(r['wall'] for r in on)
                  / statistics.median(r['wall'] for r in off)),
        'describe_ms': _stats_ms(r['describe'] for r in on),
        'dd_runs': max(r['dd_runs'] for r in on),
        'dd_ms': _stats_ms(r['dd_seconds'] for r in on),
        'properties': sorted(k for k in on[-1]['properties']
                             if k.startswith(('hw_', 'os_'))),
        'firmware': on[-1]['properties'].get('hw_firmware_type'),
        'read_from': on[-1]['read_from'],
    }


def run(bench, rounds, disks=DISKS, handovers=tuple(HANDOVERS),
        targets=TARGETS, log=print):
    """Every (disk, handover, target) cell, on and off interleaved."""
    paths = ensure_disks(bench.work, disks, handovers, log=log)
    results = []
    for target in targets:
        for disk in disks:
            for handover in handovers:
                claimed = HANDOVERS[handover][0]
                path = paths[disk, handover]
                for variant in VARIANTS:    # warm-up
                    one(bench, path, claimed, target, variant)
                runs = {v: [] for v in VARIANTS}
                for rnd in range(rounds):
                    for variant in order.round_order(VARIANTS, rnd):
                        runs[variant].append(
                            one(bench, path, claimed, target, variant))
                entry = {'disk': disk, 'handover': handover,
                         'target': target, 'runs': runs,
                         'summary': summarize(runs)}
                results.append(entry)
                print_entry(entry)
    return {'budget_ms': BUDGET_MS, 'cells': results,
            'verdict': verdict(results)}


def verdict(cells):
    """Per target: the worst cell's median added time, and the budget."""
    out = {}
    for target in dict.fromkeys(c['target'] for c in cells):
        worst = max((c for c in cells if c['target'] == target),
                    key=lambda c: c['summary']['added_ms']['median'])
        ms = worst['summary']['added_ms']['median']
        out[target] = {'worst_added_ms': ms,
                       'worst_cell': '%s as %s' % (worst['disk'],
                                                   worst['handover']),
                       'within_budget': ms <= BUDGET_MS}
    return out


def _fmt(stats):
    if stats is None:
        return '%20s' % '-'
    return '%6.1f %6.1f-%6.1f' % (stats['median'], stats['min'],
                                  stats['max'])


def print_entry(entry):
    s = entry['summary']
    if not getattr(print_entry, 'header', False):
        print('\nguest properties on vs off, per import (ms: median '
              'min-max; added = median of on - off per round)')
        print('  %-30s %20s %20s %20s %5s %20s %3s  %s' % (
            'disk as handover -> target', 'off', 'on', 'added', 'ratio',
            'describe phase', 'dd', 'firmware, read from'))
        print_entry.header = True
    print('  %-30s %s %s %s %5.2f %s %3d  %s, %s' % (
        '%s as %s -> %s' % (entry['disk'], entry['handover'],
                            entry['target']),
        _fmt(s['off_ms']), _fmt(s['on_ms']), _fmt(s['added_ms']),
        s['ratio'], _fmt(s['describe_ms']), s['dd_runs'],
        s['firmware'] or '-', s['read_from'] or '-'))
    sys.stdout.flush()


def print_verdict(result):
    for target, v in result['verdict'].items():
        print('  target %s: worst median added %.1f ms (%s): %s' % (
            target, v['worst_added_ms'], v['worst_cell'],
            'within the %.0f ms budget' % result['budget_ms']
            if v['within_budget'] else
            'OVER the %.0f ms budget' % result['budget_ms']))
    sys.stdout.flush()
