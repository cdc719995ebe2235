"""OpenAI's pretrained GPT-2 weights (book section 5.5): download, read, load.

The book's three steps, with the same names::

    settings, params = download_and_load_gpt2(model_size="124M", models_dir="gpt2")
    gpt = GPTModel(gpt2_config("gpt2-small (124M)"))    # NEW_CONFIG of the book
    load_weights_into_gpt(gpt, params)

Without ``models_dir`` the files go to ``default_gpt2_dir()`` (``gpt2/`` in tinygpt's
cache), the folder the command line and the demos use too.

``params`` is the book's nested layout (``params["blocks"][i]["attn"]["c_attn"]["w"]``,
arrays squeezed, OpenAI's Conv1D ``(in, out)`` orientation). TensorFlow is not
needed: ``tinygpt.io.tf_checkpoint`` reads the checkpoint. Which array becomes which
GPTModel parameter, and how (as is, ``.T``, a third of c_attn), is written once, in
``gpt2_weight_map``; every loader and check here and in ``hf_gpt2`` reads it.

Holding ``params`` and a model at once costs twice the model's memory (12 GB for
gpt2-xl). ``load_pretrained_gpt2`` / ``load_tf_ckpt_into_gpt`` stream instead:
each tensor is read, copied into the model and dropped, so loading needs the
model plus one tensor.
"""

import json
import math
import os
import re
import warnings
from typing import NamedTuple

import numpy as np

from ..backend import asarray
from ..errors import (
    ChecksumError,
    DownloadError,
    FileFormatError,
    GPT2FilesMissingError,
    TFCheckpointError,
)
from .download import DEADLINE_BASE_S, SLOWEST_BYTES_PER_S, fetch, remote_size
from .files import check_regular_file, sha256_hex
from .progress import progress_bar
from .tf_checkpoint import CheckpointReader

__all__ = [
    "DEFAULT_BACKUP_URL",
    "DEFAULT_BASE_URL",
    "DownloadError",
    "assign",
    "GPT2_FILES",
    "GPT2_SIZES",
    "KNOWN_SHA256",
    "config_from_hparams",
    "download_and_load_gpt2",
    "default_gpt2_dir",
    "download_gpt2_files",
    "gpt2_config",
    "gpt2_model_size",
    "load_gpt2_folder",
    "load_gpt2_params_from_tf_ckpt",
    "load_pretrained_gpt2",
    "load_tf_ckpt_into_gpt",
    "load_weights_into_gpt",
    "model_configs",
    "read_hparams",
]

# --------------------------------------------------------------------------- sizes

# The book's table (figure 5.17): what differs between the four GPT-2 sizes.
model_configs = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}

GPT2_SIZES = ("124M", "355M", "774M", "1558M")  # folder names of OpenAI's download


def _aliases():
    """Every accepted spelling (lower case, no spaces) -> (model_configs key, size)."""
    table = {}
    for name in model_configs:
        short, size = re.fullmatch(r"(\S+) \((\w+)\)", name).groups()
        for alias in (name, short, size):
            table[alias.lower().replace(" ", "")] = (name, size)
    table["gpt2"] = table["gpt2-small"]  # Hugging Face's name of the small model
    return table


_ALIASES = _aliases()


def _lookup(name):
    key = str(name).lower().replace(" ", "")
    if key not in _ALIASES:
        valid = ", ".join(repr(n) for n in model_configs)
        raise ValueError(
            f"unknown GPT-2 model {name!r}; use one of {valid}, the short name "
            f"(e.g. 'gpt2-small') or the size ({', '.join(GPT2_SIZES)})"
        )
    return _ALIASES[key]


def gpt2_model_size(name):
    """OpenAI's folder name ("124M", ...) for any accepted model name."""
    return _lookup(name)[1]


def gpt2_config(name="gpt2-small (124M)", **overrides):
    """The full GPTModel config of a pretrained GPT-2 size.

    The book's ``NEW_CONFIG``: GPT_CONFIG_124M updated with ``model_configs[name]``,
    ``context_length=1024`` and ``qkv_bias=True``. ``name`` may be
    "gpt2-small (124M)", "gpt2-small" or "124M" (and likewise for the others).
    Keyword arguments override entries (e.g. ``drop_rate=0.1`` for fine-tuning).
    """
    cfg = {
        "vocab_size": 50257,
        "context_length": 1024,
        "drop_rate": 0.0,
        "qkv_bias": True,
    }
    cfg.update(model_configs[_lookup(name)[0]])
    cfg = {k: cfg[k] for k in ("vocab_size", "context_length", "emb_dim", "n_heads",
                               "n_layers", "drop_rate", "qkv_bias")}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; valid: {sorted(cfg)}")
    cfg.update(overrides)
    return cfg


def config_from_hparams(settings, drop_rate=0.0):
    """The GPTModel config matching OpenAI's hparams.json (the ``settings`` dict).

    The five sizes must be whole numbers >= 1 (ValueError naming the key otherwise);
    that they match a checkpoint's tensors is checked where both are at hand
    (``load_pretrained_gpt2``)."""
    problem = sizes_problem(settings)
    if problem:
        raise ValueError(f"settings {problem}")
    return {
        "vocab_size": int(settings["n_vocab"]),
        "context_length": int(settings["n_ctx"]),
        "emb_dim": int(settings["n_embd"]),
        "n_heads": int(settings["n_head"]),
        "n_layers": int(settings["n_layer"]),
        "drop_rate": float(drop_rate),
        "qkv_bias": True,
    }


# ------------------------------------------------------------- small files, sizes
#
# hparams.json and checkpoint are tiny (90 and 77 bytes), and say how large a model to
# build and where its weights are: both are read with a size cap, and their sizes are
# believed only once the checkpoint's own tensors agree (before anything is allocated).

HPARAMS_KEYS = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")
SMALL_FILE_LIMIT = 64 << 10  # bytes: checkpoint, hparams.json (a Hugging Face config: 1 MiB)


