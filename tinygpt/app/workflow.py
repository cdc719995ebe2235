"""One pretraining run, from a text to the files it leaves: the code behind both
``tinygpt train`` and ``demos/train_verdict.py``.

A run follows the chapter's section 5.2 on any UTF-8 text. ``demos/train_verdict.py``'s
``main`` writes its steps out in the book's order; ``pretrain(gpt_config, settings)``,
behind ``tinygpt train``, takes the same steps through the helpers here:

1. ``start_run`` checks the settings, the config and the text (or the checkpoint to
   resume), then, entered with ``with``, readies and locks the output folder and returns
   the ``Run``;
2. the text is split 90/10 into the book's two loaders (``split_loaders``);
3. ``GPTModel(gpt_config)`` and ``AdamW``, seeded (on resume: the checkpoint's);
4. ``Run.train`` runs ``tinygpt.train.train_model`` (the book's loop), appends a row to
   ``metrics.csv`` at every evaluation, and saves ``checkpoint.safetensors`` every
   ``checkpoint_every`` epochs, after the last one, and when Ctrl-C stops the run;
5. ``plot_losses`` draws ``loss-plot.png`` (figure 5.12), ``save_model`` writes
   ``model.safetensors``, and ``Run.finish`` writes ``summary.json``, last.

One folder holds one run, and a run touches only what a run wrote: it lists its files in
``.tinygpt-run.json`` before writing them. A folder that holds another run, or files of
the names a run writes that no run listed (a user's own ``summary.json``), is refused,
naming them, unless ``overwrite``, which deletes the listed files of the earlier run
before anything is trained, and nothing else. A run that would write over its own text
is refused even then. SIGTERM and SIGHUP stop a run as Ctrl-C does. A checkpoint
keeps the run's settings, the path and sha256 of its text, and its wall time, so
``pretrain(None, {}, resume=path)`` carries on exactly where a run stopped; resuming a
run whose every epoch is trained but whose final files are missing or older than its
checkpoint (the process was stopped while writing them) writes them again. Mistakes
raise ValueError (or a file error) whose message names the options both front ends
share (``--lr``, ``--batch-size``, ``--resume``, ...).
"""

import csv
import json
import os
import re
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy

from ..backend import manual_seed
from ..checks import nonnegative_int, positive_int, real_problem
from ..data import create_dataloader_v1, train_val_split
from ..errors import ModelFileNotCheckpointError, RunFolderError
from ..io.checkpoint import load_checkpoint, save_checkpoint, save_model, tinygpt_format
from ..io.files import atomic_write_text, remove_stale_temporaries, sha256_hex
from ..io.textsource import find_verdict, read_text_file
from ..model import GPT_CONFIG_124M, GPTModel, validate_config
from ..optim import AdamW
from ..tokenizer import get_tokenizer
from ..train import (
    StopSignals,
    TrainingDivergedError,
    TrainingState,
    plot_losses,
    train_model,
)

# The chapter's run (section 5.2). Each run saves its settings in its checkpoint and takes
# them from there when resumed; the first four are the book's OTHER_SETTINGS.
SETTINGS = {
    "learning_rate": 0.0004,
    "num_epochs": 10,
    "batch_size": 2,
    "weight_decay": 0.1,
    "seed": 123,
    "eval_freq": 5,  # evaluate every this many steps
    "eval_iter": 5,  # over this many batches of each loader
    "start_context": "Every effort moves you",  # the prompt of the sample after each epoch
    "warmup_steps": 0,  # appendix D, all off by default
    "cosine_decay": False,
    "grad_clip": None,
}

RESUME_COMMAND = "tinygpt train --resume {checkpoint}"

# The files of a run, in the order the closing line lists them.
CHECKPOINT, MODEL, PLOT, METRICS, SUMMARY = (
    "checkpoint.safetensors", "model.safetensors", "loss-plot.png", "metrics.csv",
    "summary.json")
