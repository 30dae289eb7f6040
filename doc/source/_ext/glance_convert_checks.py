"""``.. glance-convert-checks::``: the table of the plugin's safety checks.

The table is built from :data:`glance_convert.pipeline.check_table.CHECKS`, the
ordered list the pipeline itself runs, so the documentation cannot drift
from the code.  Each entry is a frozen dataclass with ``name``, ``stage``,
``description``, ``sentence`` (what the end user reads after "Image
rejected:") and ``advisory`` (the advisory or CVE it answers, if any).

A missing or empty list is an error, so ``sphinx-build -W`` fails rather
than publishing an empty table.
"""

import enum
import importlib
import re

from docutils import nodes
from docutils.parsers.rst import Directive
MODULE = 'glance_convert.pipeline.check_table'
COLUMNS = (
    # (heading, attribute, relative width)
    ('Check', 'name', 16),
    ('Stage', 'stage', 8),
    ('What it refuses, and why', 'description', 40),
    ('What the user reads', 'sentence', 24),
    ('Advisory', 'advisory', 12),
)


def _text(value):
    """One cell's text: enums by value, sequences joined, empty as a dash."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or value == '' or value == ():
        return '\u2014'
    if isinstance(value, (tuple, list, frozenset, set)):
        return ', '.join(_text(v) for v in value)
    return str(value)


def _cell(attribute, value):
    entry = nodes.entry()
    text = _text(value)
    if attribute == 'sentence':
        # Placeholders are filled in for the user: "the data is in … format".
        text = re.sub(r'%[sdr]|\{\w+\}', '\u2026', text)
    if attribute == 'name':
        entry += nodes.paragraph('', '', nodes.literal(text, text))
    else:
        entry += nodes.paragraph(text, text)
    return entry


def _row(cells):
    row = nodes.row()
    for cell in cells:
        row += cell
    return row


class ChecksDirective(Directive):
    has_content = False
    required_arguments = 0

    def run(self):
        env = self.state.document.settings.env
        try:
            module = importlib.import_module(MODULE)
            checks = tuple(module.CHECKS)
        except (ImportError, AttributeError) as exc:
            return [self.state.document.reporter.error(
                'glance-convert-checks: cannot read %s.CHECKS: %s'
                % (MODULE, exc), line=self.lineno)]
        if not checks:
            return [self.state.document.reporter.error(
                'glance-convert-checks: %s.CHECKS is empty' % MODULE,
                line=self.lineno)]
        if getattr(module, '__file__', None):
            env.note_dependency(module.__file__)

        table = nodes.table(classes=['glance-convert-checks'])
        group = nodes.tgroup(cols=len(COLUMNS))
        table += group
        for _heading, _attr, width in COLUMNS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(nodes.entry('', nodes.paragraph(h, h))
                     for h, _a, _w in COLUMNS)
        group += head
        body = nodes.tbody()
        for check in checks:
            try:
                cells = [_cell(attr, getattr(check, attr))
                         for _h, attr, _w in COLUMNS]
            except AttributeError as exc:
                return [self.state.document.reporter.error(
                    'glance-convert-checks: %r lacks an attribute: %s'
                    % (check, exc), line=self.lineno)]
            body += _row(cells)
        group += body
        return [table]


def setup(app):
    app.add_directive('glance-convert-checks', ChecksDirective)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
