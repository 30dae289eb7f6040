"""What operators install is the plugin, not the test harness.

The PostgreSQL cluster manager and the loopback HTTP file server are test
infrastructure (``tests/pgcluster.py``, ``tests/fileserver.py``); the
installed package must not carry them.  Read as source, so the test needs
neither a build nor the modules' dependencies.
"""

import ast
import pathlib

import glance_convert

PACKAGE = pathlib.Path(glance_convert.__file__).parent
#: Modules whose import means serving HTTP or running a database server.
SERVER_MODULES = ('http.server', 'socketserver', 'wsgiref.simple_server')
SERVER_NAMES = ('PostgresCluster', 'postgres_bindir', 'FileServer',
                'initdb', 'pg_ctl')


def _sources():
    return sorted(PACKAGE.rglob('*.py'))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_the_package_has_sources():
    assert len(_sources()) > 20


def test_no_server_module_is_imported():
    found = {str(path.relative_to(PACKAGE)): name
             for path in _sources()
             for name in _imports(ast.parse(path.read_text()))
             if name in SERVER_MODULES}
    assert found == {}


def test_no_database_or_file_server_code():
    found = {str(path.relative_to(PACKAGE)): name
             for path in _sources() for name in SERVER_NAMES
             if name in path.read_text()}
    assert found == {}
