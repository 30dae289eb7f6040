"""End to end: imports through a real glance-api, plugin against stock.

Two private glance-api servers (``glance_convert.testing.localglance``)
run side by side, one with glance-convert as its import plugin, one with
Glance's stock ``image_conversion``, both converting to the same output
format and storing into a file store.  Each round imports the same image
into both (glance-direct: create, stage, import), in alternating order,
and takes apart where the time went:

* **staging**: the ``PUT .../stage`` of the upload, timed by the client;
* **conversion**: the plugin's task, from its start to its end;
* **store upload**: Glance's ``ImportToStore`` task, which reads the
  converted file, hashes it (``os_hash_value``, checksum) and writes it
  into the store;
* **other tasks**: the rest of the import (Glance's lock and staging
  checks, completion, taskflow itself, the client's polling step);
* **import total**: from the import call until the image is ``active``.

The task times come from taskflow's state transitions, which Glance logs
(``debug = true``) with millisecond time stamps.
"""

import datetime
import os
import re
import shutil
import statistics
import time

from glance_convert.testing import localglance

_TRANSITION = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*Task '([^']+)' \([^)]*\) "
    r"transitioned into state '([A-Z_]+)'")

#: Task name parts (Glance's and the plugins') -> phase.
PHASE_OF = (('ImportToStore', 'store upload'),
            ('GlanceConvert', 'conversion'),
            ('Convert_Image', 'conversion'))
PHASES = ('staging', 'conversion', 'store upload', 'other tasks',
          'import total', 'total')


def task_times(log_file, task_id):
    """{task name: seconds from RUNNING to SUCCESS} of one Glance task."""
    started, times = {}, {}
    with open(log_file, encoding='utf-8', errors='replace') as f:
        for line in f:
            if task_id not in line or 'transitioned' not in line:
                continue
            m = _TRANSITION.match(line)
            if not m:
                continue
            stamp, name, state = m.groups()
            when = datetime.datetime.strptime(stamp, '%Y-%m-%d %H:%M:%S.%f')
            if state == 'RUNNING':
                started[name] = when
            elif state == 'SUCCESS' and name in started:
                times[name] = (when - started[name]).total_seconds()
    return times


def phase_times(log_file, task_id):
    out = {}
    for name, secs in task_times(log_file, task_id).items():
        for part, phase in PHASE_OF:
            if part in name:
                out[phase] = out.get(phase, 0.0) + secs
    return out


class Servers:
    """The plugin's and the stock task's glance-api, started and stopped
    together."""

    def __init__(self, base_dir, target, log):
        self.base_dir = base_dir
        self.log = log
        self.servers = {
            'plugin': localglance.GlanceServer(
                os.path.join(base_dir, 'plugin'),
                plugins=('glance_convert',),
                plugin_conf={'output_format': target}),
            'stock': localglance.GlanceServer(
                os.path.join(base_dir, 'stock'),
                plugins=('image_conversion',),
                import_conf={'image_conversion': {'output_format': target}}),
        }

    def __enter__(self):
        shutil.rmtree(self.base_dir, ignore_errors=True)
        try:
            for name, server in self.servers.items():
                self.log('starting the %s glance-api' % name)
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for server in self.servers.values():
            if server.process is not None:
                server.stop()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def import_once(server, path, disk_format, timeout=1800):
    """One glance-direct import of ``path``; {phase: seconds}."""
    client = server.client()
    image = client.create_image(disk_format, name='bench-e2e')
    image_id = image['id']
    try:
        t0 = time.perf_counter()
        client.stage(image_id, path)
        staged = time.perf_counter()
        client.import_image(image_id)
        image, task = client.wait_for_import(image_id, timeout=timeout,
                                             interval=0.1)
        done = time.perf_counter()
        if image['status'] != 'active':
            raise RuntimeError('import into %s failed: image %s, task %s'
                               % (server.base_dir, image['status'],
                                  task and task.get('message')))
        out = phase_times(server.log_file, task['id'])
        # The flow's other tasks (lock, staging checks, completion) and
        # taskflow itself; also the client's polling step, 0.1 s at most.
        out['other tasks'] = (done - staged - out.get('conversion', 0.0)
                              - out.get('store upload', 0.0))
        out.update({'staging': staged - t0, 'import total': done - staged,
                    'total': done - t0, 'size': image.get('size'),
                    'disk_format': image.get('disk_format'),
                    'checksum': image.get('os_hash_value')})
        return out
    finally:
        client.delete_image(image_id)


def run(catalog, source, target, rounds, work_dir, cache, log):
    """Imports of ``source`` into both servers; the results and summary."""
    path = catalog.path(source)
    fmt = catalog.fmt(source)
    result = {'source': source, 'target': target, 'runs': {}}
    with Servers(os.path.join(work_dir, 'e2e-%d' % os.getpid()), target,
                 log) as servers:
        names = list(servers.servers)
        for rnd in range(rounds + 1):   # round 0 warms up
            for name in (names if rnd % 2 == 0 else names[::-1]):
                cache.apply('warm', [path])
                res = import_once(servers.servers[name], path, fmt)
                if rnd:
                    result['runs'].setdefault(name, []).append(res)
                log('  e2e round %d %s: %s' % (rnd, name, ', '.join(
                    '%s %.2fs' % (p, res[p]) for p in PHASES if p in res)))
    result['summary'] = {
        name: {phase: statistics.median(r[phase] for r in runs)
               for phase in PHASES if all(phase in r for r in runs)}
        for name, runs in result['runs'].items()}
    # Imports take minutes: load drifts between them.  The median of the
    # per-round ratios (the two imports of a round are back to back)
    # cancels some of that drift.
    pairs = list(zip(result['runs'].get('plugin', []),
                     result['runs'].get('stock', [])))
    result['paired'] = {
        phase: statistics.median(a[phase] / b[phase] for a, b in pairs)
        for phase in PHASES
        if pairs and all(phase in a and phase in b and b[phase]
                         for a, b in pairs)}
    hashes = {r['checksum'] for runs in result['runs'].values()
              for r in runs}
    result['same_output'] = len(hashes) == 1
    return result


def print_result(result, rounds):
    s = result['summary']
    print('\nend to end: %s -> %s through glance-api (glance-direct, file '
          'store), medians of %d rounds' % (result['source'],
                                            result['target'], rounds))
    print('  %-12s' % 'server' + ''.join('%14s' % p for p in PHASES))
    for name in ('plugin', 'stock'):
        if name in s:
            print('  %-12s' % name + ''.join(
                '%13.2fs' % s[name][p] if p in s[name] else '%14s' % '-'
                for p in PHASES))
    if 'plugin' in s and 'stock' in s:
        print('  plugin/stock' + ''.join(
            '%14.2f' % (s['plugin'][p] / s['stock'][p])
            if p in s['plugin'] and p in s['stock'] and s['stock'][p]
            else '%14s' % '-' for p in PHASES))
        paired = result.get('paired', {})
        print('  paired ratio' + ''.join(
            '%14.2f' % paired[p] if p in paired else '%14s' % '-'
            for p in PHASES))
        verdict = ('ok' if s['plugin']['total'] <= s['stock']['total']
                   else 'SLOWER than stock')
        print('  plugin total %.2fs vs stock %.2fs: %s; same stored data '
              '(os_hash_value): %s' % (s['plugin']['total'],
                                       s['stock']['total'], verdict,
                                       'yes' if result['same_output']
                                       else 'NO'))
