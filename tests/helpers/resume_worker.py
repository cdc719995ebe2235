"""A small training run that tests/test_resume.py drives in fresh processes.

    python tests/helpers/resume_worker.py prepare FOLDER   # the run straight through, and
                                                           # three interrupted copies, each
                                                           # saving a checkpoint
    python tests/helpers/resume_worker.py resume CKPT OUT  # load CKPT here, finish the run,
                                                           # save OUT

``prepare`` writes ``straight.safetensors`` (the state at the end of an
uninterrupted run) and ``mid-epoch.safetensors`` (stopped after ``MID_STEP``
steps, inside epoch 2), ``boundary.safetensors`` (stopped after exactly one
epoch with ``stop_after_steps``) and ``epoch-end.safetensors`` (saved by
``on_epoch_end`` after epoch 1, the way the demo saves, then the process
"crashes"). Every result file is a training checkpoint of the finished or
stopped run, with the lines the run printed in ``extra["printed"]``.

The run: GPT-2's tokenizer on a synthetic text, a tiny model with dropout on,
shuffled batches, AdamW with warmup, cosine decay and gradient clipping, so
every piece of state a resume needs (weights, moments, step counts, peak_lr,
the generator, the epoch's batch order) matters.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import tinygpt  # noqa: E402
from tinygpt.data import create_dataloader_v1  # noqa: E402
from tinygpt.io.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from tinygpt.tokenizer import get_tokenizer  # noqa: E402
from tinygpt.train import train_model  # noqa: E402

CONFIG = dict(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2,
              drop_rate=0.1, qkv_bias=False)
SEED = 123
NUM_EPOCHS = 3
TRAIN = dict(num_epochs=NUM_EPOCHS, eval_freq=3, eval_iter=2, start_context="Every effort moves",
             warmup_steps=4, cosine_decay=True, min_lr=1e-5, grad_clip=1.0, progress=False)
MID_STEP = 17  # inside epoch 2 (the loader has 12 batches an epoch)


def synthetic_text():
    """About 900 words of deterministic nonsense (needs no data file)."""
    words = ("every effort moves you the picture was painted by a man who had never seen "
             "such light on the water and she said it was his last work before the end").split()
    rng = numpy.random.default_rng(2024)  # a private generator: the package's is untouched
    sentences = []
    for _ in range(90):
        n = int(rng.integers(6, 14))
        sentences.append(" ".join(words[int(i)] for i in rng.integers(0, len(words), n)) + ".")
    return " ".join(sentences)


def loaders(tokenizer):
    text = synthetic_text()
    split = int(0.9 * len(text))
    context = CONFIG["context_length"]
    train = create_dataloader_v1(text[:split], batch_size=2, max_length=context, stride=context,
                                 drop_last=True, shuffle=True, tokenizer=tokenizer)
    val = create_dataloader_v1(text[split:], batch_size=2, max_length=context, stride=context,
                               drop_last=False, shuffle=False, tokenizer=tokenizer)
    return train, val


class Crash(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def fresh_run(tokenizer, printed, **kwargs):
    """Seed, build, and train; returns (model, optimizer, state)."""
    tinygpt.manual_seed(SEED)
    model = tinygpt.GPTModel(CONFIG)
    optimizer = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    train, val = loaders(tokenizer)
    state = train_model(model, train, val, optimizer, tokenizer=tokenizer,
                        print_fn=printed.append, **TRAIN, **kwargs)
    return model, optimizer, state


def prepare(folder):
    tokenizer = get_tokenizer()
    train, _ = loaders(tokenizer)
    assert len(train) == 12, f"the synthetic text gives {len(train)} batches, expected 12"

    printed = []
    model, optimizer, state = fresh_run(tokenizer, printed)
    assert state.finished
    save_checkpoint(os.path.join(folder, "straight.safetensors"), model, optimizer, state,
                    extra={"printed": printed})

    for name, k in (("mid-epoch", MID_STEP), ("boundary", len(train))):
        printed = []
        model, optimizer, state = fresh_run(tokenizer, printed, stop_after_steps=k)
        assert state.global_step + 1 == k and not state.finished
        save_checkpoint(os.path.join(folder, f"{name}.safetensors"), model, optimizer, state,
                        extra={"printed": printed})

    printed = []
    holder = {}

    def save_after_first_epoch(state):
        if state.epoch == 1:
            save_checkpoint(os.path.join(folder, "epoch-end.safetensors"), holder["model"],
                            holder["optimizer"], state, extra={"printed": list(printed)})
            raise Crash

    tinygpt.manual_seed(SEED)
    holder["model"] = model = tinygpt.GPTModel(CONFIG)
    holder["optimizer"] = optimizer = tinygpt.AdamW(model.parameters(), lr=4e-4,
                                                    weight_decay=0.1)
    train, val = loaders(tokenizer)
    try:
        train_model(model, train, val, optimizer, tokenizer=tokenizer, print_fn=printed.append,
                    on_epoch_end=save_after_first_epoch, **TRAIN)
    except Crash:
        pass
    else:
        raise AssertionError("the epoch-end run was not stopped")


def resume(checkpoint, out):
    tinygpt.manual_seed(999)  # a different seed: the checkpoint's generator must win
    tokenizer = get_tokenizer()
    ckpt = load_checkpoint(checkpoint)
    train, val = loaders(tokenizer)
    printed = []
    state = train_model(ckpt.model, train, val, ckpt.optimizer, tokenizer=tokenizer,
                        state=ckpt.state, print_fn=printed.append, **TRAIN)
    assert state.finished
    save_checkpoint(out, ckpt.model, ckpt.optimizer, state,
                    extra={"printed": ckpt.extra["printed"] + printed})


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"] and len(sys.argv) == 3:
        prepare(sys.argv[2])
    elif sys.argv[1:2] == ["resume"] and len(sys.argv) == 4:
        resume(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
