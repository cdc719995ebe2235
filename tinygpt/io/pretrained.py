"""OpenAI's pretrained GPT-2 weights (book section 5.5): download, read, load.

The book's three steps, with the same names::

    settings, params = download_and_load_gpt2(model_size="124M", models_dir="gpt2")
    gpt = GPTModel(gpt2_config("gpt2-small (124M)"))    # NEW_CONFIG of the book
    load_weights_into_gpt(gpt, params)

``params`` is the book's nested layout (``params["blocks"][i]["attn"]["c_attn"]["w"]``,
arrays squeezed, OpenAI's Conv1D ``(in, out)`` orientation). TensorFlow is not
needed: ``tinygpt.io.tf_checkpoint`` reads the checkpoint.

Holding ``params`` and a model at once costs twice the model's memory (12 GB for
gpt2-xl). ``load_pretrained_gpt2`` / ``load_tf_ckpt_into_gpt`` stream instead:
each tensor is read, copied into the model and dropped, so loading needs the
model plus one tensor.
"""

import functools
import http.client
import json
import os
import re
import urllib.error
import urllib.request
import warnings

import numpy as np

from ..backend import asarray
from ..errors import ChecksumError, DownloadError, GPT2FilesMissingError
from ..tokenizer import sha256_file
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
    "download_gpt2_files",
    "gpt2_config",
    "gpt2_model_size",
    "load_gpt2_params_from_tf_ckpt",
    "load_pretrained_gpt2",
    "load_tf_ckpt_into_gpt",
    "load_weights_into_gpt",
    "model_configs",
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
    """The GPTModel config matching OpenAI's hparams.json (the ``settings`` dict)."""
    return {
        "vocab_size": int(settings["n_vocab"]),
        "context_length": int(settings["n_ctx"]),
        "emb_dim": int(settings["n_embd"]),
        "n_heads": int(settings["n_head"]),
        "n_layers": int(settings["n_layer"]),
        "drop_rate": float(drop_rate),
        "qkv_bias": True,
    }


def _size_for_emb_dim(emb_dim):
    for name, c in model_configs.items():
        if c["emb_dim"] == emb_dim:
            return name
    return None


# --------------------------------------------------------------------------- download

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

_CHUNK = 1 << 20


class _Retryable(Exception):
    """A transfer that stopped early; trying again resumes it."""


def _local_problem(folder, name, known_sha256):
    """Why ``folder/name`` is not usable as it is, or None if it looks right.

    Checks what can be checked without a server: presence, the BPE files'
    sha256, that the index parses (its blocks carry crc32c), that the data file
    is as long as the index says and that hparams.json is JSON.
    """
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        if os.path.isfile(path + ".part"):
            return f"partly downloaded ({os.path.getsize(path + '.part')} bytes in {name}.part)"
        return "missing"
    size = os.path.getsize(path)
    if size == 0:
        return "empty"
    if name in known_sha256:
        actual = sha256_file(path)
        if actual != known_sha256[name]:
            return f"sha256 {actual} is not the expected {known_sha256[name]}"
    elif name == "hparams.json":
        try:
            with open(path, encoding="utf-8") as f:
                hparams = json.load(f)
            missing = {"n_vocab", "n_ctx", "n_embd", "n_head", "n_layer"} - set(hparams)
            if missing:
                return f"has no {sorted(missing)}"
        except (ValueError, UnicodeDecodeError) as exc:
            return f"is not valid JSON ({exc})"
    elif name == "model.ckpt.index":
        try:
            CheckpointReader(os.path.join(folder, "model.ckpt"), verify=False).close()
        except (ValueError, OSError) as exc:
            return f"cannot be read ({exc})"
    elif name.startswith("model.ckpt.data-"):
        try:
            with CheckpointReader(os.path.join(folder, "model.ckpt"), verify=False) as reader:
                needed = reader.expected_data_sizes().get(path, 0)
        except (ValueError, OSError):
            return None  # the index is at fault; it is fetched first
        if size < needed:
            return f"truncated ({size} of {needed} bytes)"
    return None


def _urls_for(name, model_size, base_url, backup_url):
    return [f"{base.rstrip('/')}/{model_size}/{name}" for base in (base_url, backup_url) if base]


def _open(url, timeout, headers=None, method="GET"):
    request = urllib.request.Request(url, headers={"User-Agent": "tinygpt", **(headers or {})},
                                     method=method)
    return urllib.request.urlopen(request, timeout=timeout)


