"""tinygpt: chapter 5 of *Build a Large Language Model (From Scratch)* on NumPy.

The book's names are kept so the source reads beside the book, and the package answers
to PyTorch's names where the book calls PyTorch: ``import tinygpt as torch`` and
``import tinygpt.nn as nn`` run the book's code (``tensors.py`` has the functions).

Reading order, one floor at a time:

    the chapter    tokenizer.py   text to token ids and back (GPT-2's byte-pair encoding)
                   data.py        the 90/10 split, GPTDatasetV1, create_dataloader_v1
                   model.py       GPTModel and its parts: attention, layer norm, GELU
                   loss.py        cross-entropy in the book's steps, perplexity
                   train.py       calc_loss_batch, train_model_simple, plot_losses
                   generation.py  generate_text_simple, generate, generate_fast
                   kv_cache.py    the model's forward one new position at a time
                   sampling.py    temperature, top-k, top-p
    the engine     autograd.py    Function, the graph fields, backward (first 120 lines)
                   ops.py         the primitive ops: forward and backward, on arrays
                   fused.py       the fast path's fused ops, and AdamW's update
                   tensor.py      the Tensor class; views.py, inplace.py, versions.py
                   backend.py     NumPy or CuPy, and the random generators (Philox too)
                   tensors.py     torch's functions: tensor, zeros, cat, where, ...
                   nn/, optim/    torch.nn's layers, AdamW
    the floors     io/            file formats: checkpoints, torch.save, GPT-2's weights
                   cuda/          the GPU kernels in place of the fused ops
                   app/           the ``tinygpt`` command, its training runs, selftest

``import tinygpt`` gives the book's names and torch's; the helpers stay in their modules
(``tinygpt.io.checkpoint.save_model``, ``tinygpt.errors.CheckpointError``, ...). The
training loop and the command line load on first use, so reading a model file never
imports them.
"""

import importlib as _importlib

from . import nn, optim, utils
from .backend import get_rng_state, set_rng_state
from .cuda import overrides as _overrides  # the GPU kernels register for the fused ops
from .data import GPTDatasetV1, create_dataloader_v1
from .fast_path import use_fused
from .generation import generate, generate_text_simple
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .io.pretrained import (
    assign,
    download_and_load_gpt2,
    gpt2_config,
    load_weights_into_gpt,
    model_configs,
)
from .io.serialization import load, save
from .io.textsource import load_verdict
from .loss import cross_entropy, perplexity
from .model import (
    GELU,
    GPT_CONFIG_124M,
    FeedForward,
    GPTModel,
    LayerNorm,
    MultiHeadAttention,
    TransformerBlock,
)
from .optim import AdamW
from .runtime import get_num_threads, set_num_threads
from .sampling import (
    TOY_INVERSE_VOCAB,
    TOY_NEXT_TOKEN_LOGITS,
    TOY_VOCAB,
    print_sampled_tokens,
    softmax_with_temperature,
)
from .tensor import Tensor
from .tensors import *  # noqa: F403  torch's names: tensor, zeros, cat, manual_seed, ...
from .tensors import DTYPES as _DTYPES
from .tensors import __all__ as _TORCH_NAMES
from .tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text

__version__ = "0.1.0"
globals().update(_DTYPES)  # last: torch.float, torch.int, torch.bool shadow builtins here

# The training loop loads on first use (PEP 562), with tqdm and matplotlib behind it.
_FROM_TRAIN = ("calc_loss_batch", "calc_loss_loader", "evaluate_model",
               "generate_and_print_sample", "plot_losses", "train_model_simple")
_ON_FIRST_USE = ("train", "app")

# float, int and bool stay out of ``from tinygpt import *``: they would shadow builtins
__all__ = sorted(set(_TORCH_NAMES) | set(_FROM_TRAIN) | {
    "AdamW", "FeedForward", "GELU", "GPTDatasetV1", "GPTModel", "GPT_CONFIG_124M", "LayerNorm",
    "MultiHeadAttention", "TOY_INVERSE_VOCAB", "TOY_NEXT_TOKEN_LOGITS", "TOY_VOCAB", "Tensor",
    "TransformerBlock", "assign", "create_dataloader_v1", "cross_entropy",
    "download_and_load_gpt2", "enable_grad", "generate", "generate_text_simple",
    "get_num_threads", "get_rng_state", "get_tokenizer", "gpt2_config", "is_grad_enabled",
    "load", "load_verdict", "load_weights_into_gpt", "manual_seed", "model_configs", "nn",
    "no_grad", "optim", "perplexity", "print_sampled_tokens", "save", "set_num_threads",
    "set_rng_state", "softmax_with_temperature", "text_to_token_ids", "token_ids_to_text",
    "use_fused", "utils", "Generator",
})

_MODULES = ("tokenizer", "data", "model", "train", "generation", "sampling", "autograd", "ops",
            "backend", "tensors", "io", "app")


def __getattr__(name):
    if name in _FROM_TRAIN:
        value = getattr(_importlib.import_module(".train", __name__), name)
        globals()[name] = value
        return value
    if name in _ON_FIRST_USE:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | set(_DTYPES) | set(_MODULES) | {"__version__"})
