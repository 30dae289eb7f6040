"""Sphinx configuration of the glance-convert documentation.

Built by ``tox -e docs`` with warnings as errors.  The reference pages are
generated from the code: options (oslo.config), the CLI (argparse), the
security checks and the metric reference (local extensions in ``_ext``),
the release notes (reno,
through ``_ext/glance_convert_relnotes``) and the benchmark figures (from
the committed results file, through ``_ext/glance_convert_bench``).
"""

import configparser
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, '_ext'))

# The project's own addresses, in this one place: the sidebar and the
# pages that name them (``:project-link:`bugs```) read them from here.
# They are placeholders under .invalid until the project is published.
project_links = {
    'repository': 'https://git.glance-convert.invalid/glance-convert',
    'bugs': 'https://git.glance-convert.invalid/glance-convert/issues',
    'security': 'mailto:security@glance-convert.invalid',
}

project = 'glance-convert'
copyright = 'glance-convert developers'


def _setup_cfg_version():
    """The one version, as pbr reads it: ``[metadata] version``."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, 'setup.cfg'))
    return cfg['metadata']['version']


version = release = _setup_cfg_version()

extensions = [
    'oslo_config.sphinxext',
    'glance_convert_relnotes',  # reno.sphinxext, with clear errors
    'sphinx.ext.graphviz',
    'sphinxarg.ext',
    'glance_convert_checks',
    'glance_convert_metrics',
    'glance_convert_bench',
    'glance_convert_links',
    'glance_convert_optindex',
]

# alabaster: Sphinx's own default theme, nothing borrowed from another
# project's site.  The sidebar is the whole table of contents, with the
# current page's branch open and marked (custom.css).
html_theme = 'alabaster'
html_title = 'glance-convert %s' % release
html_static_path = ['_static']
html_css_files = ['custom.css']
html_theme_options = {
    'description': 'Safe, fast image conversion for Glance\'s image '
                   'import. Version %s.' % release,
    'page_width': '1240px',
    'sidebar_width': '250px',
    'sidebar_collapse': True,
    'sidebar_includehidden': True,
    'show_powered_by': False,
    'extra_nav_links': {
        'Source repository': project_links['repository'],
        'Report a bug': project_links['bugs'],
        'Report a security problem': project_links['security'],
    },
}
html_sidebars = {'**': ['about.html', 'navigation.html', 'searchbox.html']}
html_show_sourcelink = False

master_doc = 'index'
exclude_patterns = ['_build']
pygments_style = 'sphinx'
# Literal blocks are commands, output and configuration, not Python.
highlight_language = 'none'

# SVG keeps the diagrams sharp and searchable.
graphviz_output_format = 'svg'