def _short_repr(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_small_file(path, limit=SMALL_FILE_LIMIT, error=FileFormatError):
    """The bytes of a file that should be small; ``error(message, path)`` if it holds
    more than ``limit`` bytes (read no further than that)."""
    path = os.fspath(path)
    check_regular_file(path, "a file",  # before open: a FIFO would block it
                       lambda where, problem: error(f"{where} {problem}", where))
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path} is over {limit:,} bytes, far more than such a file holds: "
                    "it is not the file it should be; replace it", path)
    return data


def read_small_json(path, limit=SMALL_FILE_LIMIT, error=FileFormatError):
    """A small JSON file's value; ``error(message, path)`` naming the file if it is too
    large, not UTF-8, not JSON or nested too deeply."""
    data = read_small_file(path, limit, error)
    try:
        return json.loads(data.decode("utf-8-sig"))  # a byte-order mark is harmless
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to be a config file; replace it",
                    path) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{path} is not valid JSON ({exc}); replace it", path) from None


def sizes_problem(values, keys=HPARAMS_KEYS):
    """What is wrong with a GPT-2's sizes (a one-line phrase), or None.

    ``values`` maps ``keys``, the names of vocabulary size, context length, width,
    heads and layers in that order (OpenAI's hparams.json names by default), to whole
    numbers >= 1; the width must split evenly over the heads. Whether the sizes match
    the tensors is for the caller to check against the file's shapes."""
    if not isinstance(values, dict):
        return f"must be a JSON object with {list(keys)}, not a {type(values).__name__}"
    missing = [k for k in keys if k not in values]
    if missing:
        return f"has no {missing}"
    for key in keys:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return f"{key} must be a whole number, got {_short_repr(value)}"
        if value < 1:
            return f"{key} must be >= 1, got {_short_repr(value)}"
    width, heads = values[keys[2]], values[keys[3]]
    if width % heads:
        return (f"{keys[2]}={width} is not divisible by {keys[3]}={heads} (each attention "
                f"head gets {keys[2]} / {keys[3]} dimensions)")
    return None


def read_hparams(path):
    """OpenAI's hparams.json (the book's ``settings``), its five sizes checked.

    TFCheckpointError naming the file if it is too large, not JSON, or a size is
    missing, not a whole number >= 1, or n_embd is not divisible by n_head."""
    path = os.fspath(path)
    settings = read_small_json(path, error=TFCheckpointError)
    problem = sizes_problem(settings)
    if problem:
        raise TFCheckpointError(f"{path} {problem}; use OpenAI's hparams.json of this "
                                "model (download it again)", path)
    return {**settings, **{k: int(settings[k]) for k in HPARAMS_KEYS}}


def tensor_size_problems(settings, n_blocks, shape_of, name_of):
    """Where the tensors a file holds disagree with ``settings`` (a list of phrases).

    ``n_blocks`` is how many transformer blocks the file has, ``shape_of(path)`` a
    tensor's shape (Conv1D weights squeezed; None if absent) and ``name_of(path)`` its
    name in the file. Checked before a model of those sizes is built: once every
    tensor has the shape the sizes imply, the model is as large as the file's tensors."""
    n_layer = settings["n_layer"]
    if n_blocks != n_layer:
        return [f"n_layer={n_layer} but the file has {n_blocks} transformer block(s)"]
    V, T, C = settings["n_vocab"], settings["n_ctx"], settings["n_embd"]
    problems = []
    for path, expected, _ in by_gpt2_array(gpt2_weight_map(n_layer, V, T, C, 4 * C)):
        found = shape_of(path)
        if found is None:
            problems.append(f"{name_of(path)} is missing")
        elif tuple(found) != expected:
            problems.append(f"{name_of(path)} has shape {tuple(found)}, the sizes say "
                            f"{expected}")
        if len(problems) >= 4:
            break
    return problems


def _size_for_emb_dim(emb_dim):
    for name, c in model_configs.items():
        if c["emb_dim"] == emb_dim:
            return name
    return None


# --------------------------------------------------------------------------- download


def default_gpt2_dir():
    """The one default folder of GPT-2 downloads, for the library, the command line and the
    demos: ``gpt2/`` in tinygpt's cache, i.e. ``$TINYGPT_CACHE/gpt2``, else
    ``$XDG_CACHE_HOME/tinygpt/gpt2``, else ``~/.cache/tinygpt/gpt2``. Each size gets a
    sub-folder (``124M``, ...)."""
    from .textsource import default_cache_dir

    return default_cache_dir() / "gpt2"


def _models_dir(models_dir):
    """``models_dir`` as a path; None means ``default_gpt2_dir()``."""
    if models_dir is None:
        return os.fspath(default_gpt2_dir())
    return os.path.expanduser(os.fspath(models_dir))


GPT2_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.index",  # before the data file: its size is checked against the index
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.meta",
    "vocab.bpe",
)

DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
DEFAULT_BACKUP_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2"

# The BPE files are the same for every size, and the same as tiktoken's "gpt2"
# encoding (tiktoken_ext/openai_public.py lists these hashes).
KNOWN_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

# Files whose content cannot be checked on disk: compared with the server's size
# whenever we are online anyway.
_SIZE_CHECKED_ONLINE = ("checkpoint", "hparams.json", "model.ckpt.data-00000-of-00001",
                        "model.ckpt.meta")

# The most bytes each file may have. OpenAI's are far smaller (checkpoint 77 bytes,
# hparams.json 90, the index 5-20 KB, the meta graph 0.5-2 MB, encoder.json 1.0 MB,
# vocab.bpe 0.5 MB, the data file 0.5 GB for 124M to 6.2 GB for 1558M): a server that
# sends more is cut off there, and a file on disk beyond it is not read.
MAX_FILE_BYTES = {
    "checkpoint": SMALL_FILE_LIMIT,
    "encoder.json": 16 << 20,
    "hparams.json": SMALL_FILE_LIMIT,
    "model.ckpt.index": 16 << 20,
    "model.ckpt.data-00000-of-00001": 7 << 30,
    "model.ckpt.meta": 64 << 20,
    "vocab.bpe": 16 << 20,
}
# Exact sizes of the files whose sha256 we know.
_KNOWN_SIZES = {KNOWN_SHA256["encoder.json"]: 1_042_301, KNOWN_SHA256["vocab.bpe"]: 456_318}


