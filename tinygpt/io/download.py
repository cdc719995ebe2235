"""Downloading one file over HTTP(S), the way every download of tinygpt goes (GPT-2's
files in ``pretrained.py``, "The Verdict" in ``textsource.py``): tries each URL a few
times, resumes a partial file, caps the bytes a server may send and the time all tries
may take together, and says in one ``DownloadError`` what went wrong where."""

import http.client
import os
import re
import socket
import threading
import urllib.error
import urllib.request

from ..errors import DownloadError

# Without a ``deadline``, a file may take a minute plus its size at this (slow) rate.
DEADLINE_BASE_S, SLOWEST_BYTES_PER_S = 60.0, 50_000
_CHUNK = 1 << 20


class _Retryable(Exception):
    """A transfer that stopped early; trying again resumes it."""


class _WrongFile(Exception):
    """The server sends a file that can't be the right one (too large): try the next URL."""


def _header_int(text):
    """A header's non-negative integer, or None if it is absent or not one."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


class _Deadline:
    """The time one file may take, all its requests together.

    ``timeout`` bounds each network read, so a server that sends a byte every few
    seconds never trips it. This watchdog shuts the socket of every connection it
    opened once the deadline passes, wherever the transfer waits (headers or body);
    the read then ends and ``passed`` says why.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self.passed = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self):
        with self._lock:
            self.passed = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def watch(self, sock):
        with self._lock:
            if not self.passed:
                self._sockets.append(sock)
                return
        _shut(sock)

    def cancel(self):
        self._timer.cancel()
        with self._lock:
            self._sockets = []

    def open(self, url, timeout, headers=None, method="GET"):
        """urllib.request.urlopen whose connections this deadline can shut."""
        request = urllib.request.Request(url, headers={"User-Agent": "tinygpt", **(headers or {})},
                                         method=method)
        handlers = [_WatchedHTTP(), _WatchedHTTPS()]
        for handler in handlers:
            handler.deadline = self
        return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _shut(sock):
    try:  # socket.socket's own shutdown, also for an SSL socket: the blocked read wakes up
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watched:
    """A urllib handler whose connections register their socket with ``self.deadline``."""

    deadline = None

    def do_open(self, http_class, req, **kwargs):
        deadline = self.deadline

        class Connection(http_class):
            def connect(self):
                super().connect()
                deadline.watch(self.sock)

        return super().do_open(Connection, req, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass


def remote_size(urls, timeout, seconds):
    """Content-Length reported by the first URL that answers a HEAD request, or None."""
    for url in urls:
        deadline = _Deadline(seconds)
        try:
            with deadline.open(url, timeout, method="HEAD") as response:
                length = _header_int(response.headers.get("Content-Length"))
                if length is not None:
                    return length
        except (OSError, ValueError, http.client.HTTPException):
            continue
        finally:
            deadline.cancel()
    return None


def _download(url, path, timeout, progress, max_bytes, deadline):
    """Fetch ``url`` into ``path``, resuming ``path + '.part'`` with a Range request.

    Never writes more than ``max_bytes`` (_WrongFile, the part removed) and stops when
    ``deadline`` passes (_Retryable, the part kept for a later resume).
    """
    from tqdm import tqdm

    name = os.path.basename(path)
    part = path + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if have >= max_bytes:  # the part can't be a prefix of the file: start over
        os.remove(part)
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = deadline.open(url, timeout, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is not a prefix of this file: start over
            os.remove(part)
            raise _Retryable(f"server refused to resume at byte {have} (HTTP 416)") from exc
        raise
    with response:
        length = _header_int(response.headers.get("Content-Length"))
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                os.remove(part)
                raise _Retryable(f"server resumed at an unexpected place ({match and match[0]})")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        elif response.status == 200:  # a server that ignores Range sends it all again
            have, total, mode = 0, length, "wb"
        else:
            raise _Retryable(f"unexpected HTTP status {response.status}")
        if total is None and length is not None:
            total = have + length
        if total is not None and total > max_bytes:
            raise _WrongFile(f"the server announces {total:,} bytes; {name} has at most "
                             f"{max_bytes:,}")
        received, too_many = have, False
        with open(part, mode) as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=name, disable=not progress, leave=True,
        ) as bar:
            while not deadline.passed:
                chunk = response.read1(_CHUNK)  # what one read gives: the deadline is checked
                if not chunk:
                    break
                if received + len(chunk) > max_bytes:
                    too_many = True
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if too_many:
        os.remove(part)
        raise _WrongFile(f"the server sent more than {max_bytes:,} bytes, the most {name} "
                         "can have; the partial file was deleted")
    if deadline.passed:
        raise _Retryable(f"stopped at the deadline ({deadline.seconds:g} s) after "
                         f"{received:,} bytes")
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise _Retryable(f"connection ended after {size} of {total} bytes")
    os.replace(part, path)


def _why(exc):
    """One network error in a user's words: "no network (name lookup failed)" for a host
    name that does not resolve, else the error's own reason."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "no network (name lookup failed)"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return f"{type(exc).__name__}: {reason}"


def fetch(name, folder, urls, timeout, retries, progress, max_bytes, advice, seconds=None):
    """Download one file, trying each URL ``retries + 1`` times; resumes across tries.

    At most ``max_bytes`` are accepted, and all tries together stop after ``seconds``
    (default: a minute plus ``max_bytes`` at 50 kB/s). The DownloadError ends with
    ``advice``: what the user can do instead.
    """
    if seconds is None:
        seconds = DEADLINE_BASE_S + max_bytes / SLOWEST_BYTES_PER_S
    path = os.path.join(folder, name)
    tried = {}  # url -> what went wrong, each reason once, in order
    deadline = _Deadline(seconds)
    try:
        for url in urls:
            reasons = tried.setdefault(url, [])
            for _ in range(retries + 1):
                if deadline.passed:
                    break
                try:
                    _download(url, path, timeout, progress, max_bytes, deadline)
                    return
                except urllib.error.HTTPError as exc:
                    reason, final = f"HTTP {exc.code} {exc.reason}", 400 <= exc.code < 500
                except (_WrongFile, _Retryable) as exc:
                    reason, final = str(exc), isinstance(exc, _WrongFile)
                except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError too
                    reason, final = _why(exc), False
                if reason not in reasons:
                    reasons.append(reason)
                if final:
                    break  # not found, forbidden, too large: retrying this URL won't help
    finally:
        deadline.cancel()
    lines = [f"{url}: {'; '.join(reasons)}" for url, reasons in tried.items() if reasons]
    if deadline.passed:
        lines.append(f"gave up: {name} did not arrive within its deadline of "
                     f"{deadline.seconds:g} s")
    offline = bool(tried) and all(reasons == ["no network (name lookup failed)"]
                                  for reasons in tried.values())
    raise DownloadError(
        f"could not download {name} into {folder}"
        + (": no network (name lookup failed)" if offline else "")
        + "; tried:\n  " + "\n  ".join(lines) + "\n" + advice
    )
