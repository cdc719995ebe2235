"""Progress bars for the slow work around a model: loading it, writing a checkpoint,
evaluating a text.

A bar goes to stderr, and only when stderr is a terminal, so logs, pipes and notebooks
stay clean. ``set_progress(False)`` (the command line's ``--no-progress``) hides every
bar, ``set_progress(True)`` shows them anywhere, ``set_progress(None)`` goes back to
"only on a terminal".
"""

import os
import sys
import threading
from contextlib import contextmanager

_choice = None  # None: only when stderr is a terminal


def set_progress(enabled):
    """Show progress bars always (True), never (False) or on a terminal only (None)."""
    global _choice
    if enabled not in (None, True, False):
        raise ValueError(f"set_progress takes True, False or None, got {enabled!r}")
    _choice = enabled


def progress_enabled():
    """Whether bars are shown now (see ``set_progress``)."""
    if _choice is not None:
        return _choice
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable=None, **options):
    """``tqdm(iterable, **options)`` on stderr, hidden unless ``progress_enabled()``; it
    disappears when done (``leave=False``), so the command's own output stays as it was."""
    from tqdm import tqdm

    options.setdefault("leave", False)
    return tqdm(iterable, disable=not progress_enabled(), file=sys.stderr, **options)


@contextmanager
def file_growth_bar(path, total, desc):
    """A bar of ``path``'s size growing towards ``total`` bytes while the body writes it
    (for a writer that reports no progress of its own, e.g. the safetensors library)."""
    if not progress_enabled():
        yield
        return
    done = threading.Event()
    with progress_bar(total=total, desc=desc, unit="B", unit_scale=True,
                      unit_divisor=1024) as bar:

        def watch():
            while not done.wait(0.2):
                try:
                    bar.update(os.path.getsize(path) - bar.n)
                except OSError:  # not created yet
                    pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()
            bar.update(max(0, total - bar.n))
