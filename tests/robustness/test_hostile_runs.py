"""Training runs against careless use: nothing trained is overwritten without
--overwrite, two runs never write into one folder, and every mistake the inputs show
fails before the model is built, not after an epoch (tinygpt.app.workflow.pretrain)."""

import os
import subprocess
import sys
import time

import pytest

from tinygpt.app import workflow
from tinygpt.errors import RunFolderError
from tinygpt.model import GPT_CONFIG_124M

TINY = dict(GPT_CONFIG_124M, context_length=8, emb_dim=16, n_heads=2, n_layers=1)
QUICK = {"num_epochs": 1, "eval_freq": 50, "eval_iter": 1}


@pytest.fixture
def text(tmp_path):
    """A text of our own, long enough for a few batches of 8 tokens."""
    words = ["river", "stone", "quiet", "lamp", "orchard", "seven", "paper", "window"]
    path = tmp_path / "words.txt"
    path.write_text(" ".join(words[(i * 5 + i // 3) % 8] for i in range(600)) + "\n",
                    encoding="utf-8")
    return path


def train(text, out, **kwargs):
    return workflow.pretrain(TINY, dict(QUICK), text=text, out=out, progress=False, **kwargs)


def no_model(*args, **kwargs):
    raise AssertionError("the model was built before the inputs were checked")


def test_lost_work_resume_into_another_runs_folder_is_refused(text, tmp_path):
    a = train(text, tmp_path / "a")
    b = train(text, tmp_path / "b")
    before = {p.name: p.read_bytes() for p in b.out.iterdir() if p.is_file()}
    with pytest.raises(RunFolderError, match="already holds a run.*--overwrite"):
        workflow.pretrain(None, {"num_epochs": 2}, resume=a.checkpoint_path, out=b.out,
                          progress=False)
    assert {p.name: p.read_bytes() for p in b.out.iterdir() if p.is_file()} == before
    # into its own folder, or with --overwrite, it carries on
    workflow.pretrain(None, {"num_epochs": 2}, resume=a.checkpoint_path, progress=False)
    workflow.pretrain(None, {"num_epochs": 3}, resume=a.checkpoint_path, out=b.out,
                      overwrite=True, progress=False)


def test_lost_work_concurrent_runs_into_one_folder(text, tmp_path):
    """Two `tinygpt train` into one --out, 0.3 s apart: one trains, the other is refused
    (the lock, or the finished run's files), never both writing."""
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "tinygpt", "train", "--config", "small", "--epochs",
               "1", "--text", str(text), "--out", str(out), "--context-length", "8",
               "--no-progress"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    time.sleep(0.3)
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    first_out, first_err = first.communicate(timeout=600)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (first_err[-2000:], second.stderr[-2000:])
    refused = second.stderr if second.returncode == 2 else first_err
    assert "is in use" in refused or "already holds a run" in refused, refused
    assert "Traceback" not in refused
    assert not (out / ".tinygpt-train.lock").exists()


def test_lock_of_a_live_process_refuses_and_a_stale_lock_is_taken_over(text, tmp_path):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    lock = out / ".tinygpt-train.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()} 0\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=f"process {os.getpid()} .* is training into it"):
        train(text, out)
    assert lock.exists()  # someone else's lock is never removed
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock.write_text(f"{gone} {socket.gethostname()} 0\n", encoding="utf-8")
    run = train(text, out)  # the process is gone: a stale lock
    assert run.model_path.is_file() and not lock.exists()


def test_late_failure_empty_start_context_fails_before_training(text, tmp_path, monkeypatch):
    monkeypatch.setattr(workflow, "GPTModel", no_model)
    for prompt in ("", "   "):
        with pytest.raises(ValueError, match="start_context"):
            workflow.pretrain(TINY, dict(QUICK, start_context=prompt), text=text,
                              out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_late_failure_folder_where_the_checkpoint_goes(text, tmp_path, monkeypatch):
    out = tmp_path / "run"
    (out / "checkpoint.safetensors").mkdir(parents=True)
    monkeypatch.setattr(workflow, "GPTModel", no_model)
    with pytest.raises(RunFolderError, match="checkpoint.safetensors is a folder"):
        train(text, out)
    assert not (out / ".tinygpt-train.lock").exists()


def test_unbounded_context_longer_than_the_text_fails_before_building(text, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(workflow, "GPTModel", no_model)
    with pytest.raises(ValueError, match="tokens"):
        workflow.pretrain(dict(TINY, context_length=4_000_000), dict(QUICK), text=text,
                          out=tmp_path / "x")


def test_left_behind_temp_files_of_a_killed_write_are_removed(text, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.safetensors.tmp-0badf00d"  # a killed write's private folder
    stale.mkdir()
    (stale / "checkpoint.safetensors").write_bytes(b"half a checkpoint")
    (stale / ".tmpAbC123").write_bytes(b"the safetensors library's own temporary")
    older = out / ".model.safetensors.tmp-1234abcd"  # an older version's temporary file
    older.write_bytes(b"half a model")
    other = out / ".notes.tmp-1"  # not ours: left alone
    other.write_bytes(b"x")
    train(text, out)
    assert not stale.exists() and not older.exists() and other.exists()


def test_bad_settings_are_named_before_anything_is_built(text, tmp_path, monkeypatch):
    monkeypatch.setattr(workflow, "GPTModel", no_model)
    for key, value in [("learning_rate", 0), ("learning_rate", float("nan")),
                       ("weight_decay", -1), ("grad_clip", 0), ("batch_size", 0),
                       ("seed", -1), ("eval_iter", 1.5)]:
        with pytest.raises(ValueError, match=key):
            workflow.pretrain(TINY, dict(QUICK, **{key: value}), text=text,
                              out=tmp_path / "x")
