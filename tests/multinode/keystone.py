"""A real, private Keystone for the multi-node tests.

Keystone pins other oslo releases than Glance, so it lives in a virtual
environment of its own, built once and reused: by default under
``$XDG_CACHE_HOME/glance-convert/keystone-venv`` (``~/.cache`` when unset),
or wherever ``GLANCE_CONVERT_KEYSTONE_VENV`` points.

What goes into it is pinned: ``GLANCE_CONVERT_KEYSTONE_REQUIREMENTS`` (the
Keystone release of the Glance series under test, and gunicorn) installed
with the constraint files of ``GLANCE_CONVERT_KEYSTONE_CONSTRAINTS``; tox.ini
sets both.  An unconstrained build is refused: the resolver's newest picks
have broken Keystone before (pyOpenSSL against cryptography).

The venv is reused only when it was built from the same inputs: the
requirements, the constraint files' contents, the Python and the code
below that builds it.  Their digest is written last, so a build that was
interrupted or made from other inputs is thrown away; a ``flock`` keeps two
test runs from building it at once.

:class:`KeystoneServer` writes a ``keystone.conf`` (sqlite, fernet tokens,
cheap password hashing) into a directory of its own, runs ``keystone-manage``
``db_sync``, ``fernet_setup``, ``credential_setup`` and ``bootstrap``, serves
``keystone.wsgi.api:application`` with gunicorn on 127.0.0.1 and waits for
``GET /v3``.  :class:`KeystoneAdmin` is the few identity calls the tests
need (projects, users, role assignments, tokens), over plain HTTP.
"""

import fcntl
import hashlib
import inspect
import json
import os
import grp
import pwd
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from glance_convert.testing import localglance

_MARKER = '.glance-convert-inputs'
_APP_MODULE = 'keystone_wsgi_app'
_APP_SOURCE = '''\
import sys
sys.argv[1:] = []
from keystone.wsgi.api import application  # noqa: E402,F401
'''


class KeystoneError(localglance.LocalGlanceError):
    """Keystone could not be installed, set up or asked."""


def default_venv_dir():
    explicit = os.environ.get('GLANCE_CONVERT_KEYSTONE_VENV')
    if explicit:
        return os.path.abspath(explicit)
    cache = (os.environ.get('XDG_CACHE_HOME')
             or os.path.join(os.path.expanduser('~'), '.cache'))
    return os.path.join(cache, 'glance-convert', 'keystone-venv')


def _base_python():
    """A Python that can create a venv (not the venv's own symlink)."""
    return getattr(sys, '_base_executable', None) or sys.executable


def _run(cmd, *, env=None, cwd=None, timeout=600, what=None):
    result = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=timeout)
    if result.returncode != 0:
        raise KeystoneError(
            '%s failed (exit %d):\n%s'
            % (what or ' '.join(cmd[:3]), result.returncode,
               result.stdout.decode('utf-8', 'replace')[-4000:]))
    return result.stdout.decode('utf-8', 'replace')


def install_inputs(requirements=None, constraints=None):
    """The requirements and constraint files the venv is built from.

    Both come from the environment (tox.ini sets them) unless given; a
    build without constraint files is refused.
    """
    requirements = list(requirements or os.environ.get(
        'GLANCE_CONVERT_KEYSTONE_REQUIREMENTS', '').split())
    constraints = [os.path.abspath(c) for c in (constraints or os.environ.get(
        'GLANCE_CONVERT_KEYSTONE_CONSTRAINTS', '').split())]
    if not requirements or not constraints:
        raise KeystoneError(
            'the Keystone venv is built only from pinned inputs: set '
            'GLANCE_CONVERT_KEYSTONE_REQUIREMENTS (e.g. "keystone==30.0.0 '
            'gunicorn") and GLANCE_CONVERT_KEYSTONE_CONSTRAINTS (the '
            'upper-constraints file of the same release), as tox -e '
            'multinode does')
    for path in constraints:
        if not os.path.isfile(path):
            raise KeystoneError('constraints file %s not found' % path)
    return requirements, constraints


