#!/usr/bin/env python3
"""Benchmark glance-convert's conversion step against Glance's stock task,
a bare ``qemu-img convert`` and a plain sparse copy.

    python tools/bench.py                 # default run (2 GiB images)
    python tools/bench.py --quick         # smoke test (256 MiB, 2 rounds)
    python tools/bench.py --pairs vmdk-stream:raw,qcow2:raw --cache both
    python tools/bench.py --sweep         # qemu-img tuning sweep, cold+warm
    python tools/bench.py --containers    # compressed and OVA uploads
    python tools/bench.py --guest         # guest boot properties on vs off
    python tools/bench.py --json results.json
    python tools/bench.py --cache both \
        --publish doc/source/performance/results.json

Every measurement of one pair is taken in the same run, runners interleaved
in each round in a balanced order (every runner follows every other one
equally often: ``benchlib/order.py``), so the ratios are meaningful on a
busy machine even when the absolute times are not.  See
``tools/benchlib/`` for the image generator, the runners and how the
measurements are taken.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import chart  # noqa: E402
from benchlib import containers  # noqa: E402
from benchlib import e2e  # noqa: E402
from benchlib import fixedcost  # noqa: E402
from benchlib import guest  # noqa: E402
from benchlib import images  # noqa: E402
from benchlib import measure  # noqa: E402
from benchlib import order  # noqa: E402
from benchlib import results  # noqa: E402
from benchlib import runners  # noqa: E402

MiB = images.MiB
GiB = images.GiB

RUNNERS = ('plugin', 'stock', 'copy', 'qemu', 'parallel')
DEFAULT_RUNNERS = ('plugin', 'stock', 'copy', 'qemu')
DEFAULT_PAIRS = ('qcow2:raw', 'qcow2-zlib:raw', 'qcow2-zstd:raw',
                 'cloud-zlib:raw', 'vmdk-stream:raw', 'vmdk-sparse:raw',
                 'vdi:raw', 'vhd:raw', 'raw:qcow2')
# The project's targets: plugin / other runner, on medians.
TARGETS = {'stock': 1.00, 'copy': 1.15, 'qemu': 1.10}

# --e2e: a cloud image through glance-api.
E2E_PAIR = 'cloud-zlib:raw'

# --fixed-cost: small images, where the fixed cost is nearly everything.
FIXED_COST_PAIRS = ('qcow2:raw', 'qcow2-zlib:raw', 'vdi:raw')
FIXED_COST_TARGET = 0.020

# --sweep: qemu-img tuning variants, each compared with qemu-img's defaults.
SWEEP = (
    ('defaults', []),
    ('-m 16', ['-m', '16']),
    ('-m 1', ['-m', '1']),
    ('-W', ['-W']),
    ('-W -m 16', ['-W', '-m', '16']),
    ('-T none', ['-T', 'none']),
    ('-T none -W -m 16', ['-T', 'none', '-W', '-m', '16']),
    ('-t none', ['-t', 'none']),
    ('-t writeback', ['-t', 'writeback']),
)


class UsageError(Exception):
    pass


def parse_size(text):
    units = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
    t = text.strip().upper().rstrip('IB').rstrip('B')
    suffix = t[-1] if t and t[-1] in units else ''
    try:
        value = float(t[:-1] if suffix else t)
    except ValueError:
        raise UsageError('not a size: %r (try 2G, 256M)' % text)
    size = int(value * units[suffix])
    if size < 16 * MiB or size % (1 << 20):
        raise UsageError('size must be a whole number of MiB, >= 16 MiB')
    return size


def parse_pairs(text):
    pairs = []
    for item in text.split(','):
        src, sep, dst = item.strip().partition(':')
        if not sep or src not in images.source_names() or \
                dst not in ('raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx'):
            raise UsageError(
                'bad pair %r: SOURCE:TARGET with SOURCE one of %s and TARGET '
                'a Glance disk format'
                % (item, ', '.join(images.source_names())))
        pairs.append((src, dst))
    return pairs


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', default='2G',
                   help='virtual size of the test images (default 2G)')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--rounds', type=int, default=5,
                   help='measured rounds after one warm-up (default 5)')
    p.add_argument('--quick', action='store_true',
                   help='smoke test: 256M images, 2 rounds, main table only')
    p.add_argument('--work-dir',
                   default=os.environ.get('GLANCE_CONVERT_BENCH_DIR',
                                          '/var/tmp/glance-convert-bench'),
                   help='where images are cached and outputs written')
    p.add_argument('--pairs', default=','.join(DEFAULT_PAIRS),
                   help='comma-separated SOURCE:TARGET pairs; sources: %s '
                        '(cloud-*: compressed qcow2 of %d MiB virtual, '
                        '%.0f%%%% allocated, whatever --size says)'
                        % (', '.join(images.source_names()),
                           images.CLOUD_SIZE // MiB,
                           images.CLOUD_ALLOCATED * 100))
    p.add_argument('--runners', default=','.join(DEFAULT_RUNNERS),
                   help='subset of %s' % ', '.join(RUNNERS))
    p.add_argument('--cache', choices=('warm', 'cold', 'both'),
                   default='warm',
                   help='page cache state of the source before each run')
    p.add_argument('--cold-method',
                   choices=('auto', 'drop_caches', 'fadvise'), default='auto')
    p.add_argument('--parallel-workers', type=int, default=2,
                   help='processes of the "parallel" runner')
    p.add_argument('--no-scaling', action='store_true',
                   help='skip the 2G-vs-64G and concurrency checks')
    p.add_argument('--sweep', action='store_true',
                   help='only run the qemu-img tuning sweep')
    p.add_argument('--sweep-rounds', type=int, default=3)
    p.add_argument('--e2e', action='store_true',
                   help='only import through two real glance-api servers, '
                        'plugin and stock, and time staging, conversion '
                        'and store upload (default pair %s, --rounds 3)'
                        % E2E_PAIR)
    p.add_argument('--fixed-cost', action='store_true',
                   help='only measure the fixed cost per import: plugin '
                        'minus bare qemu-img on 64 MiB images, with where '
                        'the plugin spends it (--rounds, default 15)')
    p.add_argument('--containers', nargs='?', const=','.join(
                       containers.DEFAULT), metavar='KINDS',
                   help='only time uploads in a container against the '
                        'standard tools in sequence, and the plugin '
                        'without its SHA-256; KINDS from %s (default all; '
                        '--size default 512M, --rounds 3)'
                        % ', '.join(containers.KINDS))
    p.add_argument('--guest', action='store_true',
                   help='only measure what reading the guest\'s disk for '
                        'its boot properties adds to an import: the '
                        'plugin\'s task with guest_properties on and off '
                        'on the test suite\'s guest disks (qcow2 and VMDK '
                        'to raw and qcow2; --rounds, default 10)')
    p.add_argument('--chart', metavar='FILE',
                   help='draw the table into FILE (.svg or .png; needs '
                        'matplotlib); default WORK_DIR/bench-chart.svg')
    p.add_argument('--no-chart', action='store_true',
                   help='do not draw the chart')
    p.add_argument('--json', metavar='FILE',
                   help='also write all results as JSON ("-" for stdout)')
    p.add_argument('--publish', metavar='FILE',
                   help='merge the summaries into the documentation\'s '
                        'results file (doc/source/performance/'
                        'results.json) and redraw its charts next to it; '
                        'commit both with the run')
    p.add_argument('--redraw', action='store_true',
                   help='with --publish: measure nothing, only redraw the '
                        'charts from the results file')
    args = p.parse_args(argv)
    given = ' '.join(argv if argv is not None else sys.argv)
    if args.redraw and not args.publish:
        raise UsageError('--redraw needs --publish FILE')
    if args.e2e:
        if '--pairs' not in given:
            args.pairs = E2E_PAIR
        if '--rounds' not in given:
            args.rounds = 3
    if args.fixed_cost:
        if '--pairs' not in given:
            args.pairs = ','.join(FIXED_COST_PAIRS)
        if '--rounds' not in given:
            args.rounds = 15
        args.size = '64M'
    if args.guest and '--rounds' not in given:
        args.rounds = 10
    if args.containers:
        kinds = [k.strip() for k in args.containers.split(',') if k.strip()]
        bad = set(kinds) - set(containers.KINDS)
        if bad or not kinds:
            raise UsageError('--containers takes a comma-separated subset '
                             'of %s' % ', '.join(containers.KINDS))
        args.containers = kinds
        if '--size' not in given:
            args.size = '512M'
        if '--rounds' not in given:
            args.rounds = 3
    if args.quick:
        args.size = '256M'
        args.rounds = min(args.rounds, 2)
        args.sweep_rounds = min(args.sweep_rounds, 1)
        args.no_scaling = True
    args.size = parse_size(args.size)
    args.pairs = parse_pairs(args.pairs)
    args.runners = [r.strip() for r in args.runners.split(',') if r.strip()]
    bad = set(args.runners) - set(RUNNERS)
    if bad:
        raise UsageError('unknown runner(s): %s' % ', '.join(sorted(bad)))
    if args.rounds < 1 or args.sweep_rounds < 1:
        raise UsageError('rounds must be at least 1')
    return args


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work_dir)
        # Per process: two runs sharing a work dir keep their own outputs.
        self.runs_dir = os.path.join(self.work, 'runs-%d' % os.getpid())
        self.cache = measure.CacheControl(args.cold_method)
        self.templates = {}   # (src_variant, target) -> qemu argv template
        self.plugin_fn = runners.plugin_real
        runners.stock_setup()
        runners.plugin_setup()
        self.stock_failures = {}

    # ------------------------------------------------------------ plumbing
    def fresh_run_dir(self):
        shutil.rmtree(self.runs_dir, ignore_errors=True)
        os.makedirs(self.runs_dir)
        return self.runs_dir

    def one(self, runner, imgs, src_v, target, cache_mode, trace=False,
            tuning=None, phases=False):
        """Prepare, run and clean up one measured run.

        ``phases``: time the plugin's phases and process starts
        (``benchlib/fixedcost.py``); they come back as ``result['phases']``.
        """
        run_dir = self.fresh_run_dir()
        phases_file = os.path.join(run_dir, 'phases.json')
        prepare = None
        src = imgs.path(src_v)
        fmt = imgs.fmt(src_v)
        raw = imgs.raw_path(src_v)
        cache_paths = [raw] if runner == 'copy' else [src]
        link = runners.fresh_link(src, run_dir)
        dst = os.path.join(run_dir, 'out.%s' % target)
        if runner == 'plugin':
            def fn():
                if trace:
                    runners.start_capture()
                out = self.plugin_fn(link, fmt, target, run_dir,
                                     os.path.basename(link))
                if trace:
                    argv = runners.qemu_convert_argv(runners.CAPTURED)
                    steps = runners.timing_breakdown()
                    parallel = runners.is_parallel_argv(argv)
                    if parallel:
                        template = runners.single_convert_template(
                            fmt, target, src)
                    else:
                        template = argv and runners.template_from(argv)
                    with open(os.path.join(run_dir, 'argv.json'),
                              'w') as f:
                        json.dump({
                            'template': template, 'parallel': parallel,
                            'steps': steps}, f)
                if phases:
                    collected = fixedcost.collected()
                    for name, secs in runners.timing_breakdown():
                        label = 'process: %s' % name
                        total, calls = collected.get(label, (0, 0))
                        collected[label] = [total + secs, calls + 1]
                    with open(phases_file, 'w') as f:
                        json.dump(collected, f)
                return out

            if phases:
                prepare = _start_phase_timers
        elif runner == 'stock':
            def fn():
                return runners.stock(link, fmt, target)
        elif runner == 'copy':
            def fn():
                return runners.copy(raw, dst)
        elif runner == 'qemu':
            tpl = self.templates[(src_v, target)]
            if tuning is not None:
                tpl = with_tuning(tpl, tuning)

            def fn():
                return runners.bare_qemu(tpl, link, dst)
        elif runner == 'parallel':
            def fn():
                return runners.parallel_step(
                    link, fmt, target, run_dir, os.path.basename(link),
                    self.args.parallel_workers)
        else:
            raise AssertionError(runner)
        self.cache.apply(cache_mode, cache_paths)
        result = measure.run_forked(fn, prepare=prepare, trace_python=trace)
        if phases and os.path.exists(phases_file):
            with open(phases_file) as f:
                result['phases'] = json.load(f)
        if trace and runner == 'plugin' and 'error' not in result:
            argv_file = os.path.join(run_dir, 'argv.json')
            if os.path.exists(argv_file):
                with open(argv_file) as f:
                    captured = json.load(f)
                if captured['template']:
                    self.templates[(src_v, target)] = captured['template']
                result['steps'] = captured['steps']
                result['parallel'] = captured['parallel']
        result.pop('output', None)
        shutil.rmtree(run_dir, ignore_errors=True)
        return result

    def runner_ok(self, runner, src_v, target):
        if runner == 'stock':
            return (target in runners.STOCK_TARGETS
                    and (src_v, target) not in self.stock_failures)
        if runner == 'qemu':
            return (src_v, target) in self.templates
        if runner == 'parallel':
            return target == 'raw'
        return True

    # ---------------------------------------------------------- main table
    def table(self, imgs, pairs, caches):
        results = []
        for src_v, target in pairs:
            for cache_mode in caches:
                entry = {'source': src_v, 'target': target,
                         'cache': cache_mode, 'runs': {}}
                names = [r for r in self.args.runners]
                warmup = sorted(names, key=lambda r: r != 'plugin')
                if 'qemu' in names and 'plugin' not in names:
                    warmup.insert(0, 'plugin')  # to capture its argv
                # Warm-up: the plugin first, traced, to capture its argv.
                for runner in warmup:
                    if not self.runner_ok(runner, src_v, target):
                        continue
                    res = self.one(runner, imgs, src_v, target, cache_mode,
                                   trace=(runner == 'plugin'))
                    if 'error' in res:
                        if runner == 'stock':
                            self.stock_failures[(src_v, target)] = \
                                res['error']
                            entry['stock_error'] = res['error']
                            log('  stock task cannot do %s->%s: %s'
                                % (src_v, target, _gist(res['error'])))
                            continue
                        raise RuntimeError('%s %s->%s failed: %s\n%s' % (
                            runner, src_v, target, res['error'],
                            res.get('traceback', '')))
                    if runner == 'plugin':
                        entry['py_traced_peak'] = res.get('py_traced_peak')
                        entry['plugin_steps'] = res.get('steps')
                        entry['plugin_parallel'] = res.get('parallel')
                        entry['plugin_warmup_wall'] = res['wall']
                if (src_v, target) in self.templates:
                    entry['qemu_argv'] = self.templates[(src_v, target)]
                active = [r for r in names
                          if self.runner_ok(r, src_v, target)]
                for rnd in range(self.args.rounds):
                    for runner in order.round_order(active, rnd):
                        res = self.one(runner, imgs, src_v, target,
                                       cache_mode)
                        if 'error' in res:
                            raise RuntimeError('%s %s->%s failed: %s' % (
                                runner, src_v, target, res['error']))
                        entry['runs'].setdefault(runner, []).append(res)
                entry['summary'] = summarize(entry['runs'],
                                             imgs.data_bytes(src_v))
                entry['data_bytes'] = imgs.data_bytes(src_v)
                entry['virtual_size'] = imgs.virtual_size(src_v)
                results.append(entry)
                print_entry(entry)
        return results

    # ---------------------------------------------------------- containers
    def one_container(self, runner, imgs, name, cache_mode):
        """One measured run of a container upload to raw."""
        run_dir = self.fresh_run_dir()
        src = containers.path(imgs, name)
        link = runners.fresh_link(src, run_dir)
        dst = os.path.join(run_dir, 'out.raw')
        prepare = None
        if runner in ('plugin', 'nohash'):
            def fn():
                return self.plugin_fn(
                    link, containers.claimed(name), 'raw', run_dir,
                    os.path.basename(link),
                    container_format=containers.container_format(name))
            if runner == 'nohash':
                prepare = containers.disable_hash
        else:
            def fn():
                return containers.tools(name, link, run_dir, dst,
                                        with_sha=(runner == 'tools-sha'))
        self.cache.apply(cache_mode, [src])
        result = measure.run_forked(fn, prepare=prepare)
        result.pop('output', None)
        shutil.rmtree(run_dir, ignore_errors=True)
        return result

    def containers(self, imgs, names, caches):
        results = []
        for name in names:
            for cache_mode in caches:
                entry = {'source': name, 'target': 'raw',
                         'cache': cache_mode, 'runs': {},
                         'upload_bytes': os.path.getsize(
                             containers.path(imgs, name))}
                for runner in containers.RUNNERS:   # warm-up
                    res = self.one_container(runner, imgs, name, cache_mode)
                    if 'error' in res:
                        raise RuntimeError('%s %s failed: %s\n%s' % (
                            runner, name, res['error'],
                            res.get('traceback', '')))
                for rnd in range(self.args.rounds):
                    for runner in order.round_order(containers.RUNNERS,
                                                    rnd):
                        res = self.one_container(runner, imgs, name,
                                                 cache_mode)
                        if 'error' in res:
                            raise RuntimeError('%s %s failed: %s' % (
                                runner, name, res['error']))
                        entry['runs'].setdefault(runner, []).append(res)
                entry['summary'] = summarize(entry['runs'],
                                             entry['upload_bytes'])
                p = entry['summary']['plugin']
                for other in containers.RUNNERS[1:]:
                    p['ratio_' + other] = (
                        p['median'] / entry['summary'][other]['median'])
                    p['ratio_paired_' + other] = statistics.median(
                        a['wall'] / max(b['wall'], 1e-6) for a, b in
                        zip(entry['runs']['plugin'], entry['runs'][other]))
                results.append(entry)
                print_container(entry)
        return results

    # ---------------------------------------------------------- fixed cost
    def fixed_cost(self, imgs, pairs):
        """Plugin against bare qemu-img on small images, phase by phase."""
        results = []
        for src_v, target in pairs:
            self.one('plugin', imgs, src_v, target, 'warm', trace=True)
            entry = {'source': src_v, 'target': target, 'cache': 'warm',
                     'runs': {}, 'phases': {}}
            for rnd in range(self.args.rounds):
                for runner in order.round_order(('plugin', 'qemu'), rnd):
                    res = self.one(runner, imgs, src_v, target, 'warm',
                                   phases=(runner == 'plugin'))
                    if 'error' in res:
                        raise RuntimeError('%s %s->%s failed: %s' % (
                            runner, src_v, target, res['error']))
                    for label, (secs, calls) in res.pop('phases',
                                                        {}).items():
                        entry['phases'].setdefault(label, []).append(
                            [secs, calls])
                    entry['runs'].setdefault(runner, []).append(res)
            entry['summary'] = summarize(entry['runs'],
                                         imgs.data_bytes(src_v))
            p = entry['summary']['plugin']
            p['fixed_cost'] = p['median'] - entry['summary']['qemu']['median']
            p['fixed_cost_paired'] = statistics.median(
                a['wall'] - b['wall'] for a, b in
                zip(entry['runs']['plugin'], entry['runs']['qemu']))
            results.append(entry)
            print_fixed_cost(entry)
        return results

    # --------------------------------------------------------------- sweep
    def sweep(self, imgs, pairs, caches):
        results = []
        for src_v, target in pairs:
            if (src_v, target) not in self.templates:
                self.one('plugin', imgs, src_v, target, 'warm', trace=True)
            for cache_mode in caches:
                entry = {'source': src_v, 'target': target,
                         'cache': cache_mode, 'runs': {}}
                self.one('qemu', imgs, src_v, target, cache_mode,
                         tuning=[])   # warm-up
                variants = list(SWEEP)
                for rnd in range(self.args.sweep_rounds):
                    for name, flags in order.round_order(variants, rnd):
                        res = self.one('qemu', imgs, src_v, target,
                                       cache_mode, tuning=flags)
                        if 'error' in res:
                            raise RuntimeError('qemu-img %s failed: %s'
                                               % (name, res['error']))
                        entry['runs'].setdefault(name, []).append(res)
                entry['summary'] = summarize(entry['runs'],
                                             imgs.data_bytes(src_v))
                results.append(entry)
                print_sweep(entry)
        return results

    # ------------------------------------------------------------- scaling
    def scaling(self, catalog):
        base = catalog.base
        big = images.ImageSet(self.work, base.size, base.seed, scale=32)
        big.ensure(['qcow2'], log=log)
        out = {'virtual_sizes': [base.size, base.size * 32], 'runs': {}}
        sets = (('small', base), ('big', big))
        for label, imgs in sets:   # warm-up, and capture the argv
            self.one('plugin', imgs, 'qcow2', 'raw', 'warm', trace=True)
        for rnd in range(self.args.rounds):
            for label, imgs in (sets if rnd % 2 == 0 else sets[::-1]):
                for runner in order.round_order(('plugin', 'qemu', 'copy'),
                                                rnd):
                    res = self.one(runner, imgs, 'qcow2', 'raw', 'warm')
                    if 'error' in res:
                        raise RuntimeError('scaling %s: %s'
                                           % (runner, res['error']))
                    out['runs'].setdefault('%s/%s' % (label, runner),
                                           []).append(res)
        out['summary'] = summarize(out['runs'], base.data_bytes())
        print_scaling(out)
        return out

    def concurrency(self, imgs, levels=(1, 2, 4)):
        out = {'levels': {}}
        src = imgs.path('qcow2')
        for rnd in range(max(1, self.args.rounds // 2 + 1)):
            for n in (levels if rnd % 2 == 0 else levels[::-1]):
                run_dir = self.fresh_run_dir()
                fns = []
                for i in range(n):
                    d = os.path.join(run_dir, str(i))
                    link = runners.fresh_link(src, d)
                    fns.append(self._plugin_call(link, d))
                self.cache.apply('warm', [src])
                wall, res = measure.run_concurrent(fns)
                errors = [r['error'] for r in res if 'error' in r]
                if errors:
                    raise RuntimeError('concurrent run: %s' % errors[0])
                out['levels'].setdefault(str(n), []).append(wall)
                shutil.rmtree(run_dir, ignore_errors=True)
        data = imgs.data_bytes('qcow2')
        out['summary'] = {
            n: {'wall_median': statistics.median(w),
                'aggregate_MiBps': int(n) * data / MiB / statistics.median(w)}
            for n, w in out['levels'].items()}
        print_concurrency(out)
        return out

    def _plugin_call(self, link, run_dir):
        def fn():
            return self.plugin_fn(link, 'qcow2', 'raw', run_dir,
                                  os.path.basename(link))
        return fn


_TUNING_FLAGS = {'-m': 1, '-W': 0, '-t': 1, '-T': 1}


def _start_phase_timers():
    fixedcost.start()
    runners.start_capture()


def with_tuning(template, flags):
    """The template without its tuning flags, then ``flags`` added."""
    out, skip = [], 0
    for i, arg in enumerate(template):
        if skip:
            skip -= 1
            continue
        if i > 1 and arg in _TUNING_FLAGS:
            skip = _TUNING_FLAGS[arg]
            continue
        out.append(arg)
    return out[:2] + list(flags) + out[2:]


# ------------------------------------------------------------------ report

def summarize(runs, data_bytes):
    summary = {}
    for name, rs in runs.items():
        walls = [r['wall'] for r in rs]
        cpu = [r['cpu_children'] + r['cpu_self'] for r in rs]
        py = [r['py_rss_added'] for r in rs if r.get('py_rss_added')
              is not None]
        last = rs[-1]
        summary[name] = {
            'n': len(rs),
            'median': statistics.median(walls),
            'min': min(walls), 'max': max(walls),
            'cpu_median': statistics.median(cpu),
            'cpu_self_median': statistics.median(r['cpu_self'] for r in rs),
            'rss_children_peak': max(r['rss_children_peak'] for r in rs),
            'py_rss_added_max': max(py) if py else None,
            'out_apparent': last.get('out_apparent'),
            'out_allocated': last.get('out_allocated'),
            'MiBps': data_bytes / MiB / statistics.median(walls),
        }
    if 'plugin' in summary:
        for other in ('stock', 'copy', 'qemu'):
            if other in summary:
                summary['plugin']['ratio_' + other] = (
                    summary['plugin']['median'] / summary[other]['median'])
                # On a shared machine the fastest run is the best estimate
                # of the intrinsic cost; CPU time is load-independent.
                summary['plugin']['ratio_min_' + other] = (
                    summary['plugin']['min'] / summary[other]['min'])
                summary['plugin']['ratio_cpu_' + other] = (
                    summary['plugin']['cpu_median']
                    / max(summary[other]['cpu_median'], 1e-3))
                # Runs of one round are taken back to back: the median of
                # the per-round ratios cancels load that drifts between
                # rounds.
                pairs = list(zip(runs['plugin'], runs[other]))
                summary['plugin']['ratio_paired_' + other] = (
                    statistics.median(a['wall'] / max(b['wall'], 1e-6)
                                      for a, b in pairs))
    if 'parallel' in summary and 'stock' in summary:
        summary['parallel']['ratio_stock'] = (
            summary['parallel']['median'] / summary['stock']['median'])
    return summary


def _mib(n):
    return '-' if n is None else '%.0f' % (n / MiB)


def print_entry(entry):
    s = entry['summary']
    print('\n%s -> %s  (%s cache)' % (entry['source'], entry['target'],
                                      entry['cache']))
    print('  %-8s %7s %15s %7s %8s %8s %9s %9s %9s' % (
        'runner', 'median', 'min-max', 'MiB/s', 'CPU s', 'qemuRSS',
        'py+RSS', 'out alloc', 'out size'))
    for name in RUNNERS:
        if name not in s:
            continue
        r = s[name]
        print('  %-8s %6.2fs %6.2f-%6.2fs %7.0f %8.2f %7sM %8sM %8sM %8sM' % (
            name, r['median'], r['min'], r['max'], r['MiBps'],
            r['cpu_median'], _mib(r['rss_children_peak']),
            _mib(r['py_rss_added_max']), _mib(r['out_allocated']),
            _mib(r['out_apparent'])))
    if entry.get('plugin_steps'):
        steps = entry['plugin_steps']
        print('  plugin subprocesses (warm-up, %.2fs in all): %s' % (
            entry['plugin_warmup_wall'],
            ', '.join('%s %.3f' % (n, t) for n, t in steps)))
    if entry.get('plugin_parallel'):
        print('  plugin ran several qemu-img over ranges; qemu is one '
              'qemu-img with the same options')
    if entry.get('py_traced_peak') is not None:
        print('  plugin Python allocations peak (tracemalloc): %.1f MiB'
              % (entry['py_traced_peak'] / MiB))
    if 'stock_error' in entry:
        print('  stock    cannot convert it: %s'
              % _gist(entry['stock_error'])[:100])
    p = s.get('plugin', {})
    ratios = []
    for other, limit in TARGETS.items():
        if 'ratio_' + other in p:
            v = p['ratio_' + other]
            ratios.append('a/%s %.2f %s' % (
                {'stock': 'b', 'copy': 'c', 'qemu': 'd'}[other], v,
                'ok' if v <= limit else '> %.2f' % limit))
    if 'parallel' in s and 'ratio_stock' in s['parallel']:
        ratios.append('parallel/stock %.2f (min %.2f)' % (
            s['parallel']['ratio_stock'],
            s['parallel']['min'] / s['stock']['min']))
    if ratios:
        print('  medians: ' + ';  '.join(ratios))
        print('  minimums: ' + ';  '.join(
            'a/%s %.2f' % (letter, p['ratio_min_' + other])
            for other, letter in (('stock', 'b'), ('copy', 'c'),
                                  ('qemu', 'd'))
            if 'ratio_min_' + other in p)
            + ';  paired: ' + ';  '.join(
            'a/%s %.2f' % (letter, p['ratio_paired_' + other])
            for other, letter in (('stock', 'b'), ('copy', 'c'),
                                  ('qemu', 'd'))
            if 'ratio_paired_' + other in p)
            + ';  CPU s: ' + ';  '.join(
            'a/%s %.2f' % (letter, p['ratio_cpu_' + other])
            for other, letter in (('stock', 'b'), ('copy', 'c'),
                                  ('qemu', 'd'))
            if 'ratio_cpu_' + other in p))
    sys.stdout.flush()


def print_container(entry):
    s = entry['summary']
    print('\n%s upload -> raw  (%s cache, %d MiB uploaded)' % (
        entry['source'], entry['cache'], entry['upload_bytes'] // MiB))
    print('  %-9s %7s %15s %8s %8s' % (
        'runner', 'median', 'min-max', 'CPU s', 'py+RSS'))
    for name in containers.RUNNERS:
        r = s[name]
        print('  %-9s %6.2fs %6.2f-%6.2fs %8.2f %7sM' % (
            name, r['median'], r['min'], r['max'], r['cpu_median'],
            _mib(r['py_rss_added_max'])))
    p = s['plugin']
    print('  plugin / ' + ';  plugin / '.join(
        '%s %.2f (paired %.2f)' % (other, p['ratio_' + other],
                                   p['ratio_paired_' + other])
        for other in containers.RUNNERS[1:]))
    sys.stdout.flush()


def print_sweep(entry):
    s = entry['summary']
    base = s['defaults']['median']
    print('\nsweep %s -> %s (%s cache): qemu-img convert' % (
        entry['source'], entry['target'], entry['cache']))
    for name, _flags in SWEEP:
        r = s[name]
        print('  %-18s %6.2fs %6.2f-%6.2fs  x%.2f of defaults  CPU %.2fs' % (
            name, r['median'], r['min'], r['max'], r['median'] / base,
            r['cpu_median']))
    sys.stdout.flush()


def print_fixed_cost(entry):
    s = entry['summary']
    p, q = s['plugin'], s['qemu']
    print('\nfixed cost, %s -> %s (%d MiB virtual, warm, %d rounds)' % (
        entry['source'], entry['target'], entry.get('virtual_size', 0) // MiB
        if entry.get('virtual_size') else 64, p['n']))
    print('  plugin %.1f ms, bare qemu-img %.1f ms (medians); fixed cost '
          '%.1f ms (%s %.0f ms), paired %.1f ms; minimums %.1f vs %.1f ms'
          % (p['median'] * 1e3, q['median'] * 1e3, p['fixed_cost'] * 1e3,
             'ok <=' if p['fixed_cost'] <= FIXED_COST_TARGET else '>',
             FIXED_COST_TARGET * 1e3, p['fixed_cost_paired'] * 1e3,
             p['min'] * 1e3, q['min'] * 1e3))
    print('  where the plugin spends it (median per run, ms; phases nest):')
    for label, runs in entry['phases'].items():
        secs = statistics.median(r[0] for r in runs)
        calls = max(r[1] for r in runs)
        print('    %-48s %7.1f  x%d' % (label, secs * 1e3, calls))
    sys.stdout.flush()


def print_scaling(out):
    s = out['summary']
    print('\nscaling: qcow2 -> raw, same data, %d MiB vs %d MiB virtual' % (
        out['virtual_sizes'][0] // MiB, out['virtual_sizes'][1] // MiB))
    for runner in ('plugin', 'qemu', 'copy'):
        a, b = s['small/' + runner], s['big/' + runner]
        print('  %-7s median %6.2fs vs %6.2fs (x%.2f);  min %6.2fs vs '
              '%6.2fs (x%.2f)' % (
                  runner, a['median'], b['median'], b['median'] / a['median'],
                  a['min'], b['min'], b['min'] / a['min']))


def print_concurrency(out):
    print('\nconcurrent plugin conversions, qcow2 -> raw (warm):')
    for n, r in sorted(out['summary'].items(), key=lambda kv: int(kv[0])):
        print('  %s at once: %6.2fs wall, %5.0f MiB/s aggregate' % (
            n, r['wall_median'], r['aggregate_MiBps']))


def environment(bench):
    def cmd(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True,
                                  check=False).stdout.splitlines()[0]
        except (OSError, IndexError):
            return None
    return {
        'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'argv': sys.argv,
        'qemu_img': cmd('qemu-img', '--version'),
        'cpus': os.cpu_count(),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'cold_method': bench.cache.method,
        'loadavg': os.getloadavg(),
    }


def _gist(error):
    """The telling line of a multi-line error (qemu-img's stderr)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith('Stderr:'):
            text = line[len('Stderr:'):].strip().strip('"\'')
            return text.replace('\\n', ' ').strip()
    return lines[0] if lines else ''


def write_chart(report, args):
    path = args.chart or os.path.join(args.work_dir, 'bench-chart.svg')
    if not chart.available():
        log('bench: matplotlib is not installed: no chart')
        return None
    env = report['environment']
    title = 'glance-convert benchmark, %s; %s CPUs, load %.1f at start' % (
        env['time'][:10], env['cpus'], env['loadavg'][0])
    try:
        chart.draw(report['table'], path, title=title)
    except (OSError, ValueError) as exc:
        log('bench: cannot draw the chart: %s' % exc)
        return None
    print('chart: %s' % path)
    return path


def publish_charts(path):
    """Redraw the documentation's charts from the results file."""
    data = results.load(path)
    run = data['runs'].get('table')
    if not run:
        return []
    if not chart.available():
        log('bench: matplotlib is not installed: charts not redrawn')
        return []
    names = chart.draw_panels(run['table'], os.path.dirname(
        os.path.abspath(path)))
    for name in names:
        print('chart: %s' % os.path.join(os.path.dirname(path), name))
    return names


def publish(report, args, argv):
    command = 'tox -e bench -- ' + ' '.join(
        a for a in (argv if argv is not None else sys.argv[1:])
        if not a.startswith('--publish') and a != args.publish)
    written = results.publish(args.publish, report, command.strip())
    print('published %s into %s' % (', '.join(written) or 'nothing',
                                    args.publish))
    if 'table' in written:
        publish_charts(args.publish)


def main(argv=None):
    try:
        args = parse_args(argv)
        if args.redraw:
            publish_charts(args.publish)
            return 0
        for tool in ('qemu-img', 'cp'):
            if not shutil.which(tool):
                raise UsageError('%s is not installed' % tool)
        os.makedirs(args.work_dir, exist_ok=True)
        bench = Bench(args)
    except (UsageError, OSError) as exc:
        print('bench: %s' % exc, file=sys.stderr)
        return 2
    caches = ['warm', 'cold'] if args.cache == 'both' else [args.cache]
    sources = sorted({s for s, _ in args.pairs} | {'qcow2'})
    if args.containers:
        sources = ['qcow2']
    imgs = images.Catalog(bench.work, args.size, args.seed)
    report = {'environment': environment(bench), 'rounds': args.rounds,
              'image': {'virtual_size': args.size,
                        'data_bytes': imgs.data_bytes('qcow2')}}
    started = time.time()
    try:
        if args.guest:
            report['guest'] = guest.run(bench, args.rounds, log=log)
            guest.print_verdict(report['guest'])
            return _finish(report, args, argv, started)
        imgs.ensure(sources, log=log)
        print('glance-convert benchmark: %d MiB virtual, %d MiB data '
              '(cloud-*: %d MiB virtual, %d MiB data); cold cache via %s; '
              '%d rounds after warm-up'
              % (args.size // MiB, imgs.data_bytes('qcow2') // MiB,
                 images.CLOUD_SIZE // MiB,
                 imgs.data_bytes('cloud-zlib') // MiB,
                 bench.cache.method,
                 args.sweep_rounds if args.sweep else args.rounds))
        if args.containers:
            missing = containers.missing_tools(args.containers)
            if missing:
                raise RuntimeError('not installed: %s' % ', '.join(missing))
            containers.ensure(imgs.base, args.containers, log=log)
            report['containers'] = bench.containers(
                imgs.base, args.containers, caches)
        elif args.e2e:
            report['e2e'] = []
            for src_v, target in args.pairs:
                result = e2e.run(imgs, src_v, target, args.rounds,
                                 bench.work, bench.cache, log)
                e2e.print_result(result, args.rounds)
                report['e2e'].append(result)
        elif args.fixed_cost:
            report['fixed_cost'] = bench.fixed_cost(imgs, args.pairs)
        elif args.sweep:
            report['sweep'] = bench.sweep(imgs, args.pairs,
                                          ['warm', 'cold'] if args.cache ==
                                          'warm' else caches)
        else:
            report['table'] = bench.table(imgs, args.pairs, caches)
            if not args.no_scaling:
                report['scaling'] = bench.scaling(imgs)
                report['concurrency'] = bench.concurrency(imgs)
    except KeyboardInterrupt:
        print('bench: interrupted', file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.CalledProcessError,
            e2e.localglance.LocalGlanceError) as exc:
        print('bench: %s' % exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(bench.runs_dir, ignore_errors=True)
    if report.get('table') and not args.no_chart:
        report['chart'] = write_chart(report, args)
    return _finish(report, args, argv, started)


def _finish(report, args, argv, started):
    """Print the elapsed time, publish and write the JSON."""
    report['elapsed'] = time.time() - started
    print('\nelapsed %.0fs' % report['elapsed'])
    if args.publish:
        publish(report, args, argv)
    if args.json:
        text = json.dumps(report, indent=1, sort_keys=True)
        if args.json == '-':
            print(text)
        else:
            with open(args.json, 'w') as f:
                f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
