"""Hostile GPT-2 files and servers: OpenAI's folders, Hugging Face folders and
the download. Each input ends in the right result or one clear error naming the file
(a FileFormatError, exit 2 from the command line), in time and memory bounded by the
input's real size, and leaves model and files as they were when it fails. Tests are
named after the failure they guard against: an unbounded allocation or wait, a silent
wrong result, an unclear error."""

import json
import math
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tinygpt.errors import (
    ChecksumError,
    DownloadError,
    FileFormatError,
    GPT2FilesMissingError,
    TFCheckpointError,
)
from tinygpt.io.hf_gpt2 import export_hf_gpt2, load_hf_gpt2, load_hf_gpt2_into_gpt
from tinygpt.io.pretrained import (
    GPT2_FILES,
    download_and_load_gpt2,
    download_gpt2_files,
    gpt2_config,
    load_gpt2_folder,
    load_gpt2_params_from_tf_ckpt,
    load_pretrained_gpt2,
    load_tf_ckpt_into_gpt,
    load_weights_into_gpt,
)
from tinygpt.io.tf_checkpoint import CheckpointReader
from tinygpt.model import GPTModel

from ..helpers.assertions import host
from ..helpers.file_server import HostileServer, closed_port_url, endless, trickle
from ..helpers.gpt2_fixtures import _entry_proto, _header_proto, _write_sstable, write_gpt2_folder

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(os.name != "posix", reason="sockets and paths as on POSIX")]

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZES = {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_ctx": 16, "n_vocab": 64}
DATA = "model.ckpt.data-00000-of-00001"
MB = 1 << 20


# --- fixtures: one small OpenAI folder and one Hugging Face folder, copied per test --------


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """A synthetic OpenAI "124M" folder and the sha256 of its BPE stand-ins."""
    folder = tmp_path_factory.mktemp("origin") / "124M"
    hashes = write_gpt2_folder(folder, **SIZES)
    return folder, {name: hashes[name] for name in ("encoder.json", "vocab.bpe")}


@pytest.fixture
def models(origin, tmp_path):
    """models_dir/124M: a fresh copy of the origin folder, for a test to damage."""
    shutil.copytree(origin[0], tmp_path / "models" / "124M")
    return tmp_path / "models"


@pytest.fixture(scope="module")
def hf_origin(tmp_path_factory):
    model = GPTModel(gpt2_config("gpt2-small", vocab_size=64, context_length=16, emb_dim=32,
                                 n_heads=4, n_layers=2))
    return export_hf_gpt2(model, tmp_path_factory.mktemp("hf") / "gpt2")


@pytest.fixture
def hf(hf_origin, tmp_path):
    return Path(shutil.copytree(hf_origin, tmp_path / "hf"))


def _edit_json(path, change):
    value = json.loads(Path(path).read_text())
    Path(path).write_text(json.dumps(change(value)))


def _no_model(cfg):
    raise AssertionError("a model was built before the sizes were checked")


def _snapshot(model):
    return {k: host(p.data).copy() for k, p in model.named_parameters()}


def _assert_unchanged(model, snapshot):
    for k, p in model.named_parameters():
        assert np.array_equal(host(p.data), snapshot[k]), f"{k} was overwritten"


def _model():
    return GPTModel(gpt2_config("gpt2-small", vocab_size=64, context_length=16, emb_dim=32,
                                n_heads=4, n_layers=2))


class _Peak:
    """Peak bytes Python and NumPy allocate inside the block (tracemalloc)."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# --- the command line ------------------------------------------------------------------------




@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    dead = closed_port_url()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8",
               TINYGPT_CACHE=str(tmp_path_factory.mktemp("cache")), TINYGPT_GPT2_URL=dead,
               TINYGPT_GPT2_BACKUP_URL=dead, TINYGPT_VERDICT_URL=dead + "/v.txt")
    env.pop("TINYGPT_DATA", None)
    return env


def _cli_error(env, *args, fragments=()):
    """Run ``tinygpt ARGS``: it must fail with exit 2 and one clear ``tinygpt: error:``
    line (not "may be a bug") holding every fragment; returns that line."""
    result = subprocess.run([sys.executable, "-m", "tinygpt", *map(str, args)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            encoding="utf-8", timeout=90)
    stderr = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("tinygpt: error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "may be a bug" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"
    return errors[0]


# --- 1. sizes in hparams.json / config.json are checked against the tensors first ----------


@pytest.mark.parametrize("key,value", [("n_embd", 8192), ("n_layer", 100_000_000),
                                       ("n_vocab", 10**12), ("n_ctx", 2**40)])
def test_unbounded_hparams_sizes_are_checked_against_the_index_first(models, key, value):
    folder = models / "124M"
    _edit_json(folder / "hparams.json", lambda h: {**h, key: value})
    options = {"download": False, "known_sha256": {}}
    started = time.perf_counter()
    with _Peak() as peak:
        with pytest.raises(TFCheckpointError, match="hparams.json") as info:
            load_pretrained_gpt2("124M", models, model_cls=_no_model, **options)
        assert info.value.path == str(folder / "hparams.json")
        with pytest.raises(TFCheckpointError, match="disagree"):
            download_and_load_gpt2("124M", models, **options)
        with pytest.raises(TFCheckpointError, match="disagree"):
            load_gpt2_folder(folder, model_cls=_no_model)
        with pytest.raises(ValueError, match="disagree"):
            load_gpt2_params_from_tf_ckpt(folder / "model.ckpt",
                                          json.loads((folder / "hparams.json").read_text()))
    assert peak.bytes < 20 * MB and time.perf_counter() - started < 10


def test_unbounded_hparams_through_the_command_line(models, cli_env):
    folder = models / "124M"
    _edit_json(folder / "hparams.json", lambda h: {**h, "n_layer": 100_000_000})
    _cli_error(cli_env, "generate", "--model", folder, fragments=["hparams.json", "n_layer"])
    _cli_error(cli_env, "generate", "--model", "gpt2-small", "--models-dir", models,
               "--offline")


@pytest.mark.parametrize("key,value", [("n_embd", 8192), ("n_layer", 100_000_000),
                                       ("vocab_size", 10**12), ("n_positions", 2**40)])
def test_unbounded_hf_config_sizes_are_checked_against_the_header_first(hf, key, value):
    _edit_json(hf / "config.json", lambda c: {**c, key: value})
    with _Peak() as peak:
        with pytest.raises(FileFormatError, match="config.json.*disagree") as info:
            load_hf_gpt2(hf, model_cls=_no_model)
    assert info.value.path == str(hf / "config.json")
    assert peak.bytes < 20 * MB


def test_unbounded_hf_file_without_config_is_checked_before_building(hf, tmp_path):
    """No config.json: the sizes come from wte/wpe; the blocks must then match them."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(hf / "model.safetensors"))
    tensors["transformer.wte.weight"] = np.zeros((64, 1600), np.float32)  # gpt2-xl's width
    os.remove(hf / "config.json")
    save_file(tensors, str(hf / "model.safetensors"))
    with pytest.raises(FileFormatError, match="lacks GPT-2 tensors.*shape"):
        load_hf_gpt2(hf, model_cls=_no_model)


# --- 2. downloads: a size cap and a deadline for every file -------------------------------


def _trickle_headers(handler, data):
    """Even the status line one byte every 0.2 s."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Slow: " + b"y" * 150:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def _huge_length(handler, data):
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(data)


def _short_body(handler, data):
    """Announces twice the length, sends the file, hangs up."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(2 * len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _redirect_loop(handler, data):
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.fixture
def hostile(origin, tmp_path):
    """hostile(tricks, **options): download_gpt2_files from a server playing ``tricks``."""
    servers = []

    def run(tricks, dest="dl", **options):
        files = {f"/124M/{p.name}": p.read_bytes() for p in origin[0].iterdir()}
        server = HostileServer(files, tricks)
        servers.append(server)
        options = {"base_url": server.url, "backup_url": server.url, "progress": False,
                   "known_sha256": origin[1], "timeout": 5.0, "retries": 1, **options}
        return download_gpt2_files("124M", tmp_path / dest, **options), server

    yield run
    for server in servers:
        server.close()


def _left_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("name", ["checkpoint", "hparams.json", DATA])
def test_unbounded_downloadendless_body_stops_at_the_cap(hostile, tmp_path, name):
    started = time.perf_counter()
    with pytest.raises(DownloadError, match=f"{name}(.|\n)*more than"):
        hostile({name: endless})
    assert time.perf_counter() - started < 10
    folder = tmp_path / "dl" / "124M"
    assert name not in _left_in(folder) and name + ".part" not in _left_in(folder)


@pytest.mark.parametrize("name,trick", [("checkpoint", trickle),
                                        ("hparams.json", _trickle_headers)])
def test_unbounded_download_trickling_server_stops_at_the_deadline(hostile, tmp_path, name,
                                                                   trick):
    """--timeout bounds each read; a byte every 0.2 s never trips it, the deadline does."""
    started = time.perf_counter()
    with pytest.raises(DownloadError, match=f"(?s){name}.*deadline of 1 s"):
        hostile({name: trick}, deadline=1.0, timeout=5.0)
    assert time.perf_counter() - started < 5
    assert name not in _left_in(tmp_path / "dl" / "124M")


def test_unbounded_download_announced_size_beyond_the_cap_is_refused_at_once(hostile):
    with pytest.raises(DownloadError, match="announces 1,000,000,000,000 bytes"):
        hostile({"model.ckpt.index": _huge_length})


def test_unclear_error_wrong_content_length_and_redirect_loop(hostile):
    with pytest.raises(DownloadError, match="connection ended after"):
        hostile({"hparams.json": _short_body})
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="HTTP 30"):
        hostile({"checkpoint": _redirect_loop}, dest="loop")
    assert time.perf_counter() - started < 10


