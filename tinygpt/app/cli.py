"""The ``tinygpt`` command: train, generate, eval, download, selftest.

Each subcommand is a thin front over the library, so what it does can be read in
the module that does it:

    tinygpt train     tinygpt.app.workflow.pretrain (the steps demos/train_verdict.py spells
                      out): tinygpt.train.train_model, checkpoints, metrics.csv, the files
    tinygpt generate  tinygpt.generation.generate_stream (listing 5.4, with a KV cache)
    tinygpt eval      tinygpt.train.calc_loss_loader (exercise 5.5)
    tinygpt download  tinygpt.io.pretrained.download_gpt2_files (section 5.5)
    tinygpt selftest  tinygpt.app.selftest

Errors reach the user as one line ``tinygpt: error: ...`` (any detail the library
gives follows, indented) with no traceback unless ``--debug``. Exit codes, chosen by
the error's type (``tinygpt.errors``), never by its text: 0 success, 2 a usage or input
problem (bad option, missing or corrupted file, unknown model, unusable backend), 1 a
failure while running (download failed, training diverged, disk full), 130 interrupted
with Ctrl-C (``tinygpt train`` also stops on SIGTERM, 143, and SIGHUP, 129).
"""

import argparse
import codecs
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from ..backend import BackendError
from ..errors import (
    DownloadError,
    FileFormatError,
    GPT2FilesMissingError,
    TextSourceError,
    TinygptError,
    TokenizerFilesError,
)
from ..io.progress import progress_bar, progress_enabled, set_progress
from ..train import TrainingDivergedError, exit_status
from .options import (  # the option types and training options, shared with the demo
    _number,
    add_training_options,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    settings_from,
)

PROG = "tinygpt"

GPT2_NAMES = ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl")
BOOK_PROMPT = "Every effort moves you"
_CACHE = "gpt2/ in the tinygpt cache: $TINYGPT_CACHE, $XDG_CACHE_HOME/tinygpt or ~/.cache/tinygpt"


class CLIError(Exception):
    """A problem to report to the user as one line; ``code`` is the exit status."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------
# Option types (the numbers' are in options.py): a bad value becomes "argument --x: ..."
# from argparse (exit 2).


def probability(text):
    value = _number(text, float)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"must be in (0, 1] (the probability mass to keep), got {text}"
        )
    return value


# ----------------------------------------------------------------------------------
# The parser.


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps multi-line text (the examples) as written."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, _terminal_width()))

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _terminal_width():
    import shutil

    return max(60, shutil.get_terminal_size((100, 24)).columns - 2)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``tinygpt: error: ...`` (exit 2)."""

    def error(self, message):
        hint = f"; see '{self.prog} --help'"
        self.exit(2, f"{PROG}: error: {message}{hint}\n")


MAIN_DESCRIPTION = """\
tinygpt: GPT-2 pretraining (chapter 5 of "Build a Large Language Model (From
Scratch)") on NumPy, with its own autograd. No PyTorch needed."""

MAIN_EPILOG = """\
examples:
  tinygpt train --config small --epochs 2 --out runs/quick
  tinygpt generate --model runs/quick/model.safetensors --prompt "Every effort moves you"
  tinygpt eval --model runs/quick/model.safetensors
  tinygpt download gpt2-small
  tinygpt generate --model gpt2-small --prompt "Every effort moves you" --top-k 50 \\
      --temperature 1.5
  tinygpt selftest

Run 'tinygpt COMMAND --help' for the options of a command. Add --debug to see the
traceback of an error."""

TRAIN_EPILOG = """\
examples:
  tinygpt train --text the-verdict.txt                  # the chapter: 124M, 10 epochs
  tinygpt train --text notes.txt --config small --epochs 3 --out runs/notes
  tinygpt train --resume runs/notes/checkpoint.safetensors --epochs 6

Writes into --out: model.safetensors (weights + config, for 'tinygpt generate'),
checkpoint.safetensors (weights, optimizer, training state and random generator;
written every --checkpoint-every epochs, after the last and on Ctrl-C, SIGTERM or
SIGHUP: --resume carries on exactly where the run stopped), metrics.csv (a row per
evaluation: step, tokens_seen, train_loss, val_loss, learning_rate, elapsed_s),
loss-plot.png (the book's figure 5.12) and summary.json, written last; it lists them in
.tinygpt-run.json. A folder that holds another run, or files of these names that no run
wrote, is refused unless --overwrite, which deletes only a run's own files.
The text is split 90/10 into training and validation data, cut into windows of
--context-length tokens (stride = context length). Without --text, "The Verdict" is
used (from $TINYGPT_DATA, the user cache or a checksummed download). The same run as
demos/train_verdict.py: both run tinygpt.app.workflow's steps."""

