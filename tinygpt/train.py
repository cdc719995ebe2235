"""The chapter's training workflow, in the book's order: the loss of a batch and of a
loader, ``train_model_simple`` (listing 5.3's steps, under the book's names), ``evaluate_model``,
``generate_and_print_sample`` and ``plot_losses``.

Below them, ``train_model``: the same loop built from the same helpers, with what a long
run needs (a progress bar, a clear stop on a non-finite loss, Ctrl-C, SIGTERM and SIGHUP
handled between steps, resuming mid-epoch from a ``TrainingState``) and appendix D's
extras (linear warmup, cosine decay, gradient-norm clipping), all off by default. With
the same seed and data the two loops give the same losses (tests/test_train.py).
"""

import math
import signal
import sys
import time
import warnings

import numpy
from tqdm import tqdm  # (tqdm.auto warns in notebooks without ipywidgets; bars are terminal-only)

from .backend import check_device, xp
from .checks import nonnegative_int, positive_int
from .errors import TinygptError
from .grad_mode import no_grad
from .io.records import TrainingState
from .nn import functional as F
from .nn.utils import clip_grad_norm  # appendix D's clipping: torch.nn.utils.clip_grad_norm_
from .runtime import keep_freed_memory_for_reuse
from .tensor import Tensor
from .tensors import as_tensor


class TrainingDivergedError(TinygptError, RuntimeError):
    """The loss or the weights became NaN or infinite. Caught at a step's loss, the
    weights are those of the last good step; caught after an update (at an evaluation or
    an epoch's end), they are not: resume from the last checkpoint."""


def calc_loss_batch(input_batch, target_batch, model, device=None):
    """Mean cross-entropy of one batch. ``device`` (the book's argument) must name where
    tinygpt computes ("cpu" on NumPy, "cuda" on CuPy) or be None; the batches may be
    Tensors, arrays or lists."""
    input_batch = as_tensor(input_batch).to(device)  # (b, num_tokens)
    target_batch = as_tensor(target_batch).to(device)  # (b, num_tokens): the next tokens
    logits = model(input_batch)  # (b, num_tokens, vocab_size)
    loss = F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
    return loss