RUN_FILES = (PLOT, MODEL, CHECKPOINT, METRICS, SUMMARY)
# The list of the files a run wrote into its folder: what a later run may delete.
MANIFEST = ".tinygpt-run.json"
# The run's earlier checkpoints that --keep-last keeps, named by their step.
KEPT = "checkpoint-step-{step:06d}.safetensors"
_KEPT_PATTERN = re.compile(r"checkpoint-step-(\d{6,})\.safetensors")
METRICS_COLUMNS = ("step", "tokens_seen", "train_loss", "val_loss", "learning_rate",
                   "elapsed_s")


def train_configs():
    """Name -> GPT config. ``124M`` is the chapter's model; ``small`` trains in seconds."""
    return {
        "124M": dict(GPT_CONFIG_124M),
        "small": dict(GPT_CONFIG_124M, context_length=64, emb_dim=128, n_heads=4, n_layers=2),
    }


def read_text(path=None):
    """(path, text) of the UTF-8 text at ``path``, or of "The Verdict" when ``path`` is None."""
    found = find_verdict(path)  # a missing path: FileNotFoundError with a clear message
    try:
        text = read_text_file(found)  # text mode, as the book reads it; a pipe too
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{found} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): convert it first, e.g. iconv -f latin1 -t utf-8 FILE > FILE.txt"
        ) from None
    if not text.strip():
        raise ValueError(f"{found} is empty: give a text to work on")
    return Path(found), text


def split_loaders(text, context, batch_size, tokenizer):
    """The chapter's (train_loader, val_loader): the first 90% of the characters to train
    on (shuffled, the last partial batch dropped), the rest to validate on
    (``train_val_split``); windows of
    ``context`` tokens, each starting where the previous one ended."""
    train_data, val_data = train_val_split(text)
    parts = (("training", train_data, True), ("validation", val_data, False))
    return tuple(
        create_dataloader_v1(part, batch_size=batch_size, max_length=context, stride=context,
                             drop_last=train, shuffle=train, num_workers=0, name=name,
                             tokenizer=tokenizer)
        for name, part, train in parts)


def pretrain(gpt_config, settings=None, *, text=None, out=None, resume=None, overwrite=False,
             progress=None, resume_command=RESUME_COMMAND, checkpoint_every=1, keep_last=1):
    """Train a ``GPTModel(gpt_config)`` on ``text`` (a path; None: "The Verdict") and write
    the run into ``out`` (default ``runs/<text name>``); returns the ``Run``.

    The arguments are ``start_run``'s; ``progress``: show a progress bar (default: on a
    terminal). After Ctrl-C the run's ``state.interrupted`` is set and the checkpoint
    saved; the final files are written only by a finished run."""
    with start_run(gpt_config, settings, text=text, out=out, resume=resume,
                   overwrite=overwrite, resume_command=resume_command,
                   checkpoint_every=checkpoint_every, keep_last=keep_last) as run:
        tokenizer = get_tokenizer()
        train_loader, val_loader = split_loaders(
            run.text, run.config["context_length"], run.settings["batch_size"], tokenizer)
        model, optimizer = run.model_and_optimizer()
        state = run.train(model, optimizer, train_loader, val_loader, tokenizer, progress)
        if not state.interrupted:
            epochs_seen = numpy.linspace(0, state.epoch, len(state.train_losses))
            plot_losses(epochs_seen, state.track_tokens_seen, state.train_losses,
                        state.val_losses, path=run.plot_path, show=False)
            save_model(model, run.model_path)
            run.finish()
    return run