GENERATE_EPILOG = """\
examples:
  tinygpt generate --model runs/quick/model.safetensors --prompt "Every effort moves you"
  tinygpt generate --model gpt2-small --prompt "The meaning of life is" \\
      --temperature 1.4 --top-k 25 --seed 123
  tinygpt generate --model gpt2-medium --models-dir ~/gpt2 --offline --top-p 0.9 \\
      --temperature 1.0 --prompt "Once upon a time"

--model is one of: a tinygpt model file or training checkpoint (.safetensors); a
folder holding model.safetensors (a 'tinygpt train' output or a Hugging Face GPT-2);
a folder with OpenAI's GPT-2 files; or a GPT-2 name (gpt2-small, gpt2-medium,
gpt2-large, gpt2-xl; downloaded into --models-dir unless present, see
'tinygpt download'). Text goes to stdout as it is produced; notes go to stderr.
With the default temperature 0 decoding is greedy (top-k / top-p then do nothing)."""

EVAL_EPILOG = """\
examples:
  tinygpt eval --model runs/quick/model.safetensors
  tinygpt eval --model gpt2-small                              # exercise 5.5
  tinygpt eval --model runs/quick --text notes.txt

Splits the text 90/10 like 'tinygpt train' and prints the mean cross-entropy loss and
the perplexity (exp of the loss) of each part. Without --text, "The Verdict" is used
(from $TINYGPT_DATA, the user cache or a checksummed download)."""

DOWNLOAD_EPILOG = """\
examples:
  tinygpt download gpt2-small
  tinygpt download gpt2-xl --dir ~/gpt2
  TINYGPT_GPT2_URL=http://mirror.local/gpt2 tinygpt download 124M

Fetches OpenAI's seven GPT-2 files into DIR/SIZE (e.g. DIR/124M), resuming a partial
download and checking what can be checked; files already there and intact are not
fetched again. The servers are $TINYGPT_GPT2_URL (default: OpenAI's) and then
$TINYGPT_GPT2_BACKUP_URL (default: the book's mirror). A server that sends more than
a file's known size (or far more than OpenAI's files have) is cut off and the file
refused; --timeout bounds each read, a per-file deadline the whole transfer."""

SELFTEST_EPILOG = """\
Checks, in well under a minute and with nothing but tinygpt: every op's gradient
against float64 central differences, a tiny model's loss falling under AdamW, the KV
cache against plain decoding, and the save/load round trip. (The comparison with the
book's PyTorch model is in the test suite: tests/test_parity_torch.py.) Exit status 1
if any check fails."""


def build_parser():
    """The ``tinygpt`` argument parser (exposed for tests and documentation)."""
    from .. import __version__

    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback when an error occurs")
    common = argparse.ArgumentParser(add_help=False, parents=[debug])
    common.add_argument("--threads", type=positive_int, metavar="N", default=argparse.SUPPRESS,
                        help="CPU threads for matrix products (default: all cores)")

    parser = _Parser(prog=PROG, description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG,
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"tinygpt {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback when an error occurs")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=None,
                        help="CPU threads for matrix products (default: all cores)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    # name, one-line help, description, epilog, handler, its options, runs the maths
    table = [
        ("train", "pretrain a GPT on a UTF-8 text (the chapter's loop)",
         "Pretrain a GPT model on any UTF-8 text with the book's training loop (AdamW, "
         "evaluation every --eval-freq steps, a sample after each epoch).",
         TRAIN_EPILOG, cmd_train, _train_options, True),
        ("generate", "continue a prompt, streaming the text as it is produced",
         "Generate text from a prompt with a trained or pretrained model (greedy by default; "
         "temperature, top-k and top-p sampling).",
         GENERATE_EPILOG, cmd_generate, _generate_options, True),
        ("eval", "training and validation loss and perplexity of a model on a text",
         "Mean cross-entropy loss and perplexity of a model on the training (90%) and "
         "validation (10%) parts of a text: the book's exercise 5.5.",
         EVAL_EPILOG, cmd_eval, _eval_options, True),
        ("download", "fetch OpenAI's pretrained GPT-2 weights",
         "Download OpenAI's pretrained GPT-2 weights (book section 5.5).",
         DOWNLOAD_EPILOG, cmd_download, _download_options, False),
        ("selftest", "check the maths: gradients, training, KV cache, save/load",
         "Check tinygpt's maths with nothing but tinygpt (no PyTorch): every op's gradient, "
         "a tiny training run, the KV cache and the save/load round trip; prints a table of "
         "the results.",
         SELFTEST_EPILOG, cmd_selftest, None, True),
    ]
    for name, help_text, description, epilog, handler, add_options, computes in table:
        sub = commands.add_parser(name, help=help_text, description=description, epilog=epilog,
                                  formatter_class=_Formatter,
                                  parents=[common if computes else debug])
        sub.set_defaults(handler=handler)
        if add_options is not None:
            add_options(sub)
    return parser