def _problem_of(exc, path):
    """An error's message without the leading path (for the lists that name each file)."""
    text = str(exc)
    return text[len(path):].lstrip(": ") if text.startswith(path) else text


def _bytes_needed(reader, data_path):
    """The smallest size of ``data_path`` that holds every tensor the index puts in it."""
    ends = [offset + size for offset_path, offset, size
            in (reader.locate(name) for name in reader.variables()) if offset_path == data_path]
    return max(ends, default=0)


def _local_problem(folder, name, known_sha256):
    """Why ``folder/name`` is not usable as it is, or None if it looks right.

    Checks what can be checked without a server: presence, a size no larger than
    MAX_FILE_BYTES, the BPE files' sha256, that the index parses (its blocks carry
    crc32c), that the data file is as long as the index says, that hparams.json holds
    five sizes and that 'checkpoint' names a checkpoint inside the folder.
    """
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        if os.path.isfile(path + ".part"):
            return f"partly downloaded ({os.path.getsize(path + '.part')} bytes in {name}.part)"
        return "missing"
    size = os.path.getsize(path)
    if size == 0:
        return "empty"
    if size > MAX_FILE_BYTES.get(name, size):
        return (f"{size:,} bytes, more than such a file can have "
                f"({MAX_FILE_BYTES[name]:,}): not OpenAI's {name}")
    if name in known_sha256:
        actual = sha256_hex(path)
        if actual != known_sha256[name]:
            return f"sha256 {actual} is not the expected {known_sha256[name]}"
    elif name == "hparams.json":
        try:
            read_hparams(path)
        except (ValueError, OSError) as exc:
            return _problem_of(exc, path)
    elif name == "checkpoint":
        try:
            _checkpoint_target(folder)
        except (ValueError, OSError) as exc:
            return _problem_of(exc, path)
    elif name == "model.ckpt.index":
        try:
            CheckpointReader(os.path.join(folder, "model.ckpt"), verify=False).close()
        except (ValueError, OSError) as exc:
            return f"cannot be read ({exc})"
    elif name.startswith("model.ckpt.data-"):
        try:
            with CheckpointReader(os.path.join(folder, "model.ckpt"), verify=False) as reader:
                needed = _bytes_needed(reader, path)
        except (ValueError, OSError):
            return None  # the index is at fault; it is fetched first
        if size < needed:
            return f"truncated ({size} of {needed} bytes)"
    return None


def _max_bytes(folder, name, known_sha256):
    """The most bytes ``name`` may have: its exact size where we know it (the BPE files
    from their sha256, the data file from the index beside it), else MAX_FILE_BYTES."""
    cap = MAX_FILE_BYTES[name]
    size = _KNOWN_SIZES.get(known_sha256.get(name))
    if size is None and name.startswith("model.ckpt.data-"):
        try:
            with CheckpointReader(os.path.join(folder, "model.ckpt"), verify=False) as reader:
                size = _bytes_needed(reader, os.path.join(folder, name))
        except (ValueError, OSError):
            size = None
    return min(cap, size) if size else cap


def _urls_for(name, model_size, base_url, backup_url):
    return [f"{base.rstrip('/')}/{model_size}/{name}" for base in (base_url, backup_url) if base]


def download_gpt2_files(model_size, models_dir=None, *, base_url=None, backup_url=None,
                        download=True, progress=True, timeout=60.0, retries=2,
                        known_sha256=None, deadline=None):
    """Make ``models_dir/model_size`` hold OpenAI's seven GPT-2 files; return that folder.

    ``models_dir`` None: ``default_gpt2_dir()``, tinygpt's cache.

    Files already there are checked (see ``_local_problem``); if every file
    passes, no request is made at all. Otherwise the missing or bad files are
    fetched from ``base_url`` (default ``$TINYGPT_GPT2_URL`` or OpenAI's
    server), falling back to ``backup_url`` (``$TINYGPT_GPT2_BACKUP_URL`` or the
    book's mirror); while online, files whose content can't be checked on disk
    are compared with the server's size. Downloads go to ``NAME.part`` and
    resume with an HTTP Range request after an interruption.

    Limits: ``timeout`` is how long each network read may wait (seconds);
    ``deadline`` how long each file may take, all its tries together (default: a
    minute plus the file's largest size at 50 kB/s). A file never grows past its
    known size or MAX_FILE_BYTES: a server that sends more is refused.

    ``download=False`` never touches the network: it raises GPT2FilesMissingError (a
    FileNotFoundError) if a file is missing or bad. ``known_sha256`` overrides ``KNOWN_SHA256``.
    """
    size = gpt2_model_size(model_size)
    folder = os.path.join(_models_dir(models_dir), size)
    known = KNOWN_SHA256 if known_sha256 is None else dict(known_sha256)
    base_url = base_url or os.environ.get("TINYGPT_GPT2_URL") or DEFAULT_BASE_URL
    backup_url = (backup_url or os.environ.get("TINYGPT_GPT2_BACKUP_URL")
                  or DEFAULT_BACKUP_URL)
    if base_url == backup_url:
        backup_url = None
    for option, value in (("timeout", timeout), ("deadline", deadline)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value < math.inf):
            raise ValueError(f"{option} must be a number of seconds > 0, got {value!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")

    problems = {name: _local_problem(folder, name, known) for name in GPT2_FILES}
    if not any(problems.values()):
        return folder
    if not download:
        bad = {name: why for name, why in problems.items() if why}
        raise GPT2FilesMissingError(
            size, folder, bad, "Run with download=True to fetch them, or copy OpenAI's files "
            f"for this size into {folder}."
        )

    created = _make_folders(folder)
    try:
        _fetch_missing(folder, size, known, base_url, backup_url, timeout,
                       retries, progress, deadline)
    except BaseException:
        _remove_if_empty(created)  # a failed first download leaves no empty folder behind
        raise
    return folder


def _make_folders(folder):
    """``os.makedirs(folder)``; returns the folders it created, deepest first."""
    missing, here = [], os.path.abspath(folder)
    while not os.path.isdir(here):
        missing.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    os.makedirs(folder, exist_ok=True)
    return missing


