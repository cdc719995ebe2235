"""One pretraining run, from a text to the files it leaves: the code behind both
``tinygpt train`` and ``demos/train_verdict.py``.

``pretrain(gpt_config, settings)`` does the chapter's section 5.2 on any UTF-8 text:

1. read the text ("The Verdict" by default) and split it 90/10 into the book's training
   and validation loaders (``split_loaders``: windows of the context length, stride the
   same);
2. seed the generator, build ``GPTModel(gpt_config)`` and ``AdamW``;
3. run ``tinygpt.train.train_model`` (the book's loop: "Ep N (Step ...)" lines every
   ``eval_freq`` steps, a sample after every epoch), saving ``checkpoint.safetensors``
   after every epoch and when Ctrl-C stops the run between two steps;
4. write ``model.safetensors``, ``loss-plot.png`` (figure 5.12) and ``summary.json`` into
   the output folder, and say what it wrote.

A checkpoint keeps the run's settings, and the path and sha256 of its text, so
``pretrain(None, {}, resume=path)`` carries on exactly where a run stopped. Mistakes
raise ValueError (or a file error) whose message names the options both front ends
share (``--lr``, ``--batch-size``, ``--resume``, ...).
"""

import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from .backend import manual_seed
from .checks import nonnegative_int, positive_int, real_problem
from .data import create_dataloader_v1
from .errors import ModelFileNotCheckpointError, RunFolderError
from .io.checkpoint import (
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    save_model,
)
from .io.textsource import find_verdict, read_text_file
from .model import GPT_CONFIG_124M, GPTModel, validate_config
from .optim import AdamW
from .tokenizer import get_tokenizer
from .train import TrainingDivergedError, TrainingState, plot_losses, train_model

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
    """The chapter's loaders: 90/10 split by characters, windows of ``context`` tokens."""
    split_idx = int(0.90 * len(text))
    train_loader = create_dataloader_v1(
        text[:split_idx], batch_size=batch_size, max_length=context, stride=context,
        drop_last=True, shuffle=True, num_workers=0, name="training", tokenizer=tokenizer)
    val_loader = create_dataloader_v1(
        text[split_idx:], batch_size=batch_size, max_length=context, stride=context,
        drop_last=False, shuffle=False, num_workers=0, name="validation", tokenizer=tokenizer)
    return train_loader, val_loader


@dataclass
class Run:
    """A run as ``pretrain`` leaves it: the model, the optimizer, where the training stands
    (``state.interrupted`` after Ctrl-C), the run's settings and its folder."""

    model: GPTModel
    optimizer: AdamW
    state: TrainingState
    settings: dict
    out: Path

    @property
    def checkpoint_path(self):
        return self.out / "checkpoint.safetensors"

    @property
    def model_path(self):
        return self.out / "model.safetensors"