def _train_options(p):
    """``tinygpt train``'s options: the demo's, and appendix D's schedule and clipping."""
    add_training_options(p, out_default="runs/<text name>")
    p.add_argument("--context-length", type=positive_int, metavar="T",
                   help="tokens per training window (default: the config's, 256 or 64)")
    p.add_argument("--warmup-steps", type=non_negative_int, metavar="N",
                   help="linear learning-rate warmup steps (appendix D; default 0)")
    p.add_argument("--cosine-decay", action="store_true", default=None,
                   help="cosine learning-rate decay after warmup (appendix D)")
    p.add_argument("--grad-clip", type=positive_float, metavar="NORM",
                   help="clip the gradient norm to this value (appendix D; default off)")


def _generate_options(p):
    """``tinygpt generate``'s options: the model, the prompt, the sampling."""
    _model_arguments(p)
    p.add_argument("--prompt", default=BOOK_PROMPT,
                   help=f"text to continue (default {BOOK_PROMPT!r}; an empty prompt starts "
                        "from <|endoftext|>)")
    p.add_argument("--max-new-tokens", type=non_negative_int, default=50, metavar="N",
                   help="tokens to generate (default 50)")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, metavar="T",
                   help="0 = greedy (default); > 0 samples, higher is more random")
    p.add_argument("--top-k", type=positive_int, metavar="K",
                   help="sample only from the K most likely tokens")
    p.add_argument("--top-p", type=probability, metavar="P",
                   help="sample only from the most likely tokens holding probability P")
    p.add_argument("--seed", type=non_negative_int, default=123,
                   help="seed of the sampling generator (default 123)")
    p.add_argument("--eos", action="store_true",
                   help="stop when the model produces <|endoftext|>")
    p.add_argument("--no-cache", action="store_true",
                   help="rerun the whole window each step like the book (slower, same text)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the text (no notes on stderr)")
    _no_progress_option(p)


def _eval_options(p):
    """``tinygpt eval``'s options: the model, the text, the batches."""
    _model_arguments(p)
    p.add_argument("--text", metavar="FILE",
                   help='UTF-8 text to evaluate on (default: "The Verdict")')
    p.add_argument("--context-length", type=positive_int, metavar="T",
                   help="tokens per window (default: 256, or the model's context if shorter)")
    p.add_argument("--batch-size", type=positive_int, default=2, metavar="B",
                   help="default 2")
    p.add_argument("--seed", type=non_negative_int, default=123,
                   help="seed of the training split's shuffle, which decides the batches "
                        "drop_last leaves out (default 123, as in the book)")
    _no_progress_option(p)


def _download_options(p):
    """``tinygpt download``'s options: which weights, where, how patiently."""
    p.add_argument("model", metavar="MODEL",
                   help="gpt2-small, gpt2-medium, gpt2-large or gpt2-xl (or 124M, 355M, "
                        "774M, 1558M)")
    p.add_argument("--dir", metavar="DIR",
                   help=f"folder that gets one sub-folder per size (default: {_CACHE})")
    p.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="how long each network read may wait (default 60); each file must "
                        "also arrive within a deadline of a minute plus its size at 50 kB/s")
    _no_progress_option(p)


def _no_progress_option(p):
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (shown only when stderr is a terminal)")


def _model_arguments(p):
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="a model file, a training checkpoint, a model folder, or a GPT-2 name "
                        "(gpt2-small, gpt2-medium, gpt2-large, gpt2-xl)")
    p.add_argument("--models-dir", metavar="DIR",
                   help=f"where GPT-2 names are looked up and downloaded to (default: {_CACHE})")
    p.add_argument("--offline", action="store_true",
                   help="never download: use the GPT-2 files already in --models-dir")


# ----------------------------------------------------------------------------------
# Shared helpers.


