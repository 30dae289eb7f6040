"""Sphinx configuration of the glance-convert documentation.

Built by ``tox -e docs`` with warnings as errors.  The reference pages are
generated from the code: options (oslo.config), the CLI (argparse), the
security checks (a local extension in ``_ext``) and the release notes
(reno, from the git history, through ``_ext/glance_convert_relnotes``).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '_ext'))

project = 'glance-convert'
copyright = 'glance-convert developers'

extensions = [
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'glance_convert_relnotes',  # reno.sphinxext, with clear errors
    'sphinx.ext.graphviz',
    'sphinxarg.ext',
    'glance_convert_checks',
]

# openstackdocstheme: the project's own name, no bug tracker links.
openstackdocs_repo_name = 'glance-convert'
openstackdocs_use_storyboard = False
openstackdocs_auto_name = False

html_theme = 'openstackdocs'
html_theme_options = {'display_toc': True}

master_doc = 'index'
exclude_patterns = ['_build']
pygments_style = 'native'

# SVG keeps the diagrams sharp and searchable.
graphviz_output_format = 'svg'