def _remote_size(urls, timeout):
    """Content-Length reported by the first URL that answers a HEAD request, or None."""
    for url in urls:
        try:
            with _open(url, timeout, method="HEAD") as response:
                length = response.headers.get("Content-Length")
                if length is not None:
                    return int(length)
        except (OSError, ValueError):
            continue
    return None


def _download(url, path, timeout, progress):
    """Fetch ``url`` into ``path``, resuming ``path + '.part'`` with a Range request."""
    from tqdm import tqdm

    part = path + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, timeout, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is not a prefix of this file: start over
            os.remove(part)
            raise _Retryable(f"server refused to resume at byte {have} (HTTP 416)") from exc
        raise
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
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
        with open(part, mode) as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=os.path.basename(path), disable=not progress, leave=True,
        ) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise _Retryable(f"connection ended after {size} of {total} bytes")
    os.replace(part, path)


def _fetch(name, folder, urls, timeout, retries, progress):
    """Download one file, trying each URL ``retries + 1`` times; resumes across tries."""
    path = os.path.join(folder, name)
    errors = []
    for url in urls:
        for _ in range(retries + 1):
            try:
                _download(url, path, timeout, progress)
                return
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                if 400 <= exc.code < 500:
                    break  # not found / forbidden: retrying this URL won't help
            except _Retryable as exc:
                errors.append(f"{url}: {exc}")
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is OSError
                errors.append(f"{url}: {type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    raise DownloadError(
        f"could not download {name} into {folder}; tried:\n  " + "\n  ".join(errors)
        + "\nCheck the connection and run again (a partial file resumes), point "
        "TINYGPT_GPT2_URL / TINYGPT_GPT2_BACKUP_URL (or base_url=/backup_url=) at a mirror, "
        f"or download the files by hand into {folder} ({', '.join(GPT2_FILES)}) "
        "and call with download=False."
    )


def download_gpt2_files(model_size, models_dir, *, base_url=None, backup_url=None,
                        download=True, progress=True, timeout=60.0, retries=2,
                        known_sha256=None):
    """Make ``models_dir/model_size`` hold OpenAI's seven GPT-2 files; return that folder.

    Files already there are checked (see ``_local_problem``); if every file
    passes, no request is made at all. Otherwise the missing or bad files are
    fetched from ``base_url`` (default ``$TINYGPT_GPT2_URL`` or OpenAI's
    server), falling back to ``backup_url`` (``$TINYGPT_GPT2_BACKUP_URL`` or the
    book's mirror); while online, files whose content can't be checked on disk
    are compared with the server's size. Downloads go to ``NAME.part`` and
    resume with an HTTP Range request after an interruption.

    ``download=False`` never touches the network: it raises GPT2FilesMissingError (a
    FileNotFoundError) if a file is missing or bad. ``known_sha256`` overrides ``KNOWN_SHA256``.
    """
    size = gpt2_model_size(model_size)
    folder = os.path.join(os.fspath(models_dir), size)
    known = KNOWN_SHA256 if known_sha256 is None else dict(known_sha256)
    base_url = base_url or os.environ.get("TINYGPT_GPT2_URL") or DEFAULT_BASE_URL
    backup_url = (backup_url or os.environ.get("TINYGPT_GPT2_BACKUP_URL")
                  or DEFAULT_BACKUP_URL)
    if base_url == backup_url:
        backup_url = None

    problems = {name: _local_problem(folder, name, known) for name in GPT2_FILES}
    if not any(problems.values()):
        return folder
    if not download:
        bad = {name: why for name, why in problems.items() if why}
        raise GPT2FilesMissingError(
            size, folder, bad, "Run with download=True to fetch them, or copy OpenAI's files "
            f"for this size into {folder}."
        )

    os.makedirs(folder, exist_ok=True)
    for name in GPT2_FILES:  # index before data: the data file's check reads the index
        urls = _urls_for(name, size, base_url, backup_url)
        path = os.path.join(folder, name)
        why = _local_problem(folder, name, known)
        resumable = why is not None and why.startswith("truncated")
        if why is None and name in _SIZE_CHECKED_ONLINE:
            remote = _remote_size(urls, timeout)
            local = os.path.getsize(path)
            if remote is not None and remote != local:
                why = f"{local} bytes, the server has {remote}"
                resumable = local < remote
        if why is None:
            continue
        if os.path.isfile(path):
            if resumable and not os.path.isfile(path + ".part"):
                os.replace(path, path + ".part")  # likely a prefix of the right file: resume
            else:
                os.remove(path)
        _fetch(name, folder, urls, timeout, retries, progress)
        after = _local_problem(folder, name, known)
        if after is not None:
            raise DownloadError(
                f"downloaded {name} from {urls[0]} (or its backup) but it is wrong: {after}. "
                f"Delete {path} and try again, or fetch it by hand into {folder}."
            )
    return folder


