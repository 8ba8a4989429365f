"""A test HTTP server on 127.0.0.1 (port picked by the kernel) served by a thread while a
`with` block runs: what the lying proxy and the token server stand on."""
import threading
from http.server import ThreadingHTTPServer


class BackgroundServer:
    def _listen(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
