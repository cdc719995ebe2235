"""Finding, checking and downloading "The Verdict", with a local HTTP server only."""

import os
import time
from pathlib import Path

import pytest

from tinygpt.errors import DownloadError, VerdictChecksumError, VerdictNotFoundError
from tinygpt.io.textsource import (
    VERDICT_FILENAME,
    VERDICT_MAX_BYTES,
    VERDICT_SHA256,
    VERDICT_URL,
    default_cache_dir,
    download_verdict,
    find_verdict,
    load_verdict,
    verdict_url,
)

from .helpers.file_server import FileServer, HostileServer, closed_port_url, endless, trickle


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test here sees the user's settings or reaches the internet.

    TINYGPT_VERDICT_URL points at a closed local port (a test that forgets
    url= gets "connection refused", never GitHub), and the cache defaults to a
    folder under tmp_path.
    """
    for name in ("TINYGPT_DATA", "TINYGPT_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TINYGPT_VERDICT_URL", closed_port_url(VERDICT_FILENAME))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def verdict_bytes(verdict_path):
    return verdict_path.read_bytes()


@pytest.fixture(scope="module")
def corrupted_bytes(verdict_bytes):
    return verdict_bytes.replace(b"Gisburn", b"Gisborn", 1)


@pytest.fixture(scope="module")
def server(verdict_bytes, corrupted_bytes):
    srv = FileServer({"/the-verdict.txt": verdict_bytes, "/corrupted.txt": corrupted_bytes})
    yield srv
    srv.close()


@pytest.fixture
def hits(server):
    """The paths the server was asked to GET during the test, as a call: hits()."""
    server.requests.clear()
    return lambda: [path for method, path, _ in server.requests if method == "GET"]


def _no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name != VERDICT_FILENAME] == []


# --- explicit path ----------------------------------------------------------------------------


def test_explicit_path_is_used_as_is(tmp_path):
    own = tmp_path / "my-story.txt"
    own.write_text("A text of my own, not the verdict.\n", encoding="utf-8")
    assert find_verdict(own) == own  # no checksum for the user's own text
    assert load_verdict(str(own)) == "A text of my own, not the verdict.\n"


def test_explicit_path_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        find_verdict(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        find_verdict(tmp_path)


# --- TINYGPT_DATA / data_dir ------------------------------------------------------------------


def test_env_data_folder(monkeypatch, tmp_path, verdict_bytes):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / VERDICT_FILENAME).write_bytes(verdict_bytes)
    monkeypatch.setenv("TINYGPT_DATA", str(folder))
    assert find_verdict() == folder / VERDICT_FILENAME
    text = load_verdict()
    assert len(text) == 20479


def test_data_dir_argument_wins_over_env(monkeypatch, tmp_path, verdict_bytes):
    env_folder, arg_folder = tmp_path / "env", tmp_path / "arg"
    for folder in (env_folder, arg_folder):
        folder.mkdir()
        (folder / VERDICT_FILENAME).write_bytes(verdict_bytes)
    monkeypatch.setenv("TINYGPT_DATA", str(env_folder))
    assert find_verdict(data_dir=arg_folder) == arg_folder / VERDICT_FILENAME


def test_env_data_folder_with_wrong_file(monkeypatch, tmp_path, corrupted_bytes):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / VERDICT_FILENAME).write_bytes(corrupted_bytes)
    monkeypatch.setenv("TINYGPT_DATA", str(folder))
    with pytest.raises(VerdictChecksumError) as info:
        find_verdict()
    msg = str(info.value)
    assert "TINYGPT_DATA" in msg and VERDICT_SHA256 in msg and "--text PATH" in msg


def test_crlf_copy_counts_as_the_verdict(tmp_path, verdict_bytes, verdict_text):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / VERDICT_FILENAME).write_bytes(verdict_bytes.replace(b"\n", b"\r\n"))
    assert load_verdict(data_dir=folder) == verdict_text


def test_env_data_folder_without_file_falls_through(monkeypatch, tmp_path, verdict_bytes):
    monkeypatch.setenv("TINYGPT_DATA", str(tmp_path / "empty"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / VERDICT_FILENAME).write_bytes(verdict_bytes)
    assert find_verdict(cache_dir=cache) == cache / VERDICT_FILENAME


# --- the cache --------------------------------------------------------------------------------


def test_default_cache_dir_order(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tinygpt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tinygpt"
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_cached_copy_is_used_without_network(monkeypatch, tmp_path, verdict_bytes, verdict_text):
    cache = tmp_path / "mine"
    cache.mkdir()
    (cache / VERDICT_FILENAME).write_bytes(verdict_bytes)
    monkeypatch.setenv("TINYGPT_CACHE", str(cache))
    assert find_verdict(download=False) == cache / VERDICT_FILENAME
    assert load_verdict() == verdict_text  # the default URL is a closed port: no download


def test_corrupted_cache_without_download(tmp_path, corrupted_bytes):
    (tmp_path / VERDICT_FILENAME).write_bytes(corrupted_bytes)
    with pytest.raises(VerdictChecksumError, match="in the cache"):
        find_verdict(cache_dir=tmp_path, download=False)


def test_corrupted_cache_is_replaced_by_download(
    tmp_path, server, hits, corrupted_bytes, verdict_bytes
):
    (tmp_path / VERDICT_FILENAME).write_bytes(corrupted_bytes)
    with pytest.warns(UserWarning, match="downloading a fresh copy"):
        path = find_verdict(cache_dir=tmp_path, url=f"{server.url}/the-verdict.txt")
    assert path.read_bytes() == verdict_bytes
    assert hits() == ["/the-verdict.txt"]


# --- downloading ------------------------------------------------------------------------------


def test_download_into_cache(tmp_path, server, hits, verdict_bytes, verdict_text):
    cache = tmp_path / "new" / "cache"  # created on demand
    url = f"{server.url}/the-verdict.txt"
    path = find_verdict(cache_dir=cache, url=url)
    assert path == cache / VERDICT_FILENAME
    assert path.read_bytes() == verdict_bytes
    assert _no_temp_files(cache)
    assert hits() == ["/the-verdict.txt"]
    # A second call finds the cached copy and does not download again.
    assert load_verdict(cache_dir=cache, url=url) == verdict_text
    assert hits() == ["/the-verdict.txt"]


def test_download_url_from_env(monkeypatch, tmp_path, server, hits):
    monkeypatch.setenv("TINYGPT_VERDICT_URL", f"{server.url}/the-verdict.txt")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert verdict_url() == f"{server.url}/the-verdict.txt"
    assert find_verdict() == tmp_path / "xdg" / "tinygpt" / VERDICT_FILENAME
    assert hits() == ["/the-verdict.txt"]


def test_corrupted_download_is_refused(tmp_path, server, hits):
    url = f"{server.url}/corrupted.txt"
    with pytest.raises(VerdictChecksumError) as info:
        find_verdict(cache_dir=tmp_path, url=url)
    msg = str(info.value)
    assert url in msg and VERDICT_SHA256 in msg
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file
    assert hits() == ["/corrupted.txt"]


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(VerdictNotFoundError, match="404"):
        find_verdict(cache_dir=tmp_path, url=f"{server.url}/missing.txt")


# --- offline ----------------------------------------------------------------------------------


def _assert_explains_how_to_supply(msg, cache):
    assert "--text PATH" in msg
    assert "TINYGPT_DATA" in msg
    assert str(cache / VERDICT_FILENAME) in msg
    assert "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/" in msg
    assert "\n" not in msg  # one paragraph


def test_offline_error_explains_how_to_supply(tmp_path):
    url = closed_port_url(VERDICT_FILENAME)
    with pytest.raises(VerdictNotFoundError) as info:
        find_verdict(cache_dir=tmp_path / "cache", url=url)
    msg = str(info.value)
    _assert_explains_how_to_supply(msg, tmp_path / "cache")
    assert url in msg and "failed" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_offline_error_with_defaults(monkeypatch, tmp_path):
    # No url=: the URL comes from TINYGPT_VERDICT_URL (a closed port, see isolated_env).
    monkeypatch.setenv("TINYGPT_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(VerdictNotFoundError) as info:
        load_verdict()
    msg = str(info.value)
    _assert_explains_how_to_supply(msg, tmp_path / "home" / ".cache" / "tinygpt")
    assert "nothing-here" in msg  # says where it looked


def test_download_disabled(tmp_path, server, hits):
    with pytest.raises(VerdictNotFoundError, match="downloading is turned off"):
        find_verdict(cache_dir=tmp_path, url=f"{server.url}/the-verdict.txt", download=False)
    assert hits() == []


def test_default_url(monkeypatch):
    monkeypatch.delenv("TINYGPT_VERDICT_URL")
    assert verdict_url() == VERDICT_URL
    assert verdict_url("http://127.0.0.1:9/x.txt") == "http://127.0.0.1:9/x.txt"
    assert VERDICT_URL == (
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
        "01_main-chapter-code/the-verdict.txt"
    )
    assert os.path.basename(VERDICT_URL) == VERDICT_FILENAME


# --- hostile servers: the download is bounded in bytes and in time ----------------------------


@pytest.fixture
def hostile():
    srv = HostileServer({"/trickle": b"y" * 20479}, {"endless": endless, "trickle": trickle})
    yield srv
    srv.close()


def test_unbounded_download_endless_body_stops_at_the_cap(tmp_path, hostile):
    started = time.perf_counter()
    with pytest.raises(VerdictNotFoundError, match="more than 65,536 bytes") as info:
        find_verdict(cache_dir=tmp_path, url=hostile.url + "/endless")
    assert time.perf_counter() - started < 10
    assert "\n" not in str(info.value) and "--text PATH" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the partial file is deleted


def test_unbounded_download_trickling_server_stops_at_the_deadline(tmp_path, hostile):
    """Each read waits at most ``timeout``; a byte every 0.2 s never trips it, the overall
    deadline does (the GPT-2 downloader's, shared)."""
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="deadline of 1 s"):
        download_verdict(tmp_path, hostile.url + "/trickle", timeout=5.0, deadline=1.0)
    assert time.perf_counter() - started < 5
    assert not (tmp_path / VERDICT_FILENAME).exists()


def test_download_is_capped_near_the_known_size():
    assert 20_479 < VERDICT_MAX_BYTES <= 4 * 20_479