def _checkpoint_prefix(folder):
    """The checkpoint prefix named by the 'checkpoint' file (tf.train.latest_checkpoint)."""
    path = os.path.join(folder, "checkpoint")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', f.read(), re.M)
        if match:
            prefix = os.path.join(folder, match.group(1))  # joining keeps an absolute path
            if os.path.isfile(prefix + ".index"):
                return prefix
            # written on another machine: the checkpoint lies beside this file
            return os.path.join(folder, os.path.basename(match.group(1)))
    return os.path.join(folder, "model.ckpt")


def _read_hparams(folder):
    with open(os.path.join(folder, "hparams.json"), encoding="utf-8") as f:
        return json.load(f)


def download_and_load_gpt2(model_size, models_dir, **download_options):
    """The book's function: fetch (or reuse) GPT-2 ``model_size`` under ``models_dir``
    and return ``(settings, params)``.

    ``settings`` is hparams.json (n_vocab, n_ctx, n_embd, n_head, n_layer);
    ``params`` the weights in the book's nested layout. Options are those of
    ``download_gpt2_files`` (``download=False`` for offline use, URLs, ...).
    """
    folder = download_gpt2_files(model_size, models_dir, **download_options)
    settings = _read_hparams(folder)

    def load():
        return load_gpt2_params_from_tf_ckpt(_checkpoint_prefix(folder), settings)

    params = _refetch_on_checksum_error(load, model_size, models_dir, download_options)
    return settings, params


def _refetch_on_checksum_error(load, model_size, models_dir, download_options):
    """Run ``load``; if a tensor fails its crc32c, fetch the data file again and retry once.

    The data file's size can be checked before reading, its content only while
    reading: this is where a corrupted download shows up.
    """
    try:
        return load()
    except ChecksumError as exc:
        if not download_options.get("download", True) or exc.path is None:
            raise
        warnings.warn(f"{exc}; fetching {os.path.basename(exc.path)} again", stacklevel=3)
        os.remove(exc.path)
        download_gpt2_files(model_size, models_dir, **download_options)
        return load()


# --------------------------------------------------------------------------- params

def _squeeze(array):
    """OpenAI stores Conv1D weights as (1, in, out); the book squeezes them to (in, out)."""
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


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
    if re.fullmatch(r"h\d+", parts[1]):
        return ("blocks", int(parts[1][1:]), *parts[2:])
    if parts[1:] in (["ln_f", "g"], ["ln_f", "b"]):
        return (parts[2],)
    return tuple(parts[1:])


def _format_path(path):
    return "params" + "".join(f"[{p!r}]" for p in path)


def gpt2_param_paths(n_layer):
    """Every leaf of the book's params layout, as key tuples."""
    paths = [("wte",), ("wpe",)]
    for i in range(n_layer):
        for sub in (("ln_1", "g"), ("ln_1", "b"), ("attn", "c_attn", "w"),
                    ("attn", "c_attn", "b"), ("attn", "c_proj", "w"), ("attn", "c_proj", "b"),
                    ("ln_2", "g"), ("ln_2", "b"), ("mlp", "c_fc", "w"), ("mlp", "c_fc", "b"),
                    ("mlp", "c_proj", "w"), ("mlp", "c_proj", "b")):
            paths.append(("blocks", i, *sub))
    return paths + [("g",), ("b",)]


def load_gpt2_params_from_tf_ckpt(ckpt_path, settings):
    """Read OpenAI's checkpoint into the book's nested params dict (all in memory).

    ``ckpt_path`` is the checkpoint prefix (``.../124M/model.ckpt``);
    ``settings["n_layer"]`` sizes ``params["blocks"]``. Every tensor's crc32c is
    verified; a missing or extra GPT-2 variable raises ValueError.
    """
    n_layer = int(settings["n_layer"])
    params = {"blocks": [{} for _ in range(n_layer)]}
    with CheckpointReader(ckpt_path) as reader:
        expected = {_path_to_tf_name(p) for p in gpt2_param_paths(n_layer)}
        names = set(reader.variables())
        missing = sorted(expected - names)
        if missing:
            raise ValueError(
                f"checkpoint {reader.prefix!r} lacks GPT-2 variables {missing[:8]}"
                f"{' ...' if len(missing) > 8 else ''} (settings say n_layer={n_layer}); "
                "is it a GPT-2 checkpoint of that size?"
            )
        extra = sorted(n for n in names - expected if _tf_name_to_path(n) is not None)
        if extra:
            raise ValueError(
                f"checkpoint {reader.prefix!r} has variables {extra[:8]} that don't fit "
                f"n_layer={n_layer} from settings; use that checkpoint's own hparams.json"
            )
        for name in sorted(expected):
            path = _tf_name_to_path(name)
            target = params
            if path[0] == "blocks":
                target = params["blocks"][path[1]]
                path = path[2:]
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = _squeeze(reader.read(name))
    return params


