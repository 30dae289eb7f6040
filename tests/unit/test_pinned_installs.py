"""Every install the test command, the demo and the benchmark make is pinned.

An unpinned install passes where a cache hides it and breaks on a new
machine when the registry moves on (Keystone's venv did: the resolver's
newest pyOpenSSL and cryptography do not work together).  These tests read
tox.ini, the pin files in tools/constraints/ and the scripts in tools/ and
tests/, and fail when an install without constraints comes back.
"""

import configparser
import os
import re

import pytest

from tests.multinode import keystone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONSTRAINTS = os.path.join(ROOT, 'tools', 'constraints')
TOOLS_PINS = os.path.join(CONSTRAINTS, 'tools.txt')
BOOTSTRAP_PINS = os.path.join(CONSTRAINTS, 'bootstrap.txt')


def canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(line):
    return canonical(re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*', line).group())


def read_pins(path):
    """{name: version} of a pin file (``==`` or upper-constraints' ``===``)."""
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            m = re.match(r'([A-Za-z0-9._-]+)===?([^;\s]+)', line)
            assert m, '%s: not an exact pin: %r' % (path, line)
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def upper_constraints():
    return sorted(os.path.join(CONSTRAINTS, name)
                  for name in os.listdir(CONSTRAINTS)
                  if name.startswith('upper-constraints-'))


def test_tools_pins_name_nothing_the_upper_constraints_pin():
    # tox applies tools.txt to every environment, each Glance release's
    # included; a name in both would make some release unsatisfiable.
    tools = read_pins(TOOLS_PINS)
    assert tools
    for path in upper_constraints():
        both = sorted(set(tools) & set(read_pins(path)))
        assert not both, '%s and %s both pin %s' % (
            TOOLS_PINS, path, both)


def test_bootstrap_pins_agree_with_tools_and_tox():
    bootstrap = read_pins(BOOTSTRAP_PINS)
    assert {'tox', 'tox-uv', 'bindep', 'uv'} <= set(bootstrap)
    assert bootstrap['uv'] == read_pins(TOOLS_PINS)['uv']
    # tox.ini's "requires" is met by the bootstrap venv, so tox never
    # provisions (installs) a tox-uv of its own.
    assert 'tox-uv==%s' % bootstrap['tox-uv'] in tox_config()['tox'][
        'requires'].split()


# -- tox.ini -----------------------------------------------------------------

def tox_config():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(os.path.join(ROOT, 'tox.ini'))
    return parser


def expand(parser, value):
    """Resolve tox's ``{[section]key}`` and ``{toxinidir}`` references."""
    def ref(m):
        return expand(parser, parser[m.group(1)][m.group(2)])
    value = re.sub(r'\{\[([^\]]+)\]([^}]+)\}', ref, value)
    return value.replace('{toxinidir}', ROOT)


def env_sections(parser):
    return [s for s in parser.sections()
            if s == 'testenv' or s.startswith('testenv:')]


def env_value(parser, section, key):
    """A key of an env section, inherited from [testenv] when unset."""
    if parser.has_option(section, key):
        return expand(parser, parser[section][key])
    if section != 'testenv:.pkg' and parser.has_option('testenv', key):
        return expand(parser, parser['testenv'][key])
    return ''


def dep_lines(parser, section):
    """(constraint files, requirement lines) of one env's deps.

    A tox factor prefix (``glance30: ...``) is dropped: every constraint
    file of the env is collected, and a requirement must be pinned in each
    of them (or in tools.txt, which applies everywhere).
    """
    files, requirements = [], []
    for line in env_value(parser, section, 'deps').splitlines():
        line = re.sub(r'^[!\w-]+:\s*', '', line.strip())
        if not line or line.startswith('#'):
            continue
        if line.startswith('-c'):
            files.append(line[2:].strip())
        elif line.startswith('-r'):
            with open(line[2:].strip()) as f:
                requirements += [r.split('#', 1)[0].strip() for r in f
                                 if r.split('#', 1)[0].strip()]
        else:
            requirements.append(line)
    return files, requirements


def unpinned_deps(parser, section):
    tools = read_pins(TOOLS_PINS)
    setenv = env_value(parser, section, 'setenv')
    global_files = []
    for var in ('UV_CONSTRAINT', 'PIP_CONSTRAINT'):
        m = re.search(r'^\s*%s\s*=\s*(.+)$' % var, setenv, re.M)
        assert m, '[%s] does not set %s' % (section, var)
        global_files.append(m.group(1).split())
    assert global_files[0] == global_files[1], section
    global_pins = {}
    for path in global_files[0]:
        global_pins.update(read_pins(path))
    assert set(tools) <= set(global_pins), section
    files, requirements = dep_lines(parser, section)
    per_file = [read_pins(path) for path in files]
    unpinned = []
    for req in requirements:
        if re.search(r'===?\d', req):
            continue
        name = requirement_name(req)
        if name in global_pins:
            continue
        if per_file and all(name in pins for pins in per_file):
            continue
        unpinned.append(req)
    return unpinned


@pytest.mark.parametrize('section', env_sections(tox_config()))
def test_every_tox_dependency_is_pinned(section):
    assert unpinned_deps(tox_config(), section) == []


def test_an_unpinned_tox_dependency_is_found():
    parser = tox_config()
    parser['testenv:pep8']['deps'] = 'flake8\nsomething-new'
    assert unpinned_deps(parser, 'testenv:pep8') == ['something-new']
    parser['testenv:docs']['deps'] = 'keystone'
    assert unpinned_deps(parser, 'testenv:docs') == ['keystone']


def test_an_env_without_the_constraint_variables_is_found():
    parser = tox_config()
    parser['testenv:pep8']['setenv'] = 'PYTHONUNBUFFERED = 1'
    with pytest.raises(AssertionError, match='UV_CONSTRAINT'):
        unpinned_deps(parser, 'testenv:pep8')


# -- scripts -----------------------------------------------------------------

#: An install command: ``pip install`` in a shell line, or a list holding
#: ``'install'`` (``[uv, 'pip', 'install', ...]``).
INSTALL = re.compile(r"""\bpip\s+install\b|['"]install['"]""")
#: What constrains it, within the statement that follows.
CONSTRAINED = re.compile(r"""(^|[\s'"])(-c|--constraint)(['"\s=]|$)""")
WINDOW = 8


def unconstrained_installs(text):
    """Line numbers of install commands with no constraint close by.

    A heuristic, by design: each install must name its constraint file
    within the next few lines, where a reader sees it too.
    """
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if INSTALL.search(line.split('#', 1)[0]):
            window = '\n'.join(lines[i:i + WINDOW])
            if not CONSTRAINED.search(window):
                found.append(i + 1)
    return found


def script_files():
    me = os.path.abspath(__file__)
    for top in ('tools', 'tests'):
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            for name in filenames:
                path = os.path.join(dirpath, name)
                if path == me or name.endswith(('.txt', '.md', '.pyc')):
                    continue
                yield path


def test_every_script_install_is_constrained():
    found = {}
    for path in script_files():
        with open(path, errors='replace') as f:
            lines = unconstrained_installs(f.read())
        if lines:
            found[os.path.relpath(path, ROOT)] = lines
    assert found == {}


def test_an_unconstrained_install_is_found():
    # The shape that broke on a new machine: the venv's install of
    # "keystone gunicorn" with nothing to pin them.
    unpinned = '''
        install = [uv, 'pip', 'install', '--quiet', '--python', py]
        run(install + ['keystone', 'gunicorn'])
    '''
    assert unconstrained_installs(unpinned) == [2]
    assert unconstrained_installs('pip install -q tox bindep') == [1]
    assert unconstrained_installs(
        'pip install -q -c "$PINS" tox bindep') == []
    assert unconstrained_installs(unpinned.replace(
        "['keystone'", "['-c', uc, 'keystone'")) == []


# -- the Keystone venv -------------------------------------------------------

def test_keystone_venv_is_refused_without_constraints(monkeypatch):
    monkeypatch.delenv('GLANCE_CONVERT_KEYSTONE_CONSTRAINTS', raising=False)
    with pytest.raises(keystone.KeystoneError, match='pinned inputs'):
        keystone.install_inputs(['keystone==30.0.0', 'gunicorn'])


def test_keystone_install_names_every_constraint_file(tmp_path):
    uc = tmp_path / 'uc.txt'
    uc.write_text('gunicorn===26.0.0\n')
    reqs, files = keystone.install_inputs(['keystone==30.0.0', 'gunicorn'],
                                          [str(uc), TOOLS_PINS])
    cmd = keystone.install_command('/venv', reqs, files)
    for path in files:
        i = cmd.index(path)
        assert cmd[i - 1] == '--constraint'
    assert cmd[-2:] == ['keystone==30.0.0', 'gunicorn']


def test_keystone_venv_digest_follows_its_inputs(tmp_path):
    uc = tmp_path / 'uc.txt'
    uc.write_text('gunicorn===26.0.0\n')
    reqs = ['keystone==30.0.0', 'gunicorn']
    first = keystone.inputs_digest(reqs, [str(uc)])
    assert keystone.inputs_digest(reqs, [str(uc)]) == first
    uc.write_text('gunicorn===25.2.0\n')
    assert keystone.inputs_digest(reqs, [str(uc)]) != first
    assert keystone.inputs_digest(['keystone==29.1.0', 'gunicorn'],
                                  [str(uc)]) != first


def test_tox_pins_keystone_to_the_glance_series_it_serves():
    # Keystone 27 shipped with OpenStack 2025.1 and Glance 30; the series
    # advance together, so Glance 3N is served by Keystone 3N - 3.
    glance = tox_config()['glance']
    glance_major = int(re.search(r'glance==(\d+)',
                                 glance['glance33']).group(1))
    keystone_major = int(re.search(r'keystone==(\d+)',
                                   glance['keystone33']).group(1))
    assert keystone_major == glance_major - 3
