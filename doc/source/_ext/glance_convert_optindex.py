"""``.. option-index::``: a table of contents for the option reference.

oslo.config's ``show-options`` writes each option as a long entry, with no
overview.  This lists every option of the ``[glance_convert]`` group, in
the same order, with a link to its entry and the first sentence of its
help, so a reader finds the one option without scrolling past 30.
"""

import re

from docutils.parsers.rst import Directive
from docutils import nodes
from docutils.statemachine import StringList

from glance_convert import options

_FIRST_SENTENCE = re.compile(r'^(.+?\.)(\s|$)', re.S)


def first_sentence(text):
    text = ' '.join((text or '').split())
    match = _FIRST_SENTENCE.match(text)
    return match.group(1) if match else text


class OptionIndex(Directive):
    has_content = False

    def run(self):
        lines = ['.. list-table::', '   :header-rows: 1',
                 '   :widths: 30 70', '',
                 '   * - Option', '     - What it sets']
        for group, opts in options.list_opts():
            name = getattr(group, 'name', group)
            for opt in opts:
                lines.append('   * - :oslo.config:option:`%s.%s`'
                             % (name, opt.dest))
                lines.append('     - %s' % first_sentence(opt.help)
                             .replace('`', ''))
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source='option-index'),
                                self.content_offset, node)
        return node.children


def setup(app):
    app.add_directive('option-index', OptionIndex)
    return {'parallel_read_safe': True}
