"""Paths tinygpt reads and writes: what a path is before it is opened, and atomic writes.

* ``check_regular_file``: every loader asks it first, so a named pipe (which would block
  ``open`` until a writer comes), a device (``/dev/null``, ``/dev/zero``) or a folder is
  refused with its path and kind instead of hanging, streaming or failing deep in a
  library with "No such device".
* ``atomic_write``: the bytes go to a private hidden folder beside the target, are
  flushed, and the file is renamed over the target (``os.replace``), so a crash, a kill
  or a full disk leaves the previous file. The temporary name fits in 255 bytes for any
  legal target name, the file gets the mode of a newly created file (0644 under the
  usual umask), and a symbolic link is written through to its target, as ``open`` and
  ``torch.save`` do.
* ``sha256_hex``: the one sha256 helper (the BPE files, GPT-2's files, the book's text).
"""

import errno
import glob
import hashlib
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from safetensors import SafetensorError

__all__ = ["atomic_write", "check_regular_file", "regular_file_problem",
           "remove_stale_temporaries", "save_safetensors", "sha256_hex", "write_target"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def sha256_hex(source):
    """Hex sha256 of ``source``: bytes, or the path of a file (read in 1 MiB pieces)."""
    digest = hashlib.sha256()
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
        return digest.hexdigest()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dangling(path):
    """The target of ``path`` if it is a symbolic link to nothing, else None."""
    if os.path.islink(path) and not os.path.exists(path):
        return os.readlink(path)
    return None


def regular_file_problem(path):
    """Why ``path`` is not a regular file (a phrase to follow the path), or None.

    A symbolic link counts as what it points to. Only ``stat`` is used: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        target = _dangling(path)
        return ("does not exist" if target is None
                else f"is a symbolic link to {target}, which does not exist")
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a file"


def check_regular_file(path, what="a file", error=None):
    """Raise unless ``path`` is a regular file (or a link to one); call it before ``open``.

    Missing (or a link to nothing): FileNotFoundError naming the path. Anything else that
    is not a regular file: ``error(path, problem)`` (default: FileFormatError). ``what``
    names what was expected ("a model file or checkpoint")."""
    problem = regular_file_problem(path)
    if problem is None:
        return
    if not os.path.lexists(path) or _dangling(path) is not None:
        raise FileNotFoundError(errno.ENOENT, f"{path} {problem}; expected {what}")
    problem = f"{problem}; expected {what}"
    if error is None:
        from ..errors import FileFormatError
        raise FileFormatError(f"{path} {problem}", path)
    raise error(path, problem)


# ----------------------------------------------------------------------------------------
# Writing.

TEMPORARY = ".{name}.tmp-"  # + 8 hex digits: the private folder of one write in progress
_NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_ROOM = _NAME_MAX - len(TEMPORARY.format(name="")) - 8


def _temporary_stem(name):
    """``name`` as it appears in its temporary folder's name: itself if that fits in 255
    bytes, else its first bytes and a hash of the whole (distinct names stay distinct)."""
    raw = os.fsencode(name)
    if len(raw) <= _ROOM:
        return name
    digest = sha256_hex(raw)[:12]
    head = raw[:_ROOM - len(digest) - 1].decode("utf-8", "ignore")  # whole characters only
    return f"{head}~{digest}"


def temporary_prefix(name):
    """The start of the name of every temporary folder a write of ``name`` makes."""
    return TEMPORARY.format(name=_temporary_stem(name))


def write_target(path):
    """The file a write to ``path`` changes: ``path`` itself, or, for a symbolic link
    (even to a file not there yet), the file it points to."""
    path = os.path.abspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


def atomic_write(path, write):
    """Run ``write(temporary path)`` in a private folder beside ``path``'s target, fsync the
    file, rename it over the target.

    The folder (``.NAME.tmp-XXXXXXXX``) also holds a library's own temporary file while it
    writes, so a killed write leaves exactly one thing behind, which
    ``remove_stale_temporaries`` recognises. On any failure (a full disk, the file-size
    limit, Ctrl-C) the folder is removed and the target keeps its previous content; an
    OSError names ``path``."""
    target = write_target(path)
    folder, name = os.path.split(target)
    if not os.path.isdir(folder):
        via = f" (the target of the symbolic link {path})" if target != os.path.abspath(path) \
            else ""
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save {path}: the folder {folder}{via} does not exist (create it first)",
        )
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, f"cannot save {path}: it is a folder")
    problem = regular_file_problem(target) if os.path.lexists(target) else None
    if problem is not None:
        raise OSError(errno.EINVAL, f"cannot save {path}: it {problem}; choose a file path")
    prefix = temporary_prefix(name)
    while True:
        work = os.path.join(folder, prefix + secrets.token_hex(4))
        try:
            os.mkdir(work, 0o700)
            break
        except FileExistsError:
            continue
    tmp = os.path.join(work, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        mode = os.fstat(fd).st_mode & 0o777  # the umask applies, as for any new file
        os.close(fd)
        write(tmp)
        os.chmod(tmp, mode)  # a library's own temporary file (renamed onto tmp) is 0600
        fd = os.open(tmp, os.O_WRONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(
                exc.errno, f"could not write {path} ({exc.strerror or exc}); any previous file "
                "there is unchanged"
            ) from exc
        raise
    shutil.rmtree(work, ignore_errors=True)
    _fsync_folder(folder)


def atomic_write_text(path, text):
    """``atomic_write`` of UTF-8 text: a reader (or a killed run) never sees half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_safetensors(tmp, tensors, metadata):
    """The safetensors library writes the file (streaming each array, no copy in memory);
    its I/O errors (a full disk, the file-size limit) become the OSError they are."""
    try:
        from safetensors.numpy import save_file
        save_file(tensors, tmp, metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        raise OSError(int(code.group(1)) if code else errno.EIO, str(exc)) from None


def remove_stale_temporaries(folder, names):
    """Remove what killed writes of the files ``names`` left in ``folder`` (their
    ``.NAME.tmp-*`` folders, or files from older versions). Call it only while no other
    process can be writing those files (e.g. holding the run's lock); returns the paths
    removed."""
    removed = []
    for name in names:
        for stale in Path(folder).glob(glob.escape(temporary_prefix(name)) + "*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX; not possible on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
