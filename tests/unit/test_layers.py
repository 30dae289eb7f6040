"""Imports run one way: no module imports one of a higher layer, no cycle.

Read from the sources (every ``import``, also those inside functions), so
a lazy import that runs back up a layer fails here as well.
"""

import ast
import os

import glance_convert

PACKAGE_DIR = os.path.dirname(glance_convert.__file__)

#: Lowest first.  A module may import its own layer and those below.
LAYERS = (
    # what every layer uses: byte units, errors users read, the Check type
    ('glance_convert', 'glance_convert.units', 'glance_convert.errors',
     'glance_convert.safety'),
    # one module per disk format; what decides how a guest boots
    ('glance_convert.formats', 'glance_convert.guest'),
    ('glance_convert.options',),        # [glance_convert] options
    ('glance_convert.host',),           # what the processes of a host share
    # the conversion, without Glance, and the metrics of what it did
    ('glance_convert.pipeline', 'glance_convert.metrics'),
    # what knows Glance, and what is built from its configuration
    ('glance_convert.flow',),
    ('glance_convert.cmd', 'glance_convert.testing'),
)


def modules(directory=PACKAGE_DIR, package='glance_convert'):
    """{module name: path} of every module of the package."""
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            if not name.endswith('.py'):
                continue
            relative = os.path.relpath(os.path.join(root, name), directory)
            parts = [package] + relative[:-3].split(os.sep)
            if parts[-1] == '__init__':
                parts.pop()
            found['.'.join(parts)] = os.path.join(root, name)
    return found


def imports(source, known):
    """The package's modules that ``source`` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and \
                not node.level:
            # "from pkg import mod" imports pkg.mod when it is a module.
            names = [node.module + '.' + alias.name
                     if node.module + '.' + alias.name in known
                     else node.module for alias in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def graph():
    known = modules()
    return {name: imports(open(path).read(), known)
            for name, path in known.items()}


def layer(module):
    """The index of ``module``'s layer in :data:`LAYERS`, or None."""
    for index, members in enumerate(LAYERS):
        for member in members:
            if module == member or (member != 'glance_convert'
                                    and module.startswith(member + '.')):
                return index
    return None


def upward(edges):
    """(importer, imported) pairs where the imported is higher."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if layer(b) > layer(a))


def cycles(edges):
    """Cycles among modules, each as the list of its modules."""
    found, state = [], {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 'open':
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 'done'

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer(m) is None] == []


def test_no_module_imports_a_higher_layer():
    assert upward(graph()) == []


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_the_checks_find_an_upward_import_and_a_cycle():
    edges = graph()
    conversion = 'glance_convert.pipeline.conversion'
    edges[conversion] = edges[conversion] | {'glance_convert.flow.settings'}
    assert ('glance_convert.pipeline.conversion',
            'glance_convert.flow.settings') in upward(edges)
    edges['glance_convert.formats.base'] = {'glance_convert.formats'}
    assert ['glance_convert.formats', 'glance_convert.formats.base',
            'glance_convert.formats'] in cycles(edges)


def test_a_lazy_import_counts():
    known = {'glance_convert.host.workspace', 'glance_convert.flow',
             'glance_convert.flow.glance_conf'}
    source = ('def f():\n'
              '    from glance_convert.flow import glance_conf\n')
    assert imports(source, known) == {'glance_convert.flow.glance_conf'}
