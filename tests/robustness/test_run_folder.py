"""One run per folder, always consistent (tinygpt.app.workflow): each test is a way a run
folder used to end up mixing two runs, losing one, or explaining a failure wrongly,
named for its failure class. Tiny configs on a short text of our own: seconds each.

Interruptions are simulated in the process: a first Ctrl-C is a real SIGINT sent from a
callback (the training loop's handler stops at the next step), an abort mid-write is a
KeyboardInterrupt raised from the patched writer."""

import csv
import json
import os
import re
import shlex
import signal
from pathlib import Path

import numpy as np
import pytest

from tinygpt.app import cli, workflow
from tinygpt.errors import RunFolderError
from tinygpt.io.checkpoint import load_checkpoint, load_model
from tinygpt.model import GPT_CONFIG_124M
from tinygpt.train import TrainingDivergedError

from ..helpers.tools import load_script
from . import test_hostile_runs

REPO = Path(__file__).resolve().parents[2]
TINY = dict(GPT_CONFIG_124M, context_length=8, emb_dim=16, n_heads=2, n_layers=1)
QUICK = {"num_epochs": 1, "eval_freq": 4, "eval_iter": 1, "batch_size": 4,
         "start_context": "river"}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals as on POSIX")
text = test_hostile_runs.text  # the fixture: ~600 words, 16 training batches of 4 x 8 tokens


def train(text, out, settings=None, **kwargs):
    return workflow.pretrain(TINY, dict(QUICK, **(settings or {})), text=text, out=out,
                             progress=False, **kwargs)


def resume(checkpoint, settings=None, **kwargs):
    return workflow.pretrain(None, dict(settings or {}), resume=checkpoint, progress=False,
                             **kwargs)


def ctrl_c_at(monkeypatch, epoch, step=None, signum=signal.SIGINT):
    """Press Ctrl-C once (a real SIGINT, or ``signum``) at the first evaluation of 0-based
    ``epoch`` (or at global ``step``): the loop stops after that step, as on a terminal."""
    log = workflow.Run._log_metrics

    def pressed(self, state, train_loss, val_loss):
        log(self, state, train_loss, val_loss)
        if (state.epoch == epoch and step is None) or state.global_step == step:
            if not getattr(self, "_pressed", False):
                self._pressed = True
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(workflow.Run, "_log_metrics", pressed)


def metrics(folder):
    with open(Path(folder) / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(workflow.METRICS_COLUMNS)
    return rows[1:]


def summary(folder):
    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))


def same_weights(model_file, checkpoint):
    model, ckpt = load_model(model_file), load_checkpoint(checkpoint)
    ours, theirs = model.state_dict(), ckpt.model.state_dict()
    return all(np.array_equal(np.asarray(ours[k]), np.asarray(theirs[k])) for k in ours)


# --- Run folders mix runs ---------------------------------------------------------------------


def test_mixed_runs_stopped_while_writing_the_final_files_resume_rewrites_them(
        text, tmp_path, monkeypatch, capsys):
    """Epoch 1 finished in R; --resume --epochs 2 is stopped while the model file is
    written. The checkpoint says epoch 2, the model file is epoch 1's: --resume (no
    --epochs) must write epoch 2's files, not refuse, and the abort must say so."""
    out = tmp_path / "R"
    first = train(text, out)
    capsys.readouterr()

    def stopped(model, path):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(workflow, "save_model", stopped)
        with pytest.raises(KeyboardInterrupt):
            resume(first.checkpoint_path, {"num_epochs": 2})
    err = capsys.readouterr().err
    assert "Interrupted while writing the final files" in err
    assert f"tinygpt train --resume {first.checkpoint_path}" in err
    assert load_checkpoint(first.checkpoint_path).state.epoch == 2
    assert summary(out)["epochs"] == 1  # the stale files: epoch 1's

    run = resume(first.checkpoint_path)  # as printed: no --epochs
    assert "lacks the final files" in capsys.readouterr().out
    assert summary(out)["epochs"] == 2
    assert summary(out)["global_step"] == run.state.global_step
    assert same_weights(out / "model.safetensors", first.checkpoint_path)
    with pytest.raises(ValueError, match="already trained 2 epoch"):  # now all is written
        resume(first.checkpoint_path)


