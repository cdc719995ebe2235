"""Book section 5.5: OpenAI's pretrained GPT-2 in tinygpt, and exercise 5.5.

    python demos/generate_gpt2.py                       # 124M: download (~500 MB) and generate
    python demos/generate_gpt2.py --size gpt2-xl        # 1558M (6.2 GB download, ~7 GB RAM)
    python demos/generate_gpt2.py --offline             # reuse files, no network
    python demos/generate_gpt2.py --no-loss --prompt "The meaning of life is"

Loads the weights (downloading OpenAI's seven files into MODELS_DIR/SIZE unless
they are already there, resuming a partial download; MODELS_DIR is the folder
'tinygpt download' fills, gpt2/ in tinygpt's cache, unless --models-dir says
otherwise), generates from the
book's prompt with the book's settings (top_k 50, temperature 1.5, 25 tokens,
seed 123), then prints the training and validation loss on "The Verdict" with
the chapter's data loaders (batch 2, context 256, 90/10 split): exercise 5.5.

The sampled text differs from the book's: tinygpt draws from NumPy's generator,
not PyTorch's.
"""

import argparse
import sys
import time

from tinygpt.errors import GPT2FilesMissingError
from tinygpt.io.pretrained import default_gpt2_dir, gpt2_model_size, load_pretrained_gpt2
from tinygpt.io.progress import progress_enabled


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="124M",
                        help="124M, 355M, 774M, 1558M or a name like 'gpt2-medium' (default 124M)")
    parser.add_argument("--models-dir", default=None,
                        help="folder holding one sub-folder per size (default: "
                             f"{default_gpt2_dir()}, where 'tinygpt download' puts them)")
    parser.add_argument("--offline", action="store_true",
                        help="use the files in --models-dir only; never touch the network")
    parser.add_argument("--prompt", default="Every effort moves you")
    parser.add_argument("--max-new-tokens", type=int, default=25)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--no-loss", action="store_true",
                        help="skip the train/validation loss on 'The Verdict'")
    parser.add_argument("--text", help="text for the losses (default: 'The Verdict')")
    return parser.parse_args(argv)


def verdict_losses(model, text=None, download=True, seed=123):
    """Exercise 5.5: (train loss, validation loss) of ``model`` on "The Verdict",
    with the chapter's split and loaders (batch 2, windows of 256, stride 256)."""
    from tinygpt.backend import manual_seed
    from tinygpt.data import create_dataloader_v1, train_val_split
    from tinygpt.io.textsource import load_verdict
    from tinygpt.train import calc_loss_loader

    if text is None:
        text = load_verdict(download=download)
    train_data, val_data = train_val_split(text)
    manual_seed(seed)
    train_loader = create_dataloader_v1(train_data, batch_size=2, max_length=256,
                                        stride=256, drop_last=True, shuffle=True, name="training")
    val_loader = create_dataloader_v1(val_data, batch_size=2, max_length=256, stride=256,
                                      drop_last=False, shuffle=False, name="validation")
    return calc_loss_loader(train_loader, model), calc_loss_loader(val_loader, model)


def main(argv=None):
    args = parse_args(argv)
    from tinygpt.backend import manual_seed
    from tinygpt.generation import generate_fast
    from tinygpt.tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text

    size = gpt2_model_size(args.size)
    start = time.perf_counter()
    try:
        gpt = load_pretrained_gpt2(size, args.models_dir, download=not args.offline,
                                   progress=progress_enabled())  # bars only on a terminal
    except GPT2FilesMissingError as exc:  # only with --offline: say it in this demo's terms
        where = f" --dir {args.models_dir}" if args.models_dir else ""
        raise GPT2FilesMissingError(
            exc.size, exc.folder, exc.problems,
            f"Drop --offline to download them, or run: tinygpt download {size}{where}",
        ) from None
    print(f"GPT-2 {size} loaded in {time.perf_counter() - start:.1f} s "
          f"({gpt.num_parameters() / 1e6:.0f}M parameters with the untied output head)")

    tokenizer = get_tokenizer()
    manual_seed(args.seed)
    token_ids = generate_fast(
        model=gpt,
        idx=text_to_token_ids(args.prompt, tokenizer),
        max_new_tokens=args.max_new_tokens,
        context_size=gpt.cfg["context_length"],
        top_k=args.top_k,
        temperature=args.temperature,
    )
    output = token_ids_to_text(token_ids, tokenizer)
    print("Output text:\n", output)

    result = {"text": output}
    if not args.no_loss:
        text = None
        if args.text:
            with open(args.text, encoding="utf-8") as f:
                text = f.read()
        train_loss, val_loss = verdict_losses(gpt, text, download=not args.offline,
                                              seed=args.seed)
        print(f"Training loss: {train_loss:.3f}")
        print(f"Validation loss: {val_loss:.3f}")
        result.update(train_loss=train_loss, val_loss=val_loss)
    return result


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as exc:  # download problems, bad files: say what, not a trace
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
