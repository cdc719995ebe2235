"""GPT-2 weights in Hugging Face's format: ``model.safetensors`` + ``config.json``.

Hugging Face's GPT-2 keeps OpenAI's layout, so its tensors map one to one onto
the book's ``params`` dict::

    wte.weight (V, C)                  params["wte"]
    wpe.weight (T, C)                  params["wpe"]
    h.{i}.ln_1.weight / .bias          params["blocks"][i]["ln_1"]["g"] / ["b"]
    h.{i}.attn.c_attn.weight (C, 3C)   params["blocks"][i]["attn"]["c_attn"]["w"]
    h.{i}.attn.c_attn.bias (3C,)       ...["c_attn"]["b"]
    h.{i}.attn.c_proj.weight (C, C)    ...["c_proj"]["w"]      (and .bias)
    h.{i}.ln_2.weight / .bias          params["blocks"][i]["ln_2"]["g"] / ["b"]
    h.{i}.mlp.c_fc.weight (C, 4C)      params["blocks"][i]["mlp"]["c_fc"]["w"]  (and .bias)
    h.{i}.mlp.c_proj.weight (4C, C)    params["blocks"][i]["mlp"]["c_proj"]["w"] (and .bias)
    ln_f.weight / .bias                params["g"] / params["b"]
    lm_head.weight (V, C)              only when not tied to wte: params["lm_head"]

Weights are Conv1D-style ``(in, out)``, the transpose of our ``Linear``. Keys may
carry a ``transformer.`` prefix (what ``GPT2LMHeadModel.save_pretrained`` writes);
the causal-mask buffers ``attn.bias`` / ``attn.masked_bias`` of older files are
ignored.
"""

import errno
import json
import os
import re
import warnings

import numpy as np

from ..backend import to_numpy
from ..errors import FileFormatError
from .files import atomic_write, atomic_write_text, check_regular_file, save_safetensors
from .pretrained import (
    _nested_set,
    _short_repr,
    _size_for_emb_dim,
    _weight_map_of,
    as_gpt2_array,
    by_gpt2_array,
    config_from_hparams,
    gpt2_param_paths,
    load_into_gpt,
    model_configs,
    read_small_json,
    sizes_problem,
    tensor_size_problems,
)

__all__ = [
    "export_hf_gpt2",
    "hf_config_to_gpt_config",
    "load_hf_gpt2",
    "load_hf_gpt2_into_gpt",
    "load_hf_gpt2_params",
]

