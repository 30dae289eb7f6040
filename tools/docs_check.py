#!/usr/bin/env python3
"""Open every page of the built documentation in headless Chromium.

    python tools/docs_check.py doc/build/html --screenshots DIR

Sphinx's ``-W`` catches broken markup, not what a reader sees.  This loads
each page as a browser renders it, at 1280 px, and reports:

* a page that cannot be reached from the index by following the main
  column's links, or by following the sidebar's;
* a page whose sidebar does not mark it as the current page (but the
  index, whose table of contents the sidebar is);
* an image shown at less than half its natural width that is not a link
  (to open it full size);
* literal backticks in the rendered text outside code (reStructuredText
  that leaked, such as inline code nested in bold);
* a horizontal scrollbar in the main column (the page or any block in it
  scrolls sideways).

Exit status 0 when every page passes, 1 with one line per problem.  A
full-page screenshot of each page goes to ``--screenshots``.  Chromium is
Debian's ``chromium`` driven through ``chromium-driver`` (bindep profile
``docs-browser``) by selenium; ``tox -e docs-browser`` runs all of it.
"""

import argparse
import base64
import os
import posixpath
import shutil
import sys
import tempfile
import time
from urllib.parse import unquote, urldefrag, urlparse

WIDTH, HEIGHT = 1280, 900
#: Sphinx's generated pages, not documentation a reader navigates to.
GENERATED = {'genindex.html', 'search.html', 'py-modindex.html'}
CHROMIUM = ('chromium', 'chromium-browser')
DRIVER = ('chromedriver', 'chromium-driver')

# Everything the page is asked, in one script: links, images, text
# outside code, sideways scrolling.
PROBE = r"""
const main = document.querySelector('div.body') || document.body;
if (!main) {
  return null;
}
const side = document.querySelector('div.sphinxsidebar');
const hrefs = (root) => root ? Array.from(root.querySelectorAll('a[href]'))
    .map(a => a.href) : [];
const code = 'pre, code, tt, kbd, samp, div.highlight, .literal';
const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
const ticks = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (n.nodeValue.includes('`') && !n.parentElement.closest(code)) {
    ticks.push(n.nodeValue.trim().slice(0, 80));
  }
}
const images = Array.from(main.querySelectorAll('img')).map(img => ({
  src: img.getAttribute('src'),
  natural: img.naturalWidth,
  shown: img.getBoundingClientRect().width,
  linked: !!img.closest('a[href]'),
}));
const scrolls = [];
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) {
  scrolls.push('the page is ' + doc.scrollWidth + ' px wide for a ' +
               doc.clientWidth + ' px window');
}
for (const el of [main, ...main.querySelectorAll('*')]) {
  const style = getComputedStyle(el);
  if (['auto', 'scroll'].includes(style.overflowX) &&
      el.scrollWidth > el.clientWidth + 1) {
    scrolls.push(el.tagName.toLowerCase() + '.' +
                 (el.className || '').toString().split(' ').join('.') +
                 ' scrolls sideways (' + el.scrollWidth + ' px in ' +
                 el.clientWidth + ')');
  }
}
const mainBox = main.getBoundingClientRect();
if (main.scrollWidth > Math.ceil(mainBox.width) + 1) {
  scrolls.push('the main column is ' + main.scrollWidth +
               ' px wide in ' + Math.round(mainBox.width));
}
return {
  main: hrefs(main), side: hrefs(side),
  current: side ? !!side.querySelector('a.current, li.current > a') : false,
  ticks: ticks, images: images, scrolls: scrolls,
  height: Math.max(doc.scrollHeight, document.body.scrollHeight),
};
"""