def start_run(gpt_config, settings=None, *, text=None, out=None, resume=None,
              overwrite=False, resume_command=RESUME_COMMAND, checkpoint_every=1,
              keep_last=1):
    """Check a run's inputs and return its folder guard; ``with start_run(...) as run``
    readies and locks the folder and gives the ``Run``.

    ``settings``: any of ``SETTINGS`` (the rest are the book's). With ``resume`` (a
    checkpoint) the run carries on with the checkpoint's model and settings, into the
    checkpoint's folder unless ``out`` says otherwise; ``gpt_config`` and ``settings`` then
    hold only what the caller asks for explicitly, and a value other than the run's is
    refused, except ``num_epochs``, the epoch to train to. ``overwrite``: delete the run
    that ``out`` holds and start afresh there. ``resume_command``: how to carry on, with
    ``{checkpoint}``, printed after Ctrl-C or a divergence. ``checkpoint_every``: save
    the checkpoint every this many epochs (the last epoch and Ctrl-C always save);
    ``keep_last``: how many checkpoints to keep, the latest included (older ones as
    ``checkpoint-step-NNNNNN.safetensors``).

    Everything the inputs can show to be wrong fails here, before a folder is made or a
    model built: the settings, the config, the text, the checkpoint."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; the settings are {', '.join(SETTINGS)}")
    checkpoint_every = positive_int("checkpoint_every (--checkpoint-every)", checkpoint_every)
    keep_last = positive_int("keep_last (--keep-last)", keep_last)
    if resume is None:
        if gpt_config is None:
            raise ValueError("a new run needs a model config (e.g. GPT_CONFIG_124M); only "
                             "--resume takes it from a checkpoint")
        validate_config(gpt_config)
        settings = _checked_settings(dict(SETTINGS, **settings))
        text_path, text = read_text(text)
        out = Path(out).expanduser() if out else Path("runs") / text_path.stem
        run = Run(dict(gpt_config), settings, text_path, text, out)
    else:
        run = _resume(Path(resume).expanduser(), gpt_config, settings, text, out)
    run.checkpoint_every, run.keep_last, run.resume_command = (
        checkpoint_every, keep_last, resume_command)
    return _OutputFolder(run, overwrite)


class Run:
    """One run in its folder: its config and settings, its text, and, once trained, the
    model, the optimizer and where the training stands (``state.interrupted`` after
    Ctrl-C). ``start_run`` makes it; its methods are the steps the front ends call."""

    def __init__(self, config, settings, text_path, text, out, model=None, optimizer=None,
                 state=None, resumed_from=None, elapsed_before=0.0):
        self.config, self.settings, self.text_path, self.text = config, settings, text_path, text
        self.out = out
        self.model, self.optimizer = model, optimizer
        self.state = state or TrainingState()
        self.resumed_from = resumed_from  # the checkpoint this run carries on from
        # The newest checkpoint of this run, and its step: what advice may point at.
        self.last_checkpoint = resumed_from
        self.last_step = self.state.global_step if resumed_from else None
        self.elapsed_before = elapsed_before  # wall seconds of the run's earlier sessions
        self.checkpoint_every, self.keep_last, self.resume_command = 1, 1, RESUME_COMMAND
        self.extra = dict(settings, text=str(text_path.resolve()),
                          text_sha256=sha256_hex(text.encode("utf-8")))
        self.started = self.seconds = None
        self.tokens_before = self.state.tokens_seen
        self.training_done = False
        self.files = set()  # what the folder's manifest lists: the names this run wrote

    resumed = property(lambda self: self.resumed_from is not None)
    checkpoint_path = property(lambda self: self.out / CHECKPOINT)
    model_path = property(lambda self: self.out / MODEL)
    plot_path = property(lambda self: self.out / PLOT)
    metrics_path = property(lambda self: self.out / METRICS)
    summary_path = property(lambda self: self.out / SUMMARY)

    def model_and_optimizer(self):
        """The book's ``GPTModel(gpt_config)`` and ``AdamW``, seeded with the run's seed;
        on resume, the checkpoint's (its random generator is restored already)."""
        if self.resumed:
            return self.model, self.optimizer
        manual_seed(self.settings["seed"])
        model = GPTModel(self.config)
        optimizer = AdamW(model.parameters(), lr=self.settings["learning_rate"],
                          weight_decay=self.settings["weight_decay"])
        return model, optimizer

    def train(self, model, optimizer, train_loader, val_loader, tokenizer, progress=None):
        """``train_model`` with the run's settings: a metrics.csv row at every evaluation,
        checkpoints as ``checkpoint_every`` says; after Ctrl-C, the checkpoint and a
        line saying how to carry on. Returns the TrainingState."""
        self.model, self.optimizer, settings = model, optimizer, self.settings
        print(f"Model: {model.num_parameters():,} parameters, context "
              f"{model.cfg['context_length']}; text {len(self.text):,} characters; "
              f"{len(train_loader)} training and {len(val_loader)} validation batches")
        self._start_metrics()
        self.started = time.perf_counter()
        self.state = train_model(
            model, train_loader, val_loader, optimizer, num_epochs=settings["num_epochs"],
            eval_freq=settings["eval_freq"], eval_iter=settings["eval_iter"],
            start_context=settings["start_context"], tokenizer=tokenizer, state=self.state,
            warmup_steps=settings["warmup_steps"], cosine_decay=bool(settings["cosine_decay"]),
            grad_clip=settings["grad_clip"], on_epoch_end=self._epoch_end,
            on_evaluate=self._log_metrics, progress=progress)
        self.seconds = time.perf_counter() - self.started
        if self.state.interrupted:
            self.save_checkpoint()
            print(self._stopped_message())
        else:
            self.training_done = True
            self._record(PLOT, MODEL, SUMMARY)  # the files the caller writes next
        return self.state

    def save_checkpoint(self):
        """Write checkpoint.safetensors (weights, AdamW state, training state, generator,
        settings); the one it replaces is kept as checkpoint-step-N when ``keep_last``
        asks for more than one, and the oldest kept ones beyond that are deleted."""
        if self.keep_last > 1 and self.last_step is not None and self._own_checkpoint():
            kept = KEPT.format(step=self.last_step)
            self._record(kept)
            _keep(self.checkpoint_path, self.out / kept)
        self._record(CHECKPOINT)
        extra = dict(self.extra, elapsed_seconds=round(self.elapsed(), 3))
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.state,
                        extra=extra)
        self.last_checkpoint, self.last_step = self.checkpoint_path, self.state.global_step
        ours = [path for path in kept_checkpoints(self.out) if path.name in self.files]
        old = ours[:-(self.keep_last - 1) or None]
        for path in old:
            path.unlink(missing_ok=True)
        if old:
            self._record(forget=[path.name for path in old])

    def finish(self):
        """Write summary.json, the last of the run's files, and print the closing lines."""
        state, seconds = self.state, self.seconds or 0.0
        tokens = state.tokens_seen - self.tokens_before
        summary = {
            "epochs": state.epoch,
            "global_step": state.global_step,
            "final_train_loss": state.train_losses[-1] if state.train_losses else None,
            "final_val_loss": state.val_losses[-1] if state.val_losses else None,
            "wall_seconds": round(seconds, 2),
            "tokens_trained": tokens,
            "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
            "parameters": self.model.num_parameters(),
            "config": self.model.cfg,
            "settings": self.extra,
        }
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2) + "\n")
        losses = ""
        if state.train_losses:
            losses = (f" Final train loss {state.train_losses[-1]:.3f}, "
                      f"val loss {state.val_losses[-1]:.3f}")
        print(f"\nDone in {seconds:.1f} s ({summary['tokens_per_second']} tokens/s).{losses}")
        wrote = [self.out / name for name in RUN_FILES if (self.out / name).is_file()]
        print("Wrote " + ", ".join(str(path) for path in wrote))

    def elapsed(self):
        """Wall seconds of the whole run, its earlier sessions included."""
        now = 0.0 if self.started is None else time.perf_counter() - self.started
        return self.elapsed_before + now

    def command_to_resume(self, checkpoint=None):
        """The exact command that carries this run on from ``checkpoint`` (default: the
        last one saved)."""
        checkpoint = Path(checkpoint or self.last_checkpoint)
        command = self.resume_command.format(checkpoint=shlex.quote(str(checkpoint)))
        if checkpoint.parent.resolve() != self.out.resolve():
            command += f" --out {shlex.quote(str(self.out))}"
        return command

    def _epoch_end(self, state):
        if state.finished or state.epoch % self.checkpoint_every == 0:
            self.save_checkpoint()

    def _own_checkpoint(self):
        return (self.last_checkpoint is not None and self.checkpoint_path.is_file()
                and Path(self.last_checkpoint).resolve() == self.checkpoint_path.resolve())

    def _record(self, *names, forget=()):
        """List ``names`` in the folder's manifest, before they are written, so that no file
        the run writes is missing from it; ``forget``: names of files it has deleted."""
        files = (self.files | set(names)) - set(forget)
        if files != self.files:
            self.files = files
            atomic_write_text(self.out / MANIFEST,
                              json.dumps({"files": sorted(files)}, indent=1) + "\n")

    def _start_metrics(self):
        """metrics.csv: the header, then, on resume, the earlier sessions' rows up to the
        checkpoint's step (rows after it belong to steps that are trained again)."""
        rows = []
        if self.resumed:
            source = Path(self.resumed_from).parent / METRICS
            if source.is_file() and METRICS in recorded_files(source.parent):
                with open(source, newline="", encoding="utf-8") as f:
                    rows = [row for row in csv.reader(f)][1:]
                rows = [row for row in rows if row and row[0].isdigit()
                        and int(row[0]) <= self.state.global_step]
        lines = [METRICS_COLUMNS] + rows
        self._record(METRICS)
        atomic_write_text(self.metrics_path, "".join(",".join(r) + "\n" for r in lines))

    def _log_metrics(self, state, train_loss, val_loss):
        row = (state.global_step, state.tokens_seen, f"{train_loss:.6f}", f"{val_loss:.6f}",
               f"{self.optimizer.param_groups[0]['lr']:.6g}", f"{self.elapsed():.2f}")
        with open(self.metrics_path, "a", encoding="utf-8") as f:  # closing flushes it
            f.write(",".join(str(v) for v in row) + "\n")

    def _stopped_message(self):
        state = self.state
        lines = [f"Stopped at epoch {state.epoch + 1}, step {state.global_step}. Saved "
                 f"{self.checkpoint_path} (weights, optimizer and training state) and "
                 f"{self.metrics_path.name} up to this step."]
        if MODEL in self.files and self.model_path.is_file():
            lines.append(f"{self.model_path} still holds the weights of the run's previous "
                         "finish; it is replaced when the run finishes.")
        else:
            lines.append(f"{MODEL}, {PLOT} and {SUMMARY} are written when the run finishes.")
        return "\n".join(lines + ["Continue with:", "  " + self.command_to_resume()])

    def _advice(self):
        """What to do after a failure, naming only this run's files."""
        if self.last_checkpoint is None or not Path(self.last_checkpoint).is_file():
            return ("No checkpoint of this run was saved, so there is nothing to resume: "
                    "start the run again with the changes above.")
        return (f"The last checkpoint of this run is {self.last_checkpoint} (step "
                f"{self.last_step}); resume with:\n  {self.command_to_resume()}")