SAFETENSORS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PREFIX = "transformer."
_WEIGHTS = f"Hugging Face GPT-2 weights ({SAFETENSORS_NAME})"
_IGNORED = re.compile(r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")
_LEAF = {"g": "weight", "w": "weight", "b": "bias"}
CONFIG_LIMIT = 1 << 20  # bytes; GPT-2's config.json is about 1 KB

# Hugging Face's names of GPT-2's tanh GELU, the one GPTModel computes: transformers'
# NewGELU, GELUTanh, FastGELU and AccurateGELU all evaluate
# 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), differing only in rounding.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_fast", "gelu_accurate")
# Attention settings that change the function: key -> (GPT-2's value, what another does).
# reorder_and_upcast_attn is accepted either way: it computes the same scores in float32
# under fp16 autocast (in float32 the logits agree to 1e-7), a matter of precision only.
_ATTENTION_SETTINGS = {
    "scale_attn_weights": (True, "false leaves the attention scores undivided by "
                                 "sqrt(head_dim)"),
    "scale_attn_by_inverse_layer_idx": (False, "true divides block i's attention scores by "
                                               "i + 1 as well"),
}


def _hf_name(path, prefix=""):
    """Book params path -> Hugging Face key; ``prefix`` ("transformer." or "") goes before
    every key but lm_head.weight, which is outside the transformer."""
    if path == ("lm_head",):
        return "lm_head.weight"
    if path[0] == "blocks":
        return f"{prefix}h.{path[1]}." + ".".join(path[2:-1]) + "." + _LEAF[path[-1]]
    return prefix + {"wte": "wte.weight", "wpe": "wpe.weight", "g": "ln_f.weight",
                     "b": "ln_f.bias"}[path[0]]


def _locate(path):
    """(safetensors file, folder holding config.json) from a file or folder path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        file = os.path.join(path, SAFETENSORS_NAME)
        if not os.path.lexists(file):
            sharded = os.path.isfile(os.path.join(path, SAFETENSORS_NAME + ".index.json"))
            raise FileNotFoundError(
                f"{path} has no {SAFETENSORS_NAME}"
                + (" (it is sharded into several files, which this loader does not read)"
                   if sharded else "")
                + "; pass the folder of a Hugging Face GPT-2 model or its .safetensors file"
            )
        check_regular_file(file, _WEIGHTS)
        return file, path
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path} not found: pass a Hugging Face GPT-2 folder or "
                                f"its {SAFETENSORS_NAME}")
    check_regular_file(path, _WEIGHTS)
    return path, os.path.dirname(path)


def read_hf_config(folder):
    """config.json of a Hugging Face model folder as a dict, or None if absent.

    FileFormatError naming the file if it is over 1 MiB, not JSON or not an object."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.lexists(path):
        return None
    config = read_small_json(path, CONFIG_LIMIT)
    if not isinstance(config, dict):
        raise FileFormatError(f"{path} holds a JSON {type(config).__name__}, not an object "
                              "of settings: not a Hugging Face config.json", path)
    return config


class _SafetensorsSource:
    """Shapes and tensors of a GPT-2 safetensors file, addressed by book params paths."""

    def __init__(self, file):
        from safetensors import SafetensorError, safe_open

        self.file = file
        try:
            self._f = safe_open(file, framework="np")
        except SafetensorError as exc:
            raise FileFormatError(f"{file} is not a readable safetensors file ({exc})",
                                  file) from None
        keys = list(self._f.keys())
        self.prefix = _PREFIX if any(k.startswith(_PREFIX) for k in keys) else ""
        self.keys = {k for k in keys if not _IGNORED.match(k)}
        blocks = {int(m.group(1)) for k in self.keys
                  if (m := re.match(rf"{re.escape(self.prefix)}h\.(\d{{1,9}})\.", k))}
        self.n_blocks = len(blocks)
        known = {self._key(p) for p in gpt2_param_paths(self.n_blocks)} | {"lm_head.weight"}
        unknown = sorted(self.keys - known)
        if unknown:
            warnings.warn(f"{file}: ignoring keys that are not GPT-2 weights: {unknown[:6]}"
                          f"{' ...' if len(unknown) > 6 else ''}", stacklevel=3)

    def _key(self, path):
        return _hf_name(path, self.prefix)

    def shape_of(self, path):
        key = self._key(path)
        return tuple(self._f.get_slice(key).get_shape()) if key in self.keys else None

    def get(self, path):
        key = self._key(path)
        try:
            return self._f.get_tensor(key)
        except (TypeError, ValueError) as exc:  # e.g. bfloat16, which NumPy lacks
            dtype = self._f.get_slice(key).get_dtype()
            raise FileFormatError(f"{self.file}: cannot read {key!r} of dtype {dtype} with "
                                  f"NumPy ({exc}); save the model in float32 or float16",
                                  self.file) from exc

    def untied_head(self):
        """True when the file has an lm_head.weight that differs from wte."""
        if "lm_head.weight" not in self.keys:
            return False
        if self.shape_of(("lm_head",)) != self.shape_of(("wte",)):
            return True  # load_into_gpt reports the shape problem
        return not np.array_equal(self.get(("lm_head",)), self.get(("wte",)))


def hf_config_to_gpt_config(config, drop_rate=0.0, *, path=None):
    """A GPTModel config from a Hugging Face GPT-2 config.json dict.

    Sizes must be whole numbers >= 1 and n_embd divisible by n_head; a problem is a
    ValueError, or a FileFormatError naming ``path`` when the dict was read from it."""
    where = path or "config.json"

    def fail(problem):
        message = f"{where} {problem}"
        raise FileFormatError(message, path) if path else ValueError(message)

    if not isinstance(config, dict):
        fail(f"must be a JSON object of settings, not a {type(config).__name__}")
    if config.get("model_type", "gpt2") != "gpt2":
        fail(f"has model_type {config.get('model_type')!r}, not 'gpt2'")
    context_key = next((k for k in ("n_positions", "n_ctx") if k in config), None)
    sizes = {k: config[k] for k in ("vocab_size", "n_embd", "n_head", "n_layer") if k in config}
    sizes[context_key or "n_positions"] = config[context_key] if context_key else 1024
    keys = ("vocab_size", context_key or "n_positions", "n_embd", "n_head", "n_layer")
    problem = sizes_problem(sizes, keys)
    if problem:
        fail(problem)
    act = config.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        exact = (" (the exact erf GELU, not GPT-2's tanh form)" if act in ("gelu", "gelu_python")
                 else "")
        fail(f"has activation_function {_short_repr(act)}{exact}: tinygpt computes only GPT-2's "
             f"tanh GELU ({', '.join(map(repr, TANH_GELUS))}), so it would compute another "
             "function; use a model trained with one of those")
    for key, (ours, effect) in _ATTENTION_SETTINGS.items():
        value = config.get(key, ours)
        if not isinstance(value, bool):
            fail(f"has {key}={_short_repr(value)}; it must be true or false")
        if value is not ours:
            fail(f"has {key}={str(value).lower()}: {effect}; tinygpt's attention computes "
                 f"GPT-2's {key}={str(ours).lower()} only, so it would compute another function")
    eps = config.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        fail(f"has layer_norm_epsilon {eps!r}, not a number >= 0")
    if abs(eps - 1e-5) > 1e-12:
        warnings.warn(f"{where} has layer_norm_epsilon {eps}; tinygpt uses 1e-5",
                      stacklevel=2)
    n_inner = config.get("n_inner")
    if n_inner is not None and (isinstance(n_inner, bool) or n_inner != 4 * sizes["n_embd"]):
        fail(f"has n_inner={n_inner!r}; tinygpt's feed-forward is 4 * n_embd = "
             f"{4 * sizes['n_embd']}")
    return {
        "vocab_size": int(sizes["vocab_size"]),
        "context_length": int(sizes[keys[1]]),
        "emb_dim": int(sizes["n_embd"]),
        "n_heads": int(sizes["n_head"]),
        "n_layers": int(sizes["n_layer"]),
        "drop_rate": float(drop_rate),
        "qkv_bias": True,
    }


def _settings(folder, source):
    """OpenAI-style hparams (n_vocab, n_ctx, n_embd, n_head, n_layer) from the folder's
    config.json, checked against the tensors' shapes before any model is built, or
    from the shapes alone when there is no config.json."""
    config = read_hf_config(folder)
    if config is not None:
        path = os.path.join(folder, CONFIG_NAME)
        cfg = hf_config_to_gpt_config(config, path=path)
        settings = {"n_vocab": cfg["vocab_size"], "n_ctx": cfg["context_length"],
                    "n_embd": cfg["emb_dim"], "n_head": cfg["n_heads"],
                    "n_layer": cfg["n_layers"]}
        problems = tensor_size_problems(settings, source.n_blocks, source.shape_of,
                                        source._key)
        if problems:
            raise FileFormatError(f"{path} and {source.file} disagree: " + "; ".join(problems)
                                  + ". Use the config.json that came with these weights", path)
        return settings
    wte, wpe = source.shape_of(("wte",)), source.shape_of(("wpe",))
    if wte is None or wpe is None or len(wte) != 2 or len(wpe) != 2:
        raise FileFormatError(f"{source.file} has no 2-D wte.weight / wpe.weight: not a GPT-2 "
                              "file", source.file)
    name = _size_for_emb_dim(wte[1])
    if name is None:
        raise ValueError(f"{source.file}: no config.json beside it and emb_dim {wte[1]} is not a "
                         "GPT-2 size, so the number of heads is unknown; add its config.json")
    settings = {"n_vocab": wte[0], "n_ctx": wpe[0], "n_embd": wte[1],
                "n_head": model_configs[name]["n_heads"], "n_layer": source.n_blocks}
    problems = tensor_size_problems(settings, source.n_blocks, source.shape_of, source._key)
    if problems:
        raise FileFormatError(f"{source.file} lacks GPT-2 tensors of the sizes its wte.weight "
                              "implies, or they have other shapes: " + "; ".join(problems),
                              source.file)
    return settings


def load_hf_gpt2_params(path):
    """Read a Hugging Face GPT-2 into ``(settings, params)`` like ``download_and_load_gpt2``.

    ``path`` is a model folder (with model.safetensors, and config.json if any)
    or the .safetensors file. ``params`` gets an ``"lm_head"`` entry only when
    the output head is not tied to ``wte``.
    """
    file, folder = _locate(path)
    source = _SafetensorsSource(file)
    settings = _settings(folder, source)
    params = {"blocks": [{} for _ in range(source.n_blocks)]}
    paths = gpt2_param_paths(source.n_blocks)
    missing = [source._key(p) for p in paths if source.shape_of(p) is None]
    if missing:
        raise FileFormatError(f"{file} lacks GPT-2 tensors {missing[:8]}"
                              f"{' ...' if len(missing) > 8 else ''}", file)
    if source.untied_head():
        paths = paths + [("lm_head",)]
    for p in paths:
        _nested_set(params, p, source.get(p))
    return settings, params


def load_hf_gpt2_into_gpt(gpt, path):
    """Copy a Hugging Face GPT-2 into an existing GPTModel, one tensor at a time.

    All or nothing: shapes, then every tensor's values (no NaN or infinity), are
    checked before the first weight changes (errors name the key; the model is left
    unchanged); an untied ``lm_head.weight`` goes to ``out_head``.
    """
    file, _ = _locate(path)
    source = _SafetensorsSource(file)
    return load_into_gpt(gpt, file, source.n_blocks, source.shape_of, source.get,
                         untied_head=source.untied_head())


def load_hf_gpt2(path, *, model_cls=None, drop_rate=0.0):
    """A new GPTModel (eval mode) with the weights and config of a Hugging Face GPT-2."""
    if model_cls is None:
        from ..model import GPTModel as model_cls
    file, folder = _locate(path)
    source = _SafetensorsSource(file)
    gpt = model_cls(config_from_hparams(_settings(folder, source), drop_rate))
    load_into_gpt(gpt, file, source.n_blocks, source.shape_of, source.get,
                  untied_head=source.untied_head())
    gpt.eval()
    return gpt


def export_hf_gpt2(model, folder):
    """Write ``model`` as a Hugging Face GPT-2: ``folder/model.safetensors`` + ``config.json``.

    ``GPT2LMHeadModel.from_pretrained(folder)`` reads the result. The head is
    saved as tied (no ``lm_head.weight``, ``tie_word_embeddings: true``) when
    ``out_head`` equals ``tok_emb`` exactly, else as its own tensor. A model
    built with ``qkv_bias=False`` gets zero ``c_attn`` biases (same function).
    Memory: one extra copy of the weights (the transposed Conv1D layout).
    Each file is written atomically (a private temporary beside it, then a rename) with
    the mode of a new file, replacing a file of that name; a path where a file (not a
    folder) stands is refused. Returns the folder.
    """
    sd = {name: to_numpy(p.array) for name, p in model.named_parameters()}
    tensors, tied = _hf_tensors(sd, model.cfg["n_layers"])
    config = _hf_config(model.cfg, tied, str(sd["tok_emb.weight"].dtype))

    folder = os.fspath(folder)
    _export_folder(folder)
    # each file atomically, weights first: config.json describes weights already in place
    atomic_write(os.path.join(folder, SAFETENSORS_NAME),  # transformers wants format "pt"
                 lambda tmp: save_safetensors(tmp, tensors, {"format": "pt"}))
    atomic_write_text(os.path.join(folder, CONFIG_NAME), json.dumps(config, indent=2) + "\n")
    return folder


def _hf_tensors(sd, L):
    """The state dict ``sd`` (host arrays) under Hugging Face's GPT-2 names: the weight map
    read backwards (Linear weights as Conv1D, query, key and value joined into c_attn);
    returns (tensors, whether the head is tied)."""
    tied = bool(np.array_equal(sd["out_head.weight"], sd["tok_emb.weight"]))
    tensors = {}
    for path, shape, rows in by_gpt2_array(_weight_map_of(sd, L, untied_head=not tied)):
        key = _hf_name(path, _PREFIX)
        if path[-2:] == ("c_attn", "b") and rows[0].parameter not in sd:
            # qkv_bias=False: zero biases compute the same function
            tensors[key] = np.zeros(shape, dtype=sd["tok_emb.weight"].dtype)
        else:
            tensors[key] = as_gpt2_array([sd[row.parameter] for row in rows], rows)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}  # for safetensors
    return tensors, tied


