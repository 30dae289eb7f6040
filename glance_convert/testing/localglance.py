"""A real, private glance-api for tests, the demo and smoke tests.

Glance 33 has no standalone server: ``glance.wsgi.api:application`` is
served by a WSGI server, here gunicorn.  :class:`GlanceServer` writes a
complete configuration into a directory of its own (sqlite or PostgreSQL
database, file store, staging and tasks stores, no keystone), runs
``glance-manage db_sync``, starts gunicorn bound to 127.0.0.1 and waits
until the API answers.  :class:`GlanceClient` talks to it with the headers
keystonemiddleware would have set, which the ``context`` filter of the
paste pipeline written here turns into a request context.

:class:`GunicornApp` (start, readiness wait, stop by process group) and
:func:`wait_until` (the polling loop) also serve the multi-node tests'
Keystone.  The PostgreSQL cluster and the HTTP file server that some tests
need live under ``tests/``: they are no part of what operators install.

Nothing here needs root, and everything is stopped and removed by its
owner: use the classes as context managers.
"""

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

#: Terminal states of a Glance task.
TASK_DONE = ('success', 'failure')

_PASTE_FLAVOR = 'localtest'

# The default pipeline of Glance's paste file, with the context filter
# (which trusts X-Identity-Status and friends) in place of the
# unauthenticated context, which cannot import under secure RBAC.
_PASTE_INI = """\
# Written by glance_convert.testing.localglance: no keystone,
# header-based context.
[composite:glance-api-%(flavor)s]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
%(flavor)s = cors http_proxy_to_wsgi versionnegotiation context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = %(base_dir)s/healthcheck_disable

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:\
VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = glance
oslo_config_program = glance-api

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
"""


class LocalGlanceError(Exception):
    """The local Glance could not be set up, or did not do what was asked."""


class GlanceHTTPError(LocalGlanceError):
    """Glance answered with an HTTP error status."""

    def __init__(self, method, path, status, body):
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        super().__init__('%s %s: HTTP %s: %s'
                         % (method, path, status, body[:500]))


def free_port(host='127.0.0.1'):
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ini_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value)
    return str(value)


def write_ini(path, sections):
    """Write ``{section: {key: value}}`` as an oslo.config file.

    Strings are written verbatim (so ``'[a,b]'`` stays bracketed, as list
    options with ``bounds=True`` need); lists are joined with commas and
    booleans become ``true``/``false``.
    """
    lines = []
    for section, values in sections.items():
        lines.append('[%s]' % section)
        for key, value in values.items():
            if value is None:
                continue
            lines.append('%s = %s' % (key, _ini_value(value)))
        lines.append('')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def _merge(base, extra):
    for section, values in (extra or {}).items():
        base.setdefault(section, {}).update(values)
    return base


def tail(path, lines=40, skip=None):
    """The last ``lines`` lines of a file, leaving out those containing
    ``skip`` (e.g. ``' DEBUG '``: polling fills debug logs)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 1024 * 1024))
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    kept = [line for line in text.splitlines()
            if not (skip and skip in line)]
    return '\n'.join(kept[-lines:])


def tails(paths, lines=40, skip=None):
    """:func:`tail` of each of ``paths``, each headed by its name."""
    parts = []
    for path in paths:
        text = tail(path, lines, skip=skip)
        if text:
            parts.append('--- %s ---\n%s' % (path, text))
    return '\n'.join(parts) or '(no log yet)'


def _bin_script(name):
    """A console script installed beside the running Python, if any."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return [candidate]
    found = shutil.which(name)
    return [found] if found else None


def _gunicorn_quiet_args():
    """Arguments that keep gunicorn from touching anything shared.

    gunicorn 24+ opens a control socket in ``~/.gunicorn`` by default,
    shared by every instance of the user; turn it off where it exists.
    """
    try:
        from gunicorn import config
    except ImportError:
        return []
    names = {s.name for s in config.KNOWN_SETTINGS}
    return ['--no-control-socket'] if 'control_socket_disable' in names \
        else []


def stop_process(proc, term_timeout, group=True, sig=signal.SIGTERM):
    """Send ``sig`` to ``proc``, then SIGKILL it and its process group.

    The group goes too because a server's workers and their children
    (qemu-img) share it: they must not outlive the test that started them.
    """
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=term_timeout)
        except subprocess.TimeoutExpired:
            pass
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


