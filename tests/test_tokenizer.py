"""GPT-2 tokenizer built offline: same ids as tiktoken's own "gpt2", the book's examples."""

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tinygpt.errors import TokenizerFilesError
from tinygpt.tokenizer import (
    ENCODER_JSON_SHA256,
    ENDOFTEXT_ID,
    N_VOCAB,
    VOCAB_BPE_SHA256,
    get_tokenizer,
    gpt2_data_files,
    gpt2_encoding_from_files,
    text_to_token_ids,
    token_ids_to_text,
)

CORPUS = [
    "",
    "Hello, world!",
    "Every effort moves you",
    "every effort moves",
    "I really like chocolate",
    "  leading and trailing spaces  ",
    "multiple     spaces   between\twords\t\ttabs",
    "line one\nline two\n\n\nafter blank lines\n",
    "windows\r\nline\r\nendings\r\n",
    "trailing whitespace run   \n   \n",
    "numbers 1234567890 3.14159 -42 1,000,000 2024-01-31 007",
    "contractions: I'm you're he's we've they'll she'd don't CAN'T it's O'Neil",
    "quotes \"double\" 'single' `back` and --dashes-- and...ellipses",
    "emoji 😀🚀👍🏽 family 👨‍👩‍👧 flags 🇰🇷🇫🇷",
    "CJK 中文字符测试 日本語のテキストです",
    "Korean 한국어 텍스트를 토큰화합니다. 안녕하세요!",
    "accents café naïve Zürich façade Ångström",
    "odd bytes \u00a0nbsp\u00adsoft-hyphen \x00\x01\x7f control",
    "code: def f(x):\n    return x ** 2  # comment\n",
    "<|endoftext|>",
    "first text<|endoftext|>second text",
    "almost special <|endoftext| and <endoftext|>",
    "URL https://example.com/path?q=1&r=2#frag e-mail a.b@c.de",
]


def _random_texts(n=20, length=60, seed=0):
    """Strings of random code points across many scripts (no surrogates)."""
    rng = np.random.default_rng(seed)
    ranges = [
        (0x20, 0x7F),
        (0xA0, 0x250),
        (0x370, 0x530),
        (0x3040, 0x30FF),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3),
        (0x1F300, 0x1FAFF),
        (0x9, 0xE),
    ]
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(length):
            lo, hi = ranges[rng.integers(len(ranges))]
            chars.append(chr(int(rng.integers(lo, hi))))
        texts.append("".join(chars))
    return texts


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


# --- the files and the encoding ---------------------------------------------------------------


def test_pinned_hashes_match_installed_tiktoken():
    import tiktoken_ext.openai_public

    source = Path(tiktoken_ext.openai_public.__file__).read_text(encoding="utf-8")
    gpt2_source = source[source.index("def gpt2(") : source.index("def r50k_base(")]
    assert re.search(rf'vocab_bpe_hash="{VOCAB_BPE_SHA256}"', gpt2_source)
    assert re.search(rf'encoder_json_hash="{ENCODER_JSON_SHA256}"', gpt2_source)


def test_encoding_properties(tok):
    assert tok.name == "gpt2"
    assert tok.n_vocab == N_VOCAB == 50257
    assert tok.eot_token == ENDOFTEXT_ID == 50256
    assert get_tokenizer() is tok  # cached


def test_same_vocabulary_as_tiktoken(tok, tiktoken_gpt2):
    ours = [tok.decode_single_token_bytes(i) for i in range(N_VOCAB)]
    theirs = [tiktoken_gpt2.decode_single_token_bytes(i) for i in range(N_VOCAB)]
    assert ours == theirs
    assert tok.special_tokens_set == tiktoken_gpt2.special_tokens_set


@pytest.mark.parametrize("text", CORPUS + _random_texts(), ids=lambda t: repr(t[:20]))
def test_ids_identical_to_tiktoken(tok, tiktoken_gpt2, text):
    allowed = {"<|endoftext|>"}
    ours = tok.encode(text, allowed_special=allowed)
    assert ours == tiktoken_gpt2.encode(text, allowed_special=allowed)
    assert tok.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert tok.decode(ours) == text


def test_verdict_identical_to_tiktoken(tok, tiktoken_gpt2, verdict_text):
    assert tok.encode(verdict_text) == tiktoken_gpt2.encode(verdict_text)


def test_verdict_counts(tok, verdict_text):
    # The book: "Characters: 20479", "Tokens: 5145".
    assert len(verdict_text) == 20479
    assert len(tok.encode(verdict_text)) == 5145


def test_special_token_needs_allowing(tok):
    with pytest.raises(ValueError):
        tok.encode("a<|endoftext|>b")  # tiktoken refuses special tokens by default
    assert tok.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})[1] == 50256


def test_built_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    enc = gpt2_encoding_from_files(*gpt2_data_files())
    assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]