def kept_checkpoints(folder):
    """The earlier checkpoints ``keep_last`` keeps in ``folder``, first saved first."""
    found = []
    for path in Path(folder).glob("checkpoint-step-*.safetensors"):
        match = _KEPT_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def recorded_files(folder):
    """The names of the files in ``folder`` that a tinygpt run wrote: those its manifest
    (``.tinygpt-run.json``) lists, and the manifest. A folder written before runs kept a
    manifest counts as a run's when its checkpoint or model file is a tinygpt file. Any
    other file is no run's, whatever its name: a user's own summary.json stays theirs."""
    folder = Path(folder)
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
    except FileNotFoundError:
        kept = [path.name for path in kept_checkpoints(folder)]
        if any(tinygpt_format(folder / name) for name in (CHECKPOINT, MODEL, *kept)):
            return {*RUN_FILES, *kept}
        return set()
    except (OSError, ValueError, AttributeError):  # not a manifest of ours
        return set()
    if not (isinstance(listed, list) and all(isinstance(name, str) for name in listed)):
        return set()
    return {*listed, MANIFEST}


def _keep(path, kept):
    """Give the file ``path`` a second name ``kept`` (a hard link: no copy, and the
    atomic write that replaces ``path`` then leaves ``kept`` whole)."""
    kept.unlink(missing_ok=True)
    try:
        os.link(path, kept)
    except OSError:  # a file system without hard links
        import shutil

        shutil.copyfile(path, kept)


