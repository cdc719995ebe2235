"""Where the training text, Edith Wharton's "The Verdict", comes from.

The book downloads ``the-verdict.txt`` next to the notebook. We look for it in
this order and use the first hit:

1. an explicit ``path`` (the CLI's ``--text PATH``): any text of the user's,
   used as is, never checksummed; a pipe (``--text <(zcat notes.gz)``) or a device
   is read as a stream, at most ``STREAM_LIMIT`` characters;
2. the folder ``data_dir``, or else the folder named by ``$TINYGPT_DATA``;
3. the user cache: ``cache_dir``, or ``$TINYGPT_CACHE``, or
   ``$XDG_CACHE_HOME/tinygpt``, or ``~/.cache/tinygpt``;
4. a download from the book's repository (``url=``, ``$TINYGPT_VERDICT_URL``,
   or ``VERDICT_URL``) into that cache, through the GPT-2 downloader's code: at most
   ``VERDICT_MAX_BYTES``, within an overall deadline, renamed into place when complete.

A file from steps 2-4 is claimed to be the book's text, so its sha256 must
match ``VERDICT_SHA256``: a wrong file would quietly change every number the
chapter prints. Without network and without a copy, the error says how to
supply the file.
"""

import os
import stat
import warnings
from pathlib import Path

from ..errors import DownloadError, VerdictChecksumError, VerdictNotFoundError
from .download import fetch
from .files import regular_file_problem, sha256_hex

VERDICT_FILENAME = "the-verdict.txt"
VERDICT_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/"
    "the-verdict.txt"
)
VERDICT_SHA256 = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"

ENV_DATA = "TINYGPT_DATA"
ENV_CACHE = "TINYGPT_CACHE"
ENV_URL = "TINYGPT_VERDICT_URL"

DOWNLOAD_TIMEOUT_S = 30.0  # each network read; the whole download: about a minute
# The book's file is 20,479 bytes (a CRLF copy a few hundred more): a server that sends
# more is cut off here, so an endless body costs 64 KB, not all the memory.
VERDICT_MAX_BYTES = 64 << 10
# A text read as a stream (a pipe, a device) has no size to check first: it is cut off
# at this many characters (a file on disk is bounded by its own size).
STREAM_LIMIT = 256 << 20


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
    if sha256_hex(data) == VERDICT_SHA256:
        return True
    return b"\r\n" in data and (
        sha256_hex(data.replace(b"\r\n", b"\n")) == VERDICT_SHA256
    )


def _checksum_problem(path, data, origin):
    return (
        f"{path} ({origin}) is not the book's {VERDICT_FILENAME}: its sha256 is "
        f"{sha256_hex(data)}, expected {VERDICT_SHA256}"
    )


def download_verdict(dest_dir, url=None, timeout=DOWNLOAD_TIMEOUT_S, deadline=None):
    """Download "The Verdict" into ``dest_dir`` and return the file's path.

    The transfer is ``download.fetch``'s: at most ``VERDICT_MAX_BYTES``, each
    read waiting at most ``timeout`` seconds and all tries together ``deadline`` seconds
    (default: about a minute), into ``the-verdict.txt.part``, renamed into place when
    complete. Contents that are not the book's are deleted at once and raise
    ``VerdictChecksumError``; a failed transfer (the network, too many bytes, the
    deadline) raises ``DownloadError`` (an OSError).
    """
    url = verdict_url(url)
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create {dest_dir} to download {VERDICT_FILENAME} into ({exc}); "
                      f"set ${ENV_CACHE} to a writable folder") from exc
    fetch(VERDICT_FILENAME, os.fspath(dest_dir), [url], timeout, 1, False, VERDICT_MAX_BYTES,
          "", deadline)
    target = dest_dir / VERDICT_FILENAME
    data = target.read_bytes()  # at most VERDICT_MAX_BYTES
    if not is_verdict_bytes(data):
        target.unlink(missing_ok=True)
        raise VerdictChecksumError(
            f"the file downloaded from {url} is not the book's {VERDICT_FILENAME}: "
            f"{len(data)} bytes with sha256 {sha256_hex(data)}, expected "
            f"{VERDICT_SHA256}. Check the URL (${ENV_URL} or url=), or fetch the file from "
            f"{VERDICT_URL} yourself and pass it with --text PATH"
        )
    return target


def _explicit_text(path):
    """``path`` if it can be read as a text: a file, or a stream (a pipe, process
    substitution, a device such as /dev/stdin); FileNotFoundError saying what it is else."""
    explicit = Path(path).expanduser()
    problem = regular_file_problem(explicit)
    if problem is not None and not _is_stream(explicit):
        hint = (f"; or leave out --text: the book's {VERDICT_FILENAME} is then found "
                f"through ${ENV_DATA}, the cache or a download"
                if explicit.name == VERDICT_FILENAME else "")
        raise FileNotFoundError(
            f"text file {explicit} {problem}: pass the path of a UTF-8 text file "
            f"(e.g. a copy of {VERDICT_FILENAME}) or a pipe{hint}"
        )
    return explicit


def _is_stream(path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def read_text_file(path, limit=STREAM_LIMIT):
    """The text at ``path``, read as the book reads it (UTF-8, text mode).

    A regular file is read whole (its size bounds it); a pipe or a device is read as a
    stream of at most ``limit`` characters, else ValueError. UnicodeDecodeError as
    ``open`` raises it."""
    with open(path, encoding="utf-8") as f:
        if not _is_stream(path):
            return f.read()
        text = f.read(limit + 1)
    if len(text) > limit:
        raise ValueError(f"{path} is a stream of more than {limit:,} characters, the most "
                         "tinygpt reads from a pipe or device; save the text to a file and "
                         "pass that file")
    return text


def find_verdict(path=None, *, data_dir=None, cache_dir=None, url=None, download=True):
    """The path of ``the-verdict.txt``, downloading it into the cache if needed.

    See the module docstring for the search order. Raises FileNotFoundError
    for a missing explicit ``path``, ``VerdictChecksumError`` for a data-folder
    copy or a download with the wrong contents, and ``VerdictNotFoundError``
    (a FileNotFoundError) when no copy exists and downloading is off or fails.
    """
    if path is not None:
        return _explicit_text(path)

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
        except DownloadError as exc:  # one paragraph: what each try met
            tried = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            reason = f"downloading failed ({'; '.join(tried) or exc})"

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
    return read_text_file(found)
