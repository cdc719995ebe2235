"""The chapter end to end: pretrain GPT-2 124M (context 256) on "The Verdict".

    python demos/train_verdict.py                      # the book's run: 10 epochs
    python demos/train_verdict.py --config small --epochs 2 --out /tmp/quick
    python demos/train_verdict.py --epochs 5 --out runs/a
    python demos/train_verdict.py --resume runs/a/checkpoint.safetensors --epochs 10

The book's gpt_train.py in our words: ``main(gpt_config, settings)`` trains and returns
the losses, the tokens seen and the model. The work is done by
``tinygpt.workflow.pretrain``, the code behind ``tinygpt train`` as well: the 90/10
train/validation split, GPTModel, AdamW and the book's training loop, a checkpoint
after every epoch and on Ctrl-C (so --resume carries on exactly where the run stopped),
then the files. Settings are the book's: seed 123, AdamW(lr=0.0004, weight_decay=0.1),
batch 2, eval_freq 5, eval_iter 5, start context "Every effort moves you".

The text comes from --text, else $TINYGPT_DATA, else the user cache, else a checksummed
download (see tinygpt.io.textsource). Writes into --out (default runs/verdict; with
--resume, the checkpoint's folder): loss-plot.png, model.safetensors (weights + config),
checkpoint.safetensors (model, optimizer, training state) and summary.json. Needs no
PyTorch.
"""

import argparse
import sys

from tinygpt.cli import add_training_options
from tinygpt.errors import TinygptError
from tinygpt.train import TrainingDivergedError
from tinygpt.workflow import SETTINGS, pretrain, train_configs


def main(gpt_config, settings, text=None, out=None, resume=None, progress=None):
    """Pretrain ``GPTModel(gpt_config)`` on ``text`` ("The Verdict" when None) with
    ``settings`` into ``out`` (default runs/verdict), or carry on the run saved in the
    checkpoint ``resume``.

    Returns (train_losses, val_losses, tokens_seen, model), as the book's main does."""
    if out is None and resume is None:
        out = "runs/verdict"
    run = pretrain(gpt_config, settings, text=text, out=out, resume=resume, overwrite=True,
                   progress=progress,
                   resume_command="python demos/train_verdict.py --resume {checkpoint}")
    if run.state.interrupted:  # Ctrl-C: the checkpoint is saved and the way on printed
        sys.exit(130)
    return run.state.train_losses, run.state.val_losses, run.state.track_tokens_seen, run.model


def parse_args(argv=None):
    """The options of ``tinygpt train`` that a run of the chapter needs; those left out are
    None (the book's value, or on --resume the checkpoint's)."""
    parser = argparse.ArgumentParser(
        description="Pretrain GPT-2 on 'The Verdict' as in chapter 5 of Build a Large "
                    "Language Model (From Scratch).")
    add_training_options(parser, out_default="runs/verdict")
    return parser.parse_args(argv)


if __name__ == "__main__":
    GPT_CONFIG_124M = train_configs()["124M"]  # GPT-2 124M with the context cut to 256
    OTHER_SETTINGS = {"learning_rate": 0.0004, "num_epochs": 10, "batch_size": 2,
                      "weight_decay": 0.1}

    args = parse_args()
    given = {key: value for key, value in vars(args).items()
             if key in SETTINGS and value is not None}
    if args.resume is None:
        gpt_config = train_configs()[args.config] if args.config else GPT_CONFIG_124M
        settings = dict(OTHER_SETTINGS, **given)
    else:  # the checkpoint holds the model and the settings: pass on only what was asked
        gpt_config = train_configs()[args.config] if args.config else None
        settings = given
    try:
        main(gpt_config, settings, args.text, args.out, args.resume,
             progress=False if args.no_progress else None)
    except KeyboardInterrupt:  # a second Ctrl-C stops at once
        sys.exit(130)
    except TrainingDivergedError as exc:
        sys.exit(f"error: {exc}")  # exit status 1
    except (OSError, ValueError, TinygptError) as exc:  # a missing text, a bad option or file
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