def _remove_if_empty(folders):
    for path in folders:  # deepest first: a parent empties once its child is gone
        try:
            os.rmdir(path)
        except OSError:  # not empty (a partial file to resume from), or already gone
            return


def _advice(folder):
    """What to do when GPT-2's files will not download."""
    return ("Check the connection and run again (a partial file resumes), set "
            "TINYGPT_GPT2_URL / TINYGPT_GPT2_BACKUP_URL to a mirror, or copy OpenAI's "
            f"files ({', '.join(GPT2_FILES)}) into {folder} by hand.")


def _fetch_missing(folder, size, known, base_url, backup_url, timeout, retries, progress,
                   deadline):
    """The download loop of ``download_gpt2_files``: fetch each file that is missing, bad,
    or (for the files only the server can check) of another size than the server's."""
    for name in GPT2_FILES:  # index before data: the data file's check reads the index
        urls = _urls_for(name, size, base_url, backup_url)
        path = os.path.join(folder, name)
        max_bytes = _max_bytes(folder, name, known)
        seconds = (deadline if deadline is not None
                   else DEADLINE_BASE_S + max_bytes / SLOWEST_BYTES_PER_S)
        why = _local_problem(folder, name, known)
        resumable = why is not None and why.startswith("truncated")
        if why is None and name in _SIZE_CHECKED_ONLINE:
            remote = remote_size(urls, timeout, min(seconds, DEADLINE_BASE_S))
            local = os.path.getsize(path)
            if remote is not None and remote != local and remote <= max_bytes:
                why = f"{local} bytes, the server has {remote}"
                resumable = local < remote
        if why is None:
            continue
        if os.path.isfile(path):
            if resumable and not os.path.isfile(path + ".part"):
                os.replace(path, path + ".part")  # likely a prefix of the right file: resume
            else:
                os.remove(path)
        fetch(name, folder, urls, timeout, retries, progress, max_bytes, _advice(folder),
              seconds)
        after = _local_problem(folder, name, known)
        if after is not None:
            raise DownloadError(
                f"downloaded {name} from {urls[0]} (or its backup) but it is wrong: {after}. "
                f"Delete {path} and try again, or fetch it by hand into {folder}."
            )


# --------------------------------------------------------------------------- read

def _checkpoint_target(folder):
    """What the folder's 'checkpoint' file names (``model_checkpoint_path``, relative to
    the folder), or None if there is no such file.

    Only a checkpoint inside ``folder`` is accepted: an absolute path, or one that leads
    out through '..' or a symbolic link, is a TFCheckpointError naming the file.
    """
    path = os.path.join(folder, "checkpoint")
    if not os.path.lexists(path):
        return None
    try:
        text = read_small_file(path, error=TFCheckpointError).decode("utf-8")
    except UnicodeDecodeError:
        raise TFCheckpointError(f"{path} is not a text file: not TensorFlow's 'checkpoint' "
                                "file; download it again", path) from None
    match = re.search(r'^model_checkpoint_path:\s*"([^"\n\x00]+)"', text, re.M)
    if not match:
        raise TFCheckpointError(f'{path} has no model_checkpoint_path: "..." line (OpenAI\'s '
                                'says model_checkpoint_path: "model.ckpt"); download it again',
                                path)
    name = match.group(1)
    fix = (f'if the checkpoint lies in {folder}, write model_checkpoint_path: '
           f'"{os.path.basename(name) or "model.ckpt"}" there')
    if os.path.isabs(name):
        raise TFCheckpointError(f"{path} names {name!r}, an absolute path; only a checkpoint "
                                f"inside the folder is read: {fix}", path)
    root = os.path.realpath(folder)
    where = os.path.realpath(os.path.dirname(os.path.join(folder, name + ".index")))
    if os.path.commonpath([root, where]) != root:
        raise TFCheckpointError(f"{path} names {name!r}, which leads outside {folder} (to "
                                f"{where}); only a checkpoint inside the folder is read: {fix}",
                                path)
    return name


def _checkpoint_prefix(folder):
    """The checkpoint prefix named by the 'checkpoint' file (tf.train.latest_checkpoint),
    always inside ``folder``; ``folder/model.ckpt`` when there is no such file."""
    name = _checkpoint_target(folder)
    if name is None:
        return os.path.join(folder, "model.ckpt")
    prefix = os.path.join(folder, name)
    if not os.path.isfile(prefix + ".index"):
        path = os.path.join(folder, "checkpoint")
        raise TFCheckpointError(f"{path} names the checkpoint {name!r}, but {prefix}.index "
                                "does not exist; download the folder again", path)
    return prefix


def _check_checkpoint_sizes(reader, settings, source, path=None):
    """TFCheckpointError unless the checkpoint's GPT-2 tensors have the shapes that
    ``settings`` imply and its data files hold their bytes: the index and the files'
    sizes say both, so nothing is read or built yet. ``source`` names the settings in
    errors ("settings", or ``path``, the hparams.json they come from)."""
    variables = reader.variables()
    blocks = {int(m.group(1)) for n in variables if (m := re.match(r"model/h(\d{1,9})/", n))}

    def shape_of(path):
        name = _path_to_tf_name(path)
        return _squeezed_shape(variables[name][0]) if name in variables else None

    problems = tensor_size_problems(settings, len(blocks), shape_of, _path_to_tf_name)
    if problems:
        raise TFCheckpointError(
            f"{source} and the checkpoint {reader.index_path} disagree: "
            + "; ".join(problems) + ". Use the hparams.json that came with this checkpoint",
            path,
        )
    files = {}
    for param_path in gpt2_param_paths(settings["n_layer"]):
        name = _path_to_tf_name(param_path)
        shape, dtype = variables[name]
        if not isinstance(dtype, np.dtype) or dtype.kind != "f":
            raise TFCheckpointError(f"{reader.index_path}: {name} has dtype {dtype}, not a "
                                    "float type: not GPT-2's weights", reader.index_path)
        data, offset, size = reader.locate(name)
        if size != math.prod(shape) * dtype.itemsize:
            raise TFCheckpointError(f"{reader.index_path}: {name} of shape {shape} needs "
                                    f"{math.prod(shape) * dtype.itemsize:,} bytes but its "
                                    f"entry says {size:,}", reader.index_path)
        if data not in files:
            files[data] = os.path.getsize(data) if os.path.isfile(data) else None
        if files[data] is None:
            raise TFCheckpointError(f"checkpoint data file {data} (for {name}) not found; the "
                                    "index and data files must lie side by side", data)
        if offset + size > files[data]:
            raise TFCheckpointError(f"{data} is truncated: {name} needs bytes {offset:,}.."
                                    f"{offset + size:,} but the file has {files[data]:,}; "
                                    "download it again", data)


