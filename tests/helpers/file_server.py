"""Local HTTP servers for the download tests, on 127.0.0.1 only. ``FileServer`` serves
files with fault switches: it fails on request, cuts a body off halfway, ignores Range
requests, and logs every request. ``HostileServer`` answers some files with a trick
instead (``endless``, ``trickle``, or a test's own), each trick's loop bounded.
``closed_port_url`` is the other end: an address where nothing listens."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _LocalServer:
    """A threading HTTP server on a free port whose handler calls ``answer(handler, body)``
    for GET (body True) and HEAD (body False)."""

    def __init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                server.answer(self, body=False)

            def do_GET(self):
                server.answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def answer(self, handler, body):  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FileServer(_LocalServer):
    """A static file server with fault switches; ``files`` maps URL path -> bytes."""

    def __init__(self, files):
        self.files = files
        self.requests = []  # (method, path, Range header or None)
        self.fail_status = None  # answer every request with this HTTP status
        self.drops = {}  # file name -> times left to cut the body off halfway
        self.ignore_range = False
        super().__init__()

    def answer(self, handler, body):
        self.requests.append((handler.command, handler.path, handler.headers.get("Range")))
        if self.fail_status:
            handler.send_error(self.fail_status)
            return
        data = self.files.get(handler.path)
        if data is None:
            handler.send_error(404)
            return
        start = 0
        rng = handler.headers.get("Range")
        if rng and not self.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if not body:
            return
        payload = data[start:]
        name = handler.path.rsplit("/", 1)[-1]
        if self.drops.get(name):
            self.drops[name] -= 1
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(payload)

    def gets(self, name=None):
        return [r for r in self.requests
                if r[0] == "GET" and (name is None or r[1].endswith("/" + name))]


class HostileServer(FileServer):
    """A FileServer whose ``tricks[name](handler, data)`` answer the GET requests for the
    file called ``name`` (the path's last part) instead."""

    def __init__(self, files, tricks):
        self.tricks = tricks
        super().__init__(files)

    def answer(self, handler, body):
        name = handler.path.rsplit("/", 1)[-1]
        if not (body and name in self.tricks):
            super().answer(handler, body)
            return
        self.requests.append((handler.command, handler.path, handler.headers.get("Range")))
        try:
            self.tricks[name](handler, self.files.get(handler.path))
        except OSError:  # the client hung up: what it should do
            pass
        handler.close_connection = True


def endless(handler, data):
    """200, no Content-Length, and bytes until the client leaves (13 GB at most)."""
    handler.send_response(200)
    handler.send_header("Connection", "close")
    handler.end_headers()
    block = b"x" * 65536
    for _ in range(200_000):
        handler.wfile.write(block)


def trickle(handler, data):
    """The right headers, then one byte every 0.2 s (40 s at most)."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.flush()
    for byte in data[:200]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def closed_port_url(path=""):
    """http://127.0.0.1:PORT/path where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{'/' + path if path else ''}"
