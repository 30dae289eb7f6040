"""What differs between the supported Glance releases, in one place.

Nothing else in the package knows release numbers.  Between Glance 30
(2025.1) and 33 (2026.2) the interfaces the plugin uses are the same (the
integration suite runs on each); one behaviour differs:

* Glance 33 names its program when glance-api reads its configuration
  (``prog='glance-api'``), so it reads ``glance-api.conf.d``.  Glance 30
  to 32 leave the name to oslo.config, which takes the WSGI server's
  (``gunicorn``, ``uwsgi``): they read ``glance.conf.d`` and
  ``<server>.conf.d``, never ``glance-api.conf.d``.
"""

from __future__ import annotations

from importlib import metadata

#: The first Glance release whose glance-api reads ``glance-api.conf.d``.
_NAMES_ITS_PROGRAM_SINCE = 33
API_PROG = 'glance-api'


def glance_major() -> int | None:
    """The installed Glance's major version, or None without Glance."""
    try:
        return int(metadata.version('glance').split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def api_prog() -> str | None:
    """The program name glance-api's ``.conf.d`` directory is named after.

    None where it is the WSGI server's name, which only the server knows.
    Without Glance installed (the CLI on another host), the newest
    release's behaviour.
    """
    major = glance_major()
    if major is not None and major < _NAMES_ITS_PROGRAM_SINCE:
        return None
    return API_PROG
