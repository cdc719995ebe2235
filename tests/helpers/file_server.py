"""A local HTTP file server with fault switches, for the download tests: it fails on
request, cuts a body off halfway, ignores Range requests, and logs every request."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """A static file server with fault switches; ``files`` maps URL path -> bytes."""

    def __init__(self, files):
        self.files = files
        self.requests = []  # (method, path, Range header or None)
        self.fail_status = None  # answer every request with this HTTP status
        self.drops = {}  # file name -> times left to cut the body off halfway
        self.ignore_range = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body):
                state.requests.append((self.command, self.path, self.headers.get("Range")))
                if state.fail_status:
                    self.send_error(state.fail_status)
                    return
                data = state.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not state.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                payload = data[start:]
                name = self.path.rsplit("/", 1)[-1]
                if state.drops.get(name):
                    state.drops[name] -= 1
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gets(self, name=None):
        return [r for r in self.requests
                if r[0] == "GET" and (name is None or r[1].endswith("/" + name))]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
