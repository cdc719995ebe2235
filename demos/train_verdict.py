"""The chapter end to end: pretrain GPT-2 124M (context 256) on "The Verdict".

    python demos/train_verdict.py                      # the book's run: 10 epochs
    python demos/train_verdict.py --config small --epochs 2 --out /tmp/quick
    python demos/train_verdict.py --epochs 5 --out runs/a
    python demos/train_verdict.py --resume runs/a/checkpoint.safetensors --epochs 10

Settings are the book's: manual_seed(123), AdamW(lr=0.0004, weight_decay=0.1),
batch 2, eval_freq 5, eval_iter 5, start context "Every effort moves you", a 90/10
train/validation split. The text comes from --text, else $TINYGPT_DATA, else the
user cache, else a checksummed download (see tinygpt.io.textsource).

Writes into --out: loss-plot.png, model.safetensors (weights + config),
checkpoint.safetensors (model, optimizer, training state; saved after every epoch
and on Ctrl-C, so --resume carries on exactly where the run stopped) and
summary.json. Needs no PyTorch.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy

import tinygpt
from tinygpt.data import create_dataloader_v1
from tinygpt.io.checkpoint import load_checkpoint, save_checkpoint, save_model
from tinygpt.io.textsource import find_verdict
from tinygpt.tokenizer import get_tokenizer
from tinygpt.train import TrainingDivergedError, plot_losses, train_model

CONFIGS = {
    # the chapter's model: GPT-2 124M with the context shortened to 256
    "124M": dict(tinygpt.GPT_CONFIG_124M),
    # a few-second model for trying the workflow out
    "small": dict(tinygpt.GPT_CONFIG_124M, context_length=64, emb_dim=128, n_heads=4,
                  n_layers=2),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Pretrain GPT-2 on 'The Verdict' as in chapter 5 of Build a Large "
                    "Language Model (From Scratch).")
    parser.add_argument("--text", type=Path, help="UTF-8 text to train on (default: the verdict)")
    parser.add_argument("--out", type=Path, default=Path("runs/verdict"),
                        help="output folder (default: runs/verdict)")
    parser.add_argument("--epochs", type=int, default=10, help="number of epochs (default 10)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="124M",
                        help="model size: 124M (the book's) or small (a quick try)")
    parser.add_argument("--resume", type=Path, metavar="CKPT",
                        help="continue from a checkpoint written by an earlier run")
    parser.add_argument("--seed", type=int, default=123, help="random seed (default 123)")
    parser.add_argument("--lr", type=float, default=0.0004)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--eval-freq", type=int, default=5)
    parser.add_argument("--eval-iter", type=int, default=5)
    parser.add_argument("--start-context", default="Every effort moves you")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        text_path = args.text if args.text is not None else find_verdict()
        if not Path(text_path).is_file():
            raise FileNotFoundError(f"text file not found: {text_path}")
        text = Path(text_path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tokenizer = get_tokenizer()

    if args.resume is not None:
        tinygpt.manual_seed(args.seed)
        ckpt = load_checkpoint(args.resume)
        model, optimizer, state, cfg = ckpt.model, ckpt.optimizer, ckpt.state, ckpt.config
        saved = ckpt.extra or {}
        if saved.get("text_sha256") not in (None, text_sha256):
            print("error: --resume checkpoint was trained on a different text "
                  f"(sha256 {saved.get('text_sha256')}); pass the same --text", file=sys.stderr)
            return 2
        batch_size = saved.get("batch_size", args.batch_size)
        eval_freq = saved.get("eval_freq", args.eval_freq)
        eval_iter = saved.get("eval_iter", args.eval_iter)
        start_context = saved.get("start_context", args.start_context)
        print(f"Resuming {args.resume}: epoch {state.epoch + 1}, step {state.global_step}, "
              f"{state.tokens_seen:,} tokens seen; training to epoch {args.epochs}")
    else:
        cfg = CONFIGS[args.config]
        tinygpt.manual_seed(args.seed)
        model = tinygpt.GPTModel(cfg)
        optimizer = tinygpt.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        state = None
        batch_size, eval_freq, eval_iter = args.batch_size, args.eval_freq, args.eval_iter
        start_context = args.start_context

    context = cfg["context_length"]
    split_idx = int(0.90 * len(text))
    train_loader = create_dataloader_v1(
        text[:split_idx], batch_size=batch_size, max_length=context, stride=context,
        drop_last=True, shuffle=True, num_workers=0, name="training", tokenizer=tokenizer)
    val_loader = create_dataloader_v1(
        text[split_idx:], batch_size=batch_size, max_length=context, stride=context,
        drop_last=False, shuffle=False, num_workers=0, name="validation", tokenizer=tokenizer)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.safetensors"
    extra = {"batch_size": batch_size, "eval_freq": eval_freq, "eval_iter": eval_iter,
             "start_context": start_context, "text_sha256": text_sha256, "seed": args.seed}

    def save(state):
        save_checkpoint(checkpoint_path, model, optimizer, state, extra=dict(extra))

    n_params = model.num_parameters()
    print(f"Model: {n_params:,} parameters, context {context}; text {len(text):,} characters; "
          f"{len(train_loader)} training and {len(val_loader)} validation batches")
    started = time.perf_counter()
    tokens_before = state.tokens_seen if state is not None else 0
    try:
        state = train_model(
            model, train_loader, val_loader, optimizer, num_epochs=args.epochs,
            eval_freq=eval_freq, eval_iter=eval_iter, start_context=start_context,
            tokenizer=tokenizer, state=state, on_epoch_end=save,
            progress=False if args.no_progress else None,
        )
    except TrainingDivergedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    if state.interrupted:
        save(state)
        print(f"Stopped at epoch {state.epoch + 1}, step {state.global_step}. Checkpoint saved "
              f"to {checkpoint_path}; continue with:\n  python demos/train_verdict.py "
              f"--resume {checkpoint_path} --epochs {args.epochs}"
              + (f" --text {args.text}" if args.text else ""))
        return 130

    tokens = state.tokens_seen - tokens_before
    save_model(model, out / "model.safetensors")
    plot_path = out / "loss-plot.png"
    if state.train_losses:
        epochs_seen = numpy.linspace(0, args.epochs, len(state.train_losses))
        plot_losses(epochs_seen, state.track_tokens_seen, state.train_losses, state.val_losses,
                    path=plot_path, show=False)
    summary = {
        "epochs": args.epochs,
        "final_train_loss": state.train_losses[-1] if state.train_losses else None,
        "final_val_loss": state.val_losses[-1] if state.val_losses else None,
        "wall_seconds": round(seconds, 2),
        "tokens_trained": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "parameters": n_params,
        "config": cfg,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nDone in {seconds:.1f} s ({summary['tokens_per_second']} tokens/s). "
          f"Final train loss {summary['final_train_loss']:.3f}, "
          f"val loss {summary['final_val_loss']:.3f}")
    print(f"Wrote {plot_path}, {out / 'model.safetensors'}, {checkpoint_path}, "
          f"{out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
