"""A Glance host to break: glance-api with 2 workers on PostgreSQL, the
plugin as an operator configures it, and a stand-in qemu-img that stops
any import at a chosen phase.

The stand-in is first on the server's PATH.  Before it runs the real
qemu-img it looks for a *hold file* ``<ctl>/hold.<phase>.<image id>``;
while that exists it leaves ``<ctl>/at.<phase>.<image id>.<pid>`` and
waits.  Phases: ``inspect`` (``qemu-img info`` of the staged data),
``convert`` (every ``qemu-img convert``, one per process of a
multi-process conversion), ``verify`` (``qemu-img info`` of the output).
A test thereby stops an import exactly where it wants it, whatever the
machine's speed, and knows which worker runs it from the ledger, whose
records name the holder's pid from the start of the task.
"""

import contextlib
import fcntl
import glob
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import psycopg2

from glance_convert.host import layout as layout_
from glance_convert.host import ledger as ledger_
from glance_convert.host import procs
from glance_convert.host import watch
from glance_convert.testing import localglance
from tests import imagefactory
from tests import proctools

MiB = 1024 * 1024
TIMEOUT = 180           # for one step; a failure, not a limit
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                  r'[0-9a-f]{12}')
READABLE = re.compile(r'[A-Za-z]{3,}.*[A-Za-z]{3,}')

_STAND_IN = '''#!%(python)s
import os, re, sys, time
REAL = %(real)r
CTL = %(ctl)r
args = sys.argv[1:]
sub = args[0] if args else ''
text = ' '.join(args)
phase = None
if sub == 'convert':
    phase = 'convert'
elif sub == 'info':
    phase = 'verify' if '.glance-convert.' in text else 'inspect'
if phase:
    for image in set(re.findall(%(uuid)r, text)):
        hold = os.path.join(CTL, 'hold.%%s.%%s' %% (phase, image))
        if os.path.exists(hold):
            mark = os.path.join(CTL, 'at.%%s.%%s.%%d' %% (phase, image,
                                                       os.getpid()))
            open(mark, 'w').close()
            while os.path.exists(hold):
                time.sleep(0.05)
os.execv(REAL, [REAL] + args)
'''


def say(*words):
    """What a case did and found: printed (pytest -s shows it)."""
    print('[faults]', *words, flush=True)


def wait_for(predicate, what, timeout=TIMEOUT, log=None, interval=0.1):
    return proctools.wait_for(predicate, what, timeout, log, interval)


class Images:
    """Source images of modest size, made once per session.

    Random data, so that a conversion is not a no-op and a space
    estimate is close to the virtual size.
    """

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)

    def qcow2(self, mib, name=None):
        path = os.path.join(self.dir, name or 'random-%d.qcow2' % mib)
        if not os.path.exists(path):
            raw = path + '.raw'
            with open(raw, 'wb') as f:
                for _ in range(mib):
                    f.write(os.urandom(MiB))
            imagefactory.convert(raw, 'raw', path, 'qcow2')
            os.unlink(raw)
        return path

    def vmdk_sparse(self, mib):
        """A monolithicSparse VMDK: converted by several processes."""
        path = os.path.join(self.dir, 'random-%d.vmdk' % mib)
        if not os.path.exists(path):
            imagefactory.convert(self.qcow2(mib), 'qcow2', path, 'vmdk',
                                 {'subformat': 'monolithicSparse'})
        return path


