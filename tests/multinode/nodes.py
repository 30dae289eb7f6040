"""Glance API nodes behind a real Keystone, and what the tests watch.

Each node is a :class:`glance_convert.testing.glance.GlanceServer` (gunicorn,
its own port, staging, store and work directories) switched to Glance's
stock ``keystone`` paste flavor with a ``[keystone_authtoken]`` section,
``worker_self_reference_url`` set to its own URL and the database shared
through PostgreSQL.  Clients authenticate with real Keystone tokens.
"""

import glob
import os
import sys

from glance_convert.testing import localglance
from tests import proctools

SERVICE_USER = 'glance'
SERVICE_PASSWORD = 'glance-service-secret'
SERVICE_PROJECT = 'service'
DEMO_USER = 'demo'
DEMO_PASSWORD = 'demo-secret'
DEMO_PROJECT = 'demo'


def stock_paste_ini():
    """The glance-api-paste.ini that the glance package installed."""
    candidates = [os.path.join(sys.prefix, 'etc', 'glance',
                               'glance-api-paste.ini')]
    candidates += glob.glob(os.path.join(sys.prefix, 'share', '**',
                                         'glance-api-paste.ini'),
                            recursive=True)
    candidates.append('/etc/glance/glance-api-paste.ini')
    for path in candidates:
        if os.path.isfile(path):
            with open(path) as f:
                if '[composite:glance-api-keystone]' in f.read():
                    return path
    raise localglance.LocalGlanceError(
        'the glance package\'s glance-api-paste.ini was not found (looked '
        'in %s)' % ', '.join(candidates))


class Node(localglance.GlanceServer):
    """A glance-api node authenticating through Keystone.

    :param keystone_url: Keystone's ``/v3`` endpoint.
    :param self_url: ``worker_self_reference_url``; default this node's
        own URL (the right setting).  A wrong value makes a misconfigured
        node for the tests.
    :param work_dir: ``[glance_convert] work_dir``; default
        ``base_dir/work``.
    :param lock_path: ``[oslo_concurrency] lock_path``; may be shared by
        several nodes on one machine.
    :param token: the Keystone token :meth:`client` sends (also while
        waiting for the node to answer).
    """

    def __init__(self, base_dir, *, name, keystone_url, database_url,
                 plugin_conf, token, lock_path=None, self_url=None,
                 work_dir=None, workers=2):
        self.name = name
        self.token = token
        self.work_dir = work_dir or os.path.join(os.path.abspath(base_dir),
                                                 'work')
        port = localglance.free_port()
        own_url = 'http://127.0.0.1:%d' % port
        extra = {
            'DEFAULT': {'worker_self_reference_url': self_url or own_url},
            'paste_deploy': {'flavor': 'keystone',
                             'config_file': stock_paste_ini()},
            'keystone_authtoken': {
                'www_authenticate_uri': keystone_url,
                'auth_url': keystone_url,
                'auth_type': 'password',
                'project_domain_id': 'default',
                'user_domain_id': 'default',
                'project_name': SERVICE_PROJECT,
                'username': SERVICE_USER,
                'password': SERVICE_PASSWORD,
            },
        }
        if lock_path:
            extra['oslo_concurrency'] = {'lock_path': lock_path}
        conf = dict(plugin_conf)
        conf['work_dir'] = self.work_dir
        super().__init__(base_dir, plugin_conf=conf, workers=workers,
                         database_url=database_url, port=port,
                         extra_conf=extra)
        if lock_path:
            self.lock_dir = lock_path

    def write_config(self):
        super().write_config()
        os.makedirs(self.work_dir, exist_ok=True)

    def work_files(self):
        try:
            return sorted(os.listdir(self.work_dir))
        except FileNotFoundError:
            return []

    def files_of(self, image_id):
        """Names starting with the image id in staging and work dirs."""
        return sorted(n for n in self.staging_files() + self.work_files()
                      if n.startswith(image_id))

    def log_text(self):
        try:
            with open(self.log_file, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def client(self, **kwargs):
        kwargs.setdefault('log_tail', self.log_tail)
        return TokenClient(self.url, kwargs.pop('token', self.token),
                           **kwargs)


class TokenClient(localglance.GlanceClient):
    """A GlanceClient that sends a Keystone token and nothing else.

    keystonemiddleware validates the token and sets the identity headers
    itself (it discards any the client sends).
    """

    def __init__(self, url, token, **kwargs):
        super().__init__(url, **kwargs)
        self.token = token

    def headers(self):
        return {'X-Auth-Token': self.token}


def ConvertSampler(nodes, interval=0.02):
    """Samples ``qemu-img convert`` per node, by the node's work directory.

    Other tests may run qemu-img on this machine at the same time; their
    processes match no node.
    """
    return proctools.ConversionSampler(
        {n.name: n.work_dir for n in nodes}, interval)
