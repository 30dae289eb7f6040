"""A private PostgreSQL cluster for the concurrency tests.

sqlite cannot take two imports at once; these tests start a throw-away
cluster from Debian's ``postgresql`` server binaries and stop it by its
pid.  Test infrastructure only: it is not part of the installed package.
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile

from glance_convert.testing import localglance
from glance_convert.testing.localglance import LocalGlanceError
from glance_convert.testing.localglance import tail as _tail


def postgres_bindir():
    """The directory holding initdb and pg_ctl, or None.

    Resolved through links: ``initdb`` may be a symlink into the directory
    that has ``pg_isready`` and ``postgres`` too.
    """
    needed = ('initdb', 'postgres', 'pg_isready', 'createdb')

    def complete(d):
        return all(os.access(os.path.join(d, n), os.X_OK) for n in needed)

    def resolved(d):
        return os.path.dirname(os.path.realpath(os.path.join(d, 'initdb')))

    found = shutil.which('initdb')
    if found and complete(resolved(os.path.dirname(found))):
        return resolved(os.path.dirname(found))
    # Debian keeps the server binaries out of PATH.
    candidates = sorted(
        glob.glob('/usr/lib/postgresql/*/bin'),
        key=lambda p: [int(x) if x.isdigit() else 0
                       for x in p.split('/')[4].split('.')])
    for d in reversed(candidates):
        if complete(d):
            return resolved(d) if complete(resolved(d)) else d
    return None


def require_server():
    """Fail the calling test, never skip it, without PostgreSQL's server
    binaries: the concurrency tests are part of the suite."""
    if postgres_bindir() is None:
        import pytest
        pytest.fail('PostgreSQL server binaries not found: install '
                    'postgresql (bindep.txt lists it)', pytrace=False)


def running(directory):
    """Yield a private cluster running in ``directory``, then stop it: the
    body of the suites' session fixtures.  Fails (never skips) without the
    server binaries."""
    require_server()
    with PostgresCluster(str(directory)) as cluster:
        yield cluster


class PostgresCluster:
    """A private PostgreSQL cluster on a unix socket, for one test run.

    ``initdb -A trust``, ``fsync=off``, no TCP (``listen_addresses=''``).
    The log goes to ``base_dir/postgres.log``; the data directory and the
    socket live in a short-named private directory under the system temp
    dir (a unix socket path must stay under 108 bytes, and when running as
    root the server runs as the ``postgres`` user, which must be able to
    reach them), removed by :meth:`stop`.
    """

    def __init__(self, base_dir, database='glance'):
        self.base_dir = os.path.abspath(base_dir)
        self.database = database
        self.run_dir = None
        self.log_file = os.path.join(self.base_dir, 'postgres.log')
        self.bindir = postgres_bindir()
        self.process = None

    @property
    def data_dir(self):
        return self.run_dir and os.path.join(self.run_dir, 'data')

    @property
    def socket_dir(self):
        return self.run_dir and os.path.join(self.run_dir, 'socket')

    @property
    def url(self):
        return ('postgresql+psycopg2://postgres@/%s?host=%s'
                % (self.database, self.socket_dir))

    def _run_as(self):
        """Keyword args for Popen that drop root to the postgres user."""
        if os.geteuid() != 0:
            return {}
        import pwd
        try:
            pw = pwd.getpwnam('postgres')
        except KeyError:
            raise LocalGlanceError(
                'PostgreSQL will not run as root and there is no '
                '"postgres" user to run it as')
        return {'user': pw.pw_uid, 'group': pw.pw_gid,
                'extra_groups': []}

    def _chown(self, path):
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam('postgres')
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _cmd(self, name, *args, **kwargs):
        kwargs.setdefault('stdin', subprocess.DEVNULL)
        kwargs.setdefault('stdout', subprocess.PIPE)
        kwargs.setdefault('stderr', subprocess.STDOUT)
        kwargs.setdefault('timeout', 120)
        result = subprocess.run([os.path.join(self.bindir, name)] + list(args),
                                **self._run_as(), **kwargs)
        if result.returncode != 0:
            raise LocalGlanceError(
                '%s failed (exit %d):\n%s'
                % (name, result.returncode,
                   result.stdout.decode('utf-8', 'replace')[-3000:]))
        return result

    def start(self, timeout=60):
        if self.bindir is None:
            raise LocalGlanceError(
                'PostgreSQL server binaries (initdb, pg_ctl) not found; '
                'install them, e.g. "apt-get install postgresql"')
        os.makedirs(self.base_dir, exist_ok=True)
        self.run_dir = tempfile.mkdtemp(prefix='lg-pg-')
        self._chown(self.run_dir)
        os.mkdir(self.socket_dir, 0o700)
        self._chown(self.socket_dir)
        self._cmd('initdb', '-D', self.data_dir, '-A', 'trust',
                  '-U', 'postgres', '--no-sync', '-E', 'UTF8')
        with open(self.log_file, 'ab') as log:
            self._chown(self.log_file)
            self.process = subprocess.Popen(
                [os.path.join(self.bindir, 'postgres'),
                 '-D', self.data_dir, '-k', self.socket_dir,
                 '-c', 'listen_addresses=', '-c', 'fsync=off',
                 '-c', 'synchronous_commit=off',
                 '-c', 'full_page_writes=off',
                 '-c', 'max_connections=200'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, **self._run_as())

        def accepting():
            return subprocess.run(
                [os.path.join(self.bindir, 'pg_isready'),
                 '-h', self.socket_dir, '-U', 'postgres', '-q'],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0

        try:
            localglance.wait_until(
                accepting, 'postgres to accept connections on %s'
                % self.socket_dir, timeout, process=self.process,
                name='postgres', log_tail=lambda: _tail(self.log_file),
                interval=0.2)
            self._cmd('createdb', '-h', self.socket_dir, '-U', 'postgres',
                      self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Fast shutdown (SIGINT), SIGKILL if it hangs; remove the data."""
        proc, self.process = self.process, None
        localglance.stop_process(proc, 30, sig=signal.SIGINT)
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
