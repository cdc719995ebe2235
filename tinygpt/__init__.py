"""tinygpt: chapter 5 of *Build a Large Language Model (From Scratch)* on NumPy.

The book's names are kept so the source reads beside the book, and the package answers
to PyTorch's names where the book calls PyTorch: ``import tinygpt as torch`` and
``import tinygpt.nn as nn`` run the book's code (``tensors.py`` has the functions).
"""

from . import nn, optim, utils
from .autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from .backend import BackendError, get_rng, get_rng_state, manual_seed, set_rng_state
from .data import DataLoader, Dataset, GPTDatasetV1, create_dataloader_v1
from .errors import (
    CheckpointError,
    DownloadError,
    FileFormatError,
    TFCheckpointError,
    TinygptError,
    TokenizerFilesError,
    VerdictChecksumError,
    VerdictNotFoundError,
)
from .fast_path import is_fused_enabled, use_fused
from .generation import (
    UncachedDecoder,
    generate,
    generate_fast,
    generate_stream,
    generate_text_simple,
)
from .io.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint, save_model
from .io.hf_gpt2 import export_hf_gpt2, load_hf_gpt2, load_hf_gpt2_into_gpt
from .io.pretrained import (
    assign,
    download_and_load_gpt2,
    gpt2_config,
    load_pretrained_gpt2,
    load_weights_into_gpt,
    model_configs,
)
from .io.serialization import load, save
from .io.textsource import find_verdict, load_verdict
from .kv_cache import CachedDecoder, KVCache, cached_next_logits
from .model import (
    GELU,
    GPT_CONFIG_124M,
    FeedForward,
    GPTModel,
    LayerNorm,
    MultiHeadAttention,
    TransformerBlock,
    validate_config,
)
from .nn import Dropout, Embedding, Linear, Module, Parameter, Sequential
from .ops import cross_entropy, perplexity
from .optim import AdamW
from .runtime import get_num_threads, keep_freed_memory_for_reuse, set_num_threads
from .sampling import (
    TOY_INVERSE_VOCAB,
    TOY_NEXT_TOKEN_LOGITS,
    TOY_VOCAB,
    next_token_probabilities,
    print_sampled_tokens,
    process_logits,
    sample_next_token,
    softmax_with_temperature,
    validate_sampling_args,
)
from .tensors import *  # noqa: E402,F403  torch's names: tensor, zeros, cat, where, ...
from .tensors import DTYPES as _DTYPES
from .tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text
from .train import (
    TrainingDivergedError,
    TrainingState,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
    generate_and_print_sample,
    plot_losses,
    train_model,
    train_model_simple,
)

__version__ = "0.1.0"
globals().update(_DTYPES)  # last: torch.float, torch.int, torch.bool shadow builtins here