# ----------------------------------------------------------------- into a GPTModel

def _third(j, transpose, array):
    """Part j of 3 along the last axis (the q, k, v thirds of c_attn), optionally .T."""
    n = array.shape[-1] // 3
    part = array[..., j * n:(j + 1) * n]
    return part.T if transpose else part


def _same(array):
    return array


def _transpose(array):
    return array.T  # Conv1D (in, out) -> Linear (out, in)


def _plan(n_layers, V, T, C, H, untied_head=False):
    """[(params path, expected source shape, [(model key, transform)])] for a model
    with vocab V, context T, width C, feed-forward width H."""
    plan = [
        (("wte",), (V, C), [("tok_emb.weight", _same)]
         + ([] if untied_head else [("out_head.weight", _same)])),  # weight tying
        (("wpe",), (T, C), [("pos_emb.weight", _same)]),
    ]
    for i in range(n_layers):
        b, t = ("blocks", i), f"trf_blocks.{i}."
        qkv_w = [(t + f"att.{m}.weight", functools.partial(_third, j, True))
                 for j, m in enumerate(("W_query", "W_key", "W_value"))]
        qkv_b = [(t + f"att.{m}.bias", functools.partial(_third, j, False))
                 for j, m in enumerate(("W_query", "W_key", "W_value"))]
        plan += [
            (b + ("ln_1", "g"), (C,), [(t + "norm1.scale", _same)]),
            (b + ("ln_1", "b"), (C,), [(t + "norm1.shift", _same)]),
            (b + ("attn", "c_attn", "w"), (C, 3 * C), qkv_w),
            (b + ("attn", "c_attn", "b"), (3 * C,), qkv_b),
            (b + ("attn", "c_proj", "w"), (C, C), [(t + "att.out_proj.weight", _transpose)]),
            (b + ("attn", "c_proj", "b"), (C,), [(t + "att.out_proj.bias", _same)]),
            (b + ("ln_2", "g"), (C,), [(t + "norm2.scale", _same)]),
            (b + ("ln_2", "b"), (C,), [(t + "norm2.shift", _same)]),
            (b + ("mlp", "c_fc", "w"), (C, H), [(t + "ff.layers.0.weight", _transpose)]),
            (b + ("mlp", "c_fc", "b"), (H,), [(t + "ff.layers.0.bias", _same)]),
            (b + ("mlp", "c_proj", "w"), (H, C), [(t + "ff.layers.2.weight", _transpose)]),
            (b + ("mlp", "c_proj", "b"), (C,), [(t + "ff.layers.2.bias", _same)]),
        ]
    plan += [(("g",), (C,), [("final_norm.scale", _same)]),
             (("b",), (C,), [("final_norm.shift", _same)])]
    if untied_head:
        plan.append((("lm_head",), (V, C), [("out_head.weight", _same)]))
    return plan


def _fix_hint(C=None):
    name = _size_for_emb_dim(C) if C is not None else None
    name = name or "gpt2-small (124M)"
    return (f"build the model with GPTModel(gpt2_config({name!r})), or as in the book: "
            "NEW_CONFIG = GPT_CONFIG_124M.copy(); NEW_CONFIG.update(model_configs["
            f"{name!r}]); NEW_CONFIG.update({{'context_length': 1024, 'qkv_bias': True}})")


