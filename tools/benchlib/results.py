"""The published results file, and the sentences the docs open with.

``tools/bench.py --publish FILE`` merges what a run measured into FILE
(``doc/source/performance/results.json`` in the repository), one section
per kind of run: ``table`` (the default run), ``fixed_cost``,
``containers`` and ``guest``.  A section keeps the command, the
environment and the per-pair summaries, not every run's raw numbers.
The documentation build reads the file through this module, so the
performance pages' first sentences and tables are always those of the
last published run.

Each headline answers one question an operator asks, with the range over
every measured pair and cache state, so a reader sees the spread and not
one flattering row.
"""

import json
import os

SECTIONS = ('table', 'fixed_cost', 'containers', 'guest')
FORMAT = 1


def load(path):
    with open(path) as f:
        data = json.load(f)
    if data.get('format') != FORMAT:
        raise ValueError('%s: results format %r, expected %r'
                         % (path, data.get('format'), FORMAT))
    return data


def _trim(entries):
    """Per-pair entries without the per-run lists (kept small in git)."""
    if isinstance(entries, dict):     # guest: cells, budget and verdict
        return dict(entries, cells=_trim(entries['cells']))
    keep = []
    for entry in entries:
        keep.append({k: v for k, v in entry.items()
                     if k not in ('runs', 'phases')})
    return keep


def publish(path, report, command):
    """Merge the sections ``report`` has into the results file at ``path``.

    Returns the names of the sections written.  Sections the run did not
    produce keep their previous contents (a ``--fixed-cost`` run leaves
    the default run's table alone).
    """
    try:
        data = load(path)
    except FileNotFoundError:
        data = {'format': FORMAT, 'runs': {}}
    written = []
    for section in SECTIONS:
        if not report.get(section):
            continue
        data['runs'][section] = {
            'command': command,
            'environment': report.get('environment'),
            'elapsed': round(report.get('elapsed') or 0),
            'rounds': report.get('rounds'),
            'image': report.get('image'),
            section: _trim(report[section]),
        }
        written.append(section)
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(path + '.tmp', path)
    return written


# ----------------------------------------------------------- wording

def pair_name(entry):
    return '%s -> %s' % (entry['source'], entry['target'])


def _span(values, fmt='%.2f', unit='x'):
    values = [v for v in values if v is not None]
    if not values:
        return None
    low, high = min(values), max(values)
    if fmt % low == fmt % high:
        return (fmt + '%s') % (low, unit)
    return (fmt + '-' + fmt + '%s') % (low, high, unit)


def _plugin(entry):
    return entry['summary'].get('plugin', {})


def stock_failures(section):
    """Pairs, in order, that Glance's stock task could not convert."""
    seen = []
    for entry in section['table']:
        if 'stock_error' in entry and pair_name(entry) not in seen:
            seen.append(pair_name(entry))
    return seen


def headline_table(section):
    """The default run's two sentences: against stock, against qemu-img."""
    entries = section['table']
    both = [e for e in entries if 'ratio_stock' in _plugin(e)]
    sentences = []
    if both:
        text = ('Against Glance\'s stock image_conversion plugin, '
                'glance-convert took %s of its time on every one of the '
                '%d measured pairs and cache states both can convert '
                '(median of the per-round ratios %s)' % (
                    _span(_plugin(e)['ratio_stock'] for e in both),
                    len(both),
                    _span(_plugin(e).get('ratio_paired_stock')
                          for e in both)))
        failed = stock_failures(section)
        if failed:
            text += '; the stock plugin fails on %s' % ', '.join(failed)
        sentences.append(text + '.')
    with_qemu = [e for e in entries if 'ratio_qemu' in _plugin(e)]
    if with_qemu:
        split = [e for e in with_qemu if e.get('plugin_parallel')]
        single = [e for e in with_qemu if not e.get('plugin_parallel')]
        text = ('Against one bare qemu-img convert with the same options '
                'and none of the checks, it took %s' % _span(
                    _plugin(e)['ratio_qemu'] for e in with_qemu))
        if split and single:
            text += ('; %s where it converts with one process (%s), '
                     '%s where it splits the work over several (%s)' % (
                         _span(_plugin(e)['ratio_qemu'] for e in single),
                         _sources(single),
                         _span(_plugin(e)['ratio_qemu'] for e in split),
                         _sources(split)))
        sentences.append(text + '.')
    return sentences


def _sources(entries):
    names = []
    for e in entries:
        if pair_name(e) not in names:
            names.append(pair_name(e))
    return ', '.join(names)