def test_mixed_runs_overwrite_clears_the_old_run_before_the_first_step(
        text, tmp_path, monkeypatch, capsys):
    """Run A finished in R; run B (--overwrite, another seed, 3 epochs) is stopped with
    Ctrl-C in epoch 2: R must hold B's files only, none of A's."""
    out = tmp_path / "R"
    train(text, out, {"num_epochs": 1})
    a_rows = metrics(out)
    ctrl_c_at(monkeypatch, epoch=1)
    b = train(text, out, {"num_epochs": 3, "seed": 7}, overwrite=True)
    assert b.state.interrupted
    for name in ("model.safetensors", "summary.json", "loss-plot.png"):
        assert not (out / name).exists(), f"run A's {name} is still in R"
    ckpt = load_checkpoint(out / "checkpoint.safetensors")
    assert ckpt.extra["seed"] == 7 and ckpt.state.epoch == 1
    steps = [int(row[0]) for row in metrics(out)]
    assert steps == sorted(set(steps)) and steps[-1] <= ckpt.state.global_step
    assert len(steps) > len(a_rows)  # B's rows only: one series, never restarting at 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_mixed_runs_divergence_advice_names_only_the_current_runs_files(text, tmp_path):
    """A run finished in R, then an --overwrite run diverges at once: the old run's
    checkpoint is gone and the advice must not point at it."""
    out = tmp_path / "R"
    train(text, out)
    old_checkpoint = str(out / "checkpoint.safetensors")
    with pytest.raises(TrainingDivergedError) as info:
        train(text, out, {"learning_rate": 1e30}, overwrite=True)
    message = str(info.value)
    assert "No checkpoint of this run was saved" in message
    assert old_checkpoint not in message
    assert not (out / "checkpoint.safetensors").exists()


def test_mixed_runs_divergence_after_resuming_into_another_folder_names_its_checkpoint(
        text, tmp_path, monkeypatch):
    """Resumed from A into B, the run's last good checkpoint is still A's: the advice
    gives it, with the --out that keeps the run in B."""
    a = train(text, tmp_path / "A")
    poison_after_steps(monkeypatch, 3)
    with pytest.raises(TrainingDivergedError) as info:
        resume(a.checkpoint_path, {"num_epochs": 2}, out=tmp_path / "B")
    message = str(info.value)
    assert f"The last checkpoint of this run is {a.checkpoint_path}" in message
    assert f"tinygpt train --resume {a.checkpoint_path} --out {tmp_path / 'B'}" in message


