"""``.. glance-convert-metrics::``: the reference of the Prometheus metrics.

Built from :data:`glance_convert.metrics.METRICS`, the definitions the
recording and ``glance-convert metrics`` use, so the reference cannot
drift from the code.  With ``:phases:`` it lists the ``phase`` label's
values instead (:data:`glance_convert.metrics.PHASES`).  A missing or
empty list is an error, so ``sphinx-build -W`` fails rather than
publishing an empty table.
"""

import importlib

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.parsers.rst import directives

MODULE = 'glance_convert.metrics'
COMBINED = {
    'livesum': 'sum over the live processes',
    'livemin': 'least over the live processes',
    'livemax': 'largest over the live processes',
}


def _para(text, literal=False):
    entry = nodes.entry()
    if literal:
        entry += nodes.paragraph('', '', nodes.literal(text, text))
    else:
        entry += nodes.paragraph(text, text)
    return entry


def _table(headings, widths, rows):
    table = nodes.table(classes=['glance-convert-metrics'])
    group = nodes.tgroup(cols=len(headings))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    row = nodes.row()
    for h in headings:
        row += _para(h)
    head += row
    group += head
    body = nodes.tbody()
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += cell
        body += row
    group += body
    return table


def _kind(metric):
    if metric.source == 'host':
        return '%s (read from the host when collected)' % metric.kind
    if metric.kind == 'gauge':
        return 'gauge (%s)' % COMBINED.get(metric.mode, metric.mode)
    if metric.kind == 'histogram':
        return 'histogram (_bucket, _sum, _count)'
    return '%s (every process, dead ones included)' % metric.kind


class MetricsDirective(Directive):
    has_content = False
    option_spec = {'phases': directives.flag}

    def run(self):
        env = self.state.document.settings.env
        try:
            module = importlib.import_module(MODULE)
            metrics = tuple(module.METRICS)
            phases = dict(module.PHASES)
        except (ImportError, AttributeError) as exc:
            return [self.state.document.reporter.error(
                'glance-convert-metrics: cannot read %s: %s'
                % (MODULE, exc), line=self.lineno)]
        if not metrics or not phases:
            return [self.state.document.reporter.error(
                'glance-convert-metrics: %s.METRICS or PHASES is empty'
                % MODULE, line=self.lineno)]
        if getattr(module, '__file__', None):
            env.note_dependency(module.__file__)
        if 'phases' in self.options:
            return [_table(('Phase', 'What it times'), (12, 60), [
                (_para(name, True), _para(text))
                for name, text in phases.items()])]
        return [_table(
            ('Metric', 'Type', 'Labels', 'What it counts'), (22, 16, 14, 48),
            [(_para(m.full_name, True), _para(_kind(m)),
              _para(', '.join(m.labels) or '\u2014'), _para(m.help))
             for m in metrics])]


def setup(app):
    app.add_directive('glance-convert-metrics', MetricsDirective)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