def load_gpt2_folder(folder, *, model_cls=None):
    """A GPTModel (eval mode) from a folder of OpenAI's files: hparams.json, checkpoint
    (optional) and the checkpoint it names (``model.ckpt.index`` / ``.data-*``).

    hparams.json is checked against the checkpoint's index before the model is built,
    so a wrong or hostile size costs nothing; errors name the file. Memory: the model
    plus one tensor.
    """
    if model_cls is None:
        from ..model import GPTModel as model_cls
    folder = os.fspath(folder)
    hparams = os.path.join(folder, "hparams.json")
    settings = read_hparams(hparams)
    with CheckpointReader(_checkpoint_prefix(folder)) as reader:
        _check_checkpoint_sizes(reader, settings, hparams, hparams)
        gpt = model_cls(config_from_hparams(settings))
        _load_from_reader(gpt, reader)
    gpt.eval()
    return gpt


def download_and_load_gpt2(model_size, models_dir=None, **download_options):
    """The book's function: fetch (or reuse) GPT-2 ``model_size`` under ``models_dir``
    (None: ``default_gpt2_dir()``; the book passes "gpt2", a folder in the working directory)
    and return ``(settings, params)``.

    ``settings`` is hparams.json (n_vocab, n_ctx, n_embd, n_head, n_layer);
    ``params`` the weights in the book's nested layout. Options are those of
    ``download_gpt2_files`` (``download=False`` for offline use, URLs, ...).
    """
    folder = download_gpt2_files(model_size, models_dir, **download_options)
    hparams = os.path.join(folder, "hparams.json")
    settings = read_hparams(hparams)

    def load():
        return _read_params(_checkpoint_prefix(folder), settings, hparams, hparams)

    params = _refetch_on_checksum_error(load, model_size, models_dir, download_options)
    return settings, params


def _refetch_on_checksum_error(load, model_size, models_dir, download_options):
    """Run ``load``; if a tensor fails its crc32c, fetch the data file again and retry once.

    The data file's size can be checked before reading, its content only while
    reading: this is where a corrupted download shows up.
    """
    folder = os.path.join(_models_dir(models_dir), gpt2_model_size(model_size))
    ours = {os.path.normpath(os.path.join(folder, name)) for name in GPT2_FILES}
    try:
        return load()
    except ChecksumError as exc:
        if (not download_options.get("download", True) or exc.path is None
                or os.path.normpath(exc.path) not in ours):
            raise
        bad, message = exc.path, str(exc)
    # out of the except block: the failed attempt (maybe a whole model) is freed first
    warnings.warn(f"{message}; fetching {os.path.basename(bad)} again", stacklevel=3)
    os.remove(bad)
    download_gpt2_files(model_size, models_dir, **download_options)
    return load()


# --------------------------------------------------------------------------- params

def _squeeze(array):
    """OpenAI stores Conv1D weights as (1, in, out); the book squeezes them to (in, out)."""
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


def _squeezed_shape(shape):
    """The shape ``_squeeze`` gives an array of ``shape``."""
    return tuple(shape[1:]) if len(shape) == 3 and shape[0] == 1 else tuple(shape)


def _path_to_tf_name(path):
    """("blocks", 3, "attn", "c_attn", "w") -> "model/h3/attn/c_attn/w"."""
    if path[0] == "blocks":
        return f"model/h{path[1]}/" + "/".join(path[2:])
    return {"wte": "model/wte", "wpe": "model/wpe", "g": "model/ln_f/g",
            "b": "model/ln_f/b"}[path[0]]


