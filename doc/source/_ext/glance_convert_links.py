"""``:project-link:`bugs``` and friends: the project's own addresses.

They are set once, in ``conf.py`` (``project_links``), so that a page never
spells out an address that could fall out of step with the sidebar.
``:project-link:`Report it here <bugs>``` sets the link text.
"""

import re

from docutils import nodes

_TEXT_AND_KEY = re.compile(r'^(.*?)\s*<([a-z_]+)>$', re.S)


def project_link_role(name, rawtext, text, lineno, inliner, options=None,
                      content=None):
    links = inliner.document.settings.env.config.project_links
    match = _TEXT_AND_KEY.match(text)
    label, key = (match.group(1), match.group(2)) if match else (None, text)
    if key not in links:
        msg = inliner.reporter.error(
            'project-link: unknown key %r; conf.py project_links has %s'
            % (key, ', '.join(sorted(links))), line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    uri = links[key]
    if label is None:
        label = uri[len('mailto:'):] if uri.startswith('mailto:') else uri
    return [nodes.reference(rawtext, label, refuri=uri)], []


def setup(app):
    app.add_config_value('project_links', {}, 'env')
    app.add_role('project-link', project_link_role)
    return {'parallel_read_safe': True}