def _checked_settings(settings):
    """``settings`` (all of ``SETTINGS``' keys), checked; raises ValueError naming the
    option. Runs before anything is built, for new and resumed runs alike."""
    for key in ("num_epochs", "batch_size", "eval_freq", "eval_iter"):
        positive_int(key, settings[key])
    nonnegative_int("seed", settings["seed"])
    nonnegative_int("warmup_steps", settings["warmup_steps"])
    if not isinstance(settings["cosine_decay"], bool):  # "no" would be truthy: decay on
        raise ValueError(f"cosine_decay must be True or False, got "
                         f"{settings['cosine_decay']!r:.60}")
    problems = [real_problem("learning_rate", settings["learning_rate"], above=0),
                real_problem("weight_decay", settings["weight_decay"], 0)]
    if settings["grad_clip"] is not None:
        problems.append(real_problem("grad_clip", settings["grad_clip"], above=0))
    if any(problems):
        raise ValueError("; ".join(p for p in problems if p))
    prompt = settings["start_context"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"start_context (--start-context) must be a non-empty text: the "
                         f"sample after each epoch continues it; got {prompt!r}")
    return settings


def _resume(path, gpt_config, asked, text, out):
    """The ``Run`` saved in checkpoint ``path``, checked against what the caller ``asked``
    for; the checkpoint restores the random generator too."""
    try:
        ckpt = load_checkpoint(path)
    except ModelFileNotCheckpointError:
        raise ValueError(f"{path} is a model file: it has no optimizer or training state to "
                         "resume; pass the run's checkpoint.safetensors") from None
    saved = ckpt.extra if isinstance(ckpt.extra, dict) else {}
    settings = {key: saved.get(key, value) for key, value in SETTINGS.items()}
    for key, value in (gpt_config or {}).items():
        if key == "context_length" and value != ckpt.config[key]:
            raise ValueError(f"--context-length {value} differs from the run being resumed "
                             f"({ckpt.config[key]}); leave it out when resuming")
        if value != ckpt.config.get(key):
            raise ValueError(f"--config asks for {key} {value}, the run being resumed has "
                             f"{ckpt.config.get(key)}; leave --config out when resuming")
    for key, value in asked.items():
        if key != "num_epochs" and value != settings[key]:
            flag = "--lr" if key == "learning_rate" else "--" + key.replace("_", "-")
            raise ValueError(f"{flag} {value} differs from the run being resumed "
                             f"({settings[key]}); leave {flag} out when resuming (the "
                             "checkpoint keeps the run's settings)")
    settings["num_epochs"] = positive_int("num_epochs",
                                          asked.get("num_epochs", settings["num_epochs"]))
    _checked_settings(settings)  # a checkpoint's metadata is input too
    state = ckpt.state
    out = Path(out).expanduser() if out else path.parent
    if state.epoch >= settings["num_epochs"]:
        if _final_files_match(out, state):
            raise ValueError(f"{path} has already trained {state.epoch} epoch(s); pass "
                             f"--epochs N with N > {state.epoch} to train further")
        settings["num_epochs"] = state.epoch  # nothing to train: only the files to write
    if text is None and saved.get("text") is not None:
        text = saved["text"]
        if not Path(text).is_file():
            raise ValueError(f"the run being resumed trained on {text}, which no longer "
                             "exists; pass the same text with --text")
    text_path, text = read_text(text)
    if saved.get("text_sha256") not in (None, sha256_hex(text.encode("utf-8"))):
        raise ValueError(f"{text_path} is not the text the checkpoint was trained on "
                         f"({saved.get('text')}, sha256 {saved['text_sha256'][:12]}...); "
                         "pass that text with --text")
    if state.epoch >= settings["num_epochs"]:
        print(f"Resuming {path}: all {state.epoch} epoch(s) are trained, but {out} lacks "
              f"the final files of step {state.global_step}: writing them")
    else:
        print(f"Resuming {path}: epoch {state.epoch + 1}, step {state.global_step}, "
              f"{state.tokens_seen:,} tokens seen; training to epoch {settings['num_epochs']}")
    elapsed = saved.get("elapsed_seconds", 0.0)
    elapsed = float(elapsed) if isinstance(elapsed, (int, float)) and elapsed >= 0 else 0.0
    return Run(ckpt.config, settings, text_path, text, out, ckpt.model, ckpt.optimizer,
               state, resumed_from=path, elapsed_before=elapsed)