def _tf_name_to_path(name):
    """Inverse of ``_path_to_tf_name``; None for a variable outside the GPT-2 model."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0] != "model":
        return None
    if re.fullmatch(r"h\d{1,9}", parts[1]):
        return ("blocks", int(parts[1][1:]), *parts[2:])
    if parts[1:] in (["ln_f", "g"], ["ln_f", "b"]):
        return (parts[2],)
    return tuple(parts[1:])


def _format_path(path):
    return "params" + "".join(f"[{p!r}]" for p in path)


def load_gpt2_params_from_tf_ckpt(ckpt_path, settings):
    """Read OpenAI's checkpoint into the book's nested params dict (all in memory).

    ``ckpt_path`` is the checkpoint prefix (``.../124M/model.ckpt``);
    ``settings["n_layer"]`` sizes ``params["blocks"]``. The sizes in ``settings`` are
    checked against the checkpoint's index before anything is read, and every
    tensor's crc32c is verified; a missing or extra GPT-2 variable, or a size that
    doesn't match, raises ValueError (TFCheckpointError).
    """
    problem = sizes_problem(settings)
    if problem:
        raise ValueError(f"settings {problem}")
    return _read_params(ckpt_path, settings, "settings")


def _read_params(ckpt_path, settings, source, source_path=None):
    """load_gpt2_params_from_tf_ckpt with checked ``settings``, named ``source`` in
    errors (``source_path``: the hparams.json they come from)."""
    n_layer = int(settings["n_layer"])
    with CheckpointReader(ckpt_path) as reader:
        _check_checkpoint_sizes(reader, settings, source, source_path)
        expected = {_path_to_tf_name(p) for p in gpt2_param_paths(n_layer)}
        names = set(reader.variables())
        extra = sorted(n for n in names - expected if _tf_name_to_path(n) is not None)
        if extra:
            raise TFCheckpointError(
                f"checkpoint {reader.prefix!r} has variables {extra[:8]} that don't fit "
                f"n_layer={n_layer} from {source}; use that checkpoint's own hparams.json",
                source_path,
            )
        params = {"blocks": [{} for _ in range(n_layer)]}
        for name in sorted(expected):
            _nested_set(params, _tf_name_to_path(name), _squeeze(reader.read(name)))
    return params


# ----------------------------------------------------------------- the weight map
#
# Listing 5.5 as a table: which of OpenAI's GPT-2 weights becomes which GPTModel parameter,
# and how. It is the one description of that map: load_weights_into_gpt (the book's params),
# load_into_gpt (a TensorFlow checkpoint or a Hugging Face file, tensor by tensor), the size
# checks made before a model is built, and export_hf_gpt2 (the map read backwards) all use it.

QKV = ("W_query", "W_key", "W_value")  # c_attn's three thirds, in this order


class WeightRow(NamedTuple):
    """One GPTModel parameter and where GPT-2 keeps it."""

    parameter: str  # GPTModel's name: "trf_blocks.0.att.W_query.weight"
    path: tuple  # its array in the book's params: ("blocks", 0, "attn", "c_attn", "w")
    shape: tuple  # that array's shape (a Conv1D weight squeezed to (in, out))
    third: int | None = None  # c_attn: which of query, key, value (0, 1, 2) it holds
    transposed: bool = False  # a Conv1D weight, (in, out): a Linear's is its .T


def gpt2_weight_map(n_layers, V, T, C, H, untied_head=False):
    """Every GPTModel parameter as a ``WeightRow``: the GPT-2 array it comes from and how,
    for ``n_layers`` blocks, vocabulary V, context T, width C, feed-forward width H.

    In the checkpoint's order (wte, wpe, each block's tensors in forward order, ln_f). An
    array that feeds several parameters (c_attn; wte, when the output head is tied to it)
    has a row for each. ``untied_head``: out_head comes from params["lm_head"] instead."""
    yield WeightRow("tok_emb.weight", ("wte",), (V, C))
    yield WeightRow("pos_emb.weight", ("wpe",), (T, C))
    for b in range(n_layers):
        t, blk = f"trf_blocks.{b}.", ("blocks", b)
        c_attn, c_proj = blk + ("attn", "c_attn"), blk + ("attn", "c_proj")
        c_fc, mlp_proj = blk + ("mlp", "c_fc"), blk + ("mlp", "c_proj")
        yield WeightRow(t + "norm1.scale", blk + ("ln_1", "g"), (C,))
        yield WeightRow(t + "norm1.shift", blk + ("ln_1", "b"), (C,))
        for j, W in enumerate(QKV):
            yield WeightRow(f"{t}att.{W}.weight", c_attn + ("w",), (C, 3 * C), j, True)
        for j, W in enumerate(QKV):
            yield WeightRow(f"{t}att.{W}.bias", c_attn + ("b",), (3 * C,), j)
        yield WeightRow(t + "att.out_proj.weight", c_proj + ("w",), (C, C), transposed=True)
        yield WeightRow(t + "att.out_proj.bias", c_proj + ("b",), (C,))
        yield WeightRow(t + "norm2.scale", blk + ("ln_2", "g"), (C,))
        yield WeightRow(t + "norm2.shift", blk + ("ln_2", "b"), (C,))
        yield WeightRow(t + "ff.layers.0.weight", c_fc + ("w",), (C, H), transposed=True)
        yield WeightRow(t + "ff.layers.0.bias", c_fc + ("b",), (H,))
        yield WeightRow(t + "ff.layers.2.weight", mlp_proj + ("w",), (H, C), transposed=True)
        yield WeightRow(t + "ff.layers.2.bias", mlp_proj + ("b",), (C,))
    yield WeightRow("final_norm.scale", ("g",), (C,))
    yield WeightRow("final_norm.shift", ("b",), (C,))
    yield WeightRow("out_head.weight", ("lm_head",) if untied_head else ("wte",), (V, C))


def as_parameter(array, row):
    """The GPT-2 array at ``row.path`` as parameter ``row.parameter`` holds it: listing
    5.5's ``np.split`` and ``.T`` (views: nothing is copied)."""
    if row.third is not None:  # q_w, k_w, v_w = np.split(c_attn_w, 3, axis=-1)
        array = np.split(array, 3, axis=-1)[row.third]
    if row.transposed:  # OpenAI's Conv1D weight is (in, out), a Linear's (out, in)
        array = array.T
    return array


def as_gpt2_array(arrays, rows):
    """``as_parameter`` backwards: the GPT-2 array that ``rows`` (all the map's rows of
    one path) come from, given their parameters' ``arrays`` in the same order."""
    arrays = [a.T if row.transposed else a for a, row in zip(arrays, rows)]
    if rows[0].third is not None:  # query, key and value side by side again
        return np.concatenate(arrays, axis=-1)
    return arrays[0]  # wte under weight tying feeds two parameters: tok_emb's is the one


def by_gpt2_array(rows):
    """The map's ``rows`` gathered by the GPT-2 array they read, as
    ``[(path, shape, rows)]`` in the map's order: a loader reads each array once."""
    arrays = {}
    for row in rows:
        arrays.setdefault(row.path, (row.path, row.shape, []))[2].append(row)
    return list(arrays.values())


def gpt2_param_paths(n_layer):
    """Every leaf of the book's params layout (no "lm_head"), as key tuples."""
    rows = gpt2_weight_map(n_layer, 0, 0, 0, 0)  # the sizes change shapes, not paths
    return [path for path, _, _ in by_gpt2_array(rows)]


def _weight_map_of(named_params, n_blocks, untied_head=False):
    """``gpt2_weight_map`` with the sizes of the model whose ``named_parameters()`` are
    ``named_params`` (a dict)."""
    V, C = named_params["tok_emb.weight"].shape
    T = named_params["pos_emb.weight"].shape[0]
    ff = named_params.get("trf_blocks.0.ff.layers.0.weight")
    H = ff.shape[0] if ff is not None else 4 * C
    return gpt2_weight_map(n_blocks, V, T, C, H, untied_head)