def load_into_gpt(gpt, source, n_blocks, shape_of, get, untied_head=False):
    """Copy GPT-2 weights from any source into ``gpt``, tensor by tensor.

    ``shape_of(path)`` gives a source tensor's shape (None if absent) without
    reading it; ``get(path)`` gives the array. ``source`` names the source in
    errors; ``n_blocks`` is how many transformer blocks it has. Every shape is
    checked before anything is written, so on error the model is unchanged.
    """
    params = dict(gpt.named_parameters())
    cfg = getattr(gpt, "cfg", {})
    wte, wpe = shape_of(("wte",)), shape_of(("wpe",))

    # Mistakes people make with the book's config, explained before the shape table.
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

    V, C = params["tok_emb.weight"].shape
    T = params["pos_emb.weight"].shape[0]
    ff = params.get("trf_blocks.0.ff.layers.0.weight")
    H = ff.shape[0] if ff is not None else 4 * C
    plan = _plan(n_blocks, V, T, C, H, untied_head)

    problems, covered = [], set()
    for path, expected, targets in plan:
        found = shape_of(path)
        if found is None:
            problems.append(f"{_format_path(path)} is missing from {source}")
            continue
        if tuple(found) != expected:
            problems.append(f"{_format_path(path)}: {source} has shape {tuple(found)}, "
                            f"the model needs {expected} (for {targets[0][0]})")
            continue
        dummy = np.broadcast_to(np.zeros((), np.uint8), expected)  # shapes only, no memory
        for key, transform in targets:
            covered.add(key)
            if key not in params:
                problems.append(f"model has no parameter {key!r} (for {_format_path(path)})")
            elif transform(dummy).shape != params[key].shape:
                problems.append(f"{key!r}: model shape {params[key].shape}, "
                                f"{_format_path(path)} gives {transform(dummy).shape}")
    problems += [f"model parameter {k!r} has no counterpart in GPT-2's weights"
                 for k in params if k not in covered]
    if problems:
        raise ValueError(
            f"cannot load {source} into this model (it is unchanged):\n  - "
            + "\n  - ".join(problems)
        )

    for path, _, targets in plan:
        array = get(path)
        for key, transform in targets:
            param = params[key]
            param.data[...] = asarray(transform(array))  # cast to the model's dtype in place
        del array
    return gpt


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


def assign(left, right):
    """The book's helper of listing 5.5: ``right`` (an array, list or Tensor) as a new
    ``Parameter`` to put in the place of ``left``, after checking that the shapes match
    (ValueError "Shape mismatch. Left: ..., Right: ..." otherwise)."""
    from ..nn import Parameter
    from ..tensors import tensor

    left_shape, right_shape = tuple(np.shape(left)), tuple(np.shape(right))
    if left_shape != right_shape:
        raise ValueError(f"Shape mismatch. Left: {left_shape}, Right: {right_shape}")
    return Parameter(tensor(right))


def load_weights_into_gpt(gpt, params):
    """The book's listing 5.5: copy ``params`` (book layout) into GPTModel ``gpt``.

    c_attn's weight and bias are split into query/key/value, Conv1D weights are
    transposed to Linear's (out, in), and the output head reuses ``wte`` (weight
    tying) unless ``params`` has an untied ``"lm_head"``. All shapes are checked
    first; on any mismatch a ValueError names the key, the expected and the found
    shape, and no weight changes. Arrays are copied into the existing parameters.
    """
    def shape_of(path):
        value = _nested_get(params, path)
        return None if value is None else np.shape(value)

    def get(path):
        return np.asarray(_nested_get(params, path))

    blocks = params.get("blocks", [])
    return load_into_gpt(gpt, "params", len(blocks), shape_of, get,
                         untied_head="lm_head" in params)


def load_tf_ckpt_into_gpt(gpt, ckpt_path):
    """Load OpenAI's TensorFlow checkpoint straight into ``gpt``, one tensor at a time.

    Same result as ``load_weights_into_gpt(gpt, load_gpt2_params_from_tf_ckpt(...))``
    but never holds more than one checkpoint tensor beside the model.
    """
    with CheckpointReader(ckpt_path) as reader:
        names = reader.variables()
        blocks = {int(m.group(1)) for n in names if (m := re.match(r"model/h(\d+)/", n))}

        def shape_of(path):
            name = _path_to_tf_name(path)
            if name not in names:
                return None
            shape = names[name][0]
            return shape[1:] if len(shape) == 3 and shape[0] == 1 else shape

        def get(path):
            return _squeeze(reader.read(_path_to_tf_name(path)))

        return load_into_gpt(gpt, f"checkpoint {reader.prefix!r}", len(blocks), shape_of, get)


def load_pretrained_gpt2(model_size="124M", models_dir="gpt2", *, model_cls=None,
                         **download_options):
    """Download (or reuse) GPT-2 and return a ``GPTModel`` holding its weights, in eval mode.

    Memory: the model plus one tensor (weights stream from the checkpoint).
    ``download_options`` are those of ``download_gpt2_files``.
    """
    if model_cls is None:
        from ..model import GPTModel as model_cls
    folder = download_gpt2_files(model_size, models_dir, **download_options)
    gpt = model_cls(config_from_hparams(_read_hparams(folder)))

    def load():  # a retry overwrites every weight, so a half-loaded model is no problem
        return load_tf_ckpt_into_gpt(gpt, _checkpoint_prefix(folder))

    _refetch_on_checksum_error(load, model_size, models_dir, download_options)
    gpt.eval()
    return gpt