def calc_loss_loader(data_loader, model, device=None, num_batches=None):
    """Average loss over the first ``num_batches`` batches (all by default); nan if empty.

    ``data_loader``: any iterable of ``(input_batch, target_batch)`` (a DataLoader, a
    list, a generator); one without ``len()`` is read until it ends or until
    ``num_batches``, and the average is over the batches actually read."""
    check_device(device)
    n_batches = _length(data_loader)
    if n_batches == 0:
        return float("nan")
    if num_batches is None:
        num_batches = n_batches
    elif n_batches is not None:
        num_batches = min(num_batches, n_batches)
    total_loss, counted = 0.0, 0
    with no_grad():
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if num_batches is not None and i >= num_batches:
                break
            total_loss += calc_loss_batch(input_batch, target_batch, model, device).item()
            counted += 1
    return total_loss / counted if counted else float("nan")


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer):
    """Listing 5.3, step for step under the book's names: returns (train_losses,
    val_losses, track_tokens_seen).

    Each batch is one update (clear the gradients, loss, backward, AdamW step); every
    ``eval_freq`` updates both losses are measured and printed; after each epoch a greedy
    sample shows what the model writes. ``train_model`` below runs the same updates, in
    the same order, and adds what a long run needs."""
    # What figure 5.12 plots: one entry per evaluation.
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen = 0
    global_step = -1  # raised before it is read, so the first update is step 0

    for epoch in range(num_epochs):
        model.train()  # dropout is active while the weights are being learned
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # gradients add up across backward calls: start at zero
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()  # d(loss)/d(weight), left in every parameter's .grad
            optimizer.step()  # AdamW moves each weight using its .grad
            tokens_seen += input_batch.numel()
            global_step += 1

            if global_step % eval_freq != 0:
                continue  # evaluation costs forward passes: only every eval_freq steps
            train_loss, val_loss = evaluate_model(
                model, train_loader, val_loader, device, eval_iter)
            train_losses.append(train_loss)
            val_losses.append(val_loss)
            track_tokens_seen.append(tokens_seen)
            print(f"Ep {epoch + 1} (Step {global_step:06d}): "
                  f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")

        # The loss is a number; a sample of text shows what it means.
        generate_and_print_sample(model, tokenizer, device, start_context)

    return train_losses, val_losses, track_tokens_seen


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Train and validation loss over ``eval_iter`` batches each, in eval mode."""
    check_device(device)
    was_training = model.training
    model.eval()
    with no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train(was_training)
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context, print_fn=print):
    """Greedy 50-token continuation of ``start_context`` with ``generate_text_simple``,
    printed on one line (the book's helper; ``generate_fast`` gives the same tokens
    with the KV cache)."""
    from .generation import generate_text_simple
    from .tokenizer import text_to_token_ids, token_ids_to_text

    check_device(device)
    was_training = model.training
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer)
    with no_grad():
        token_ids = generate_text_simple(
            model=model, idx=encoded, max_new_tokens=50, context_size=context_size
        )
    decoded_text = token_ids_to_text(token_ids, tokenizer)
    print_fn(decoded_text.replace("\n", " "))
    model.train(was_training)
    return decoded_text


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses, path=None, show=True):
    """The book's figure 5.12: losses against epochs, with a twin "Tokens seen" axis.

    Each argument is a list, an array or a Tensor (e.g. ``torch.linspace(0, num_epochs,
    len(train_losses))``). ``path``: also save the figure there (a PNG; ".pdf" or ".svg"
    names give those formats). ``show``: call ``plt.show()`` as the book does: in a
    notebook the figure appears under the cell; on a non-interactive backend (a script
    without a display) it does nothing, quietly. ``show=False`` draws the figure without
    pyplot at all (a bare ``matplotlib.figure.Figure``), so nothing is displayed and
    pyplot's figure list is untouched. matplotlib's backend is never changed.
    Returns the figure.
    """
    from matplotlib.ticker import MaxNLocator

    epochs_seen, tokens_seen, train_losses, val_losses = (
        numpy.asarray(values, dtype=float)
        for values in (epochs_seen, tokens_seen, train_losses, val_losses)
    )
    if show:  # pyplot owns the figure, so that plt.show() (or a notebook) displays it
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(5, 3))
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3))
    ax1 = fig.subplots()
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, val_losses, linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax1.twiny()  # a second x-axis sharing the y-axis
    ax2.plot(tokens_seen, train_losses, alpha=0)  # invisible: aligns the ticks
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)  # PNG unless the name ends in another format's suffix
    if show:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-interactive", category=UserWarning)
            plt.show()
    return fig


# ----------------------------------------------------------------------------------
# The long-run loop: train_model, and appendix D's learning-rate schedule.


def learning_rate_at(step, peak_lr, total_steps, warmup_steps=0, initial_lr=None,
                     cosine_decay=False, min_lr=0.0):
    """Learning rate for 0-based ``step``: linear warmup from ``initial_lr`` to ``peak_lr``
    over ``warmup_steps``, then constant, or a cosine decay to ``min_lr`` by ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        start = peak_lr * 0.01 if initial_lr is None else initial_lr
        return start + step * (peak_lr - start) / warmup_steps
    if not cosine_decay:
        return peak_lr
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# Ctrl-C, and what `kill`, a job scheduler or a closed terminal sends: each stops a run as
# Ctrl-C does, and the process exits 128 + the signal's number, as a shell reports it.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt of a stop signal; ``signum`` says which (SIGINT: Ctrl-C)."""

    def __init__(self, signum=signal.SIGINT):
        self.signum = signal.Signals(signum)
        super().__init__(self.signum.name)


def exit_status(signum=signal.SIGINT):
    """The exit status of a process a stop signal ended: 130 for Ctrl-C, 143 for SIGTERM,
    129 for SIGHUP."""
    return 128 + int(signum)


class StopSignals:
    """While active, the stop signals (Ctrl-C, SIGTERM, SIGHUP) are handled alike. With
    ``defer`` (the training loop), the first asks the loop to stop at the next step
    boundary, so weights and optimizer are never half-updated, and ``requested`` says
    which signal it was; a second one stops at once. Without, each stops at once, raising
    ``Interrupted`` wherever the program is, as Python does for Ctrl-C.

    Only the main thread can handle signals: elsewhere this does nothing. A SIGTERM or
    SIGHUP the process ignores (``nohup`` ignores SIGHUP) stays ignored. Leaving restores
    the previous handlers."""

    def __init__(self, defer=False, enabled=True):
        self.defer, self.enabled = defer, enabled and _in_main_thread()
        self.requested = None
        self.previous = {}

    def __enter__(self):
        if self.enabled:
            for signum in STOP_SIGNALS:
                if signum == signal.SIGINT or signal.getsignal(signum) != signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if not self.defer or self.requested is not None:
            raise Interrupted(signum)
        self.requested = name = signal.Signals(signum)
        how = ("Interrupted", "press Ctrl-C again") if name == signal.SIGINT else (
            f"Interrupted by {name.name}", f"send {name.name} again or press Ctrl-C")
        print("\n{}: stopping after this step ({} to abort now)".format(*how), file=sys.stderr)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
        return False


def _in_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def train_model(model, train_loader, val_loader, optimizer, *, num_epochs, eval_freq, eval_iter,
                start_context, tokenizer, device=None, state=None, warmup_steps=0,
                initial_lr=None, cosine_decay=False, min_lr=0.0, grad_clip=None,
                stop_after_steps=None, on_epoch_end=None, on_evaluate=None, progress=None,
                print_fn=None, handle_sigint=True):
    """The book's loop with the extras described in the module docstring.

    ``train_loader``: tinygpt's ``DataLoader``, or any iterable of ``(input_batch,
    target_batch)`` (a list, a torch-style loader, a generator: note that a generator
    is used up by one pass). Resuming mid-epoch needs tinygpt's ``DataLoader``, which
    replays an epoch's order (``epoch_order`` / ``iterate``); other loaders are read
    from the start of each epoch. ``state``: a TrainingState to resume from (the
    model, optimizer and random generator must already be restored).
    ``stop_after_steps``: stop (resumably) once ``global_step + 1`` reaches this.
    ``on_epoch_end(state)`` runs after each epoch's sample, e.g. to save a checkpoint;
    ``on_evaluate(state, train_loss, val_loss)`` after each evaluation, e.g. to log it.
    ``progress``: show a tqdm bar (default: only on a terminal). Returns the
    TrainingState; when Ctrl-C, SIGTERM or SIGHUP stopped the run between two steps,
    ``state.interrupted`` is that signal (``handle_sigint=False`` leaves the signals
    alone). A loss or weights that become NaN or infinite raise
    ``TrainingDivergedError``.

    The schedule (appendix D) sets ``lr`` in every param group, from the peak kept as
    ``optimizer.peak_lr`` (the first group's ``lr`` when the run starts). Long runs
    get glibc's malloc tuned for speed (``tinygpt.runtime.keep_freed_memory_for_reuse``).
    """
    state = state or TrainingState()
    n_batches = _check_loop_arguments(train_loader, state, num_epochs, eval_freq, eval_iter,
                                      cosine_decay, device)
    keep_freed_memory_for_reuse()
    if not hasattr(optimizer, "peak_lr"):
        optimizer.peak_lr = optimizer.param_groups[0]["lr"]
    step_options = dict(
        peak_lr=optimizer.peak_lr, total_steps=num_epochs * (n_batches or 0),
        warmup_steps=warmup_steps, initial_lr=initial_lr, cosine_decay=cosine_decay,
        min_lr=min_lr, grad_clip=grad_clip, device=device)
    show = sys.stderr.isatty() if progress is None else progress
    say = print_fn or (tqdm.write if show else print)

    with StopSignals(defer=True, enabled=handle_sigint) as stop:
        while state.epoch < num_epochs:
            model.train()
            batches = _epoch_batches(train_loader, state)
            bar = tqdm(total=n_batches, initial=state.batch_in_epoch, disable=not show,
                       desc=f"epoch {state.epoch + 1}/{num_epochs}", unit="batch", leave=False)
            trained_before = state.batch_in_epoch
            with bar:
                for input_batch, target_batch in batches:
                    if stop_after_steps is not None and state.global_step + 1 >= stop_after_steps:
                        return state
                    if stop.requested is not None:
                        state.interrupted = stop.requested
                        return state
                    _train_step(model, optimizer, input_batch, target_batch, state, bar,
                                **step_options)
                    if state.global_step % eval_freq == 0:
                        _evaluate_and_record(model, train_loader, val_loader, device,
                                             eval_iter, state, say, on_evaluate)
            if not _replays_order(train_loader) and state.batch_in_epoch == trained_before:
                raise ValueError(
                    f"the training loader gave no batches in epoch {state.epoch + 1}; a "
                    "generator is used up after one pass: pass a list or a DataLoader"
                )
            _check_weights_finite(model, state)  # a bad last step would fail in the sample
            generate_and_print_sample(model, tokenizer, device, start_context, print_fn=say)
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_order = None
            if state.epoch == num_epochs:
                state.finished = True
            if on_epoch_end is not None:
                on_epoch_end(state)
    state.finished = True
    return state


def _check_loop_arguments(train_loader, state, num_epochs, eval_freq, eval_iter,
                          cosine_decay, device):
    """Checks ``train_model``'s arguments before any work; returns ``len(train_loader)``
    (None for a loader without one)."""
    if state.batch_in_epoch and not _replays_order(train_loader):
        raise ValueError(
            f"resuming in the middle of epoch {state.epoch + 1} (after batch "
            f"{state.batch_in_epoch}) needs tinygpt's DataLoader, which replays the epoch's "
            f"order; this {type(train_loader).__name__} cannot: resume from a checkpoint "
            "written at the end of an epoch, or load the data with tinygpt's DataLoader"
        )
    nonnegative_int("num_epochs", num_epochs)
    positive_int("eval_freq", eval_freq)
    positive_int("eval_iter", eval_iter)
    n_batches = _length(train_loader)
    if n_batches == 0:
        raise ValueError(
            "the training loader has no batches: use a longer text, a shorter context "
            "length or stride, or a smaller batch size"
        )
    if cosine_decay and n_batches is None:
        raise ValueError(
            "cosine_decay needs the number of steps, but the training loader has no len(): "
            "pass a list or a DataLoader"
        )
    check_device(device)
    return n_batches


def _replays_order(loader):
    return hasattr(loader, "epoch_order") and hasattr(loader, "iterate")


def _epoch_batches(train_loader, state):
    """This epoch's batches from where ``state`` stands. With tinygpt's DataLoader the
    epoch's order is drawn once and kept in ``state``, so a resumed run replays it; any
    other iterable is read from its start."""
    if not _replays_order(train_loader):
        return train_loader
    if state.epoch_order is None:
        state.epoch_order = [int(i) for i in train_loader.epoch_order()]
        state.batch_in_epoch = 0
    return train_loader.iterate(numpy.asarray(state.epoch_order), state.batch_in_epoch)


def _train_step(model, optimizer, input_batch, target_batch, state, bar, *, peak_lr,
                total_steps, warmup_steps, initial_lr, cosine_decay, min_lr, grad_clip, device):
    """One update of the book's loop (zero_grad, loss, backward, step), with appendix D's
    schedule and clipping; advances ``state`` and the progress bar."""
    started = time.perf_counter()
    step = state.global_step + 1
    use_schedule = warmup_steps > 0 or cosine_decay
    if use_schedule:
        lr = learning_rate_at(step, peak_lr, total_steps, warmup_steps, initial_lr,
                              cosine_decay, min_lr)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
    optimizer.zero_grad()
    loss = calc_loss_batch(input_batch, target_batch, model, device)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise TrainingDivergedError(
            f"the training loss became {loss_value} at epoch {state.epoch + 1}, step {step}; "
            "training stopped before updating the weights. Lower the learning rate, add "
            "warmup or gradient clipping (grad_clip=1.0), or resume from the last checkpoint"
        )
    loss.backward()
    if grad_clip is not None and (not use_schedule or step >= warmup_steps):
        clip_grad_norm(model.parameters(), grad_clip)
    optimizer.step()
    n_tokens = _numel(input_batch)
    state.tokens_seen += n_tokens
    state.global_step = step
    state.batch_in_epoch += 1
    seconds = time.perf_counter() - started
    bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{n_tokens / seconds:.0f}")
    bar.update(1)


def _evaluate_and_record(model, train_loader, val_loader, device, eval_iter, state, say,
                         on_evaluate):
    """The book's evaluation: both losses into ``state``, the "Ep N (Step S)" line."""
    train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
    if not math.isfinite(train_loss):  # the last update broke the weights
        raise TrainingDivergedError(
            f"the training loss became {train_loss} after the update of epoch "
            f"{state.epoch + 1}, step {state.global_step}. Lower the learning rate, add "
            "warmup or gradient clipping (grad_clip=1.0), or resume from the last checkpoint"
        )
    state.train_losses.append(train_loss)
    state.val_losses.append(val_loss)
    state.track_tokens_seen.append(state.tokens_seen)
    say(f"Ep {state.epoch + 1} (Step {state.global_step:06d}): "
        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
    if on_evaluate is not None:
        on_evaluate(state, train_loss, val_loss)


def _check_weights_finite(model, state):
    """Raises TrainingDivergedError when an update left a NaN or infinite weight (once an
    epoch: one pass over the parameters, far cheaper than the epoch)."""
    for name, param in model.named_parameters():
        if not bool(xp.isfinite(param.array).all()):
            raise TrainingDivergedError(
                f"the weights became NaN or infinite ({name}) during epoch {state.epoch + 1}, "
                f"by step {state.global_step}. Lower the learning rate, add warmup or "
                "gradient clipping (grad_clip=1.0), or resume from the last checkpoint"
            )


def _length(loader):
    """``len(loader)``, or None for an iterable without one (e.g. a generator)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _numel(batch):
    """How many token ids a batch holds (a Tensor, an array or nested lists): the
    book's ``input_batch.numel()``."""
    return batch.numel() if isinstance(batch, Tensor) else int(numpy.size(batch))