def headline_fixed_cost(section):
    entries = section['fixed_cost']
    return ['The fixed cost per import, the plugin\'s whole step minus a '
            'bare qemu-img convert on a %d MiB image, was %s (paired: %s) '
            'on %s.' % (
                section['image']['virtual_size'] // (1024 * 1024),
                _span((_plugin(e)['fixed_cost'] * 1000 for e in entries),
                      '%.1f', ' ms'),
                _span((_plugin(e)['fixed_cost_paired'] * 1000
                       for e in entries), '%.1f', ' ms'),
                _sources(entries))]


def headline_containers(section):
    entries = section['containers']
    by_kind = {}
    for e in entries:
        by_kind.setdefault(e['source'], []).append(_plugin(e))
    ova = by_kind.get('ova', [])
    compressed = [p for k, ps in by_kind.items() if k != 'ova' for p in ps]
    sentences = []
    if compressed:
        sentences.append(
            'The publisher\'s SHA-256, taken while compressed uploads are '
            'unpacked, changed their time by a factor of %s%s.' % (
                _span(p['ratio_nohash'] for p in compressed),
                ', and OVAs\' by %s' % _span(p['ratio_nohash'] for p in ova)
                if ova else ''))
    sentences.append(
        'Against the tools in sequence (the decompressor or tar into a '
        'file, then qemu-img convert, no checks) the plugin took %s of '
        'their time: %s.' % (
            _span(_plugin(e)['ratio_tools'] for e in entries),
            '; '.join('%s %s' % (kind, _span(p['ratio_tools'] for p in ps))
                      for kind, ps in by_kind.items())))
    sentences.append(
        'Against the same tools after sha256sum of the upload, as when a '
        'checksum is checked by hand, it took %s.' % _span(
            _plugin(e)['ratio_tools-sha'] for e in entries))
    return sentences


#: How the describe phase reads the guest's disk, per target format.
GUEST_READ = {'raw': 'read from the file',
              'qcow2': 'read through its own L1/L2 tables',
              'vmdk': 'read through its grain tables',
              'vhdx': 'read through its block allocation table',
              'vdi': 'read through its block map',
              'vhd': 'read through its block table',
              'ploop': 'read through its block allocation table'}


def _range_ms(values):
    """"1.5 ms" or "from -4.7 to 3.8 ms": differences can be negative."""
    values = [v for v in values if v is not None]
    low, high = min(values), max(values)
    if '%.1f' % low == '%.1f' % high:
        return '%.1f ms' % low
    return 'from %.1f to %.1f ms' % (low, high)


def headline_guest(section):
    """Per target: what reading the guest's disk added, and the budget."""
    run = section['guest']
    targets = []
    for cell in run['cells']:
        if cell['target'] not in targets:
            targets.append(cell['target'])
    sentences = []
    for target in targets:
        cells = [c for c in run['cells'] if c['target'] == target]
        sentences.append(
            'Reading the guest\'s disk for its boot properties added %s '
            'per import to a %s target (%s; median of the on-minus-off '
            'differences per round, over %d guest images), the describe '
            'phase itself taking %s: %s the %.0f ms budget in this run.' % (
                _range_ms(c['summary']['added_ms']['median']
                          for c in cells),
                target,
                GUEST_READ.get(target, 'read through the confined '
                               'qemu-img dd'),
                len(cells),
                _range_ms(c['summary']['describe_ms']['median']
                          for c in cells),
                'within' if run['verdict'][target]['within_budget']
                else 'over', run['budget_ms']))
    return sentences


HEADLINES = {'table': headline_table, 'fixed_cost': headline_fixed_cost,
             'containers': headline_containers, 'guest': headline_guest}


def headline(data, section):
    return HEADLINES[section](data['runs'][section])


def provenance(data, section, note=True):
    """Which run the figures come from, in one sentence."""
    run = data['runs'][section]
    env = run.get('environment') or {}
    parts = ['``%s``' % run['command']]
    if env.get('time'):
        parts.append('run on %s' % env['time'][:10])
    details = []
    if env.get('cpus'):
        details.append('%d CPUs' % env['cpus'])
    if env.get('qemu_img'):
        details.append(env['qemu_img'].replace('version ', ''))
    if run.get('rounds'):
        details.append('%d rounds after a warm-up, medians' % run['rounds'])
    text = ', '.join(parts)
    if details:
        text += ' (%s)' % '; '.join(details)
    if note and run.get('note'):
        text += '; %s' % run['note']
    return 'From %s.' % text