def find(names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def pages(root):
    """Every documentation page of the build, as paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(('_', '.'))]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if name.endswith('.html') and rel not in GENERATED:
                found.append(rel.replace(os.sep, '/'))
    return sorted(found)


def to_page(url, root):
    """The page a link leads to, relative to the build, or None."""
    url, _ = urldefrag(url)
    parsed = urlparse(url)
    if parsed.scheme != 'file':
        return None
    path = os.path.realpath(unquote(parsed.path))
    root = os.path.realpath(root)
    if not path.startswith(root + os.sep):
        return None
    rel = os.path.relpath(path, root).replace(os.sep, '/')
    return posixpath.normpath(rel) if rel.endswith('.html') else None


def reachable(start, links):
    """Pages reached from ``start`` through ``links`` (page -> pages)."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in links.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def browser(chromium=None, driver=None, profile=None):
    """A headless Chromium, quiet: no network of its own, no first run."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = chromium or find(CHROMIUM)
    driver = driver or find(DRIVER)
    if not chromium or not driver:
        raise RuntimeError('needs chromium and chromedriver (Debian: '
                           'apt-get install chromium chromium-driver; or '
                           'bindep -b docs-browser)')
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ('--headless', '--no-sandbox', '--disable-gpu',
                '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync',
                '--hide-scrollbars',
                '--window-size=%d,%d' % (WIDTH, HEIGHT),
                '--user-data-dir=%s' % profile):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver),
                            options=opts)


def loaded(drv, timeout=60):
    """Wait until the page is parsed and its images are in.

    On a loaded machine the driver has come back before the new document
    was there at all.
    """
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(drv, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(
            'return document.readyState === "complete" && !!document.body'
            ' && Array.from(document.images).every(i => i.complete);'))


def screenshot(drv, path, height):
    """The whole page, not only the window."""
    shot = drv.execute_cdp_cmd('Page.captureScreenshot', {
        'format': 'png', 'captureBeyondViewport': True,
        'clip': {'x': 0, 'y': 0, 'width': WIDTH, 'height': height,
                 'scale': 1}})
    with open(path, 'wb') as f:
        f.write(base64.b64decode(shot['data']))


def probe_all(root, screenshots=None, chromium=None, driver=None):
    """Load every page; return {page: what PROBE found}."""
    profile = tempfile.mkdtemp(prefix='docs-check-profile-')
    drv = browser(chromium, driver, profile)
    found = {}
    try:
        drv.set_page_load_timeout(60)
        for page in pages(root):
            drv.get('file://' + os.path.realpath(os.path.join(root, page)))
            loaded(drv)
            found[page] = drv.execute_script(PROBE)
            if found[page] is None:
                raise RuntimeError('%s: the browser shows no document '
                                   '(not HTML, or it did not load)' % page)
            if screenshots:
                name = page.replace('/', '--').replace('.html', '.png')
                screenshot(drv, os.path.join(screenshots, name),
                           min(found[page]['height'], 16000))
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return found


def problems(root, found):
    """One sentence per problem the probes show."""
    out = []
    for kind in ('main', 'side'):
        links = {page: {p for p in (to_page(u, root) for u in r[kind]) if p}
                 for page, r in found.items()}
        missing = set(found) - reachable('index.html', links)
        where = 'main column' if kind == 'main' else 'sidebar'
        for page in sorted(missing):
            out.append('%s: not reachable from the index through the %s\'s '
                       'links' % (page, where))
    for page, r in sorted(found.items()):
        if not r['current'] and page != 'index.html':
            out.append('%s: the sidebar does not mark the current page'
                       % page)
        for img in r['images']:
            if img['natural'] and img['shown'] < img['natural'] / 2 \
                    and not img['linked']:
                out.append('%s: image %s shown at %d of its %d px, with no '
                           'link to the full size' % (
                               page, img['src'], img['shown'],
                               img['natural']))
        for text in r['ticks']:
            out.append('%s: literal backticks in the text: %r'
                       % (page, text))
        for text in r['scrolls']:
            out.append('%s: horizontal scrollbar: %s' % (page, text))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('html', help='the built HTML (sphinx-build -b html)')
    p.add_argument('--screenshots', metavar='DIR',
                   help='write a full-page PNG of every page here')
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.html, 'index.html')):
        print('docs-check: no index.html in %s' % args.html, file=sys.stderr)
        return 2
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    started = time.monotonic()
    from selenium.common.exceptions import WebDriverException
    try:
        found = probe_all(args.html, args.screenshots)
    except (RuntimeError, WebDriverException) as exc:
        print('docs-check: %s' % exc, file=sys.stderr)
        return 2
    found_problems = problems(args.html, found)
    for line in found_problems:
        print(line)
    print('docs-check: %d pages, %d problems, %.1f s%s' % (
        len(found), len(found_problems), time.monotonic() - started,
        '; screenshots in %s' % args.screenshots if args.screenshots
        else ''))
    return 1 if found_problems else 0


if __name__ == '__main__':
    sys.exit(main())