# ----------------------------------------------------------------- into a GPTModel

def _fix_hint(C=None):
    name = _size_for_emb_dim(C) if C is not None else None
    name = name or "gpt2-small (124M)"
    return (f"build the model with GPTModel(gpt2_config({name!r})), or as in the book: "
            "NEW_CONFIG = GPT_CONFIG_124M.copy(); NEW_CONFIG.update(model_configs["
            f"{name!r}]); NEW_CONFIG.update({{'context_length': 1024, 'qkv_bias': True}})")


def load_into_gpt(gpt, source, n_blocks, shape_of, get, untied_head=False, check_only=False):
    """Copy GPT-2 weights from any source into ``gpt``, tensor by tensor.

    ``shape_of(path)`` gives a source tensor's shape (None if absent) without
    reading it; ``get(path)`` gives the array. ``source`` names the source in
    errors; ``n_blocks`` is how many transformer blocks it has. Every shape is
    checked before anything is written, so on error the model is unchanged.
    ``check_only``: run the checks (shapes, dtypes, finite values) and copy nothing.
    """
    params = dict(gpt.named_parameters())
    _check_config(params, getattr(gpt, "cfg", {}), source, n_blocks, shape_of)
    plan = by_gpt2_array(_weight_map_of(params, n_blocks, untied_head))
    _check_shapes(params, plan, source, shape_of)

    # All or nothing: every tensor is read and checked (a file's crc32c, NaN, infinity,
    # values the model's dtype can't hold) before the first weight changes, then read
    # again to copy. Reading twice keeps the peak at the model plus one tensor.
    for path, _, rows in progress_bar(plan, desc="checking weights", unit="tensor"):
        problem = _values_problem(get(path), params[rows[0].parameter].array.dtype)
        if problem:
            raise ValueError(f"cannot load {source} into this model (it is unchanged): "
                             f"{_format_path(path)} {problem}")
    if check_only:
        return gpt
    for path, _, rows in progress_bar(plan, desc="loading weights", unit="tensor"):
        array = get(path)
        for row in rows:  # cast to the model's dtype in place
            params[row.parameter].array[...] = asarray(as_parameter(array, row))
        del array
    return gpt


def _check_config(params, cfg, source, n_blocks, shape_of):
    """Mistakes people make with the book's config (emb_dim, n_layers, qkv_bias,
    context_length), explained in one ValueError before the shape table."""
    wte, wpe = shape_of(("wte",)), shape_of(("wpe",))
    friendly = []
    C = wte[1] if wte is not None and len(wte) == 2 else None
    if C is not None and params["tok_emb.weight"].shape[1] != C:
        friendly.append(f"{source} has emb_dim {C} ({_size_for_emb_dim(C) or 'unknown size'}), "
                        f"the model {params['tok_emb.weight'].shape[1]}")
    if n_blocks != cfg.get("n_layers", n_blocks):
        friendly.append(f"{source} has {n_blocks} transformer blocks, the model has "
                        f"n_layers={cfg['n_layers']}")
    if n_blocks and "trf_blocks.0.att.W_query.bias" not in params:
        friendly.append(f"GPT-2 uses query/key/value biases (c_attn/b in {source}) but the model "
                        "was built with qkv_bias=False")
    if wpe is not None and len(wpe) == 2 and params["pos_emb.weight"].shape[0] != wpe[0]:
        friendly.append(f"{source}'s position embeddings (wpe) have {wpe[0]} rows but the model's "
                        f"context_length is {params['pos_emb.weight'].shape[0]}")
    if friendly:
        raise ValueError(
            "cannot load GPT-2 weights into this model (it is unchanged):\n  - "
            + "\n  - ".join(friendly) + "\nFix: " + _fix_hint(C)
        )


def _check_shapes(params, plan, source, shape_of):
    """Every GPT-2 array of ``plan`` (``by_gpt2_array``'s list) is in the source with the
    shape the model needs, and every parameter has a counterpart: else one ValueError
    listing the problems."""
    problems, covered = [], set()
    for path, expected, rows in plan:
        found = shape_of(path)
        if found is None:
            problems.append(f"{_format_path(path)} is missing from {source}")
            continue
        if tuple(found) != expected:
            problems.append(f"{_format_path(path)}: {source} has shape {tuple(found)}, "
                            f"the model needs {expected} (for {rows[0].parameter})")
            continue
        dummy = np.broadcast_to(np.zeros((), np.uint8), expected)  # shapes only, no memory
        for row in rows:
            key, gives = row.parameter, as_parameter(dummy, row).shape
            covered.add(key)
            if key not in params:
                problems.append(f"model has no parameter {key!r} (for {_format_path(path)})")
            elif gives != params[key].shape:
                problems.append(f"{key!r}: model shape {params[key].shape}, "
                                f"{_format_path(path)} gives {gives}")
    problems += [f"model parameter {k!r} has no counterpart in GPT-2's weights"
                 for k in params if k not in covered]
    if problems:
        raise ValueError(
            f"cannot load {source} into this model (it is unchanged):\n  - "
            + "\n  - ".join(problems)
        )


def _values_problem(array, dtype):
    """Why ``array`` can't become weights of float ``dtype`` (a phrase), or None: it is
    not floating point, or holds NaN, an infinity or a value too large for ``dtype``. Its min
    and max say so without a temporary array (NaN makes both NaN)."""
    array = np.asarray(array)
    if array.dtype.kind != "f":  # an int or bool tensor is a damaged or foreign file
        return f"has dtype {array.dtype}; weights are floating point"
    if array.size == 0:
        return None
    limit = float(np.finfo(np.dtype(dtype)).max)
    if -limit <= float(array.min()) and float(array.max()) <= limit:
        return None
    bad = ~(np.abs(array) <= limit)  # only now, to say where: NaN compares False
    i = int(np.argmax(bad))
    where = tuple(int(j) for j in np.unravel_index(i, array.shape))
    return (f"holds {array.reshape(-1)[i]} at index {where} ({int(bad.sum())} such values; "
            f"weights must be finite numbers a {np.dtype(dtype)} can hold)")