def test_hostile_server_then_an_honest_one_gives_the_right_files(hostile, origin, tmp_path):
    with pytest.raises(DownloadError):
        hostile({DATA: endless})
    folder, _ = hostile({})
    for p in origin[0].iterdir():
        assert (Path(folder) / p.name).read_bytes() == p.read_bytes(), p.name


# --- 3. a TF index's counts are bounded ----------------------------------------------------


def _rewrite_index(prefix, change=None, num_shards=1):
    """Write ``prefix``.index again from its entries, each passed through ``change``."""
    with CheckpointReader(prefix, verify=False) as reader:
        entries = dict(reader._entries)
    items = [(b"", _header_proto(num_shards))]
    for name in sorted(entries):
        e = dict(entries[name])
        if change:
            e = change(name, e)
        items.append((name.encode(), _entry_proto(e["dtype"], e["shape"], e["offset"],
                                                  e["size"], e["crc32c"])))
    _write_sstable(f"{prefix}.index", items)


def test_unbounded_index_with_two_to_the_40_shards(models):
    folder = models / "124M"
    _rewrite_index(folder / "model.ckpt", num_shards=2**40)
    assert (folder / "model.ckpt.index").stat().st_size < 10_000
    with _Peak() as peak:
        with pytest.raises(TFCheckpointError, match="model.ckpt.index"):
            load_gpt2_folder(folder, model_cls=_no_model)
        with pytest.raises(GPT2FilesMissingError, match="model.ckpt.index"):
            download_gpt2_files("124M", models, download=False, known_sha256={})
    assert peak.bytes < 20 * MB


