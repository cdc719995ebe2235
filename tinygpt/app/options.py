"""Command-line options that ``tinygpt train`` (cli.py) and ``demos/train_verdict.py``
share, and the option types every tinygpt command line checks its numbers with.

It sits below both front ends: they import it, it imports only the library. A bad
value becomes argparse's "argument --x: ..." (exit 2), in the library's own words.
"""

import argparse
import math

from .. import checks


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _int_option(minimum):
    """The type of an integer option >= ``minimum``: the library's check, in its words."""

    def parse(text):
        try:
            return checks.positive_int(None, _number(text, int), minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _float_option(low, inclusive):
    """The type of a number option > ``low`` (>= ``low`` when ``inclusive``)."""
    rule = ">=" if inclusive else ">"

    def parse(text):
        value = _number(text, float)
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a number {rule} {low:g}, got {text}")
        return value

    return parse


positive_int, non_negative_int = _int_option(1), _int_option(0)
positive_float, non_negative_float = _float_option(0.0, False), _float_option(0.0, True)


def add_training_options(p, out_default):
    """The options of a training run. Each setting is None when left out: the book's
    value for a new run, the run's own on --resume (tinygpt.app.workflow.start_run).
    ``out_default`` describes --out's default."""
    from .workflow import SETTINGS, train_configs

    p.add_argument("--text", metavar="FILE",
                   help='UTF-8 text to train on (default: "The Verdict")')
    p.add_argument("--config", choices=sorted(train_configs()),
                   help="model size: 124M (the chapter's GPT-2 with context 256, the "
                        "default) or small (2 layers, 128 wide, context 64: seconds per epoch)")
    p.add_argument("--epochs", dest="num_epochs", type=positive_int, metavar="N",
                   help="train until this many epochs are done (default 10; with --resume: "
                        "the run's own target)")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue from a checkpoint.safetensors written by an earlier run")
    p.add_argument("--out", metavar="DIR",
                   help=f"output folder (default: {out_default}; with --resume: the "
                        "checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run that --out holds and train afresh there (a new run, "
                        "or --resume into another run's folder); without it such a folder "
                        "is refused")
    p.add_argument("--batch-size", type=positive_int, metavar="B", help="default 2")
    p.add_argument("--lr", dest="learning_rate", type=positive_float, metavar="LR",
                   help="peak learning rate (default 0.0004)")
    p.add_argument("--weight-decay", type=non_negative_float, metavar="WD",
                   help="AdamW weight decay (default 0.1)")
    p.add_argument("--seed", type=non_negative_int, help="random seed (default 123)")
    p.add_argument("--eval-freq", type=positive_int, metavar="STEPS",
                   help="evaluate every this many steps (default 5); each evaluation "
                        "appends a row to metrics.csv in --out")
    p.add_argument("--eval-iter", type=positive_int, metavar="BATCHES",
                   help="batches per evaluation (default 5)")
    p.add_argument("--start-context", metavar="TEXT",
                   help=f"prompt of the sample printed after each epoch (default "
                        f"{SETTINGS['start_context']!r})")
    p.add_argument("--checkpoint-every", type=positive_int, default=1, metavar="N",
                   help="save checkpoint.safetensors every N epochs (default 1); the last "
                        "epoch and Ctrl-C always save. A 124M checkpoint is about 1.9 GB")
    p.add_argument("--keep-last", type=positive_int, default=1, metavar="K",
                   help="checkpoints to keep, the latest included (default 1: only "
                        "checkpoint.safetensors); older ones stay as "
                        "checkpoint-step-NNNNNN.safetensors")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def settings_from(args):
    """The run settings the parsed ``args`` name explicitly (the rest stay the run's)."""
    from .workflow import SETTINGS

    return {key: getattr(args, key) for key in SETTINGS
            if getattr(args, key, None) is not None}
