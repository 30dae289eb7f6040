"""``.. release-notes::`` that fails with a clear message, not a traceback.

reno groups the notes by the tags that contain them, walking the git
history.  In a shallow clone it crashes on the first missing commit with a
bare ``KeyError``, and outside a git clone it cannot work at all.  This
wraps reno's directive: where the history is missing it reports one error
(which ``sphinx-build -W`` turns into a failed build) saying what to do.
A ``reno.cache`` (``reno cache``, as written into an sdist) replaces the
history.

Notes no release tag contains yet are titled with the project's one
version (``setup.cfg``, via ``conf.py``), not with a number reno makes up
from the git history: ``0.0.0`` where the repository has no tag at all,
``LASTTAG-N`` after a tag (reno's ``unreleased_version_title``).
"""

import os
import subprocess

from reno import formatter
from reno import sphinxext

#: reno's version for commits when no tag exists anywhere in the history.
NO_TAG_VERSION = '0.0.0'


def history_problem(root):
    """Why reno cannot read the notes' history under ``root``, or None."""
    if os.path.exists(os.path.join(root, 'releasenotes', 'notes',
                                   'reno.cache')):
        return None
    if not os.path.exists(os.path.join(root, '.git')):
        return ('the release notes are read from the git history, and %s '
                'is not a git clone: build the documentation in a clone of '
                'the repository' % root)
    try:
        shallow = subprocess.run(
            ['git', '-C', root, 'rev-parse', '--is-shallow-repository'],
            capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # no git command; reno itself does not need one
        return None
    if shallow == 'true':
        return ('the release notes need the whole git history, and this is '
                'a shallow clone; fetch the rest with: git fetch '
                '--unshallow')
    return None


class ReleaseNotes(sphinxext.ReleaseNotesDirective):

    def run(self):
        # reno reads the repository from the working directory, as here.
        root = os.path.abspath(self.options.get('reporoot', '.'))
        problem = history_problem(root)
        if problem:
            return [self.state.document.reporter.error(
                'release-notes: %s' % problem, line=self.lineno)]
        release = self.state.document.settings.env.config.release
        self.options.setdefault('unreleased-version-title', release)
        original = formatter.format_report

        def format_report(loader, config, versions, *args, **kwargs):
            text = original(loader, config, versions, *args, **kwargs)
            if loader.versions == [NO_TAG_VERSION]:
                text = retitle(text, NO_TAG_VERSION, release)
            return text

        sphinxext.formatter.format_report = format_report
        try:
            return super().run()
        finally:
            sphinxext.formatter.format_report = original


def retitle(text, old, new):
    """Rename the section (title, underline, anchor) of version ``old``."""
    lines = text.split('\n')
    out = []
    for i, line in enumerate(lines):
        if line == old and i + 1 < len(lines) and set(lines[i + 1]) == {'='}:
            out.append(new)
        elif line and set(line) == {'='} and out and out[-1] == new \
                and lines[i - 1] == old:
            out.append('=' * len(new))
        elif line.startswith('.. _') and line.endswith(':') \
                and '_%s' % old in line:
            out.append(line.replace('_%s' % old, '_%s' % new))
        else:
            out.append(line)
    return '\n'.join(out)


def setup(app):
    app.setup_extension('reno.sphinxext')
    app.add_directive('release-notes', ReleaseNotes, override=True)
    return {'parallel_read_safe': True}
