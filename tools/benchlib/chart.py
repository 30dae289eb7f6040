"""The benchmark's table as bar charts (SVG or PNG, by file name).

Horizontal bars, one group per measured pair: the plugin, Glance's stock
task, bare qemu-img and the copy floor, each the median wall time, with a
line from the fastest to the slowest run where those were kept.  Pair
names stay on the left at full size, so a chart stays legible at the
width of a documentation page; each cache state is a panel of its own.
A pair the stock task cannot convert says so where its bar would be.

Drawn only when matplotlib is installed; the benchmark runs without it.
"""

import os

BARS = (('plugin', 'glance-convert', '#1f77b4'),
        ('stock', 'Glance stock task', '#ff7f0e'),
        ('qemu', 'bare qemu-img', '#2ca02c'),
        ('copy', 'copy floor (cp)', '#7f7f7f'))

#: Width of one panel, inches; at 96 px per inch about a page column.
PANEL_WIDTH = 8.0
BAR = 0.18
FONT = 10


def available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    return pyplot


def _label(entry):
    return '%s \u2192 %s' % (entry['source'], entry['target'])


def _panel(ax, entries, title):
    """Draw one cache state's entries into ``ax``."""
    top = 0.0
    ticks, labels = [], []
    widest = max((entry['summary'][runner]['median']
                  for entry in entries for runner, _, _ in BARS
                  if runner in entry['summary']), default=1.0)
    for entry in entries:
        present = [b for b in BARS if b[0] in entry['summary']
                   or (b[0] == 'stock' and 'stock_error' in entry)]
        ys = [top + i * BAR for i in range(len(present))]
        for y, (runner, name, colour) in zip(ys, present):
            s = entry['summary'].get(runner)
            if s is None:
                why = str(entry['stock_error']).splitlines()[0][:60]
                ax.text(widest * 0.01, y, 'stock task fails: %s' % why,
                        va='center', fontsize=FONT - 1, color=colour,
                        style='italic')
                continue
            err = None
            if s.get('min') is not None and s.get('max') is not None:
                err = [[s['median'] - s['min']], [s['max'] - s['median']]]
            ax.barh(y, s['median'], BAR * 0.9, color=colour,
                    xerr=err, capsize=2, ecolor='#333333', linewidth=0)
        ticks.append(top + (len(present) - 1) * BAR / 2)
        labels.append(_label(entry))
        top += len(present) * BAR + 0.3
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=colour, label=name)
                       for _, name, colour in BARS],
              fontsize=FONT - 1, loc='lower right')
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlabel('seconds, median of the runs (shorter is faster)',
                  fontsize=FONT)
    ax.tick_params(axis='x', labelsize=FONT)
    ax.set_title(title, fontsize=FONT + 1)
    ax.grid(axis='x', alpha=0.3)
    return top


def _caches(entries):
    caches = []
    for entry in entries:
        if entry['cache'] not in caches:
            caches.append(entry['cache'])
    return caches


def _height(entries):
    bars = sum(len([b for b in BARS if b[0] in e['summary']
                    or (b[0] == 'stock' and 'stock_error' in e)])
               for e in entries)
    return 1.2 + bars * BAR * 0.8 + len(entries) * 0.2


def draw(entries, path, title=None):
    """Draw the table entries of one run into ``path``; return ``path``.

    One panel per cache state, stacked.  ``entries`` are the benchmark's
    table entries (with their ``summary``).  Raises ImportError without
    matplotlib.
    """
    pyplot = _pyplot()
    caches = _caches(entries)
    groups = [[e for e in entries if e['cache'] == c] for c in caches]
    fig, axes = pyplot.subplots(
        len(groups), 1, squeeze=False,
        figsize=(PANEL_WIDTH, sum(_height(g) for g in groups)),
        gridspec_kw={'height_ratios': [_height(g) for g in groups]})
    for ax, cache, group in zip(axes[:, 0], caches, groups):
        _panel(ax, group, '%s cache' % cache)
    if title:
        fig.suptitle(title, fontsize=FONT)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)
    return path


def draw_panels(entries, directory, stem='bench-chart', ext='svg'):
    """One file per cache state, ``STEM-CACHE.EXT``; return their names.

    For the documentation: each panel is a page column wide, so it is
    shown at its natural size or close to it.
    """
    pyplot = _pyplot()
    names = []
    for cache in _caches(entries):
        group = [e for e in entries if e['cache'] == cache]
        fig, ax = pyplot.subplots(figsize=(PANEL_WIDTH, _height(group)))
        _panel(ax, group, 'Conversion time per pair, %s page cache'
               % cache)
        fig.tight_layout()
        name = '%s-%s.%s' % (stem, cache, ext)
        fig.savefig(os.path.join(directory, name))
        pyplot.close(fig)
        names.append(name)
    return names
