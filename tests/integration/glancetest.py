"""Helpers for the integration tests: servers per configuration, imports.

sqlite cannot take two imports at once: tests import one image at a time.
"""

import hashlib
import os

from glance_convert.testing import localglance

#: Seconds one small import may take on a loaded 2-core machine.
IMPORT_TIMEOUT = 180


class Servers:
    """Start GlanceServers on demand, keyed by their plugin options."""

    def __init__(self, base_dir):
        self.base_dir = base_dir
        self._servers = {}

    def get(self, plugins=('glance_convert',), **plugin_conf):
        key = (tuple(plugins), tuple(sorted(plugin_conf.items())))
        server = self._servers.get(key)
        if server is None:
            name = '-'.join((list(plugins) or ['noplugin']) + [
                '%s=%s' % kv for kv in sorted(plugin_conf.items())])
            server = localglance.GlanceServer(
                os.path.join(self.base_dir, 'glance-%d-%s'
                             % (len(self._servers), name)),
                plugins=plugins, plugin_conf=plugin_conf)
            # Register before starting: a failed start is still stopped.
            self._servers[key] = server
            server.start()
        return server

    def for_target(self, target):
        return self.get(output_format=target)

    def stop_all(self):
        for server in self._servers.values():
            server.stop()


def file_hashes(path):
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b''):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


def leftovers(server, image_id):
    """Files of this image left in the staging directory."""
    return [n for n in server.staging_files() if n.startswith(image_id)]


def run_import(server, source_path, claimed, method, file_server=None):
    """Create an image, import ``source_path`` into it, wait for the end.

    Returns (client, image, task).
    """
    client = server.client()
    image = client.create_image(claimed)
    if method == 'glance-direct':
        client.stage(image['id'], str(source_path))
        client.import_image(image['id'], 'glance-direct')
    elif method == 'web-download':
        client.import_image(image['id'], 'web-download',
                            uri=file_server.url_for(source_path))
    else:
        raise ValueError(method)
    image, task = client.wait_for_import(image['id'], IMPORT_TIMEOUT)
    return client, image, task
