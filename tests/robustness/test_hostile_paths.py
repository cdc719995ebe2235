"""Hostile paths: what stands at a path before tinygpt opens or writes it.

Loading refuses anything that is not a regular file (a named pipe would block ``open``
forever, a device streams or fails with "No such device") with the path in the message;
saving writes through a symbolic link as ``torch.save`` does, fits its temporary names in
255 bytes, and refuses a path that is not a file; ``--text`` reads pipes and process
substitution as a bounded stream. Tests are named after the failure they guard against:
an unbounded wait, a silent wrong result, an unclear error, something left behind."""

import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from tinygpt.app.workflow import read_text
from tinygpt.errors import CheckpointError, FileFormatError, RunFolderError, TFCheckpointError
from tinygpt.io.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from tinygpt.io.files import remove_stale_temporaries, temporary_prefix
from tinygpt.io.hf_gpt2 import export_hf_gpt2, load_hf_gpt2
from tinygpt.io.pretrained import read_hparams
from tinygpt.io.serialization import load, save
from tinygpt.io.textsource import find_verdict, read_text_file
from tinygpt.io.tf_checkpoint import CheckpointReader
from tinygpt.model import GPTModel
from tinygpt.optim import AdamW

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and links as on POSIX")]

REPO_ROOT = Path(__file__).resolve().parents[2]
CFG = {"vocab_size": 64, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
       "drop_rate": 0.0, "qkv_bias": False}
LONG = "m" * 234 + ".safetensors"  # 246 bytes: a legal name; with ".tmp-" around it, not
LONGER = "é" * 119 + ".safetensors"  # 250 bytes of two-byte characters


def _model(seed=0):
    tinygpt.manual_seed(seed)
    return GPTModel(CFG)