def wait_until(probe, what, timeout, *, process=None, name=None,
               log_tail=None, errors=(), error=LocalGlanceError,
               interval=0.25):
    """Call ``probe`` until it returns a true value; return that value.

    The one readiness loop of the harness (servers, databases and the
    tests' own waits), so that every time-out says the same things: what
    was awaited, for how long, the last error and the log.  Exceptions in
    ``errors`` mean "not yet" (the last one is quoted).  If ``process``
    (a Popen called ``name``) exits first, waiting on is pointless: raise
    at once.  Failures raise ``error(message)`` with ``log_tail()``.
    """
    def log():
        return '; log tail:\n%s' % log_tail() if log_tail else ''

    deadline = time.monotonic() + timeout
    last = None
    while True:
        if process is not None and process.poll() is not None:
            raise error('%s exited with status %s while starting%s'
                        % (name, process.returncode, log()))
        try:
            value = probe()
        except errors as e:
            last, value = e, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise error('timed out after %ss waiting for %s%s%s'
                        % (timeout, what,
                           ' (last error: %s)' % last if last else '',
                           log()))
        time.sleep(interval)


#: Servers started and not stopped yet; killed if the interpreter exits
#: without stopping them (their processes run in sessions of their own).
_RUNNING = set()


@atexit.register
def _kill_leftover_servers():
    for server in list(_RUNNING):
        server.kill()