def test_unbounded_index_tensor_of_two_to_the_40_elements(models):
    folder = models / "124M"

    def huge_wte(name, e):
        if name == "model/wte":
            e["shape"], e["size"] = (2**20, 2**20), 4 * 2**40
        return e

    _rewrite_index(folder / "model.ckpt", huge_wte)
    _edit_json(folder / "hparams.json", lambda h: {**h, "n_vocab": 2**20, "n_embd": 2**20})
    with _Peak() as peak:
        with pytest.raises(TFCheckpointError, match="hparams.json"):
            load_gpt2_folder(folder, model_cls=_no_model)
        model = _model()
        before = _snapshot(model)
        with pytest.raises(ValueError, match="emb_dim 1048576"):
            load_tf_ckpt_into_gpt(model, folder / "model.ckpt")
        _assert_unchanged(model, before)
        with CheckpointReader(folder / "model.ckpt") as reader, \
                pytest.raises(TFCheckpointError, match="truncated"):
            reader.read("model/wte")
    assert peak.bytes < 30 * MB


def test_unclear_error_data_file_shorter_than_the_index_says(models, cli_env):
    folder = models / "124M"
    with open(folder / DATA, "r+b") as f:
        f.truncate(os.path.getsize(folder / DATA) - 100)
    with pytest.raises(TFCheckpointError, match=f"{DATA} is truncated") as info:
        load_gpt2_folder(folder, model_cls=_no_model)
    assert info.value.path == str(folder / DATA)
    with pytest.raises(GPT2FilesMissingError, match="truncated"):
        download_and_load_gpt2("124M", models, download=False, known_sha256={})
    _cli_error(cli_env, "generate", "--model", folder, fragments=[f"{DATA} is truncated"])