class Host:
    """One glance-api (2 workers) on ``pg``, a fresh database of its own.

    ``plugin_conf`` is merged over a realistic base; ``staging_dir``
    replaces the staging (and so work) directory, e.g. by a small
    mounted file system.
    """

    BASE_CONF = {
        # The stand-in leaves marks and reads hold files in the test's
        # control directory, which the confinement of qemu-img forbids (as
        # it should); the faults tested here are not about confinement,
        # so qemu-img runs unconfined.
        'sandbox': 'off',
        'output_format': 'raw',
        'max_concurrent_conversions': 4,
        'slot_wait_timeout': 600,
        'progress_interval': 1,
        'parallel_workers': 2,
    }

    def __init__(self, base_dir, pg, name, plugin_conf=None,
                 extra_conf=None, workers=2, wsgi='gunicorn'):
        self.base_dir = os.path.join(str(base_dir), name)
        self.ctl = os.path.join(self.base_dir, 'ctl')
        bindir = os.path.join(self.base_dir, 'bin')
        for d in (self.ctl, bindir):
            os.makedirs(d, exist_ok=True)
        stand_in = os.path.join(bindir, 'qemu-img')
        with open(stand_in, 'w') as f:
            f.write(_STAND_IN % {'python': sys.executable, 'ctl': self.ctl,
                                 'real': shutil.which('qemu-img'),
                                 'uuid': UUID.pattern})
        os.chmod(stand_in, 0o755)
        self.path_env = '%s:%s' % (bindir, os.environ['PATH'])
        self.pg = pg
        self.database = database = 'g_' + re.sub(r'\W', '_', name)[:40].lower()
        pg._cmd('createdb', '-h', pg.socket_dir, '-U', 'postgres', database)
        url = ('postgresql+psycopg2://postgres@/%s?host=%s'
               % (database, pg.socket_dir))
        self.server = localglance.GlanceServer(
            os.path.join(self.base_dir, 'glance'), database_url=url,
            workers=workers, port=localglance.free_port(),
            plugin_conf=dict(self.BASE_CONF, **(plugin_conf or {})),
            extra_conf=extra_conf)
        self.client = self.server.client()
        self.images = []   # every image a case started, for the checks
        self.wsgi = wsgi

    # -- life cycle ----------------------------------------------------

    def start(self):
        old = os.environ['PATH']
        os.environ['PATH'] = self.path_env
        try:
            if self.wsgi == 'uwsgi':
                self._start_uwsgi()
            else:
                self.server.start()
        finally:
            os.environ['PATH'] = old
        return self

    def _start_uwsgi(self):
        """glance-api under uWSGI, as devstack runs it (master, workers
        forked from it, threads, lazy apps, SIGTERM stops it)."""
        srv = self.server
        srv.write_config()
        srv.db_sync()

        def answers():
            srv.client().request('GET', '/v2/info/import', timeout=5)
            return True

        # GunicornApp's start, readiness wait and stop by process group
        # serve any WSGI server; only the command differs.
        app = localglance.GunicornApp(
            'glance-api', [], '', port=srv.port, base_dir=srv.base_dir,
            env=srv.env, log_file=srv.gunicorn_log, log_tail=srv.log_tail,
            ready=(answers, 'glance-api (uWSGI) to answer at %s' % srv.url,
                   (OSError, http.client.HTTPException,
                    localglance.GlanceHTTPError)),
            workers=srv.workers, threads=8, timeout=600)
        app.command = [
            uwsgi_binary(), '--master', '--processes', str(srv.workers),
            '--threads', '8', '--enable-threads', '--lazy-apps',
            '--thunder-lock', '--die-on-term', '--exit-on-reload',
            '--hook-master-start', 'unix_signal:15 gracefully_kill_them_all',
            '--worker-reload-mercy', str(srv.graceful_timeout),
            '--buffer-size', '65535', '--http-socket',
            '127.0.0.1:%d' % srv.port, '--add-header', 'Connection: close',
            '--virtualenv', sys.prefix, '--chdir', srv.base_dir,
            '--module', 'glance.wsgi.api:application']
        srv._app = app
        app.start(srv.start_timeout)

    def stop(self):
        self.release_all()
        self.server.stop()

    def restart(self, how='term'):
        """Stop glance-api (SIGTERM, as systemd does, or SIGKILL), run
        ``glance-convert recover`` as ExecStartPre does, start it again;
        return recover's report."""
        self.release_all()
        if how == 'term':
            self.server.stop()
        else:
            self.server.kill()
        report = self.recover()
        self.start()
        return report

    def recover(self, *args, check=True):
        """``glance-convert recover --json`` as the operator runs it."""
        proc = self.recover_process(*args)
        out, err = proc.communicate(timeout=300)
        if check:
            assert proc.returncode == 0, err
            return json.loads(out)
        return proc.returncode, out, err

    def recover_process(self, *args):
        env = dict(os.environ, PATH=self.path_env)
        env.pop('OS_GLANCE_CONFIG_DIR', None)
        return subprocess.Popen(
            [sys.executable, '-m', 'glance_convert.cmd', 'recover', '--json',
             '--config-dir', self.server.conf_dir] + list(args),
            env=env, cwd=self.server.base_dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def log(self):
        return self.server.log_tail(60)

    def import_lock_in_database(self, image_id):
        """The image's import lock as Glance's database holds it (for when
        glance-api is down), or None."""
        conn = psycopg2.connect(dbname=self.database, user='postgres',
                                host=self.pg.socket_dir)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    'SELECT value FROM image_properties WHERE image_id = %s '
                    'AND name = %s AND NOT deleted',
                    (image_id, 'os_glance_import_task'))
                row = cur.fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    # -- the look-out service (glance-convert recover --follow) ----------

    @contextlib.contextmanager
    def lookout(self):
        """Run ``glance-convert recover --follow`` as its systemd unit
        does, for the block; its log is :attr:`lookout_log`."""
        self.lookout_log = os.path.join(self.base_dir, 'lookout.log')
        env = dict(os.environ, PATH=self.path_env)
        env.pop('OS_GLANCE_CONFIG_DIR', None)
        with open(self.lookout_log, 'ab') as log:
            proc = subprocess.Popen(
                [sys.executable, '-m', 'glance_convert.cmd', 'recover',
                 '--follow', '--config-dir', self.server.conf_dir],
                env=env, cwd=self.server.base_dir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
        self.lookout_process = proc
        try:
            def running():
                assert proc.poll() is None, self.lookout_tail()
                return watch.is_following(self.layout)
            wait_for(running, 'the look-out service to start',
                     log=self.lookout_tail)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def lookout_tail(self, lines=30):
        with open(self.lookout_log, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])

    def releases_logged(self, image_id):
        """How often any recovery of this host (the look-out service, the
        workers' look-outs) logged the release of ``image_id``."""
        count = 0
        for path in (getattr(self, 'lookout_log', None),
                     self.server.log_file):
            if path and os.path.exists(path):
                with open(path, errors='replace') as f:
                    count += sum('Released image %s ' % image_id in line
                                 for line in f)
        return count

    # -- the processes ---------------------------------------------------

    def master_pid(self):
        return self.server.process.pid

    def workers(self):
        """The pids of the WSGI server's live worker processes now."""
        return sorted(pid for pid in map(int, filter(
            str.isdigit, os.listdir('/proc')))
            if parent_of(pid) == self.master_pid()
            and procs.process_start_time(pid) is not None)

    def wait_workers(self, count):
        """Until the server runs ``count`` workers (a dead one replaced)."""
        return wait_for(lambda: len(self.workers()) == count and
                        self.workers(), '%d workers' % count, log=self.log)

    # -- the phase controls --------------------------------------------

    def hold(self, phase, image_id):
        open(os.path.join(self.ctl, 'hold.%s.%s' % (phase, image_id)),
             'w').close()

    def release(self, image_id=None):
        for path in glob.glob(os.path.join(
                self.ctl, 'hold.*.%s' % (image_id or '*'))):
            os.unlink(path)

    def release_all(self):
        self.release()

    def held_at(self, phase, image_id, count=1):
        """Wait until ``count`` processes of the image wait at ``phase``;
        return their pids."""
        def found():
            marks = glob.glob(os.path.join(
                self.ctl, 'at.%s.%s.*' % (phase, image_id)))
            return len(marks) >= count and [
                int(m.rsplit('.', 1)[1]) for m in marks]
        return wait_for(found, '%s of %s' % (phase, image_id), log=self.log)

    # -- imports -------------------------------------------------------

    def start_import(self, source, disk_format, hold=None):
        """Create, stage and import an image; return its id."""
        image_id = self.client.create_image(disk_format)['id']
        self.images.append(image_id)
        if hold:
            self.hold(hold, image_id)
        self.client.stage(image_id, source)
        self.client.import_image(image_id, 'glance-direct')
        return image_id

    def task_message(self, image_id):
        tasks = self.client.get_tasks(image_id)
        return tasks[-1]['message'] if tasks else ''

    # -- the ledger ----------------------------------------------------

    @property
    def layout(self):
        return layout_.Layout(self.server.staging_dir, self.server.lock_dir)

    def ledger(self):
        try:
            with open(self.layout.ledger_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {'entries': {}, 'queue': [], 'orphans': []}

    def worker_of(self, image_id):
        """The pid of the glance-api worker running the image's import."""
        def find():
            ledger = self.ledger()
            for e in ledger['entries'].values():
                if e['owner'] == image_id:
                    return e['pid']
            for w in ledger.get('queue', []):
                if w['owner'] == image_id:
                    return w['pid']
            return None
        return wait_for(find, 'a ledger record of %s' % image_id,
                        log=self.log)

    def kill_worker(self, pid):
        say('SIGKILL worker %d' % pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: procs.process_start_time(pid) is None,
                 'worker %d to die' % pid)

    def other_import(self, source, disk_format, not_in):
        """Start imports held at inspection until one runs in a worker
        other than ``not_in``; return (its id, the ids in ``not_in``)."""
        collateral = []
        for _ in range(12):
            image_id = self.start_import(source, disk_format,
                                         hold='inspect')
            self.held_at('inspect', image_id)
            if self.worker_of(image_id) != not_in:
                return image_id, collateral
            collateral.append(image_id)
        raise AssertionError('12 imports all went to worker %d' % not_in)

    # -- the checks ----------------------------------------------------

    def files_of(self, image_id):
        names = set(self.server.staging_files())
        work = self.server.plugin_conf.get('work_dir')
        if work and os.path.isdir(work):
            names |= set(os.listdir(work))
        return sorted(n for n in names if n.startswith(image_id))

    def wait_released(self, image_id, timeout=TIMEOUT):
        """Wait until the interrupted import of ``image_id`` is over.

        Tolerates errors of glance-api itself (5xx) meanwhile: right after
        a database outage its pooled connections fail a request or two.
        """
        def released():
            try:
                return 'os_glance_import_task' not in self.client.get_image(
                    image_id)
            except localglance.GlanceHTTPError as exc:
                if exc.status < 500:
                    raise
                say('glance-api answered %d; polling on' % exc.status)
                return False
        return wait_for(released, 'the lock of %s to be dropped'
                        % image_id, timeout, self.log, interval=0.5)

    def check_released(self, image_id, allow_active=False):
        """The state the issue requires after a fault."""
        image = self.client.get_image(image_id)
        tasks = self.client.get_tasks(image_id)
        task = tasks[-1]
        say('image %s: %s; task %s: %r' % (
            image_id[:8], image['status'], task['status'], task['message']))
        assert 'os_glance_import_task' not in image
        if image['status'] == 'active':
            assert allow_active, image
            assert task['status'] in ('success', 'failure'), task
        else:
            assert image['status'] == 'queued', image
            assert task['status'] == 'failure', task
            assert READABLE.search(task['message'] or ''), task
            assert 'Internal Error' not in task['message'], task
        assert self.files_of(image_id) == [], self.files_of(image_id)
        return image, task

    def check_ledger(self):
        """No entry of a dead holder, no waiter, no orphan record left,
        and no slot file locked while nothing converts."""
        ledger = self.ledger()
        for e in ledger['entries'].values():
            assert procs.alive(e['pid'], e.get('start')), e
        assert [w for w in ledger.get('queue', [])] == [], ledger['queue']
        assert ledger.get('orphans', []) == [], ledger['orphans']
        for i in range(int(self.server.plugin_conf[
                'max_concurrent_conversions'])):
            path = self.layout.slot_path(i)
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        say('ledger: %d entries, 0 waiters, 0 orphans; slots free'
            % len(ledger['entries']))

    def wait_quiet(self):
        """Until no import of this host holds anything in the ledger.

        Reads it as the next import would: under its lock, which drops
        the records of finished imports whose files Glance removed.
        """
        led = ledger_.Ledger(self.layout)

        def quiet():
            led.reap()
            ledger = self.ledger()
            return not ledger['entries'] and not ledger.get('queue')
        wait_for(quiet, 'the ledger to empty', log=self.log)

    def check_succeeds(self, image_id, timeout=TIMEOUT):
        image, task = self.client.wait_for_import(image_id, timeout)
        assert task['status'] == 'success', task
        assert image['status'] == 'active', image
        assert self.files_of(image_id) == []
        say('image %s imported: %s, %s' % (image_id[:8], image['status'],
                                           image['disk_format']))
        return image

    def reimport(self, image_id, source):
        """Stage and import the same image again, at once."""
        self.client.stage(image_id, source)
        self.client.import_image(image_id, 'glance-direct')
        return self.check_succeeds(image_id)


def uwsgi_binary():
    """The uWSGI of this virtualenv (``tox -e faults`` installs it), or
    None."""
    path = os.path.join(sys.prefix, 'bin', 'uwsgi')
    return path if os.access(path, os.X_OK) else None


def parent_of(pid):
    """The parent pid of ``pid``, or None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b')') + 2:].split()[1])


@contextlib.contextmanager
def running(host):
    host.start()
    try:
        yield host
    finally:
        host.stop()
