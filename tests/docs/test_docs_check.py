"""The browser check of the documentation fails where a reader would.

Two small Sphinx sites are built and opened in headless Chromium with
tools/docs_check.py: one where every page is fine, which must pass, and
one with a page of each fault, each of which must be reported for its
own page and no other.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import docs_check  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (docs_check.find(docs_check.CHROMIUM)
         and docs_check.find(docs_check.DRIVER)),
    reason='needs chromium and chromedriver (bindep -b docs-browser)')

CONF = """
project = 'check'
html_theme = 'alabaster'
html_sidebars = {'**': ['navigation.html']}
html_static_path = ['_static']
html_css_files = ['custom.css']
html_scaled_image_link = %(scaled_link)r
"""

# 2000 px wide: shown at 400 px it is squeezed to a fifth.
WIDE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="2000" '
            'height="300"><rect width="2000" height="300" fill="#369"/>'
            '</svg>')

PAGES = {
    'fine': 'Fine\n====\n\nPlain text with ``code`` in it.\n',
    'chart': ('Chart\n=====\n\n.. image:: wide.svg\n   :width: 400px\n'
              '   :alt: a wide chart\n'),
    'leak': 'Leak\n====\n\nBold code: **``qemu-img info``** leaks.\n',
    'wide': ('Wide\n====\n\n.. raw:: html\n\n'
             '   <div style="overflow-x: auto"><div style="width: 3000px">'
             'a very wide block</div></div>\n'),
}


def build(tmp_path, name, pages, hidden=(), scaled_link=True):
    src = tmp_path / name / 'src'
    (src / '_static').mkdir(parents=True)
    (src / '_static' / 'custom.css').write_text(
        (open(os.path.join(ROOT, 'doc', 'source', '_static',
                           'custom.css')).read()))
    (src / 'conf.py').write_text(CONF % {'scaled_link': scaled_link})
    (src / 'wide.svg').write_text(WIDE_SVG)
    listed = [p for p in pages if p not in hidden]
    (src / 'index.rst').write_text(
        'Index\n=====\n\n.. toctree::\n\n' +
        ''.join('   %s\n' % p for p in listed))
    for page in pages:
        text = PAGES[page] if page in PAGES else PAGES['fine']
        if page in hidden:
            text = ':orphan:\n\n' + text
        (src / ('%s.rst' % page)).write_text(text)
    out = tmp_path / name / 'html'
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-q', '-b', 'html', str(src),
         str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return str(out)


def check(html):
    found = docs_check.probe_all(html)
    return docs_check.problems(html, found)


def test_a_site_without_faults_passes(tmp_path):
    # The wide chart is scaled but linked to its full size: fine.
    html = build(tmp_path, 'good', ['fine', 'chart'])
    assert check(html) == []


def test_each_fault_is_reported_on_its_page(tmp_path):
    html = build(tmp_path, 'bad', ['fine', 'chart', 'leak', 'wide',
                                   'hidden'],
                 hidden=['hidden'], scaled_link=False)
    found = check(html)
    by_page = {}
    for line in found:
        by_page.setdefault(line.split(':', 1)[0], []).append(line)
    assert set(by_page) == {'chart.html', 'leak.html', 'wide.html',
                            'hidden.html'}, found
    # Reached neither through the main column nor through the sidebar,
    # which cannot mark a page it does not list.
    assert sorted(line.split(': ', 1)[1] for line in by_page['hidden.html']) \
        == ["not reachable from the index through the main column's links",
            "not reachable from the index through the sidebar's links",
            'the sidebar does not mark the current page']
    [chart] = by_page['chart.html']
    assert 'shown at 400 of its 2000 px' in chart
    [leak] = by_page['leak.html']
    assert 'literal backticks' in leak and 'qemu-img info' in leak
    assert all('horizontal scrollbar' in line
               for line in by_page['wide.html'])


def test_the_command_fails_and_keeps_screenshots(tmp_path):
    html = build(tmp_path, 'cmd', ['fine', 'hidden'], hidden=['hidden'])
    shots = tmp_path / 'shots'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'docs_check.py'),
         html, '--screenshots', str(shots)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'hidden.html: not reachable from the index' in proc.stdout
    assert sorted(os.listdir(shots)) == ['fine.png', 'hidden.png',
                                         'index.png']
    with open(shots / 'index.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