def _note(message):
    """A progress note for the user: stderr, so stdout stays the command's output."""
    print(message, file=sys.stderr, flush=True)


def default_models_dir():
    """Where GPT-2 names live: ``tinygpt.io.pretrained.default_gpt2_dir()``."""
    from ..io.pretrained import default_gpt2_dir

    return default_gpt2_dir()


def _safetensors_metadata(path):
    """(metadata, tensor names) of a safetensors file, or None if its header can't be read.

    Only a peek to pick the loader; the loaders themselves check everything."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy", backend="pread") as f:
            return f.metadata() or {}, list(f.keys())
    except (OSError, SafetensorError):
        return None


def _looks_like_hf_gpt2(names):
    return any(n in ("wte.weight", "transformer.wte.weight") for n in names)


def load_any_model(spec, models_dir=None, offline=False):
    """(model in eval mode, a label) for the --model forms listed in the generate help."""
    path = Path(spec).expanduser()
    model = None
    if path.is_file():
        model = _load_model_file(path)
    elif path.is_dir():
        model = _load_model_folder(path)  # None if it holds nothing we know
    if model is not None:
        model.eval()
        return model, str(path)

    from ..io.pretrained import gpt2_model_size, load_pretrained_gpt2

    try:
        size = gpt2_model_size(spec)  # a name, even if a folder of that name exists (./gpt2)
    except ValueError:
        if path.is_dir():
            raise CLIError(
                f"folder {path} holds no model: expected model.safetensors (from 'tinygpt "
                "train' or Hugging Face), checkpoint.safetensors, or OpenAI's GPT-2 files "
                "(hparams.json, model.ckpt.*)"
            ) from None
        if os.sep in spec or "/" in spec or path.suffix:
            raise FileNotFoundError(
                f"model file {spec} does not exist: pass a model file, a training checkpoint "
                "or a model folder"
            ) from None
        raise CLIError(
            f"unknown model {spec!r}: pass the path of a model file, training checkpoint or "
            f"model folder, or one of {', '.join(GPT2_NAMES)}"
        ) from None
    folder = Path(models_dir).expanduser() if models_dir else default_models_dir()
    try:
        model = load_pretrained_gpt2(size, folder, download=not offline,
                                     progress=progress_enabled())
    except GPT2FilesMissingError as exc:  # only with --offline: say it in the CLI's terms
        where = f" --dir {models_dir}" if models_dir else ""
        raise CLIError(
            f"{exc.listing}\nDrop --offline to download them, or run: tinygpt download {spec}"
            f"{where}"
        ) from None
    model.eval()
    return model, f"GPT-2 {size}"


def _load_model_folder(folder):
    for name in ("model.safetensors", "checkpoint.safetensors"):
        if (folder / name).is_file():
            return _load_model_file(folder / name)
    if (folder / "hparams.json").is_file() and any(
            (folder / name).is_file() for name in ("model.ckpt.index", "checkpoint")):
        from ..io.pretrained import load_gpt2_folder  # what --model gpt2-small loads too

        return load_gpt2_folder(folder)
    return None


def _load_model_file(path):
    from ..io.checkpoint import load_model

    peek = _safetensors_metadata(path)
    if peek is not None:
        metadata, names = peek
        if "tinygpt.format" not in metadata and _looks_like_hf_gpt2(names):
            from ..io.hf_gpt2 import load_hf_gpt2

            return load_hf_gpt2(path)
    return load_model(path)  # also says clearly what a file it can't read seems to be


def _describe(model):
    cfg = model.cfg
    return (f"{model.num_parameters() / 1e6:.1f}M parameters, {cfg['n_layers']} layers, "
            f"emb_dim {cfg['emb_dim']}, context {cfg['context_length']}, {model.dtype}")


# ----------------------------------------------------------------------------------
# tinygpt train


def cmd_train(args):
    from .workflow import pretrain

    run = pretrain(_asked_config(args), settings_from(args), text=args.text, out=args.out,
                   resume=args.resume, overwrite=args.overwrite,
                   progress=False if args.no_progress else None,
                   checkpoint_every=args.checkpoint_every, keep_last=args.keep_last)
    if run.state.interrupted:
        return exit_status(run.state.interrupted)
    print(f"Next: tinygpt generate --model {run.model_path} --prompt "
          f"{json.dumps(run.settings['start_context'])}")
    return 0


def _asked_config(args):
    """The model the options ask for: a whole config for a new run; with --resume only
    what --config and --context-length name (the run's own must match it)."""
    from .workflow import train_configs

    cfg = {}
    if args.config is not None or args.resume is None:
        cfg = train_configs()[args.config or "124M"]
        if args.resume is not None:
            del cfg["context_length"]  # --config names the size; the window is the run's
    if args.context_length is not None:
        cfg["context_length"] = args.context_length
    return cfg or None


# ----------------------------------------------------------------------------------
# tinygpt generate


def cmd_generate(args):
    from ..backend import to_numpy
    from ..generation import generate_stream
    from ..tokenizer import ENDOFTEXT_ID, get_tokenizer, text_to_token_ids

    started = time.perf_counter()
    model, label = load_any_model(args.model, args.models_dir, args.offline)
    tokenizer = get_tokenizer()
    vocab = int(model.cfg["vocab_size"])
    ids = text_to_token_ids(args.prompt, tokenizer)  # (1, n)
    if ids.shape[1] == 0:
        ids = [[ENDOFTEXT_ID]]  # nothing to continue: start from <|endoftext|>, as GPT-2 does
    if args.eos and ENDOFTEXT_ID >= vocab:
        raise CLIError(f"--eos: this model's vocabulary ({vocab}) has no <|endoftext|>")
    stream = generate_stream(
        model, ids, args.max_new_tokens, context_size=model.cfg["context_length"],
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        eos_id=ENDOFTEXT_ID if args.eos else None, rng=args.seed, use_cache=not args.no_cache,
    )
    if not args.quiet:
        n_prompt, context = len(ids[0]), int(model.cfg["context_length"])
        if n_prompt > context:
            _note(f"[the prompt has {n_prompt} tokens; the model sees only the last {context}]")
        how = ("greedy" if args.temperature == 0.0 else
               f"temperature {args.temperature:g}"
               + (f", top-k {args.top_k}" if args.top_k else "")
               + (f", top-p {args.top_p:g}" if args.top_p else "")
               + f", seed {args.seed}")
        _note(f"[{label}: {_describe(model)}; loaded in {time.perf_counter() - started:.1f} s; "
              f"{args.max_new_tokens} tokens, {how}]")

    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(errors="replace")  # a terminal that can't show a character: '?'
    out.write(args.prompt)
    out.flush()
    counted = []
    decode_started = time.perf_counter()

    def tokens():
        for column in stream:  # (1,) per step
            counted.append(1)
            yield int(to_numpy(column)[0])

    for piece in decode_stream(tokens(), tokenizer):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    seconds = time.perf_counter() - decode_started
    n = len(counted)
    if not args.quiet:
        rate = f", {n / seconds:.1f} tokens/s" if seconds > 0 and n else ""
        _note(f"[{n} tokens in {seconds:.1f} s{rate}]")
    return 0


def decode_stream(token_ids, tokenizer):
    """Yield the text of ``token_ids`` (an iterable of ints) piece by piece as they come.

    A token is a byte sequence, and one character may be split over two or more
    tokens. An incremental UTF-8 decoder holds an incomplete character back until
    its last byte arrives, so the pieces never contain half a character and join to
    exactly ``tokenizer.decode(all ids)``. Bytes that never complete a character
    become U+FFFD at the end, as ``decode`` does."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in token_ids:
        piece = decoder.decode(tokenizer.decode_single_token_bytes(int(token)))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


# ----------------------------------------------------------------------------------
# tinygpt eval


def cmd_eval(args):
    from ..backend import manual_seed
    from ..loss import perplexity
    from ..tokenizer import get_tokenizer
    from ..train import calc_loss_loader
    from .workflow import read_text, split_loaders

    model, label = load_any_model(args.model, args.models_dir, args.offline)
    text_path, text = read_text(args.text)
    model_context = int(model.cfg["context_length"])
    context = args.context_length if args.context_length else min(256, model_context)
    if context > model_context:
        raise CLIError(f"--context-length {context} is longer than the model's context "
                       f"({model_context}); use --context-length {model_context} or less")
    manual_seed(args.seed)
    train_loader, val_loader = split_loaders(text, context, args.batch_size, get_tokenizer())
    print(f"Model: {label} ({_describe(model)})\nText: {text_path} ({len(text):,} characters), "
          f"split 90/10; windows of {context} tokens, batch size {args.batch_size}")
    rows = []
    for name, loader in (("training", train_loader), ("validation", val_loader)):
        loss = calc_loss_loader(progress_bar(loader, desc=f"{name} loss", unit="batch"), model)
        windows = len(loader) * args.batch_size if loader.drop_last else len(loader.dataset)
        rows.append((name, windows * context, len(loader), loss, perplexity(loss)))
    print()
    print(f"{'split':<12}{'tokens':>9}{'batches':>9}{'loss':>9}{'perplexity':>13}")
    for name, tokens, batches, loss, ppl in rows:
        print(f"{name:<12}{tokens:>9,}{batches:>9}{loss:>9.3f}{ppl:>13.2f}")
    return 0


# ----------------------------------------------------------------------------------
# tinygpt download


def cmd_download(args):
    from ..io.pretrained import GPT2_FILES, download_gpt2_files, gpt2_model_size

    try:
        size = gpt2_model_size(args.model)
    except ValueError:
        raise CLIError(f"unknown model {args.model!r}: use one of {', '.join(GPT2_NAMES)} "
                       "(or 124M, 355M, 774M, 1558M)") from None
    models_dir = Path(args.dir).expanduser() if args.dir else default_models_dir()
    _note(f"Fetching GPT-2 {size} into {models_dir / size} ...")
    folder = download_gpt2_files(size, models_dir, progress=progress_enabled(),
                                 timeout=args.timeout)
    total = sum(os.path.getsize(os.path.join(folder, name)) for name in GPT2_FILES)
    print(f"GPT-2 {size}: {len(GPT2_FILES)} files, {total / 1e6:,.1f} MB in {folder}")
    name = args.model if not args.dir else f"{args.model} --models-dir {args.dir}"
    print(f"Use it: tinygpt generate --model {name} --prompt {json.dumps(BOOK_PROMPT)}")
    return 0


# ----------------------------------------------------------------------------------
# tinygpt selftest


def cmd_selftest(args):
    from .selftest import selftest

    return 0 if selftest() else 1


# ----------------------------------------------------------------------------------
# Entry point.


# What the user can fix (exit 2): a bad option or input, a missing, damaged or foreign
# file, the backend. What fails while running (exit 1): a download, a diverged run, and
# anything else (a full disk, ...).
_USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                FileFormatError, TextSourceError, TokenizerFilesError, BackendError)
_RUN_FAILURES = (DownloadError, TrainingDivergedError)
# Errors with messages of their own; any other exit-1 error is reported as a possible bug.
_EXPECTED_FAILURES = (TinygptError, OSError, RuntimeError, MemoryError)


def _exit_code(exc):
    """2 for what the user can fix in the command line, input files or environment, else 1."""
    if isinstance(exc, _RUN_FAILURES):
        return 1
    return 2 if isinstance(exc, _USER_ERRORS) else 1


def _message(exc):
    """The text of an exception, without Python's '[Errno 2]' decoration."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc.args[0], str):
        message = exc.strerror
        if exc.filename is not None and str(exc.filename) not in message:
            message += f": {exc.filename}"
        return message
    if isinstance(exc, MemoryError):
        return ("out of memory; try a smaller model or --config small, a smaller --batch-size "
                "or --context-length")
    text = str(exc).strip()
    return text or type(exc).__name__


def _report(message):
    first, *rest = message.splitlines() or [""]
    lines = [f"{PROG}: error: {first}", *rest]  # library details stay on their own lines
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv=None):
    """Run the command line; returns the exit status (the console script exits with it)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", False)
    set_progress(False if getattr(args, "no_progress", False) else None)  # None: on a terminal
    try:
        if getattr(args, "threads", None) is not None:
            from ..runtime import set_num_threads

            set_num_threads(args.threads)
        return args.handler(args) or 0
    except KeyboardInterrupt as exc:  # Ctrl-C, or in `tinygpt train` SIGTERM or SIGHUP
        signum = getattr(exc, "signum", None)
        by = f" by {signum.name}" if signum not in (None, signal.SIGINT) else ""
        print(f"\n{PROG}: interrupted{by}", file=sys.stderr, flush=True)
        return exit_status(signum or signal.SIGINT)
    except BrokenPipeError:  # e.g. `tinygpt generate ... | head -1`: the reader left
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except CLIError as exc:
        if debug:
            traceback.print_exc()
        _report(str(exc))
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into a line
        if debug:
            traceback.print_exc()
        code = _exit_code(exc)
        message = _message(exc)
        if code == 1 and not isinstance(exc, _EXPECTED_FAILURES):
            message = (f"unexpected {type(exc).__name__}: {message} (this may be a bug in "
                       "tinygpt; rerun with --debug for the traceback)")
        _report(message)
        return code


if __name__ == "__main__":
    sys.exit(main())