class GunicornApp:
    """One WSGI application served by gunicorn on 127.0.0.1.

    The start-up, readiness wait and stop shared by the local Glance and
    the multi-node tests' Keystone.  gunicorn runs in a session of its own
    so that stopping it kills its workers and their children with it; its
    output goes to ``log_file``; until stopped it is killed when the
    interpreter exits (a failed test must not leave servers behind).

    :param gunicorn: the command that runs gunicorn (the app may live in
        another virtualenv).
    :param app: ``module:callable``, imported from ``base_dir``.
    :param ready: ``(probe, what, errors)``: it is up when ``probe()`` is
        true (see :func:`wait_until`).
    :param log_tail: callable giving the logs quoted in errors.
    :param extra_args: more gunicorn arguments.
    :param error: the exception class raised on failure.
    """

    def __init__(self, name, gunicorn, app, *, port, base_dir, env,
                 log_file, log_tail, ready, workers, threads, timeout,
                 extra_args=(), error=LocalGlanceError):
        self.name = name
        self.port = port
        self.command = list(gunicorn) + [
            '--workers', str(workers),
            '--threads', str(threads),
            '--timeout', str(timeout),
            '--bind', '127.0.0.1:%d' % port,
            '--chdir', base_dir] + list(extra_args) + [app]
        self.base_dir = base_dir
        self.env = env
        self.log_file = log_file
        self.log_tail = log_tail
        self.ready = ready
        self.error = error
        self.process = None

    def start(self, timeout):
        """Start gunicorn and wait until it is ready; kill it if it does
        not get there."""
        if self.process is not None:
            raise self.error('%s is already running' % self.name)
        with open(self.log_file, 'ab') as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=self.base_dir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        _RUNNING.add(self)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout):
        probe, what, errors = self.ready
        if self.process is None:
            raise self.error('%s is not running' % self.name)
        wait_until(probe, what, timeout, process=self.process,
                   name='%s (gunicorn)' % self.name,
                   log_tail=self.log_tail, errors=errors, error=self.error)

    def stop(self, term_timeout):
        """SIGTERM gunicorn, SIGKILL what is left after ``term_timeout``."""
        proc, self.process = self.process, None
        _RUNNING.discard(self)
        stop_process(proc, term_timeout)

    def kill(self):
        """SIGKILL gunicorn, its workers and their children at once."""
        proc, self.process = self.process, None
        _RUNNING.discard(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        stop_process(proc, 0)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class GlanceServer:
    """A private glance-api (gunicorn) with its own config, store and DB.

    :param base_dir: directory for everything this server writes: ``etc/``
        (glance-api.conf, glance-image-import.conf, paste ini), ``images/``
        (the file store), ``staging/``, ``tasks/``, ``locks/``, the sqlite
        database and the logs (``glance-api.log``, ``gunicorn.log``).
    :param plugins: names for ``[image_import_opts] image_import_plugins``.
    :param plugin_conf: options for the ``[glance_convert]`` group, written
        into glance-image-import.conf.
    :param workers: gunicorn worker processes.
    :param database_url: SQLAlchemy URL; default a sqlite file in base_dir.
    :param port: TCP port on 127.0.0.1; default a free one.
    :param extra_conf: ``{section: {key: value}}`` merged into
        glance-api.conf last, so it can override anything.
    :param multi_store: configure ``enabled_backends`` and the reserved
        staging/tasks stores (the default) or the older single store with
        ``node_staging_uri``.
    :param import_conf: ``{section: {key: value}}`` merged into
        glance-image-import.conf.
    """

    def __init__(self, base_dir, *, plugins=('glance_convert',),
                 plugin_conf=None, workers=1, database_url=None, port=None,
                 extra_conf=None, multi_store=True, import_conf=None,
                 start_timeout=120, graceful_timeout=10):
        self.base_dir = os.path.abspath(base_dir)
        self.plugins = list(plugins or [])
        self.plugin_conf = dict(plugin_conf or {})
        self.workers = workers
        self.database_url = database_url or 'sqlite:///%s' % os.path.join(
            self.base_dir, 'glance.sqlite')
        self.port = port
        self.extra_conf = extra_conf or {}
        self.import_conf = import_conf or {}
        self.multi_store = multi_store
        self.start_timeout = start_timeout
        self.graceful_timeout = graceful_timeout
        self.conf_dir = os.path.join(self.base_dir, 'etc')
        self.store_dir = os.path.join(self.base_dir, 'images')
        self.staging_dir = os.path.join(self.base_dir, 'staging')
        self.tasks_dir = os.path.join(self.base_dir, 'tasks')
        self.lock_dir = os.path.join(self.base_dir, 'locks')
        self.log_file = os.path.join(self.base_dir, 'glance-api.log')
        self.gunicorn_log = os.path.join(self.base_dir, 'gunicorn.log')
        self.api_conf = os.path.join(self.conf_dir, 'glance-api.conf')
        self.import_conf_file = os.path.join(
            self.conf_dir, 'glance-image-import.conf')
        self.paste_ini = os.path.join(self.conf_dir, 'glance-api-paste.ini')
        self._app = None

    # -- configuration -------------------------------------------------

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def api_sections(self):
        """The glance-api.conf contents, as ``{section: {key: value}}``."""
        conf = {
            'DEFAULT': {
                'debug': True,
                'log_file': self.log_file,
                'use_stderr': False,
                'bind_host': '127.0.0.1',
                'bind_port': self.port,
                'enabled_import_methods': '[glance-direct,web-download]',
                'public_endpoint': self.url,
            },
            'database': {'connection': self.database_url},
            'paste_deploy': {'flavor': _PASTE_FLAVOR,
                             'config_file': self.paste_ini},
            'wsgi': {'python_interpreter': sys.executable},
            'oslo_concurrency': {'lock_path': self.lock_dir},
            'import_filtering_opts': {
                'allowed_hosts': '[127.0.0.1,localhost]',
                'allowed_ports': '[]',
            },
        }
        if self.multi_store:
            conf['DEFAULT']['enabled_backends'] = 'fs:file'
            conf['glance_store'] = {'default_backend': 'fs'}
            conf['fs'] = {'filesystem_store_datadir': self.store_dir}
            conf['os_glance_staging_store'] = {
                'filesystem_store_datadir': self.staging_dir}
            conf['os_glance_tasks_store'] = {
                'filesystem_store_datadir': self.tasks_dir}
        else:
            conf['DEFAULT']['node_staging_uri'] = (
                'file://%s/' % self.staging_dir)
            conf['glance_store'] = {
                'stores': 'file',
                'default_store': 'file',
                'filesystem_store_datadir': self.store_dir,
            }
            conf['task'] = {'work_dir': self.tasks_dir}
        return _merge(conf, self.extra_conf)

    def import_sections(self):
        """The glance-image-import.conf contents."""
        conf = {
            'image_import_opts': {
                'image_import_plugins': '[%s]' % ','.join(self.plugins),
            },
        }
        if self.plugin_conf:
            conf['glance_convert'] = dict(self.plugin_conf)
        return _merge(conf, self.import_conf)

    def write_config(self):
        for d in (self.conf_dir, self.store_dir, self.staging_dir,
                  self.tasks_dir, self.lock_dir):
            os.makedirs(d, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        write_ini(self.api_conf, self.api_sections())
        write_ini(self.import_conf_file, self.import_sections())
        with open(self.paste_ini, 'w') as f:
            f.write(_PASTE_INI % {'flavor': _PASTE_FLAVOR,
                                  'base_dir': self.base_dir})

    @property
    def env(self):
        env = dict(os.environ)
        env['OS_GLANCE_CONFIG_DIR'] = self.conf_dir
        env.pop('OS_AUTH_URL', None)
        return env

    # -- life cycle ----------------------------------------------------

    def db_sync(self):
        cmd = _bin_script('glance-manage') or [
            sys.executable, '-m', 'glance.cmd.manage']
        cmd += ['--config-file', self.api_conf, 'db_sync']
        result = subprocess.run(cmd, env=self.env, cwd=self.base_dir,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=300)
        if result.returncode != 0:
            raise LocalGlanceError(
                'glance-manage db_sync failed (exit %d):\n%s'
                % (result.returncode,
                   result.stdout.decode('utf-8', 'replace')[-3000:]))

    @property
    def process(self):
        """gunicorn's Popen while it runs (None before and after)."""
        return self._app and self._app.process

    def start(self):
        """Write the config, sync the database, start and wait for gunicorn."""
        if self.process is not None:
            raise LocalGlanceError('glance-api is already running')
        self.write_config()
        self.db_sync()
        client = self.client()

        def answers():
            client.request('GET', '/v2/info/import', timeout=5)
            return True

        self._app = GunicornApp(
            'glance-api', [sys.executable, '-m', 'gunicorn'],
            'glance.wsgi.api:application', port=self.port,
            base_dir=self.base_dir, env=self.env,
            log_file=self.gunicorn_log, log_tail=self.log_tail,
            ready=(answers, 'glance-api to answer GET /v2/info/import at %s'
                   % self.url, (OSError, http.client.HTTPException,
                                GlanceHTTPError)),
            workers=self.workers, threads=8, timeout=600,
            extra_args=['--graceful-timeout', str(self.graceful_timeout)]
            + _gunicorn_quiet_args())
        self._app.start(self.start_timeout)
        return self

    def wait_ready(self, timeout):
        """Wait until the running server answers again."""
        self._app.wait_ready(timeout)

    def stop(self):
        """SIGTERM gunicorn, SIGKILL what is left after a grace period."""
        if self._app is not None:
            self._app.stop(self.graceful_timeout + 5)

    def kill(self):
        """SIGKILL gunicorn, its workers and their children at once."""
        if self._app is not None:
            self._app.kill()

    @property
    def running(self):
        return bool(self._app and self._app.running)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers -------------------------------------------------------

    def log_tail(self, lines=40):
        return tails((self.gunicorn_log, self.log_file), lines,
                     skip=' DEBUG ')

    def client(self, **kwargs):
        kwargs.setdefault('log_tail', self.log_tail)
        return GlanceClient(self.url, **kwargs)

    def staging_files(self):
        """Names in the staging directory (work files included)."""
        try:
            return sorted(os.listdir(self.staging_dir))
        except FileNotFoundError:
            return []


class GlanceClient:
    """A small Glance v2 client that authenticates the keystone way.

    It sends the headers keystonemiddleware would set after validating a
    token; the server's paste pipeline (``context`` filter) trusts them.
    With ``roles`` admin, member and reader it may do anything.  Given a
    real keystone ``token``, it sends only that (for a Glance behind
    keystonemiddleware, which drops identity headers it did not set).
    """

    def __init__(self, url, *, project_id=None, user_id=None,
                 roles=('admin', 'member', 'reader'), log_tail=None,
                 timeout=60, token=None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ('http', 'https') or not parsed.hostname:
            raise LocalGlanceError('not an http(s) URL: %r' % url)
        self.url = url.rstrip('/')
        self._parsed = parsed
        self.project_id = project_id or uuid.uuid4().hex
        self.user_id = user_id or uuid.uuid4().hex
        self.roles = list(roles)
        self._log_tail = log_tail
        self.timeout = timeout
        self.token = token

    def headers(self):
        if self.token:
            return {'X-Auth-Token': self.token}
        return {
            'X-Identity-Status': 'Confirmed',
            'X-Roles': ','.join(self.roles),
            'X-Project-Id': self.project_id,
            'X-Tenant-Id': self.project_id,
            'X-User-Id': self.user_id,
            'X-Auth-Token': 'local-%s' % self.user_id,
        }

    def _connect(self, timeout):
        cls = (http.client.HTTPSConnection if self._parsed.scheme == 'https'
               else http.client.HTTPConnection)
        return cls(self._parsed.hostname, self._parsed.port,
                   timeout=timeout)

    def _path(self, path):
        return (self._parsed.path.rstrip('/') + path)

    def request(self, method, path, body=None, headers=None, timeout=None,
                json_body=None, stream_to=None):
        """Send a request; return the decoded JSON body (or None).

        ``body`` may be bytes or a binary file (streamed; give
        Content-Length in ``headers``).  With ``stream_to`` (a binary file)
        the response body is copied there and its byte count returned.
        """
        hdrs = self.headers()
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs['Content-Type'] = 'application/json'
        hdrs.update(headers or {})
        conn = self._connect(timeout or self.timeout)
        try:
            conn.request(method, self._path(path), body=body, headers=hdrs)
            resp = conn.getresponse()
            if resp.status >= 400:
                raise GlanceHTTPError(method, path, resp.status,
                                      resp.read().decode('utf-8', 'replace'))
            if stream_to is not None:
                total = 0
                while True:
                    chunk = resp.read(1024 * 1024)
                    if not chunk:
                        return total
                    stream_to.write(chunk)
                    total += len(chunk)
            data = resp.read()
        finally:
            conn.close()
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode('utf-8', 'replace')

    # -- images --------------------------------------------------------

    def create_image(self, disk_format, container_format='bare', name=None,
                     **properties):
        body = {'disk_format': disk_format,
                'container_format': container_format,
                'name': name or 'localglance-%s' % disk_format}
        body.update(properties)
        return self.request('POST', '/v2/images', json_body=body)

    def get_image(self, image_id):
        return self.request('GET', '/v2/images/%s' % image_id)

    def delete_image(self, image_id):
        self.request('DELETE', '/v2/images/%s' % image_id)

    def stage(self, image_id, path):
        """PUT the file at ``path`` into the staging area (streamed)."""
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            self.request('PUT', '/v2/images/%s/stage' % image_id, body=f,
                         headers={'Content-Type': 'application/octet-stream',
                                  'Content-Length': str(size)},
                         timeout=max(self.timeout, 600))

    def import_image(self, image_id, method='glance-direct', uri=None,
                     stores=None):
        body = {'method': {'name': method}}
        if uri is not None:
            body['method']['uri'] = uri
        if stores is not None:
            body['stores'] = list(stores)
        return self.request('POST', '/v2/images/%s/import' % image_id,
                            json_body=body)

    def get_tasks(self, image_id):
        """The image's tasks, oldest first."""
        tasks = self.request('GET', '/v2/images/%s/tasks' % image_id)
        tasks = (tasks or {}).get('tasks', [])
        return sorted(tasks, key=lambda t: t.get('created_at') or '')

    def download(self, image_id, dest_path):
        """Stream the image data to ``dest_path``; return the byte count."""
        with open(dest_path, 'wb') as f:
            return self.request('GET', '/v2/images/%s/file' % image_id,
                                stream_to=f, timeout=max(self.timeout, 600))

    def import_info(self):
        return self.request('GET', '/v2/info/import')

    def wait_for_import(self, image_id, timeout=300, interval=0.25):
        """Wait for the import of ``image_id`` to end; return (image, task).

        Only ``GET /v2/images/{id}`` is polled while the flow runs (with
        sqlite, reading ``/tasks`` writes to the database and can break a
        running import); the flow is over when the image's
        ``os_glance_import_task`` lock is gone (usually the image is then
        ``active`` or back to ``queued``; a failed upload can leave Glance's
        own flow with ``importing``).
        Then the newest task is read and, if it is not terminal yet, polled
        until it is.
        """
        deadline = time.monotonic() + timeout
        image = None
        while True:
            image = self.get_image(image_id)
            # The API takes the lock before it answers the import call;
            # the flow drops it when it ends, whatever the outcome.
            if 'os_glance_import_task' not in image:
                break
            if time.monotonic() > deadline:
                self._timeout(image_id, timeout, image, None)
            time.sleep(interval)
        task = None
        while True:
            tasks = self.get_tasks(image_id)
            task = tasks[-1] if tasks else None
            if task is not None and task['status'] in TASK_DONE:
                return self.get_image(image_id), task
            if time.monotonic() > deadline:
                self._timeout(image_id, timeout, image, task)
            time.sleep(max(interval, 0.5))

    def _timeout(self, image_id, timeout, image, task):
        msg = ('import of image %s did not finish within %ss: image status '
               '%s, import lock %s, task %s'
               % (image_id, timeout, image and image.get('status'),
                  image and image.get('os_glance_import_task'),
                  task and '%s (%s)' % (task.get('status'),
                                        task.get('message'))))
        if self._log_tail:
            msg += '\nlog tail:\n%s' % self._log_tail()
        raise LocalGlanceError(msg)
