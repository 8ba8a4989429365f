"""A registry that lies, for the tests: an HTTP proxy in front of a real registry that
forwards every request and counts it, and on request damages the answers to matching
GETs (flip a byte, cut the body short while saying so, drop the connection midway,
replace the body).  The real registry stays the one that stores and serves."""
import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from .httpd import BackgroundServer

BLOB = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
MANIFEST = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")


@dataclass
class Fault:
    """What to do to the next `times` GET answers whose path matches `pattern`."""
    pattern: str
    how: str                  # corrupt | truncate | drop | replace | stall (GETs); unavailable (any: 503)
    times: int = 1
    body: bytes = b""         # replace: the answer's new body

    def matches(self, path):
        return self.times > 0 and re.search(self.pattern, path) is not None


class FaultProxy(BackgroundServer):
    def __init__(self, upstream):
        self.upstream = upstream          # "127.0.0.1:PORT" of a plain-HTTP registry
        self.faults = []
        self.lock = threading.Lock()
        self.stalled = threading.Event()  # a stall fault is holding an answer back
        self.release = threading.Event()  # ...until this is set
        self.requests = []                # (method, path, status, bytes answered, bytes of the request body)
        self._listen(_handler(self))
        self.host = f"127.0.0.1:{self.port}"

    def fault(self, pattern, how, times=1, body=b""):
        with self.lock:
            self.faults.append(Fault(pattern, how, times, body))

    def clear(self):
        with self.lock:
            self.faults.clear()
            self.requests.clear()

    def blob_gets(self):
        """Counter {digest: GETs answered with content} of blob downloads."""
        with self.lock:
            return Counter(BLOB.match(p).group(2) for m, p, s, _n, _r in self.requests
                           if m == "GET" and s in (200, 206) and BLOB.match(p))

    def bytes_sent(self):
        """Body bytes of the answers (what a pull receives)."""
        with self.lock:
            return sum(r[3] for r in self.requests)

    def bytes_received(self):
        """Body bytes of the requests (what a push sends)."""
        with self.lock:
            return sum(r[4] for r in self.requests)

    def count(self, method, pattern=""):
        with self.lock:
            return sum(1 for m, p, *_x in self.requests if m == method and re.search(pattern, p))

    def _take_fault(self, path, only=None):
        with self.lock:
            for f in self.faults:
                if f.matches(path) and (f.how == "unavailable") == (only == "unavailable"):
                    f.times -= 1
                    return f
        return None

    def _log(self, method, path, status, n, body=0):
        with self.lock:
            self.requests.append((method, path, status, n, body))


def _handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            body = self._body()
            length = len(body or b"")
            path = self.path.split("?", 1)[0]
            if proxy._take_fault(path, "unavailable"):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                proxy._log(self.command, path, 503, 0)
                return
            conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
            try:
                # header by header: Go's clients send several Accept lines, all of which count
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        conn.putheader(k, v)
                if body is not None or self.command in ("PUT", "POST", "PATCH"):
                    conn.putheader("Content-Length", str(length))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                status, reason, rheaders = resp.status, resp.reason, resp.getheaders()
            finally:
                conn.close()
            fault = proxy._take_fault(path) if self.command == "GET" and status in (200, 206) else None
            cut = None
            if fault is not None and fault.how == "stall":
                self.proxy_stall()
                fault = None
            if fault is not None:
                data, cut = _damage(fault, data)
            self.send_response(status, reason)
            for k, v in rheaders:
                if k.lower() in ("content-length", "transfer-encoding", "connection"):
                    continue
                if fault is not None and fault.how == "replace" and k.lower() == "docker-content-digest":
                    continue
                self.send_header(k, v)
            if self.command == "HEAD":
                upstream_length = {k.lower(): v for k, v in rheaders}.get("content-length")
                if upstream_length is not None:
                    self.send_header("Content-Length", upstream_length)
            else:
                self.send_header("Content-Length", str(len(data) if cut is None else cut))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            proxy._log(self.command, path, status, 0 if self.command == "HEAD" else len(data), length)
            if cut is not None:             # drop: the peer sees the connection go mid-body
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def proxy_stall(self):
            proxy.stalled.set()
            proxy.release.wait(120)

        def _body(self):
            """The request body, whole (chunked, as Go's clients send a PATCH, or not)."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


def _damage(fault, data):
    """(bytes to send, Content-Length to announce if it is not their length)."""
    if fault.how == "corrupt":
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:], None
    if fault.how == "truncate":                 # says it is short, and is
        return data[:len(data) // 2], None
    if fault.how == "drop":                     # says it is whole, then hangs up halfway
        return data[:len(data) // 2], len(data)
    if fault.how == "replace":
        return fault.body, None
    raise ValueError(fault.how)