def pretrain(gpt_config, settings=None, *, text=None, out=None, resume=None, overwrite=False,
             progress=None, resume_command=RESUME_COMMAND):
    """Train a ``GPTModel(gpt_config)`` on ``text`` (a path; None: "The Verdict") and write
    the run into ``out`` (default ``runs/<text name>``); returns the ``Run``.

    ``settings``: any of ``SETTINGS`` (the rest are the book's). With ``resume`` (a
    checkpoint) the run carries on with the checkpoint's model and settings, into the
    checkpoint's folder unless ``out`` says otherwise; ``gpt_config`` and ``settings`` then
    hold only what the caller asks for explicitly, and a value other than the run's is
    refused, except ``num_epochs``, the epoch to train to. ``overwrite``: start afresh in a
    folder that holds a run. ``progress``: show a progress bar (default: on a terminal).
    ``resume_command``: how to carry on, with ``{checkpoint}``, printed after Ctrl-C."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; the settings are {', '.join(SETTINGS)}")
    # Everything the inputs can show to be wrong fails here, before the model is built
    # and long before an epoch ends: the settings, the text against the context length,
    # the output folder.
    if resume is None:
        if gpt_config is None:
            raise ValueError("a new run needs a model config (e.g. GPT_CONFIG_124M); only "
                             "--resume takes it from a checkpoint")
        validate_config(gpt_config)
        settings = _checked_settings(dict(SETTINGS, **settings))
        text_path, text = read_text(text)
        out = Path(out).expanduser() if out else Path("runs") / text_path.stem
        run = Run(None, None, TrainingState(), settings, out)
        context = gpt_config["context_length"]
    else:
        run, text_path, text = _resume(Path(resume).expanduser(), gpt_config, settings, text, out)
        settings, context = run.settings, run.model.cfg["context_length"]
    with _OutputFolder(run, resumed_from=resume, overwrite=overwrite):
        tokenizer = get_tokenizer()
        train_loader, val_loader = split_loaders(text, context, settings["batch_size"],
                                                 tokenizer)
        if run.model is None:  # a new run: the book's model and AdamW, seeded
            manual_seed(settings["seed"])
            run.model = GPTModel(gpt_config)
            run.optimizer = AdamW(run.model.parameters(), lr=settings["learning_rate"],
                                  weight_decay=settings["weight_decay"])
        return _train(run, text_path, text, train_loader, val_loader, tokenizer, progress,
                      resume_command)


def _train(run, text_path, text, train_loader, val_loader, tokenizer, progress,
           resume_command):
    """The training itself, with a checkpoint after every epoch and on Ctrl-C, then the
    files; the output folder is ready and locked."""
    settings, cfg, num_epochs = run.settings, run.model.cfg, run.settings["num_epochs"]
    extra = dict(settings, text=str(text_path.resolve()), text_sha256=_sha256(text))

    def save(state):
        save_checkpoint(run.checkpoint_path, run.model, run.optimizer, state, extra=dict(extra))

    carry_on = "  " + resume_command.format(checkpoint=run.checkpoint_path)
    print(f"Model: {run.model.num_parameters():,} parameters, context {cfg['context_length']}; "
          f"text {len(text):,} characters; {len(train_loader)} training and "
          f"{len(val_loader)} validation batches")
    started, tokens_before = time.perf_counter(), run.state.tokens_seen
    try:
        run.state = train_model(
            run.model, train_loader, val_loader, run.optimizer, num_epochs=num_epochs,
            eval_freq=settings["eval_freq"], eval_iter=settings["eval_iter"],
            start_context=settings["start_context"], tokenizer=tokenizer, state=run.state,
            warmup_steps=settings["warmup_steps"], cosine_decay=bool(settings["cosine_decay"]),
            grad_clip=settings["grad_clip"], on_epoch_end=save, progress=progress,
        )
    except TrainingDivergedError as exc:
        hint = (f"\nThe last good epoch's checkpoint is {run.checkpoint_path}; resume with:\n"
                + carry_on) if run.checkpoint_path.is_file() else ""
        raise TrainingDivergedError(f"{exc}{hint}") from None
    except KeyboardInterrupt:  # a second Ctrl-C: stopped mid-step, nothing saved now
        if run.checkpoint_path.is_file():
            print(f"\nAborted. The checkpoint of the last finished epoch is "
                  f"{run.checkpoint_path}; continue with:\n{carry_on}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - started
    if run.state.interrupted:
        save(run.state)
        print(f"Stopped at epoch {run.state.epoch + 1}, step {run.state.global_step}. "
              f"Checkpoint saved to {run.checkpoint_path}; continue with:\n{carry_on}")
        return run
    _write_results(run, extra, seconds, run.state.tokens_seen - tokens_before)
    return run


def _write_results(run, extra, seconds, tokens):
    """The model file, the loss plot and summary.json; prints the closing lines."""
    state, num_epochs = run.state, run.settings["num_epochs"]
    plot_path, summary_path = run.out / "loss-plot.png", run.out / "summary.json"
    save_model(run.model, run.model_path)
    wrote = [run.model_path, run.checkpoint_path, summary_path]
    if state.train_losses:
        epochs_seen = numpy.linspace(0, num_epochs, len(state.train_losses))
        plot_losses(epochs_seen, state.track_tokens_seen, state.train_losses, state.val_losses,
                    path=plot_path, show=False)
        wrote.insert(0, plot_path)
    summary = {
        "epochs": num_epochs,
        "final_train_loss": state.train_losses[-1] if state.train_losses else None,
        "final_val_loss": state.val_losses[-1] if state.val_losses else None,
        "wall_seconds": round(seconds, 2),
        "tokens_trained": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "parameters": run.model.num_parameters(),
        "config": run.model.cfg,
        "settings": extra,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    losses = ""
    if state.train_losses:
        losses = (f" Final train loss {state.train_losses[-1]:.3f}, "
                  f"val loss {state.val_losses[-1]:.3f}")
    print(f"\nDone in {seconds:.1f} s ({summary['tokens_per_second']} tokens/s).{losses}")
    print("Wrote " + ", ".join(str(path) for path in wrote))


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
    """(run, text path, text) of the run saved in checkpoint ``path``, checked against what
    the caller ``asked`` for; the checkpoint restores the random generator too."""
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
    if ckpt.state.epoch >= settings["num_epochs"]:
        raise ValueError(f"{path} has already trained {ckpt.state.epoch} epoch(s); pass "
                         f"--epochs N with N > {ckpt.state.epoch} to train further")
    if text is None and saved.get("text") is not None:
        text = saved["text"]
        if not Path(text).is_file():
            raise ValueError(f"the run being resumed trained on {text}, which no longer "
                             "exists; pass the same text with --text")
    text_path, text = read_text(text)
    if saved.get("text_sha256") not in (None, _sha256(text)):
        raise ValueError(f"{text_path} is not the text the checkpoint was trained on "
                         f"({saved.get('text')}, sha256 {saved['text_sha256'][:12]}...); "
                         "pass that text with --text")
    state = ckpt.state
    print(f"Resuming {path}: epoch {state.epoch + 1}, step {state.global_step}, "
          f"{state.tokens_seen:,} tokens seen; training to epoch {settings['num_epochs']}")
    out = Path(out).expanduser() if out else path.parent
    return Run(ckpt.model, ckpt.optimizer, state, settings, out), text_path, text


class _OutputFolder:
    """The run's output folder, made ready and locked before anything is built.

    Refused (RunFolderError): a folder that holds another run, unless ``overwrite``
    (a resumed run may carry on in its own checkpoint's folder); a folder that another
    process is training into, as its lock file ``.tinygpt-train.lock`` says (the PID and
    host; a lock whose process is gone is stale and taken over); a folder standing
    where one of the run's files goes. Temporary files that a killed run's atomic writes
    left behind are removed: with the lock held, none can be in use."""

    LOCK = ".tinygpt-train.lock"
    FILES = ("checkpoint.safetensors", "model.safetensors", "loss-plot.png", "summary.json")

    def __init__(self, run, resumed_from=None, overwrite=False):
        self.folder, self.run = run.out, run
        self.resumed_from = Path(resumed_from).expanduser() if resumed_from else None
        self.overwrite = overwrite
        self.lock = self.folder / self.LOCK
        self.token = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}"

    def __enter__(self):
        if self.folder.exists() and not self.folder.is_dir():
            raise RunFolderError(f"--out {self.folder} is a file, not a folder: choose "
                                 "another --out")
        if self.folder.is_symlink() and not self.folder.exists():
            raise RunFolderError(f"--out {self.folder} is a symbolic link to "
                                 f"{os.readlink(self.folder)}, which does not exist: create "
                                 "that folder or choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._check()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc_info):
        self._release()

    def _check(self):
        for name in self.FILES:
            if (self.folder / name).is_dir():
                raise RunFolderError(f"{self.folder / name} is a folder, where the run writes "
                                     "a file: move it away or choose another --out")
        own = (self.resumed_from is not None
               and self.resumed_from.resolve().parent == self.folder.resolve())
        if not (own or self.overwrite) and (self.run.checkpoint_path.is_file()
                                            or self.run.model_path.is_file()):
            how = ("" if self.resumed_from is None
                   else f"{self.resumed_from} would be continued into it; ")
            raise RunFolderError(
                f"{self.folder} already holds a run; {how}continue that run with --resume "
                f"{self.run.checkpoint_path}, choose another --out, or pass --overwrite to "
                "replace it")
        remove_stale_temporaries(self.folder, self.FILES)  # none in use: the lock is ours
        with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".tinygpt-write-test-"):
            pass  # fail now, not after an epoch, if the folder can't take files

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


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
