"""The chapter end to end: pretrain GPT-2 124M (context 256) on "The Verdict".

    python demos/train_verdict.py                      # the book's run: 10 epochs
    python demos/train_verdict.py --config small --epochs 2 --out /tmp/quick
    python demos/train_verdict.py --epochs 5 --out runs/a
    python demos/train_verdict.py --resume runs/a/checkpoint.safetensors --epochs 10

``main(gpt_config, settings)`` takes the steps of the book's gpt_train.py in its order,
each one call you can open: read the text, split it 90/10 (``train_val_split``),
``create_dataloader_v1`` twice, ``GPTModel``, ``AdamW``, train, ``plot_losses``, save. Around them,
``tinygpt.app.workflow.start_run`` keeps the run folder safe (the same guard as ``tinygpt
train``: another run's folder is refused without --overwrite), saves a checkpoint after
every epoch and on Ctrl-C, SIGTERM or SIGHUP (so --resume carries on exactly where the
run stopped) and logs every evaluation to metrics.csv. Settings are the book's: seed 123,
AdamW(lr=0.0004, weight_decay=0.1), batch 2, eval_freq 5, eval_iter 5, start context
"Every effort moves you".

The text comes from --text, else $TINYGPT_DATA, else the user cache, else a checksummed
download (see tinygpt.io.textsource). Writes into --out (default runs/verdict; with
--resume, the checkpoint's folder): loss-plot.png, model.safetensors (weights + config),
checkpoint.safetensors (model, optimizer, training state), metrics.csv and summary.json.
Needs no PyTorch.
"""

import argparse
import sys

import numpy

from tinygpt import AdamW, GPTModel, manual_seed
from tinygpt.app.options import add_training_options, settings_from
from tinygpt.app.workflow import start_run, train_configs
from tinygpt.data import create_dataloader_v1, train_val_split
from tinygpt.errors import TinygptError
from tinygpt.io.checkpoint import save_model
from tinygpt.tokenizer import get_tokenizer
from tinygpt.train import TrainingDivergedError, exit_status, plot_losses

RESUME_COMMAND = "python demos/train_verdict.py --resume {checkpoint}"


def main(gpt_config, settings, text=None, out=None, resume=None, overwrite=False,
         checkpoint_every=1, keep_last=1, progress=None):
    """Pretrain ``GPTModel(gpt_config)`` on ``text`` ("The Verdict" when None) with
    ``settings`` into ``out`` (default runs/verdict), or carry on the run saved in the
    checkpoint ``resume``.

    Returns (train_losses, val_losses, tokens_seen, model), as the book's main does."""
    if out is None and resume is None:
        out = "runs/verdict"
    # Checks everything first, then holds the folder; on resume it restores the run.
    with start_run(gpt_config, settings, text=text, out=out, resume=resume,
                   overwrite=overwrite, resume_command=RESUME_COMMAND,
                   checkpoint_every=checkpoint_every, keep_last=keep_last) as run:
        gpt_config, settings = run.config, run.settings  # on resume, the checkpoint's

        # The text, read as UTF-8 (run.text_path says which file it came from).
        text_data = run.text

        # 90% of the characters to train on, the rest to validate on.
        train_data, val_data = train_val_split(text_data, train_ratio=0.90)

        # Windows of context_length tokens, each starting where the last one ended.
        tokenizer = get_tokenizer()
        train_loader = create_dataloader_v1(
            train_data, batch_size=settings["batch_size"],
            max_length=gpt_config["context_length"], stride=gpt_config["context_length"],
            drop_last=True, shuffle=True, num_workers=0, name="training", tokenizer=tokenizer)
        val_loader = create_dataloader_v1(
            val_data, batch_size=settings["batch_size"],
            max_length=gpt_config["context_length"], stride=gpt_config["context_length"],
            drop_last=False, shuffle=False, num_workers=0, name="validation",
            tokenizer=tokenizer)

        # The model and its optimizer; a resumed run has them from its checkpoint.
        if run.resumed:
            model, optimizer = run.model, run.optimizer
        else:
            manual_seed(settings["seed"])
            model = GPTModel(gpt_config)
            optimizer = AdamW(model.parameters(), lr=settings["learning_rate"],
                              weight_decay=settings["weight_decay"])

        # The book's loop (tinygpt.train.train_model), with checkpoints and metrics.csv.
        state = run.train(model, optimizer, train_loader, val_loader, tokenizer, progress)
        if state.interrupted:  # Ctrl-C, SIGTERM, SIGHUP: the checkpoint and the way on
            sys.exit(exit_status(state.interrupted))

        # Figure 5.12, then the weights; summary.json last marks the run complete.
        epochs_seen = numpy.linspace(0, settings["num_epochs"], len(state.train_losses))
        plot_losses(epochs_seen, state.track_tokens_seen, state.train_losses,
                    state.val_losses, path=run.plot_path, show=False)
        save_model(model, run.model_path)
        run.finish()
    return state.train_losses, state.val_losses, state.track_tokens_seen, model


def parse_args(argv=None):
    """``tinygpt train``'s run options (tinygpt.app.options); those left out are None: the
    book's value, or on --resume the checkpoint's."""
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
    given = settings_from(args)
    if args.resume is None:
        gpt_config = train_configs()[args.config] if args.config else GPT_CONFIG_124M
        settings = dict(OTHER_SETTINGS, **given)
    else:  # the checkpoint holds the model and the settings: pass on only what was asked
        gpt_config = train_configs()[args.config] if args.config else None
        settings = given
    try:
        main(gpt_config, settings, args.text, args.out, args.resume, args.overwrite,
             args.checkpoint_every, args.keep_last,
             progress=False if args.no_progress else None)
    except KeyboardInterrupt as exc:  # a second Ctrl-C stops at once; what is saved is said
        sys.exit(exit_status(getattr(exc, "signum", 2)))
    except TrainingDivergedError as exc:
        sys.exit(f"error: {exc}")  # exit status 1
    except (OSError, ValueError, TinygptError) as exc:  # a missing text, a bad option or file
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