def poison_after_steps(monkeypatch, n):
    """Make the optimizer's ``n``-th step leave a NaN in the weights (a diverging update
    that the loss of that step could not show)."""
    step = workflow.AdamW.step
    calls = []

    def poisoned(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            self.params[0].data[...] = np.nan
        return result

    monkeypatch.setattr(workflow.AdamW, "step", poisoned)


# --- Lost ---------------------------------------------------------------------------------------


def load_demo():
    return load_script(REPO / "demos" / "train_verdict.py")


def test_lost_work_demo_resume_into_another_runs_folder_is_refused(text, tmp_path):
    """demos/train_verdict.py --resume A/checkpoint.safetensors --epochs 2 --out B must
    refuse B (which holds a run) as `tinygpt train` does, until --overwrite."""
    demo = load_demo()
    a = train(text, tmp_path / "A")
    b = train(text, tmp_path / "B", {"seed": 5})
    before = {p.name: p.read_bytes() for p in b.out.iterdir() if p.is_file()}
    with pytest.raises(RunFolderError, match="already holds a run.*--overwrite"):
        demo.main(None, {"num_epochs": 2}, resume=a.checkpoint_path, out=b.out,
                  progress=False)
    assert {p.name: p.read_bytes() for p in b.out.iterdir() if p.is_file()} == before
    losses = demo.main(None, {"num_epochs": 2}, resume=a.checkpoint_path, out=b.out,
                       overwrite=True, progress=False)
    assert len(losses) == 4 and summary(b.out)["epochs"] == 2
    assert load_checkpoint(b.checkpoint_path).extra["seed"] == 123  # A's run, carried on
    assert demo.parse_args(["--overwrite"]).overwrite and not demo.parse_args([]).overwrite


def test_lost_work_demo_and_command_line_give_the_same_run(text, tmp_path, capsys):
    """The demo's spelled-out steps and `tinygpt train` (workflow.pretrain) draw the same
    numbers: the same lines, the same weights."""
    demo = load_demo()
    demo.main(TINY, dict(QUICK), text=text, out=tmp_path / "demo", progress=False)
    printed_demo = capsys.readouterr().out.splitlines()
    train(text, tmp_path / "cli")
    printed_cli = capsys.readouterr().out.splitlines()
    assert printed_demo[:-2] == printed_cli[:-2]  # all but the timing and the paths
    assert same_weights(tmp_path / "demo" / "model.safetensors",
                        tmp_path / "cli" / "checkpoint.safetensors")


# --- Files no run wrote: never deleted, never written over without --overwrite -----------------


def files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def test_lost_work_a_text_named_like_a_run_file_inside_out_is_never_written_over(
        text, tmp_path):
    """`tinygpt train --text d/metrics.csv --out d` deleted its own text before the first
    step. It is refused, naming the text, with --overwrite too, and through a link too."""
    words = Path(text).read_bytes()
    out = tmp_path / "d"
    out.mkdir()
    inside = out / "metrics.csv"
    inside.write_bytes(words)
    for overwrite in (False, True):
        with pytest.raises(RunFolderError, match=re.escape(f"the text {inside} is the "
                                                           "metrics.csv that the run writes")):
            train(inside, out, overwrite=overwrite)
    assert cli.main(["train", "--text", inside, "--out", out, "--config", "small",
                     "--overwrite"]) == 2
    assert files(out) == {"metrics.csv": words}  # no lock, no list of files left either
    linked = tmp_path / "e"
    linked.mkdir()
    (linked / "summary.json").symlink_to(text)  # a write would go through the link
    with pytest.raises(RunFolderError, match="the summary.json that the run writes"):
        train(text, linked, overwrite=True)
    assert Path(text).read_bytes() == words


def test_lost_work_a_text_inside_out_survives_the_runs_and_overwrite(text, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    inside = out / "words.txt"
    inside.write_bytes(Path(text).read_bytes())
    train(inside, out)
    train(inside, out, {"seed": 5}, overwrite=True)
    assert inside.read_bytes() == Path(text).read_bytes()
    assert load_checkpoint(out / "checkpoint.safetensors").extra["seed"] == 5


def test_lost_work_a_users_own_summary_json_is_refused_named_and_kept(text, tmp_path,
                                                                     monkeypatch):
    """A folder holding only the user's summary.json (or metrics.csv) lost it before the
    first step: no run wrote it, so it is refused and named, and stays as it was."""
    for name in ("summary.json", "metrics.csv"):
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_bytes(b'{"mine": true}\n')
        with pytest.raises(RunFolderError, match=f"no tinygpt run wrote, .*: {name}\\."):
            train(text, out)
        assert files(out) == {name: b'{"mine": true}\n'}
    # a run stopped before its summary: a summary.json put there later is still not its own
    ctrl_c_at(monkeypatch, epoch=0, step=4)
    run = train(text, tmp_path / "R", {"num_epochs": 2})
    monkeypatch.undo()
    (run.out / "summary.json").write_bytes(b"mine")
    with pytest.raises(RunFolderError, match="summary.json"):
        resume(run.checkpoint_path)
    assert (run.out / "summary.json").read_bytes() == b"mine"


def test_lost_work_overwrite_removes_only_the_runs_own_files(text, tmp_path, monkeypatch):
    """--overwrite deletes what the earlier run wrote, nothing else: not a file of the
    user's, not one named like a kept checkpoint that no run wrote."""
    out = tmp_path / "R"
    train(text, out, {"num_epochs": 2}, keep_last=2)
    assert workflow.kept_checkpoints(out)  # run A kept one
    mine = {"notes.txt": b"the user's", "checkpoint-step-000001.safetensors": b"not a run's"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    with pytest.raises(RunFolderError, match="checkpoint-step-000001.safetensors"):
        train(text, out)
    ctrl_c_at(monkeypatch, epoch=0, step=4)
    b = train(text, out, {"seed": 7}, overwrite=True)
    assert b.state.interrupted
    left = files(out)
    assert set(left) == {*mine, "checkpoint.safetensors", "metrics.csv", workflow.MANIFEST}
    assert {name: left[name] for name in mine} == mine
    listed = json.loads(left[workflow.MANIFEST])["files"]
    assert listed == ["checkpoint.safetensors", "metrics.csv"]


def test_lost_work_a_run_folder_from_before_the_list_of_files_is_still_the_runs(text, tmp_path):
    """A folder an older tinygpt wrote has no .tinygpt-run.json: its run resumes in it, a
    new run is refused without --overwrite and clears it with it."""
    out = tmp_path / "R"
    a = train(text, out)
    (out / workflow.MANIFEST).unlink()
    resume(a.checkpoint_path, {"num_epochs": 2})
    assert summary(out)["epochs"] == 2
    (out / workflow.MANIFEST).unlink()
    (out / "notes.txt").write_bytes(b"the user's")
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(text, out)
    train(text, out, {"seed": 5}, overwrite=True)
    assert summary(out)["epochs"] == 1 and (out / "notes.txt").read_bytes() == b"the user's"


# --- SIGTERM and SIGHUP do what Ctrl-C does -----------------------------------------------------


def test_left_behind_sigterm_while_writing_the_final_files_releases_the_lock(
        text, tmp_path, monkeypatch, capsys):
    """SIGTERM outside the training loop (here: while the model file is written) stops the
    run as Ctrl-C does: the lock released, the way on said, exit status 143."""
    def terminated(model, path):
        handler = signal.getsignal(signal.SIGTERM)
        assert handler not in (signal.SIG_DFL, signal.SIG_IGN), "SIGTERM would kill pytest"
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(workflow, "save_model", terminated)
    out = tmp_path / "R"
    assert cli.main(["train", "--text", text, "--config", "small", "--context-length", "8",
                     "--batch-size", "8", "--epochs", "1", "--eval-freq", "50",
                     "--out", out, "--no-progress"]) == 143
    err = capsys.readouterr().err
    assert "Interrupted while writing the final files" in err
    assert f"tinygpt train --resume {out / 'checkpoint.safetensors'}" in err
    assert err.rstrip().endswith("tinygpt: interrupted by SIGTERM")
    assert not (out / ".tinygpt-train.lock").exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_lost_work_a_run_under_nohup_is_not_stopped_by_sighup(text, tmp_path, monkeypatch):
    """nohup ignores SIGHUP so that a run outlives its terminal: it stays ignored."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        ctrl_c_at(monkeypatch, epoch=0, step=4, signum=signal.SIGHUP)
        run = train(text, tmp_path / "R")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not run.state.interrupted and summary(run.out)["epochs"] == 1


# --- Ctrl-C says what was saved and how to carry on --------------------------------------------


def test_unclear_ctrl_c_says_what_was_saved_and_the_exact_command(text, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "R"
    ctrl_c_at(monkeypatch, epoch=0, step=4)
    run = train(text, out, {"num_epochs": 2})
    printed = capsys.readouterr().out
    assert run.state.interrupted and run.state.global_step == 4
    assert f"Saved {run.checkpoint_path}" in printed
    assert "model.safetensors, loss-plot.png and summary.json are written when" in printed
    command = printed.strip().splitlines()[-1].strip()
    assert command == f"tinygpt train --resume {run.checkpoint_path}"
    monkeypatch.undo()
    args = shlex.split(command)
    assert cli.main(args[1:] + ["--no-progress"]) == 0  # the command works as printed
    assert summary(out)["epochs"] == 2


def test_unclear_abort_before_any_checkpoint_says_nothing_is_saved(text, tmp_path, monkeypatch,
                                                                   capsys):
    def abort(self, state, train_loss, val_loss):
        raise KeyboardInterrupt  # a second Ctrl-C: stops at once

    monkeypatch.setattr(workflow.Run, "_log_metrics", abort)
    with pytest.raises(KeyboardInterrupt):
        train(text, tmp_path / "R")
    assert "No checkpoint of this run was saved" in capsys.readouterr().err


# --- A run that diverges on an epoch's last step ------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_unclear_error_divergence_on_an_epochs_last_step_is_the_divergence_error(tmp_path):
    """One batch an epoch and lr 1e30: the weights break on the epoch's last update. It
    must be the divergence error (exit 1), not the sample's "logits contain NaN"."""
    path = tmp_path / "tiny.txt"
    path.write_text("river stone quiet lamp " * 25, encoding="utf-8")
    with pytest.raises(TrainingDivergedError, match="learning rate") as info:
        workflow.pretrain(TINY, {"learning_rate": 1e30, "batch_size": 8, "eval_freq": 1,
                                 "num_epochs": 3}, text=path, out=tmp_path / "R",
                          progress=False)
    assert "logits" not in str(info.value)
    assert cli._exit_code(info.value) == 1


def test_unclear_error_divergence_without_an_evaluation_is_caught_at_the_epochs_end(
        text, tmp_path, monkeypatch):
    """The last update of epoch 2 breaks the weights and no evaluation follows it: the
    epoch's end says so, and the advice resumes from epoch 1's checkpoint."""
    out = tmp_path / "R"
    poison_after_steps(monkeypatch, 32)  # 16 batches an epoch
    with pytest.raises(TrainingDivergedError, match="weights became NaN") as info:
        train(text, out, {"num_epochs": 3, "eval_freq": 100})
    assert f"resume with:\n  tinygpt train --resume {out / 'checkpoint.safetensors'}" in str(
        info.value)
    assert load_checkpoint(out / "checkpoint.safetensors").state.epoch == 1


# --- Left behind --------------------------------------------------------------------------------


def test_left_behind_a_text_too_short_leaves_no_folder(tmp_path, monkeypatch):
    short = tmp_path / "short.txt"
    short.write_text("Too short to hold one window.", encoding="utf-8")
    with pytest.raises(ValueError, match="not enough for one window"):
        workflow.pretrain(TINY, dict(QUICK), text=short, out=tmp_path / "new" / "deeper",
                          progress=False)
    assert not (tmp_path / "new").exists()
    # the command line's default folder, runs/<text name>, is not left either
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--text", str(short), "--config", "small"]) == 2
    assert not (tmp_path / "runs").exists()


def test_left_behind_a_refused_run_keeps_a_folder_it_did_not_make(text, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's", encoding="utf-8")
    with pytest.raises(ValueError):
        train(text, out, {"batch_size": 10_000})
    assert (out / "notes.txt").is_file() and not (out / ".tinygpt-train.lock").exists()


# --- metrics.csv, --checkpoint-every, --keep-last -----------------------------------------------


def test_metrics_csv_has_a_row_per_evaluation_and_resume_continues_it(
        text, tmp_path, monkeypatch):
    straight = train(text, tmp_path / "straight", {"num_epochs": 2})
    rows = metrics(straight.out)
    assert [int(r[0]) for r in rows] == list(range(0, 32, 4))
    assert [float(r[2]) for r in rows] == pytest.approx(straight.state.train_losses, abs=1e-6)
    assert [int(r[1]) for r in rows] == straight.state.track_tokens_seen
    assert all(float(r[4]) == 0.0004 for r in rows)
    elapsed = [float(r[5]) for r in rows]
    assert elapsed == sorted(elapsed)

    ctrl_c_at(monkeypatch, epoch=1)
    stopped = train(text, tmp_path / "stopped", {"num_epochs": 2})
    monkeypatch.undo()
    with open(stopped.metrics_path, "a", encoding="utf-8") as f:  # a row the run lost
        f.write("999,1,1.0,1.0,0.0004,1.0\n")
    resume(stopped.checkpoint_path)
    resumed = metrics(stopped.out)
    assert [r[:4] for r in resumed] == [r[:4] for r in rows]  # the same series, once
    assert float(resumed[-1][5]) >= float(resumed[0][5])


def test_checkpoint_every_and_keep_last(text, tmp_path, monkeypatch):
    saved = []
    save = workflow.save_checkpoint

    def counting(path, model, optimizer, state, extra=None):
        saved.append(state.epoch)
        return save(path, model, optimizer, state, extra=extra)

    monkeypatch.setattr(workflow, "save_checkpoint", counting)
    run = train(text, tmp_path / "R", {"num_epochs": 5}, checkpoint_every=2, keep_last=2)
    assert saved == [2, 4, 5]  # every 2nd epoch, and the last
    kept = workflow.kept_checkpoints(run.out)
    assert [p.name for p in kept] == ["checkpoint-step-000063.safetensors"]  # epoch 4's
    assert load_checkpoint(kept[0]).state.epoch == 4
    assert load_checkpoint(run.checkpoint_path).state.epoch == 5

    saved.clear()
    run = resume(run.checkpoint_path, {"num_epochs": 6})  # default keep_last=1
    assert saved == [6] and workflow.kept_checkpoints(run.out) == []
    with pytest.raises(ValueError, match="checkpoint_every"):
        train(text, tmp_path / "x", checkpoint_every=0)
    assert not (tmp_path / "x").exists()


def test_checkpoint_options_on_the_command_line(text, tmp_path, capsys):
    assert cli.main(["train", "--keep-last", "0"]) == 2
    assert "argument --keep-last: must be an integer >= 1" in capsys.readouterr().err
    out = tmp_path / "R"
    assert cli.main(["train", "--text", str(text), "--config", "small", "--context-length",
                     "8", "--batch-size", "8", "--epochs", "2", "--eval-freq", "50",
                     "--checkpoint-every", "2", "--keep-last", "3", "--out", str(out),
                     "--no-progress"]) == 0
    assert "metrics.csv" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.safetensors").state.epoch == 2
