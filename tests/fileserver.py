"""A loopback HTTP server for ``web-download`` imports in tests.

Test infrastructure only: it is not part of the installed package.
"""

import http.server
import os
import threading
import urllib.parse


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class FileServer:
    """Serve ``directory`` on 127.0.0.1 (random port) from a thread."""

    def __init__(self, directory, host='127.0.0.1'):
        self.directory = os.path.abspath(directory)
        self.host = host
        self._httpd = None
        self._thread = None

    def start(self):
        handler = lambda *a, **kw: _QuietHandler(  # noqa: E731
            *a, directory=self.directory, **kw)
        self._httpd = http.server.ThreadingHTTPServer((self.host, 0),
                                                      handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name='localglance-fileserver',
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def port(self):
        return self._httpd.server_address[1]

    def url_for(self, path):
        """The URL of ``path`` (relative to, or inside, the directory)."""
        rel = os.path.relpath(os.path.abspath(
            os.path.join(self.directory, path)), self.directory)
        if rel.startswith('..'):
            raise ValueError('%s is not inside %s' % (path, self.directory))
        return 'http://%s:%d/%s' % (self.host, self.port,
                                    urllib.parse.quote(rel))

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
