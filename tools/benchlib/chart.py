"""The benchmark's table as a bar chart (PNG or SVG, by file name).

One group of bars per measured pair and cache state: the plugin, Glance's
stock task, bare qemu-img and the copy floor, each the median wall time
with a line from the fastest to the slowest run.  Drawn only when
matplotlib is installed; the benchmark runs without it.
"""

BARS = (('plugin', 'glance-convert', '#1f77b4'),
        ('stock', 'Glance stock task', '#ff7f0e'),
        ('qemu', 'bare qemu-img', '#2ca02c'),
        ('copy', 'copy floor (cp)', '#7f7f7f'))


def available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(entries, path, title=None):
    """Draw the table entries of one run into ``path``; return ``path``.

    ``entries`` are the benchmark's table entries (with their
    ``summary``).  Raises ImportError without matplotlib.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    labels = ['%s\u2192%s\n(%s)' % (e['source'], e['target'], e['cache'])
              for e in entries]
    width = 0.2
    fig, ax = pyplot.subplots(figsize=(max(6.0, 1.3 * len(entries) + 2), 4.5))
    for i, (runner, name, colour) in enumerate(BARS):
        xs, heights, low, high = [], [], [], []
        for j, entry in enumerate(entries):
            s = entry['summary'].get(runner)
            if not s:
                continue
            xs.append(j + (i - 1.5) * width)
            heights.append(s['median'])
            low.append(s['median'] - s['min'])
            high.append(s['max'] - s['median'])
        if xs:
            ax.bar(xs, heights, width, label=name, color=colour,
                   yerr=[low, high], capsize=2, ecolor='#333333',
                   linewidth=0)
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel('seconds (median; bar: fastest to slowest run)')
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)
    return path
