"""Where the training text, Edith Wharton's "The Verdict", comes from.

The book downloads ``the-verdict.txt`` next to the notebook. We look for it in
this order and use the first hit:

1. an explicit ``path`` (the CLI's ``--text PATH``): any text of the user's,
   used as is, never checksummed;
2. the folder ``data_dir``, or else the folder named by ``$TINYGPT_DATA``;
3. the user cache: ``cache_dir``, or ``$TINYGPT_CACHE``, or
   ``$XDG_CACHE_HOME/tinygpt``, or ``~/.cache/tinygpt``;
4. a download from the book's repository (``url=``, ``$TINYGPT_VERDICT_URL``,
   or ``VERDICT_URL``) into that cache, written atomically.

A file from steps 2-4 is claimed to be the book's text, so its sha256 must
match ``VERDICT_SHA256``: a wrong file would quietly change every number the
chapter prints. Without network and without a copy, the error says how to
supply the file.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from ..errors import VerdictChecksumError, VerdictNotFoundError

VERDICT_FILENAME = "the-verdict.txt"
VERDICT_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/"
    "the-verdict.txt"
)
VERDICT_SHA256 = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"

ENV_DATA = "TINYGPT_DATA"
ENV_CACHE = "TINYGPT_CACHE"
ENV_URL = "TINYGPT_VERDICT_URL"

DOWNLOAD_TIMEOUT_S = 30.0


def _env_path(name):
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def default_cache_dir():
    """``$TINYGPT_CACHE``, else ``$XDG_CACHE_HOME/tinygpt``, else ``~/.cache/tinygpt``."""
    explicit = _env_path(ENV_CACHE)
    if explicit is not None:
        return explicit
    xdg = _env_path("XDG_CACHE_HOME")
    if xdg is not None:
        return xdg / "tinygpt"
    return Path.home() / ".cache" / "tinygpt"


def verdict_url(url=None):
    """The URL to download from: ``url``, else ``$TINYGPT_VERDICT_URL``, else ``VERDICT_URL``."""
    return url or os.environ.get(ENV_URL, "").strip() or VERDICT_URL


def is_verdict_bytes(data):
    """Whether ``data`` is the book's file, allowing Windows line endings.

    A checkout with CRLF line endings reads as the same text (Python's text mode
    turns "\\r\\n" into "\\n"), so it counts as the same file.
    """
    if hashlib.sha256(data).hexdigest() == VERDICT_SHA256:
        return True
    return b"\r\n" in data and (
        hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest() == VERDICT_SHA256
    )


def _checksum_problem(path, data, origin):
    return (
        f"{path} ({origin}) is not the book's {VERDICT_FILENAME}: its sha256 is "
        f"{hashlib.sha256(data).hexdigest()}, expected {VERDICT_SHA256}"
    )


def download_verdict(dest_dir, url=None, timeout=DOWNLOAD_TIMEOUT_S):
    """Download "The Verdict" into ``dest_dir`` and return the file's path.

    The contents are checked before anything is written, then written to a
    temporary file in ``dest_dir`` and renamed into place (``os.replace``), so
    an interrupted download never leaves a half file under the final name.
    Network failures raise ``urllib.error.URLError`` / ``OSError``; wrong
    contents raise ``VerdictChecksumError``.
    """
    url = verdict_url(url)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    if not is_verdict_bytes(data):
        raise VerdictChecksumError(
            f"the file downloaded from {url} is not the book's {VERDICT_FILENAME}: "
            f"{len(data)} bytes with sha256 {hashlib.sha256(data).hexdigest()}, expected "
            f"{VERDICT_SHA256}. Check the URL (${ENV_URL} or url=), or fetch the file from "
            f"{VERDICT_URL} yourself and pass it with --text PATH"
        )

    dest_dir = Path(dest_dir)
    target = dest_dir / VERDICT_FILENAME
    tmp_name = None
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{VERDICT_FILENAME}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise OSError(
            f"downloaded {VERDICT_FILENAME} but could not write it to {dest_dir} ({exc}); "
            f"set ${ENV_CACHE} to a writable folder"
        ) from exc
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.remove(tmp_name)
    return target


def find_verdict(path=None, *, data_dir=None, cache_dir=None, url=None, download=True):
    """The path of ``the-verdict.txt``, downloading it into the cache if needed.

    See the module docstring for the search order. Raises FileNotFoundError
    for a missing explicit ``path``, ``VerdictChecksumError`` for a data-folder
    copy or a download with the wrong contents, and ``VerdictNotFoundError``
    (a FileNotFoundError) when no copy exists and downloading is off or fails.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            what = "is a folder, not a file" if explicit.is_dir() else "does not exist"
            raise FileNotFoundError(
                f"text file {explicit} {what}: pass the path of a UTF-8 text file "
                f"(e.g. a copy of {VERDICT_FILENAME})"
            )
        return explicit

    looked = []  # places searched, for the final error message

    if data_dir is not None:
        folder, origin = Path(data_dir).expanduser(), "data_dir"
    else:
        folder, origin = _env_path(ENV_DATA), f"${ENV_DATA}"
    if folder is not None:
        candidate = folder / VERDICT_FILENAME
        if candidate.is_file():
            data = candidate.read_bytes()
            if not is_verdict_bytes(data):
                raise VerdictChecksumError(
                    _checksum_problem(candidate, data, f"found via {origin}")
                    + f". Replace it with a fresh copy from {VERDICT_URL}, or, to train on "
                    "a text of your own on purpose, pass it with --text PATH"
                )
            return candidate
        looked.append(f"{candidate} (from {origin})")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = cache / VERDICT_FILENAME
    corrupt_cache = None
    if cached.is_file():
        data = cached.read_bytes()
        if is_verdict_bytes(data):
            return cached
        corrupt_cache = _checksum_problem(cached, data, "in the cache")
        if download:
            warnings.warn(corrupt_cache + "; downloading a fresh copy over it", stacklevel=2)
    looked.append(f"{cached} (the cache{', corrupted' if corrupt_cache else ''})")

    source = verdict_url(url)
    if not download:
        if corrupt_cache is not None:
            raise VerdictChecksumError(
                corrupt_cache + f"; delete it, or copy a fresh one from {VERDICT_URL}"
            )
        reason = "downloading is turned off"
    else:
        try:
            return download_verdict(cache, source)
        except VerdictChecksumError:
            raise
        except urllib.error.HTTPError as exc:  # the server answered, with an error
            reason = f"downloading {source} failed: {exc}"
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as exc:
            detail = getattr(exc, "reason", None) or exc  # e.g. "Connection refused"
            reason = f"downloading {source} failed: {detail}"
        except ValueError as exc:  # a malformed URL
            reason = f"cannot download from {source!r}: {exc}"

    raise VerdictNotFoundError(
        f'Cannot find "The Verdict" ({VERDICT_FILENAME}): looked in {", ".join(looked)}, '
        f"and {reason}. Supply the file in one of three ways: pass your copy with --text PATH "
        f"(path= in Python); or set {ENV_DATA} to a folder that holds {VERDICT_FILENAME}; or "
        f"copy it to {cached}. On a machine with internet access you can fetch it from "
        f"{VERDICT_URL} (sha256 {VERDICT_SHA256})."
    )


def load_verdict(path=None, *, data_dir=None, cache_dir=None, url=None, download=True):
    """The text of "The Verdict" (or of ``path``), read as the book does (UTF-8 text mode)."""
    found = find_verdict(path, data_dir=data_dir, cache_dir=cache_dir, url=url, download=download)
    with open(found, encoding="utf-8") as f:
        return f.read()
