"""The performance pages' figures, from the committed results file.

``tools/bench.py --publish doc/source/performance/results.json`` writes the
summaries of the last run of each kind, and its charts, next to this
documentation; these directives turn them into the pages' first sentences
and tables at build time, so the text cannot fall behind the numbers:

``.. bench-headline:: SECTION [SECTION...]``
    one sentence per question an operator asks (against Glance's stock
    plugin, against bare qemu-img, the fixed cost; for uploads: the
    checksum, the tools), then which run they come from;
``.. bench-table:: SECTION``
    the section's table (``guest``: one row per guest disk, handover
    and target, guest properties off and on);
``.. bench-charts::``
    the default run's chart panels, a column wide, each linked full size.

Every page's "SOURCE -> TARGET" outside code becomes an arrow that never
breaks across lines, with its format names ("vmdk-stream -> raw" broke
after the hyphen or inside the arrow).

The wording lives in ``tools/benchlib/results.py``, beside the benchmark.
"""

import os
import re
import sys

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tools'))

from benchlib import results  # noqa: E402

_PAIR = re.compile(r'([A-Za-z0-9][\w-]*(?:\.[\w-]+)?) -> ([a-z0-9]+)')


def nowrap_role(name, rawtext, text, lineno, inliner, options=None,
                content=None):
    """Text that never breaks across lines ("vmdk-stream -> raw")."""
    return [nodes.inline(rawtext, text, classes=['nowrap'])], []


def _pairs(text):
    return _PAIR.sub(lambda m: ':nowrap:`%s \u2192 %s`' % m.groups(), text)


class _BenchDirective(Directive):

    def data(self):
        env = self.state.document.settings.env
        path = os.path.join(env.srcdir, env.config.bench_results)
        env.note_dependency(path)
        return results.load(path)

    def parse(self, lines):
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source='bench-results'),
                                self.content_offset, node)
        return node.children

    def error(self, text):
        return [self.state.document.reporter.error(
            '%s: %s' % (self.name, text), line=self.lineno)]


class Headline(_BenchDirective):
    required_arguments = 1
    optional_arguments = 3

    def run(self):
        data = self.data()
        lines = []
        for section in self.arguments:
            if section not in data['runs']:
                return self.error('no %r run in the results file' % section)
            for sentence in results.headline(data, section):
                lines += [_pairs(sentence), '']
        lines.append('.. rst-class:: bench-provenance')
        lines.append('')
        lines.append('    ' + ' '.join(results.provenance(
            data, s, note=(i == len(self.arguments) - 1))
            for i, s in enumerate(self.arguments)))
        return self.parse(lines)


def _f(value, fmt='%.2f'):
    return '-' if value is None else fmt % value


TABLES = {
    'table': (
        ('pair', 'cache', 'plugin s', 'stock s', 'bare qemu-img s', 'copy s',
         'plugin / stock', 'paired', 'plugin / qemu-img', 'paired',
         'plugin / copy'),
        lambda e, p, s: (
            s.get('stock', {}).get('median'),
            s.get('qemu', {}).get('median'), s.get('copy', {}).get('median'),
            p.get('ratio_stock'), p.get('ratio_paired_stock'),
            p.get('ratio_qemu'), p.get('ratio_paired_qemu'),
            p.get('ratio_copy'))),
    'fixed_cost': (
        ('pair', 'cache', 'plugin ms', 'bare qemu-img ms', 'fixed cost ms',
         'paired ms'),
        lambda e, p, s: tuple(
            None if v is None else v * 1000 for v in (
                s['qemu']['median'], p['fixed_cost'],
                p['fixed_cost_paired']))),
    'containers': (
        ('upload', 'cache', 'plugin s', 'no hash s', 'tools s',
         'tools + sha256sum s', 'plugin / no hash', 'plugin / tools',
         'plugin / tools + sha256sum'),
        lambda e, p, s: (
            s['nohash']['median'], s['tools']['median'],
            s['tools-sha']['median'], p['ratio_nohash'], p['ratio_tools'],
            p['ratio_tools-sha'])),
}


GUEST_TABLE = ('guest disk, handover, target', 'off ms', 'on ms',
               'added ms', 'added min-max', 'on / off', 'describe ms',
               'read from')