# --- 4. small files are read with a cap ----------------------------------------------------


@pytest.mark.parametrize("name", ["checkpoint", "hparams.json"])
def test_unbounded_one_gigabyte_small_file_is_not_read(models, name):
    folder = models / "124M"
    with open(folder / name, "r+b") as f:
        f.truncate(1 << 30)  # sparse: no disk used
    with _Peak() as peak:
        with pytest.raises(TFCheckpointError, match=f"{name} is over 65,536 bytes"):
            load_gpt2_folder(folder, model_cls=_no_model)
        with pytest.raises(GPT2FilesMissingError, match=f"{name}: 1,073,741,824 bytes"):
            download_gpt2_files("124M", models, download=False, known_sha256={})
    assert peak.bytes < 5 * MB


def test_unbounded_one_gigabyte_hf_config_is_not_read(hf):
    with open(hf / "config.json", "r+b") as f:
        f.truncate(1 << 30)
    with _Peak() as peak, pytest.raises(FileFormatError, match="config.json is over"):
        load_hf_gpt2(hf, model_cls=_no_model)
    assert peak.bytes < 5 * MB


# --- 5. 'checkpoint' names a checkpoint inside the folder, or is refused -------------------


def _write_checkpoint_file(folder, text):
    (folder / "checkpoint").write_bytes(text.encode("utf-8", "surrogateescape")
                                        if text.isascii() else text.encode("latin-1"))


@pytest.fixture
def elsewhere(origin, tmp_path):
    """Another valid checkpoint, outside the models folder."""
    other = tmp_path / "elsewhere"
    write_gpt2_folder(other, **dict(SIZES, n_layer=1), seed=7)
    return other


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_silent_wrong_checkpoint_outside_the_folder_is_refused(models, elsewhere, cli_env, how):
    folder = models / "124M"
    if how == "absolute":
        target = str(elsewhere / "model.ckpt")
    elif how == "dotdot":
        target = os.path.relpath(elsewhere / "model.ckpt", folder)
    else:
        os.symlink(elsewhere, folder / "link")
        target = "link/model.ckpt"
    _write_checkpoint_file(folder, f'model_checkpoint_path: "{target}"\n')
    options = {"download": False, "known_sha256": {}}
    with pytest.raises(GPT2FilesMissingError, match="checkpoint: names"):
        download_and_load_gpt2("124M", models, **options)
    with pytest.raises(TFCheckpointError, match="only a checkpoint inside the folder") as info:
        load_gpt2_folder(folder, model_cls=_no_model)
    assert info.value.path == str(folder / "checkpoint")
    # the command line agrees: by folder and by name
    _cli_error(cli_env, "generate", "--model", folder, fragments=["checkpoint"])
    _cli_error(cli_env, "generate", "--model", "gpt2-small", "--models-dir", models,
               "--offline", fragments=["checkpoint: names"])


@pytest.mark.parametrize("text,match", [
    ("all_model_checkpoint_paths: \"model.ckpt\"\n", "no model_checkpoint_path"),
    ('model_checkpoint_path: "model-999.ckpt"\n', "model-999.ckpt.index does not exist"),
    ("\xff\xfe not text", "no model_checkpoint_path|not a text file"),
])
def test_unclear_error_checkpoint_file_without_a_usable_path(models, text, match):
    folder = models / "124M"
    _write_checkpoint_file(folder, text)
    with pytest.raises(TFCheckpointError, match=match):
        load_gpt2_folder(folder, model_cls=_no_model)