def _final_files_match(out, state):
    """Whether ``out`` holds the final files of the run at ``state``: summary.json, written
    last, names its step, and the model file is there."""
    try:
        summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(summary, dict) and summary.get("global_step") == state.global_step
            and (out / MODEL).is_file() and {SUMMARY, MODEL} <= recorded_files(out))


class _OutputFolder:
    """The run's output folder, made ready and locked before anything is built; entered,
    it gives the ``Run``.

    Refused (RunFolderError): a folder where the run's text is one of the files a run
    writes; a folder holding files of those names that no run wrote (``recorded_files``),
    unless ``overwrite``, which lets the run write over them; a folder that holds another
    run (its checkpoint or model file), unless ``overwrite``, which then deletes that
    run's files and nothing else (a resumed run may carry on in its own checkpoint's
    folder); a folder that another process is training into, as its lock file
    ``.tinygpt-train.lock`` says (the PID and host; a lock whose process is gone is stale
    and taken over); a folder standing where one of the run's files goes. Temporary files
    that a killed run's atomic writes left behind are removed: with the lock held, none
    can be in use.

    While it is held, SIGTERM and SIGHUP stop the run as Ctrl-C does (``StopSignals``).
    Leaving it: after Ctrl-C it says what is saved and how to carry on; a divergence gets
    the same advice appended; a run that fails before writing anything removes the
    folders it made."""

    LOCK = ".tinygpt-train.lock"

    def __init__(self, run, overwrite=False):
        self.folder, self.run, self.overwrite = run.out, run, overwrite
        self.lock = self.folder / self.LOCK
        self.token = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}"
        self.made = []  # the folders this run created, deepest last
        self.signals = StopSignals()  # from entering to leaving: each stops the run at once

    def __enter__(self):
        self.signals.__enter__()
        try:
            self._enter()
        except BaseException:
            self.signals.__exit__()
            raise
        return self.run

    def __exit__(self, exc_type, exc, tb):
        try:
            return self._leave(exc_type, exc)
        finally:
            self.signals.__exit__()

    def _enter(self):
        if self.folder.is_symlink() and not self.folder.exists():
            raise RunFolderError(f"--out {self.folder} is a symbolic link to "
                                 f"{os.readlink(self.folder)}, which does not exist: create "
                                 "that folder or choose another --out")
        if self.folder.exists() and not self.folder.is_dir():
            raise RunFolderError(f"--out {self.folder} is a file, not a folder: choose "
                                 "another --out")
        self.made = [p for p in (self.folder, *self.folder.parents) if not p.exists()][::-1]
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
            try:
                self._check()
            except BaseException:
                self._release()
                raise
        except BaseException:
            self._remove_made_folders()
            raise

    def _leave(self, exc_type, exc):
        replacement = None
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            print("\n" + self._aborted_message(), file=sys.stderr, flush=True)
        elif exc_type is not None and issubclass(exc_type, TrainingDivergedError):
            replacement = TrainingDivergedError(f"{exc}\n{self.run._advice()}")
        self._release()
        if exc_type is not None:
            self._remove_made_folders()
        if replacement is not None:
            raise replacement from None
        return False

    def _aborted_message(self):
        run = self.run
        if run.training_done and run.last_checkpoint is not None:
            return (f"Interrupted while writing the final files. {run.last_checkpoint} "
                    "holds the finished run; write them with:\n  " + run.command_to_resume())
        return "Aborted: nothing more was saved now. " + run._advice()

    def _check(self):
        folder, run = self.folder, self.run
        for name in (*RUN_FILES, MANIFEST, self.LOCK):
            if (folder / name).is_dir():
                raise RunFolderError(f"{folder / name} is a folder, where the run writes "
                                     "a file: move it away or choose another --out")
        names = [*RUN_FILES, MANIFEST, *(p.name for p in kept_checkpoints(folder))]
        present = [name for name in names if os.path.lexists(folder / name)]
        self._refuse_the_text(present)
        resumed = run.resumed_from
        own = resumed is not None and resumed.resolve().parent == folder.resolve()
        recorded = recorded_files(folder)
        foreign = [name for name in present if name not in recorded]
        if foreign and not self.overwrite:
            raise RunFolderError(
                f"{folder} holds files that no tinygpt run wrote, where a run writes its "
                f"own: {', '.join(foreign)}. Move them away or choose another --out (with "
                "--overwrite the run writes over them)")
        ours = [name for name in present if name in recorded]
        holds = [name for name in ours if name in (CHECKPOINT, MODEL)
                 or _KEPT_PATTERN.fullmatch(name)]
        if holds and not (own or self.overwrite):
            how = "" if resumed is None else f"{resumed} would be continued into it; "
            carry_on = (f"continue that run with --resume {folder / CHECKPOINT}, "
                        if CHECKPOINT in holds else "")
            raise RunFolderError(
                f"{folder} already holds a run; {how}{carry_on}choose another --out, or "
                "pass --overwrite to replace it")
        remove_stale_temporaries(folder, names)  # none in use: the lock is ours
        if own:  # listed anew: what is there now (in a folder an older tinygpt wrote, first)
            run._record(*(set(ours) - {MANIFEST}))
        else:  # a new run here: nothing of an earlier one stays to be mixed in
            for name in ours:
                (folder / name).unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tinygpt-write-test-"):
            pass  # fail now, not after an epoch, if the folder can't take files

    def _refuse_the_text(self, present):
        """Refuse a folder where the run's text is one of the files a run writes."""
        text = self.run.text_path
        for name in present:
            try:
                same = os.path.samefile(self.folder / name, text)
            except OSError:  # a link to nothing
                continue
            if same:
                raise RunFolderError(
                    f"the text {text} is the {name} that the run writes in {self.folder}, "
                    f"so the run would write over it: move the text out of {self.folder} or "
                    "choose another --out")

    def _remove_made_folders(self):
        """Remove the folders this run made, if nothing was written into them."""
        for folder in reversed(self.made):
            try:
                folder.rmdir()  # only an empty folder goes
            except OSError:
                return

    def _acquire(self):
        for _ in range(10):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.token + "\n")
            return
        raise RunFolderError(f"could not lock {self.folder}: {self.lock} keeps coming back")

    def _take_over_if_stale(self):
        try:
            holder = self.lock.read_text(encoding="utf-8").split()
        except FileNotFoundError:  # released meanwhile: try again
            return
        pid = int(holder[0]) if holder and holder[0].isdigit() else None
        host = holder[1] if len(holder) > 1 else None
        if pid is not None and host == socket.gethostname() and not _process_alive(pid):
            try:  # a rename is atomic: of two runs taking over, one wins
                aside = self.lock.with_name(f"{self.LOCK}.stale-{os.getpid()}")
                os.rename(self.lock, aside)
                aside.unlink()
            except FileNotFoundError:
                pass
            return
        who = f"process {pid} on {host}" if pid is not None else "another process"
        raise RunFolderError(
            f"{self.folder} is in use: {who} is training into it (lock file {self.lock}); "
            "wait for it to finish or choose another --out. If no such run is going on, "
            "delete the lock file")

    def _release(self):
        try:
            if self.lock.read_text(encoding="utf-8").strip() == self.token:
                self.lock.unlink()
        except FileNotFoundError:
            pass


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