def inputs_digest(requirements, constraints, python=None):
    """A digest of everything the venv's contents depend on."""
    h = hashlib.sha256()
    h.update(json.dumps(requirements).encode())
    for path in constraints:
        with open(path, 'rb') as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(subprocess.run(
        [python or _base_python(), '-c',
         'import sys; print(sys.version, sys.executable)'],
        stdout=subprocess.PIPE, check=True).stdout)
    # The code that builds the venv: a change to it rebuilds the venv.
    for func in (install_command, ensure_venv):
        h.update(inspect.getsource(func).encode())
    return h.hexdigest()


def install_command(venv_dir, requirements, constraints):
    """The command that installs ``requirements`` into ``venv_dir``."""
    uv = shutil.which('uv')
    if uv:  # seconds where pip takes minutes
        cmd = [uv, 'pip', 'install', '--quiet', '--python',
               os.path.join(venv_dir, 'bin', 'python')]
    else:
        cmd = [os.path.join(venv_dir, 'bin', 'python'), '-m', 'pip',
               'install', '--quiet']
    for path in constraints:
        cmd += ['--constraint', path]
    return cmd + list(requirements)


def ensure_venv(venv_dir=None, requirements=None, constraints=None,
                timeout=1200):
    """Return the path of a venv with Keystone installed; build it if needed.

    Safe to call from several processes at once (``flock``); a venv whose
    recorded inputs differ from today's, or whose build never finished, is
    removed and built again.
    """
    venv_dir = os.path.abspath(venv_dir or default_venv_dir())
    requirements, constraints = install_inputs(requirements, constraints)
    marker = os.path.join(venv_dir, _MARKER)
    wanted = inputs_digest(requirements, constraints) + '\n'
    os.makedirs(os.path.dirname(venv_dir), exist_ok=True)
    lock_fd = os.open(venv_dir + '.lock',
                      os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            with open(marker) as f:
                if f.read() == wanted:
                    return venv_dir
        except FileNotFoundError:
            pass
        shutil.rmtree(venv_dir, ignore_errors=True)
        if shutil.which('uv'):
            _run([shutil.which('uv'), 'venv', '--quiet', '--python',
                  _base_python(), venv_dir], timeout=300,
                 what='creating the Keystone venv %s' % venv_dir)
        else:
            _run([_base_python(), '-m', 'venv', venv_dir], timeout=300,
                 what='creating the Keystone venv %s' % venv_dir)
        _run(install_command(venv_dir, requirements, constraints),
             timeout=timeout, what='installing %s into %s'
             % (' '.join(requirements), venv_dir))
        _run([os.path.join(venv_dir, 'bin', 'python'), '-c',
              'import keystone.server.wsgi, gunicorn'],
             what='importing keystone in %s' % venv_dir)
        with open(marker, 'w') as f:
            f.write(wanted)
        return venv_dir
    finally:
        os.close(lock_fd)


class KeystoneServer:
    """A private Keystone (gunicorn) with a sqlite database.

    :param base_dir: everything this server writes: ``etc/keystone.conf``,
        the sqlite database, the fernet and credential key repositories and
        the logs (``keystone.log``, ``gunicorn.log``).
    :param venv_dir: the Keystone venv; built by :func:`ensure_venv`.
    :param admin_password: the bootstrap admin's password.
    """

    region = 'RegionOne'

    def __init__(self, base_dir, *, venv_dir=None, port=None,
                 admin_password='admin-secret', workers=2,
                 start_timeout=120):
        self.base_dir = os.path.abspath(base_dir)
        self.venv_dir = venv_dir
        self.port = port
        self.admin_password = admin_password
        self.workers = workers
        self.start_timeout = start_timeout
        self.conf_dir = os.path.join(self.base_dir, 'etc')
        self.conf_file = os.path.join(self.conf_dir, 'keystone.conf')
        self.fernet_dir = os.path.join(self.base_dir, 'fernet-keys')
        self.credential_dir = os.path.join(self.base_dir, 'credential-keys')
        self.log_file = os.path.join(self.base_dir, 'keystone.log')
        self.gunicorn_log = os.path.join(self.base_dir, 'gunicorn.log')
        self._app = None

    @property
    def url(self):
        """The identity endpoint, ``http://127.0.0.1:PORT/v3``."""
        return 'http://127.0.0.1:%d/v3' % self.port

    def _bin(self, name):
        return os.path.join(self.venv_dir, 'bin', name)

    @property
    def env(self):
        env = dict(os.environ)
        for key in list(env):
            if key.startswith('OS_'):
                del env[key]
        env['OS_KEYSTONE_CONFIG_DIR'] = self.conf_dir
        env.pop('PYTHONPATH', None)
        return env

    def write_config(self):
        for d in (self.conf_dir, self.fernet_dir, self.credential_dir):
            os.makedirs(d, exist_ok=True)
        if self.port is None:
            self.port = localglance.free_port()
        localglance.write_ini(self.conf_file, {
            'DEFAULT': {'debug': False, 'log_file': self.log_file,
                        'use_stderr': False},
            'database': {'connection': 'sqlite:///%s' % os.path.join(
                self.base_dir, 'keystone.sqlite')},
            'token': {'provider': 'fernet'},
            'fernet_tokens': {'key_repository': self.fernet_dir},
            'fernet_receipts': {'key_repository': self.fernet_dir},
            'credential': {'key_repository': self.credential_dir},
            'cache': {'enabled': False},
            # Test passwords: the cheapest bcrypt keeps token requests fast.
            'identity': {'password_hash_rounds': 4},
        })

    def _manage(self, *args):
        return _run([self._bin('keystone-manage'), '--config-file',
                     self.conf_file] + list(args), env=self.env,
                    cwd=self.base_dir, timeout=300,
                    what='keystone-manage %s' % args[0])

    def setup(self):
        """Install (if needed), configure and bootstrap; do not serve."""
        self.venv_dir = ensure_venv(self.venv_dir)
        self.write_config()
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        self._manage('db_sync')
        self._manage('fernet_setup', '--keystone-user', user,
                     '--keystone-group', group)
        self._manage('credential_setup', '--keystone-user', user,
                     '--keystone-group', group)
        self._manage('bootstrap',
                     '--bootstrap-password', self.admin_password,
                     '--bootstrap-admin-url', self.url,
                     '--bootstrap-public-url', self.url,
                     '--bootstrap-internal-url', self.url,
                     '--bootstrap-region-id', self.region)

    @property
    def process(self):
        """gunicorn's Popen while it runs (None before and after)."""
        return self._app and self._app.process

    def start(self):
        if self.process is not None:
            raise KeystoneError('keystone is already running')
        self.setup()
        # keystone parses sys.argv with oslo.config, which rejects
        # gunicorn's arguments: a two-line module empties argv first.
        with open(os.path.join(self.base_dir, _APP_MODULE + '.py'),
                  'w') as f:
            f.write(_APP_SOURCE)

        def answers():
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                return resp.status == 200

        self._app = localglance.GunicornApp(
            'keystone', [self._bin('gunicorn')],
            '%s:application' % _APP_MODULE, port=self.port,
            base_dir=self.base_dir, env=self.env,
            log_file=self.gunicorn_log, log_tail=self.log_tail,
            ready=(answers, 'keystone to answer GET %s' % self.url,
                   (OSError,)),
            workers=self.workers, threads=4, timeout=120,
            # The venv's gunicorn is new enough to have the option.
            extra_args=['--no-control-socket'], error=KeystoneError)
        self._app.start(self.start_timeout)
        return self

    def stop(self):
        if self._app is not None:
            self._app.stop(15)

    def log_tail(self, lines=40):
        return localglance.tails((self.gunicorn_log, self.log_file), lines)

    def admin(self):
        """A :class:`KeystoneAdmin` logged in as the bootstrap admin."""
        return KeystoneAdmin(self.url, 'admin', self.admin_password, 'admin')

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _http(method, url, body=None, token=None, timeout=30):
    """(status, headers, decoded JSON or None) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header('Accept', 'application/json')
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if token:
        req.add_header('X-Auth-Token', token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, resp.headers, (json.loads(raw) if raw
                                               else None)
    except urllib.error.HTTPError as e:
        raise KeystoneError('%s %s: HTTP %s: %s'
                            % (method, url, e.code,
                               e.read().decode('utf-8', 'replace')[:500]))


def issue_token(url, username, password, project, domain='default'):
    """A project-scoped token for a user: ``(token, body)``."""
    _, headers, body = _http('POST', url + '/auth/tokens', {
        'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': username, 'domain': {'id': domain},
                'password': password}}},
            'scope': {'project': {'name': project,
                                  'domain': {'id': domain}}},
        }})
    return headers['X-Subject-Token'], body['token']


class KeystoneAdmin:
    """Identity calls as the bootstrap admin, over plain HTTP."""

    def __init__(self, url, username, password, project):
        self.url = url
        self.token, _ = issue_token(url, username, password, project)

    def _get_or_create(self, collection, key, name, extra=None):
        url = '%s/%s?name=%s' % (self.url, collection,
                                 urllib.parse.quote(name))
        _, _, found = _http('GET', url, token=self.token)
        if found[collection]:
            return found[collection][0]['id']
        body = {'name': name, 'domain_id': 'default'}
        body.update(extra or {})
        if collection == 'roles':
            body.pop('domain_id')
        _, _, created = _http('POST', '%s/%s' % (self.url, collection),
                              {key: body}, token=self.token)
        return created[key]['id']

    def project(self, name):
        return self._get_or_create('projects', 'project', name)

    def role(self, name):
        return self._get_or_create('roles', 'role', name)

    def user(self, name, password, project_id=None):
        extra = {'password': password, 'enabled': True}
        if project_id:
            extra['default_project_id'] = project_id
        return self._get_or_create('users', 'user', name, extra)

    def grant(self, project_id, user_id, role_name):
        role_id = self.role(role_name)
        _http('PUT', '%s/projects/%s/users/%s/roles/%s'
              % (self.url, project_id, user_id, role_id), token=self.token)

    def account(self, username, password, project, roles):
        """Create (or reuse) a project and a user holding ``roles`` on it.

        Returns ``(project_id, user_id)``.
        """
        project_id = self.project(project)
        user_id = self.user(username, password, project_id)
        for role in roles:
            self.grant(project_id, user_id, role)
        return project_id, user_id

    def register_service(self, service_type, name, url, region):
        """Put a service in the catalog with ``url`` for every interface.

        Real clients (glance, openstack) find Glance through the catalog.
        """
        _, _, found = _http('GET', '%s/services?type=%s'
                            % (self.url, urllib.parse.quote(service_type)),
                            token=self.token)
        if found['services']:
            service_id = found['services'][0]['id']
        else:
            _, _, created = _http('POST', self.url + '/services', {
                'service': {'type': service_type, 'name': name,
                            'enabled': True}}, token=self.token)
            service_id = created['service']['id']
        _, _, existing = _http('GET', '%s/endpoints?service_id=%s'
                               % (self.url, service_id), token=self.token)
        for endpoint in existing['endpoints']:
            _http('DELETE', '%s/endpoints/%s' % (self.url, endpoint['id']),
                  token=self.token)
        for interface in ('public', 'internal', 'admin'):
            _http('POST', self.url + '/endpoints', {'endpoint': {
                'service_id': service_id, 'interface': interface,
                'url': url, 'region_id': region, 'enabled': True}},
                token=self.token)
        return service_id