def test_checkpoint_file_naming_another_prefix_inside_the_folder_loads_it(models, elsewhere):
    folder = models / "124M"
    for p in elsewhere.glob("model.ckpt.*"):
        shutil.copyfile(p, folder / p.name.replace("model.ckpt", "other.ckpt"))
    shutil.copyfile(elsewhere / "hparams.json", folder / "hparams.json")
    _write_checkpoint_file(folder, 'model_checkpoint_path: "other.ckpt"\n')
    gpt = load_gpt2_folder(folder)
    assert gpt.cfg["n_layers"] == 1


def test_bad_checkpoint_file_is_fetched_again_online(models, elsewhere, origin):
    from ..helpers.file_server import FileServer

    folder = models / "124M"
    _write_checkpoint_file(folder, f'model_checkpoint_path: "{elsewhere / "model.ckpt"}"\n')
    server = FileServer({f"/124M/{p.name}": p.read_bytes() for p in origin[0].iterdir()})
    try:
        settings, params = download_and_load_gpt2(
            "124M", models, base_url=server.url, backup_url=server.url, progress=False,
            known_sha256=origin[1])
    finally:
        server.close()
    assert len(params["blocks"]) == SIZES["n_layer"]  # this folder's, not elsewhere's
    assert (folder / "checkpoint").read_bytes() == (origin[0] / "checkpoint").read_bytes()


# --- 6. loading is all or nothing --------------------------------------------------------


def _last_tensor_offset(prefix):
    with CheckpointReader(prefix) as reader:
        name = max(reader.variables(), key=lambda n: reader.locate(n)[1])
        return name, reader.locate(name)[1]


def test_silent_wrong_late_crc_failure_leaves_the_model_unchanged(models):
    folder = models / "124M"
    name, offset = _last_tensor_offset(folder / "model.ckpt")
    with open(folder / DATA, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ChecksumError) as info:
        load_tf_ckpt_into_gpt(model, folder / "model.ckpt")
    assert info.value.tensor == name
    _assert_unchanged(model, before)
    with pytest.raises(ChecksumError):
        load_pretrained_gpt2("124M", models, download=False, known_sha256={})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_silent_wrong_non_finite_params_are_refused_and_change_nothing(models, bad):
    _, params = download_and_load_gpt2("124M", models, download=False, known_sha256={})
    w = params["blocks"][1]["mlp"]["c_proj"]["w"].astype(np.float64)
    w[3, 5] = bad
    params["blocks"][1]["mlp"]["c_proj"]["w"] = w
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"\['blocks'\]\[1\]\['mlp'\]\['c_proj'\]\['w'\] "
                                         r"holds .* at index \(3, 5\)"):
        load_weights_into_gpt(model, params)
    _assert_unchanged(model, before)


def test_silent_wrong_params_that_are_not_numbers_change_nothing(models):
    _, params = download_and_load_gpt2("124M", models, download=False, known_sha256={})
    model = _model()
    before = _snapshot(model)
    # strings, and ints or bools (a damaged file's dtype field: float bits read as ints)
    for bad in (np.array(["x"] * SIZES["n_embd"]), np.ones(SIZES["n_embd"], np.int32),
                np.ones(SIZES["n_embd"], bool)):
        params["g"] = bad
        with pytest.raises(ValueError,
                           match=r"params\['g'\] has dtype \S+; weights are floating point"):
            load_weights_into_gpt(model, params)
        _assert_unchanged(model, before)


def test_silent_wrong_nan_in_safetensors_changes_nothing(models, hf):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(hf / "model.safetensors"))
    tensors["transformer.ln_f.bias"][7] = np.nan
    save_file(tensors, str(hf / "model.safetensors"))
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"params\['b'\] holds nan at index \(7,\)"):
        load_hf_gpt2_into_gpt(model, hf)
    _assert_unchanged(model, before)


# --- 7. every bad value is one clear line naming the file ---------------------------------


BAD_SIZES = [
    ("n_embd", "sixty-four", "n_embd must be a whole number"),
    ("n_embd", True, "n_embd must be a whole number"),
    ("n_embd", 32.0, "n_embd must be a whole number"),
    ("n_layer", "12", "n_layer must be a whole number"),
    ("n_layer", None, "n_layer must be a whole number"),
    ("n_layer", [2], "n_layer must be a whole number"),
    ("n_head", 0, "n_head must be >= 1"),
    ("n_layer", -2, "n_layer must be >= 1"),
    ("n_head", 5, "n_embd=32 is not divisible by n_head=5"),
]