def _finishes(call, fifo=None, seconds=10):
    """``call()``'s exception (or None), run in a thread. If it is still waiting after
    ``seconds`` (blocked opening ``fifo``), a writer is opened to free it and the test
    fails: an unbounded wait."""
    outcome = {}

    def run():
        try:
            call()
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 (handed to the test to judge)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        thread.join(5)
        pytest.fail(f"still waiting after {seconds} s: an unbounded wait")
    return outcome["error"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "weights.safetensors"
    os.mkfifo(path)
    return path


# --- 1. loading: a named pipe, a device, a folder ------------------------------------------


def _hf_fifo(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    os.mkfifo(folder / "model.safetensors")
    return folder


LOADERS = {
    "tinygpt.load": lambda p: load(p),
    "load_model": lambda p: load_model(p),
    "load_checkpoint": lambda p: load_checkpoint(p),
    "read_hparams": lambda p: read_hparams(p),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_unbounded_wait_fifo_is_refused_before_open(fifo, loader):
    error = _finishes(lambda: LOADERS[loader](fifo), fifo)
    assert isinstance(error, FileFormatError), repr(error)
    assert str(fifo) in str(error) and "named pipe (FIFO)" in str(error)


def test_unbounded_wait_fifo_in_hugging_face_and_tensorflow_folders(tmp_path):
    hf = _hf_fifo(tmp_path)
    error = _finishes(lambda: load_hf_gpt2(hf), hf / "model.safetensors")
    assert isinstance(error, FileFormatError) and "named pipe" in str(error), repr(error)
    os.mkfifo(tmp_path / "model.ckpt.index")
    error = _finishes(lambda: CheckpointReader(str(tmp_path / "model.ckpt")),
                      tmp_path / "model.ckpt.index")
    assert isinstance(error, TFCheckpointError), repr(error)
    assert str(tmp_path / "model.ckpt.index") in str(error)


@pytest.mark.parametrize("loader", ["tinygpt.load", "load_model", "load_checkpoint"])
def test_unclear_error_dev_null_names_the_path(loader):
    with pytest.raises(CheckpointError, match="/dev/null.*character device") as info:
        LOADERS[loader]("/dev/null")
    assert info.value.path == "/dev/null"
    assert "No such device" not in str(info.value)


def test_unclear_error_folder_and_dangling_link(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load(tmp_path)
    link = tmp_path / "link.safetensors"
    link.symlink_to(tmp_path / "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="symbolic link to .*gone.safetensors"):
        load_model(link)


# --- 2. saving: long names, symbolic links, what is not a file -----------------------------


@pytest.mark.parametrize("name", [LONG, LONGER], ids=["246 bytes", "250 bytes, UTF-8"])
def test_unclear_error_long_names_save_and_load(tmp_path, name):
    assert len(os.fsencode(name)) <= 250
    model = _model()
    path = save_model(model, tmp_path / name)
    assert os.path.basename(path) == name
    loaded = load_model(tmp_path / name)
    for key, value in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[key].numpy(), value.numpy()), key
    save({"w": model.tok_emb.weight}, tmp_path / name)
    assert np.array_equal(load(tmp_path / name)["w"].numpy(), model.tok_emb.weight.detach().numpy())
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary left


def test_left_behind_long_name_temporaries_are_found_and_distinct(tmp_path):
    other = "m" * 234 + ".safetensorz"  # same first 234 bytes
    assert temporary_prefix(LONG) != temporary_prefix(other)
    assert all(len(os.fsencode(temporary_prefix(n))) + 8 <= 255 for n in (LONG, LONGER))
    stale = tmp_path / (temporary_prefix(LONG) + "0123abcd")
    stale.mkdir()
    (stale / LONG).write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path, [LONG]) == [stale]
    assert not stale.exists()


def test_silent_wrong_result_save_through_a_symlink_writes_its_target(tmp_path):
    target = tmp_path / "real" / "model.safetensors"
    target.parent.mkdir()
    save_model(_model(0), target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    new = _model(1)
    save_model(new, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    weights = new.tok_emb.weight.detach().numpy()
    assert np.array_equal(load_model(target).tok_emb.weight.detach().numpy(), weights)
    save({"w": new.pos_emb.weight}, link)  # torch.save's way: through the link
    assert link.is_symlink()
    assert np.array_equal(load(target)["w"].numpy(), new.pos_emb.weight.detach().numpy())
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "real"]
    assert os.listdir(target.parent) == ["model.safetensors"]


def test_silent_wrong_result_checkpoint_through_a_symlink(tmp_path):
    model = _model()
    target = tmp_path / "ckpt-real.safetensors"
    link = tmp_path / "ckpt.safetensors"
    link.symlink_to(target.name)  # relative, like `ln -s ckpt-real.safetensors ckpt...`
    save_checkpoint(link, model, AdamW(model.parameters()), None)
    assert link.is_symlink() and target.is_file()
    assert load_checkpoint(link).config == model.cfg


def test_unclear_error_dangling_link_target_folder_missing(tmp_path):
    link = tmp_path / "link.safetensors"
    link.symlink_to(tmp_path / "nowhere" / "m.safetensors")
    with pytest.raises(FileNotFoundError, match="nowhere.*target of the symbolic link"):
        save_model(_model(), link)
    link.unlink()
    link.symlink_to(tmp_path / "m.safetensors")  # dangling, its folder there: torch writes
    save_model(_model(), link)
    assert (tmp_path / "m.safetensors").is_file() and link.is_symlink()


def test_unclear_error_saving_onto_a_fifo_is_refused(fifo):
    error = _finishes(lambda: save_model(_model(), fifo), fifo)
    assert isinstance(error, OSError) and "named pipe" in str(error), repr(error)
    assert str(fifo) in str(error)
    assert fifo.is_fifo() and os.listdir(fifo.parent) == [fifo.name]


# --- 3. --text: pipes, process substitution, devices ---------------------------------------


def test_unclear_error_text_from_a_pipe_is_read(tmp_path):
    """``--text <(zcat x.gz)``: process substitution hands over /dev/fd/N, a pipe."""
    script = ("import sys; from tinygpt.app.workflow import read_text; "
              "path, text = read_text(sys.argv[1]); print(len(text), text[:5])")
    result = subprocess.run(
        ["bash", "-c", f'{sys.executable} -c "{script}" <(printf "hello pipe")'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10", "hello"]


def test_unclear_error_text_from_a_named_pipe_and_dev_null(tmp_path):
    pipe = tmp_path / "text.fifo"
    os.mkfifo(pipe)

    def writer():
        with open(pipe, "w", encoding="utf-8") as f:
            f.write("a text\r\nfrom a pipe\n")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert read_text(pipe)[1] == "a text\nfrom a pipe\n"  # text mode, as for a file
    thread.join(5)
    with pytest.raises(ValueError, match="/dev/null is empty"):
        read_text("/dev/null")


def test_unbounded_text_stream_is_capped():
    with pytest.raises(ValueError, match="/dev/zero is a stream of more than 1,000"):
        read_text_file("/dev/zero", limit=1000)


def test_unclear_error_text_paths_that_are_not_texts(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        find_verdict(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        find_verdict(tmp_path)
    link = tmp_path / "t.txt"
    link.symlink_to(tmp_path / "gone.txt")
    with pytest.raises(FileNotFoundError, match="symbolic link to .*gone.txt, which does not"):
        find_verdict(link)


def test_unclear_error_dangling_out_link_and_dev_null_text(tmp_path):
    out = tmp_path / "run"
    out.symlink_to(tmp_path / "missing-run")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TINYGPT_DATA="/work/shared/data")
    base = [sys.executable, "-m", "tinygpt", "train", "--config", "small",
            "--epochs", "1"]
    result = subprocess.run(base + ["--out", str(out)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 2, result.stderr
    assert "symbolic link to" in result.stderr and "File exists" not in result.stderr
    assert not (tmp_path / "missing-run").exists()
    result = subprocess.run(base + ["--text", "/dev/null", "--out", str(tmp_path / "r2")],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 2, result.stderr
    assert "/dev/null is empty" in result.stderr and "does not exist" not in result.stderr
    assert not (tmp_path / "r2").exists()


def test_run_folder_error_for_a_dangling_out_link(tmp_path):
    from tinygpt.app.workflow import pretrain

    out = tmp_path / "run"
    out.symlink_to(tmp_path / "missing-run")
    with pytest.raises(RunFolderError, match="symbolic link to .*missing-run"):
        pretrain(dict(CFG, context_length=8), {"num_epochs": 1, "batch_size": 2},
                 text="/work/shared/data/the-verdict.txt", out=out)
    assert not (tmp_path / "missing-run").exists()


# --- 4. the Hugging Face export --------------------------------------------------------------


def test_left_behind_hf_export_modes_and_no_temporaries(tmp_path):
    umask = os.umask(0o022)
    try:
        folder = export_hf_gpt2(_model(), tmp_path / "hf")
        export_hf_gpt2(_model(1), folder)  # again, over the first export
    finally:
        os.umask(umask)
    names = sorted(os.listdir(folder))
    assert names == ["config.json", "model.safetensors"]
    for name in names:
        assert os.stat(os.path.join(folder, name)).st_mode & 0o777 == 0o644, name


def test_unclear_error_hf_export_onto_an_existing_file_or_dangling_link(tmp_path):
    file = tmp_path / "gpt2"
    file.write_text("not a folder")
    with pytest.raises(FileExistsError, match="gpt2: a file of that name exists.*folder"):
        export_hf_gpt2(_model(), file)
    assert file.read_text() == "not a folder"
    link = tmp_path / "gpt2-link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError, match="symbolic link to .*nowhere, which does not"):
        export_hf_gpt2(_model(), link)


def test_unclear_error_hf_export_at_the_file_size_limit_names_the_file(tmp_path):
    folder = Path(export_hf_gpt2(_model(0), tmp_path / "hf"))
    before = (folder / "model.safetensors").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, hard))
    try:
        with pytest.raises(OSError, match="model.safetensors.*File too large") as info:
            export_hf_gpt2(_model(1), folder)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(folder / "model.safetensors") in str(info.value)
    assert (folder / "model.safetensors").read_bytes() == before  # the old file intact
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]


def test_hf_export_through_a_symlinked_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    export_hf_gpt2(_model(), tmp_path / "link")
    assert sorted(os.listdir(real)) == ["config.json", "model.safetensors"]
    shutil.rmtree(real)