def _hf_config(cfg, tied, dtype):
    """config.json of a Hugging Face GPT-2 with the book's config ``cfg``."""

    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg["vocab_size"],
        "n_positions": cfg["context_length"],
        "n_ctx": cfg["context_length"],
        "n_embd": cfg["emb_dim"],
        "n_layer": cfg["n_layers"],
        "n_head": cfg["n_heads"],
        "n_inner": None,
        "activation_function": "gelu_new",  # the tanh GELU of the book
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg["drop_rate"],
        "embd_pdrop": cfg["drop_rate"],
        "attn_pdrop": cfg["drop_rate"],
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "use_cache": True,
    }
    if cfg["vocab_size"] > 50256:
        config["bos_token_id"] = config["eos_token_id"] = 50256  # <|endoftext|>
    return config


def _export_folder(folder):
    """Create the export's folder, or refuse, saying what stands there instead."""
    what = (f"export_hf_gpt2 writes a folder ({SAFETENSORS_NAME} and {CONFIG_NAME}); pass the "
            "path of a folder, new or existing (files of those names in it are replaced)")
    if os.path.islink(folder) and not os.path.exists(folder):
        raise FileExistsError(errno.EEXIST, f"cannot export to {folder}: it is a symbolic link "
                              f"to {os.readlink(folder)}, which does not exist; {what}")
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise FileExistsError(errno.EEXIST, f"cannot export to {folder}: a file of that name "
                              f"exists; {what}")
    os.makedirs(folder, exist_ok=True)