def guest_rows(run):
    """The guest section's rows: per cell, properties off and on."""
    for cell in run['guest']['cells']:
        s = cell['summary']
        added = s['added_ms']
        yield ['%s as %s -> %s' % (cell['disk'], cell['handover'],
                                   cell['target']),
               _f(s['off_ms']['median'], '%.1f'),
               _f(s['on_ms']['median'], '%.1f'),
               _f(added['median'], '%.1f'),
               '%.1f to %.1f' % (added['min'], added['max']),
               _f(s['ratio']), _f(s['describe_ms']['median'], '%.1f'),
               '%s%s' % (s['read_from'] or '-',
                         ' (%d runs)' % s['dd_runs'] if s['dd_runs']
                         else '')]


class Table(_BenchDirective):
    required_arguments = 1

    def run(self):
        section = self.arguments[0]
        data = self.data()
        if section == 'guest' and section in data['runs']:
            return self.guest(data['runs'][section])
        if section not in data['runs'] or section not in TABLES:
            return self.error('no %r run in the results file' % section)
        header, columns = TABLES[section]
        lines = ['.. list-table::', '   :header-rows: 1',
                 '   :class: bench', '']
        lines.append('   * - ' + header[0])
        lines += ['     - ' + h for h in header[1:]]
        scale = 1000 if section == 'fixed_cost' else 1
        fmt = '%.1f' if section == 'fixed_cost' else '%.2f'
        for entry in data['runs'][section][section]:
            s = entry['summary']
            p = s.get('plugin', {})
            name = (entry['source'] if section == 'containers'
                    else _pairs(results.pair_name(entry)))
            cells = [entry['cache'], _f(p['median'] * scale, fmt)]
            values = columns(entry, p, s)
            cells += [_f(v, fmt) for v in values]
            if section == 'table' and 'stock_error' in entry:
                cells[2] = 'fails'
            lines.append('   * - ' + name)
            lines += ['     - ' + c for c in cells]
        return self.parse(lines)

    def guest(self, run):
        lines = ['.. list-table::', '   :header-rows: 1',
                 '   :class: bench', '']
        for number, row in enumerate([list(GUEST_TABLE)]
                                     + list(guest_rows(run))):
            row[0] = _pairs(row[0]) if number else row[0]
            lines.append('   * - ' + row[0])
            lines += ['     - ' + c for c in row[1:]]
        return self.parse(lines)


class Charts(_BenchDirective):

    def run(self):
        data = self.data()
        run = data['runs'].get('table')
        if not run:
            return self.error('no default run in the results file')
        env = self.state.document.settings.env
        caches = []
        for entry in run['table']:
            if entry['cache'] not in caches:
                caches.append(entry['cache'])
        lines = []
        failed = results.stock_failures(run)
        for cache in caches:
            name = 'bench-chart-%s.svg' % cache
            path = os.path.join(os.path.dirname(os.path.join(
                env.srcdir, env.config.bench_results)), name)
            if not os.path.exists(path):
                return self.error(
                    '%s is missing: draw it with tools/bench.py --publish '
                    '%s --redraw' % (name, env.config.bench_results))
            lines += [
                '.. figure:: %s' % name,
                '   :width: 100%',
                '   :alt: Horizontal bars per pair, %s cache: the plugin, '
                'Glance\'s stock task, bare qemu-img and a copy, median '
                'seconds.' % cache,
                '',
                '   %s page cache (click for full size).%s' % (
                    cache.capitalize(),
                    ' The stock task cannot convert %s.' % ', '.join(failed)
                    if failed else ''),
                '']
        return self.parse([_pairs(line) for line in lines])


def arrows(app, doctree):
    """Each "a -> b" in running text as one unbreakable "a → b"."""
    skip = (nodes.literal, nodes.literal_block, nodes.raw,
            nodes.FixedTextElement)
    for text in list(doctree.findall(nodes.Text)):
        parent = text.parent
        if parent is None or isinstance(parent, skip) or \
                ' -> ' not in text.astext():
            continue
        source = text.astext()
        parts, last = [], 0
        for match in _PAIR.finditer(source):
            parts.append(nodes.Text(source[last:match.start()]))
            parts.append(nodes.inline(
                match.group(0), '%s → %s' % match.groups(),
                classes=['nowrap']))
            last = match.end()
        if not parts:
            continue
        parts.append(nodes.Text(source[last:]))
        parent.replace(text, [p for p in parts if p.astext()])


def setup(app):
    app.connect('doctree-read', arrows)
    app.add_config_value('bench_results', 'performance/results.json', 'env')
    app.add_role('nowrap', nowrap_role)
    app.add_directive('bench-headline', Headline)
    app.add_directive('bench-table', Table)
    app.add_directive('bench-charts', Charts)
    return {'parallel_read_safe': True}