def _nested_get(params, path):
    node = params
    for key in path:
        if isinstance(node, dict):
            if key not in node:
                return None
            node = node[key]
        elif isinstance(node, (list, tuple)):
            if not isinstance(key, int) or key >= len(node):
                return None
            node = node[key]
        else:
            return None
    return node


def _nested_set(params, path, value):
    """``_nested_get``'s counterpart: put ``value`` at ``path`` in the book's params, making
    the dicts on the way (``params["blocks"]`` is already a list of one dict per block)."""
    node = params
    for key in path[:-1]:
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
    node[path[-1]] = value


def assign(left, right):
    """The book's helper of listing 5.5: ``right`` (an array, list or Tensor) as a new
    ``Parameter`` to put in the place of ``left``, after checking that the shapes match
    (ValueError "Shape mismatch. Left: ..., Right: ..." otherwise). The new parameter
    has ``left``'s dtype when ``left`` is a tensor (a float64 model stays float64)."""
    from ..nn import Parameter
    from ..tensor import Tensor
    from ..tensors import tensor

    left_shape, right_shape = tuple(np.shape(left)), tuple(np.shape(right))
    if left_shape != right_shape:
        raise ValueError(f"Shape mismatch. Left: {left_shape}, Right: {right_shape}")
    if not isinstance(right, Tensor):  # a transposed view (q_w.T) becomes row-major
        right = np.ascontiguousarray(right)
    return Parameter(tensor(right, dtype=getattr(left, "dtype", None)))


def load_weights_into_gpt(gpt, params):
    """Listing 5.5: put the weights of ``params`` (the book's nested dict from
    ``download_and_load_gpt2``) into GPTModel ``gpt`` with ``assign``.

    The listing's assignments are the rows of ``gpt2_weight_map``, one per parameter.
    OpenAI's Conv1D weights are (in, out), a Linear's are (out, in): hence the ``.T``.
    c_attn holds query, key and value side by side: ``np.split`` cuts it in three. The
    output head reuses ``wte`` (weight tying) unless ``params`` has an untied ``"lm_head"``.
    All or nothing: ``params`` is checked first (every shape, dtype and value), and a
    problem raises ValueError naming the key before any weight changes.
    """
    params = _check_params(gpt, params)  # the same dict, every leaf a NumPy array
    modules = dict(gpt.named_modules())  # "trf_blocks.0.att.out_proj" -> that Linear
    rows = _weight_map_of(dict(gpt.named_parameters()), len(params["blocks"]),
                          untied_head="lm_head" in params)
    for row in rows:  # e.g. the row of "trf_blocks.0.att.out_proj.weight" is the book's
        # gpt.trf_blocks[0].att.out_proj.weight = assign(
        #     gpt.trf_blocks[0].att.out_proj.weight, params["blocks"][0]["attn"]["c_proj"]["w"].T)
        right = _nested_get(params, row.path)
        right = as_parameter(right, row)  # as is, or .T, or np.split's third of c_attn (.T)
        module_name, name = row.parameter.rsplit(".", 1)
        module = modules[module_name]
        setattr(module, name, assign(getattr(module, name), right))
    return gpt


def _as_arrays(node):
    """``params`` with every leaf a NumPy array (lists and Tensors too: ``.T``, ``np.split``)."""
    if isinstance(node, dict):
        return {k: _as_arrays(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)) and node and isinstance(node[0], dict):
        return [_as_arrays(block) for block in node]  # params["blocks"]
    return np.asarray(node)


def _check_params(gpt, params):
    """load_weights_into_gpt's check pass: ``load_into_gpt``'s checks of every shape,
    dtype and value, without copying anything. Returns ``_as_arrays(params)``."""
    if not isinstance(params, dict) or not isinstance(params.get("blocks", []), (list, tuple)):
        raise TypeError("params must be the book's dict of weights (from "
                        "download_and_load_gpt2), with a list under 'blocks'; got "
                        f"{type(params).__name__}")

    def shape_of(path):
        value = _nested_get(params, path)
        try:
            return None if value is None else np.shape(value)
        except ValueError as exc:  # a ragged list
            raise ValueError(f"{_format_path(path)} is not an array ({exc})") from None

    def get(path):
        return np.asarray(_nested_get(params, path))

    load_into_gpt(gpt, "params", len(params.get("blocks", [])), shape_of, get,
                  untied_head="lm_head" in params, check_only=True)
    return _as_arrays(params)


def load_tf_ckpt_into_gpt(gpt, ckpt_path):
    """Load OpenAI's TensorFlow checkpoint straight into ``gpt``, one tensor at a time.

    Same result as ``load_weights_into_gpt(gpt, load_gpt2_params_from_tf_ckpt(...))``
    but never holds more than one checkpoint tensor beside the model. All or
    nothing: every tensor's shape, crc32c and values are checked before the first
    weight changes (each tensor is read twice), so on error the model is unchanged.
    """
    with CheckpointReader(ckpt_path) as reader:
        return _load_from_reader(gpt, reader)


def _load_from_reader(gpt, reader):
    names = reader.variables()
    blocks = {int(m.group(1)) for n in names if (m := re.match(r"model/h(\d{1,9})/", n))}

    def shape_of(path):
        name = _path_to_tf_name(path)
        return _squeezed_shape(names[name][0]) if name in names else None

    def get(path):
        return _squeeze(reader.read(_path_to_tf_name(path)))

    return load_into_gpt(gpt, f"checkpoint {reader.prefix!r}", len(blocks), shape_of, get)


def load_pretrained_gpt2(model_size="124M", models_dir=None, *, model_cls=None,
                         **download_options):
    """Download (or reuse) GPT-2 and return a ``GPTModel`` holding its weights, in eval mode.

    Memory: the model plus one tensor (weights stream from the checkpoint); hparams.json
    is checked against the checkpoint before the model is built (``load_gpt2_folder``).
    ``download_options`` are those of ``download_gpt2_files``.
    """
    folder = download_gpt2_files(model_size, models_dir, **download_options)

    def load():
        return load_gpt2_folder(folder, model_cls=model_cls)

    return _refetch_on_checksum_error(load, model_size, models_dir, download_options)

