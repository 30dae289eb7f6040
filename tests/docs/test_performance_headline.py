"""The performance pages open with the figures of the committed results.

Reads the documentation as built by ``tox -e docs-browser`` (its build
directory comes in ``GLANCE_CONVERT_DOCS_HTML``): each performance page's
first paragraphs must be the sentences tools/benchlib/results.py makes
from doc/source/performance/results.json, in order.
"""

import html.parser
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

from benchlib import results  # noqa: E402

HTML = os.environ.get('GLANCE_CONVERT_DOCS_HTML')
PAGES = {'performance/index.html': ('table', 'fixed_cost'),
         'performance/cloud-images.html': ('table', 'fixed_cost'),
         'performance/uploads.html': ('containers',)}


class Paragraphs(html.parser.HTMLParser):
    """The text of each <p> in the page's main column, in order."""

    def __init__(self):
        super().__init__()
        self.depth = 0          # inside div.body
        self.current = None
        self.found = []

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get('class', '') or ''
        if tag == 'div' and ('body' in classes.split() or self.depth):
            self.depth += 1
        elif tag == 'p' and self.depth:
            self.current = []

    def handle_endtag(self, tag):
        if tag == 'div' and self.depth:
            self.depth -= 1
        elif tag == 'p' and self.current is not None:
            self.found.append(' '.join(''.join(self.current).split()))
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current.append(data)


def rendered(sentence):
    """The sentence as the page shows it: arrows, typographic quotes."""
    text = re.sub(r' -> ', ' \u2192 ', sentence).replace("'", '\u2019')
    return ' '.join(text.split())


@pytest.mark.skipif(not HTML, reason='GLANCE_CONVERT_DOCS_HTML not set '
                    '(tox -e docs-browser sets it)')
@pytest.mark.parametrize('page', sorted(PAGES))
def test_page_opens_with_the_results_file_sentences(page):
    data = results.load(os.path.join(ROOT, 'doc', 'source', 'performance',
                                     'results.json'))
    expected = [rendered(s) for section in PAGES[page]
                for s in results.headline(data, section)]
    parser = Paragraphs()
    with open(os.path.join(HTML, page)) as f:
        parser.feed(f.read())
    assert parser.found[:len(expected)] == expected
    assert parser.found[len(expected)].startswith('From ')