def test_tiktoken_cache_is_neither_written_nor_read(tmp_path, monkeypatch):
    """tiktoken's loader reads local paths through its download cache; ours must not."""
    encoder_json, vocab_bpe = gpt2_data_files()
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    # a poisoned entry where tiktoken would look for vocab.bpe: must not be used
    (cache / hashlib.sha1(str(vocab_bpe).encode()).hexdigest()).write_bytes(b"#version\n")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    enc = gpt2_encoding_from_files(encoder_json, vocab_bpe)
    assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert len(list(cache.iterdir())) == 1 and os.environ["TIKTOKEN_CACHE_DIR"] == str(cache)
    # nor the default cache (a folder in the temp dir) when no cache is configured
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    gpt2_encoding_from_files(encoder_json, vocab_bpe)
    assert not (tmp_path / "tmp").exists() and "TIKTOKEN_CACHE_DIR" not in os.environ


# --- bad vocabulary files -------------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path):
    encoder_json, vocab_bpe = gpt2_data_files()
    enc, bpe = tmp_path / "encoder.json", tmp_path / "vocab.bpe"
    shutil.copyfile(encoder_json, enc)
    shutil.copyfile(vocab_bpe, bpe)
    return enc, bpe


def test_corrupted_file_is_refused(data_copy):
    enc, bpe = data_copy
    bpe.write_bytes(bpe.read_bytes().replace(b"\n\xc4\xa0 t\n", b"\n\xc4\xa0 x\n", 1))
    with pytest.raises(TokenizerFilesError, match=r"vocab\.bpe has sha256 .*reinstall"):
        gpt2_encoding_from_files(enc, bpe)


def test_missing_file_is_refused(data_copy):
    enc, bpe = data_copy
    enc.unlink()
    with pytest.raises(TokenizerFilesError, match="does not exist"):
        gpt2_encoding_from_files(enc, bpe)


def test_merges_out_of_order_are_refused(data_copy):
    # Swapping two merges breaks "rank == merge priority", which tiktoken relies on.
    enc, bpe = data_copy
    lines = bpe.read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]
    bpe.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(TokenizerFilesError, match="do not belong together"):
        gpt2_encoding_from_files(enc, bpe, check_sha256=False)


def test_a_token_outside_the_byte_alphabet_is_refused(data_copy):
    enc, bpe = data_copy
    bpe.write_bytes(bpe.read_bytes().replace(b"\n\xc4\xa0 t\n", b"\n\xe2\x82\xac t\n", 1))
    with pytest.raises(TokenizerFilesError, match="not GPT-2's data-gym files"):
        gpt2_encoding_from_files(enc, bpe, check_sha256=False)


# --- text_to_token_ids / token_ids_to_text (listing 5.1) ------------------------------------


def test_book_examples(tok):
    ids = text_to_token_ids("Every effort moves you", tok)
    assert ids.shape == (1, 4) and ids.dtype == np.int64
    assert ids.tolist() == [[6109, 3626, 6100, 345]]
    assert text_to_token_ids("every effort moves", tok).tolist() == [[16833, 3626, 6100]]
    assert text_to_token_ids("I really like", tok).tolist() == [[40, 1107, 588]]
    assert text_to_token_ids(" effort moves you", tok).tolist() == [[3626, 6100, 345]]
    assert text_to_token_ids(" really like chocolate", tok).tolist() == [[1107, 588, 11311]]
    assert token_ids_to_text(ids, tok) == "Every effort moves you"


def test_text_to_token_ids_allows_endoftext(tok):
    ids = text_to_token_ids("Hi<|endoftext|>", tok)
    assert ids[0, -1] == 50256
    assert text_to_token_ids("", tok).shape == (1, 0)


@pytest.mark.parametrize("text", CORPUS, ids=lambda t: repr(t[:20]))
def test_round_trip(tok, text):
    assert token_ids_to_text(text_to_token_ids(text, tok), tok) == text


class _TensorLike:
    """Stands in for tinygpt.autograd.Tensor: the array is in ``.data``."""

    def __init__(self, data):
        self.data = data


@pytest.mark.parametrize(
    "wrap",
    [
        lambda a: a,  # (1, n) int64
        lambda a: a[0],  # (n,)
        lambda a: a.int(),  # int32
        lambda a: a.tolist(),  # [[...]]
        lambda a: a[0].tolist(),  # [...]
        lambda a: _TensorLike(a),
        lambda a: _TensorLike(a[0]),
    ],
    ids=["2d", "1d", "int32", "nested-list", "list", "tensor-2d", "tensor-1d"],
)
def test_token_ids_to_text_accepts(tok, wrap):
    ids = text_to_token_ids("Every effort moves you", tok)
    assert token_ids_to_text(wrap(ids), tok) == "Every effort moves you"


def test_token_ids_to_text_empty(tok):
    assert token_ids_to_text([], tok) == ""
    assert token_ids_to_text(np.zeros((1, 0), dtype=np.int64), tok) == ""


def test_token_ids_to_text_errors(tok):
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*one row at a time"):
        token_ids_to_text(np.zeros((2, 3), dtype=np.int64), tok)
    with pytest.raises(ValueError, match="integers"):
        token_ids_to_text(np.array([1.0, 2.0]), tok)
    with pytest.raises(ValueError, match=r"\[0, 50257\)"):
        token_ids_to_text([50257], tok)
    with pytest.raises(ValueError, match=r"\[0, 50257\)"):
        token_ids_to_text([-1], tok)
    with pytest.raises(TypeError, match="str"):
        text_to_token_ids(["not", "a", "string"], tok)