@pytest.mark.parametrize("key,value,match", BAD_SIZES, ids=lambda v: repr(v)[:20])
def test_unclear_error_bad_hparams_values_name_the_file(models, key, value, match):
    folder = models / "124M"
    _edit_json(folder / "hparams.json", lambda h: {**h, key: value})
    with pytest.raises(TFCheckpointError, match=match) as info:
        load_gpt2_folder(folder, model_cls=_no_model)
    assert info.value.path == str(folder / "hparams.json")
    assert str(folder / "hparams.json") in str(info.value)
    with pytest.raises(GPT2FilesMissingError, match=f"hparams.json: {match}"):
        download_and_load_gpt2("124M", models, download=False, known_sha256={})


@pytest.mark.parametrize("key,value,match", BAD_SIZES, ids=lambda v: repr(v)[:20])
def test_unclear_error_bad_hf_config_values_name_the_file(hf, key, value, match):
    _edit_json(hf / "config.json", lambda c: {**c, key: value})
    with pytest.raises(FileFormatError, match=match) as info:
        load_hf_gpt2(hf, model_cls=_no_model)
    assert info.value.path == str(hf / "config.json")


@pytest.mark.parametrize("content,match", [
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "over 65,536 bytes"),
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ("\xff\xfe{}", "is not valid JSON"),
    ('{"n_vocab": 64}', "has no"),
    ('{"n_vocab": NaN, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}',
     "n_vocab must be a whole number"),
])
def test_unclear_error_hparams_json_that_is_not_sizes(models, content, match):
    folder = models / "124M"
    (folder / "hparams.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(TFCheckpointError, match=match):
        load_gpt2_folder(folder, model_cls=_no_model)
    with pytest.raises(GPT2FilesMissingError, match="hparams.json: "):
        download_and_load_gpt2("124M", models, download=False, known_sha256={})


def test_unclear_error_hf_folders_through_the_command_line(hf, tmp_path, cli_env):
    def variant(name, change):
        folder = Path(shutil.copytree(hf, tmp_path / name))
        change(folder)
        return folder

    as_list = variant("list", lambda f: (f / "config.json").write_text("[1, 2]"))
    no_embd = variant("no_embd", lambda f: _edit_json(
        f / "config.json", lambda c: {k: v for k, v in c.items() if k != "n_embd"}))
    layer_str = variant("layer_str", lambda f: _edit_json(
        f / "config.json", lambda c: {**c, "n_layer": "12"}))
    data = (hf / "model.safetensors").read_bytes()
    truncated = variant("truncated", lambda f: (f / "model.safetensors").write_bytes(
        data[: len(data) // 2]))
    for folder, fragment in [(as_list, "config.json holds a JSON list"),
                             (no_embd, "config.json has no ['n_embd']"),
                             (layer_str, "n_layer must be a whole number, got '12'"),
                             (truncated, "model.safetensors")]:
        _cli_error(cli_env, "generate", "--model", folder, fragments=[fragment])
    with pytest.raises(FileFormatError, match="not a readable safetensors file"):
        load_hf_gpt2_into_gpt(_model(), truncated)


def test_unclear_error_tf_folders_through_the_command_line(models, tmp_path, cli_env):
    folder = models / "124M"
    for content, fragment in [('{"n_vocab": 64, "n_ctx": 16, "n_embd": "sixty-four", '
                               '"n_head": 4, "n_layer": 2}', "n_embd must be a whole number"),
                              ("[1, 2]", "must be a JSON object"),
                              ("{not json", "is not valid JSON")]:
        (folder / "hparams.json").write_text(content)
        _cli_error(cli_env, "generate", "--model", folder,
                   fragments=[str(folder / "hparams.json"), fragment])


# --- the right result, after all that ------------------------------------------------------


def test_the_honest_folder_still_loads_the_same_by_every_route(models, origin):
    folder = models / "124M"
    a = load_gpt2_folder(folder)
    b = load_pretrained_gpt2("124M", models, download=False, known_sha256={})
    c = _model()
    load_weights_into_gpt(c, download_and_load_gpt2("124M", models, download=False,
                                                   known_sha256={})[1])
    for (key, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(),
                                           c.named_parameters()):
        assert np.array_equal(host(pa.data), host(pb.data)), key
        assert np.array_equal(host(pa.data), host(pc.data)), key
    assert math.isfinite(float(host(a.state_dict()["tok_emb.weight"]).sum()))
    assert sorted(os.listdir(folder)) == sorted(GPT2_FILES)


# --- 6. Hugging Face settings that change the function -------------------------------------

# (key, value, what transformers then computes differently)
CHANGES_THE_FUNCTION = [
    ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx=true"),
    ("scale_attn_weights", False, "scale_attn_weights=false"),
    ("activation_function", "relu", "activation_function 'relu'"),
    ("activation_function", "gelu", "the exact erf GELU"),
    ("activation_function", "quick_gelu", "tinygpt computes only GPT-2's tanh GELU"),
]
KEEPS_THE_FUNCTION = [("activation_function", "gelu_pytorch_tanh"),
                      ("activation_function", "gelu_fast"),
                      ("activation_function", "gelu_accurate"),
                      ("reorder_and_upcast_attn", True),  # float32 scores under fp16 only
                      ("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)]


@pytest.mark.parametrize("key,value,match", CHANGES_THE_FUNCTION, ids=lambda v: str(v)[:24])
def test_silent_wrong_hf_config_that_changes_the_function_is_refused(hf, key, value, match):
    _edit_json(hf / "config.json", lambda c: {**c, key: value})
    with pytest.raises(FileFormatError, match=match) as info:
        load_hf_gpt2(hf, model_cls=_no_model)
    assert info.value.path == str(hf / "config.json")
    assert key in str(info.value) and str(hf / "config.json") in str(info.value)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_unclear_error_hf_attention_switch_that_is_not_a_bool(hf, value):
    _edit_json(hf / "config.json", lambda c: {**c, "scale_attn_weights": value})
    with pytest.raises(FileFormatError, match="scale_attn_weights=.* must be true or false"):
        load_hf_gpt2(hf, model_cls=_no_model)


def _transformers_logits(folder, ids):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model = transformers.GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager")
    with torch.no_grad():
        return model.eval()(torch.from_numpy(ids)).logits.numpy()


def test_hf_settings_refused_are_those_transformers_computes_differently(tmp_path):
    """Each refused setting changes transformers' logits (by 1e-3 of their largest for the
    erf GELU, 0.04 to 0.24 for the others); each accepted one leaves them within float32
    rounding (under 1e-5), and tinygpt computes those."""
    from tinygpt.backend import manual_seed

    manual_seed(0)
    model = _model()
    for name, p in model.named_parameters():  # weights of a trained model's size: the
        if name.startswith("trf_blocks") and p.ndim == 2:  # settings' effects show
            p.data[...] *= 30
    hf = Path(export_hf_gpt2(model, tmp_path / "hf"))
    ids = np.random.default_rng(0).integers(0, 64, (2, 16))
    reference = _transformers_logits(hf, ids)
    ours = host(load_hf_gpt2(hf)(ids))
    scale = np.abs(reference).max()
    assert np.abs(ours - reference).max() <= 1e-4 * scale
    for i, (key, value, _) in enumerate(CHANGES_THE_FUNCTION):
        folder = Path(shutil.copytree(hf, tmp_path / f"changed{i}"))
        _edit_json(folder / "config.json", lambda c, k=key, v=value: {**c, k: v})
        diff = np.abs(_transformers_logits(folder, ids) - reference).max()
        assert diff > 5e-4 * scale, (key, value, diff)
    for i, (key, value) in enumerate(KEEPS_THE_FUNCTION):
        folder = Path(shutil.copytree(hf, tmp_path / f"kept{i}"))
        _edit_json(folder / "config.json", lambda c, k=key, v=value: {**c, k: v})
        theirs = _transformers_logits(folder, ids)
        assert np.abs(theirs - reference).max() <= 5e-5 * scale, (key, value)
        assert np.array_equal(host(load_hf_gpt2(folder)(ids)), ours), (key, value)
