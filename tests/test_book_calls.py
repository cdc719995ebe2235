"""The book's own calls, written against torch's names (``import tinygpt as torch``): a
learner's Dataset and DataLoader, default collate, shuffle and drop_last, and chapter 5's
helpers (the sampling demos, generate, train_model_simple, plot_losses, assign). Where
PyTorch defines the answer (default collate) the real torch computes the reference.
tinygpt.data's own loader is tested in test_data.py, the optimizers in test_optim.py."""

import collections
import warnings

import numpy as np
import pytest

import tinygpt
import tinygpt as torch
from tinygpt import GPT_CONFIG_124M, GPTModel
from tinygpt.backend import BackendError
from tinygpt.io.pretrained import assign
from tinygpt.sampling import (
    TOY_INVERSE_VOCAB,
    TOY_NEXT_TOKEN_LOGITS,
    TOY_VOCAB,
    print_sampled_tokens,
    softmax_with_temperature,
)
from tinygpt.tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text
from tinygpt.train import calc_loss_loader, evaluate_model, plot_losses, train_model_simple
from tinygpt.utils.data import DataLoader, Dataset

from .helpers.assertions import host

pytestmark = pytest.mark.usefixtures("keep_global_rng")


# --- a learner's own dataset ------------------------------------------------------------------


class Multiples(Dataset):
    """Sample i: a row of the first ``width`` multiples of i, and whether i is odd."""

    def __init__(self, n, width=3):
        self.rows = [torch.tensor([i * k for k in range(1, width + 1)]) for i in range(n)]
        self.odd = [torch.tensor(i % 2) for i in range(n)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i], self.odd[i]


def test_own_dataset_batches_into_tensors():
    loader = DataLoader(Multiples(5), batch_size=2, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    rows, odd = batches[0]
    assert isinstance(rows, tinygpt.Tensor) and rows.shape == (2, 3) and rows.dtype == torch.long
    assert rows.tolist() == [[0, 0, 0], [1, 2, 3]] and odd.tolist() == [0, 1]
    last_rows, last_odd = batches[-1]
    assert last_rows.size() == (1, 3) and last_odd.tolist() == [0]


def test_dataset_base_class_says_what_to_define():
    class Empty(Dataset):
        pass

    with pytest.raises(NotImplementedError, match="__getitem__"):
        Empty()[0]
    with pytest.raises(TypeError, match="__len__"):  # torch's class: its Dataset has no len
        len(Empty())


def test_one_loader_class_behind_both_names():
    import tinygpt.data
    import tinygpt.utils.data

    assert tinygpt.utils.data.DataLoader is tinygpt.data.DataLoader
    assert tinygpt.utils.data.Dataset is tinygpt.data.Dataset
    assert issubclass(tinygpt.data.GPTDatasetV1, Dataset)


# --- collate, against torch's default_collate -------------------------------------------------


Point = collections.namedtuple("Point", "x y")


def _samples(tensor, array):
    """The same five samples for either library: ``tensor`` builds its tensors."""
    return [
        (tensor([i, 2 * i]), array([i + 0.5, i - 0.5], dtype=np.float32), i, i / 4, i % 2 == 0,
         {"id": i, "pair": Point(i, -i)}, [i, i + 1], f"s{i}")
        for i in range(5)
    ]


def _assert_same_batch(ours, ref, pt, where="batch"):
    if isinstance(ref, pt.Tensor):
        assert isinstance(ours, tinygpt.Tensor), f"{where}: {type(ours).__name__}"
        assert ours.shape == tuple(ref.shape), where
        assert host(ours).dtype == ref.numpy().dtype, where
        np.testing.assert_array_equal(host(ours), ref.numpy(), err_msg=where)
    elif isinstance(ref, dict):
        assert isinstance(ours, dict) and list(ours) == list(ref), where
        for key in ref:
            _assert_same_batch(ours[key], ref[key], pt, f"{where}[{key!r}]")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
            _assert_same_batch(a, b, pt, f"{where}[{k}]")
    else:
        assert ours == ref, where


@pytest.mark.parametrize("batch_size,drop_last", [(2, False), (2, True), (5, False)])
def test_collate_matches_torch(batch_size, drop_last):
    pt = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchLoader

    ours = list(DataLoader(_samples(torch.tensor, np.array), batch_size=batch_size,
                           drop_last=drop_last))
    ref = list(TorchLoader(_samples(pt.tensor, np.array), batch_size=batch_size,
                           drop_last=drop_last))
    assert len(ours) == len(ref) == (2 if drop_last else -(-5 // batch_size))
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        _assert_same_batch(a, b, pt, f"batch {k}")


def test_collate_rejects_ragged_samples_and_odd_types():
    ragged = [(np.arange(3),), (np.arange(4),)]
    with pytest.raises(RuntimeError, match="equal size.*collate_fn"):
        next(iter(DataLoader(ragged, batch_size=2)))
    with pytest.raises(TypeError, match="collate_fn"):
        next(iter(DataLoader([object(), object()], batch_size=2)))


def test_collate_fn_num_workers_and_unsupported_arguments():
    data = Multiples(6)
    pairs = DataLoader(data, batch_size=4, collate_fn=lambda samples: len(samples))
    assert list(pairs) == [4, 2]
    base = [host(rows) for rows, _ in DataLoader(data, batch_size=4)]
    workers = [host(rows) for rows, _ in DataLoader(data, batch_size=4, num_workers=2,
                                                   persistent_workers=True)]
    for a, b in zip(base, workers, strict=True):
        np.testing.assert_array_equal(a, b)
    for argument in ("sampler", "batch_sampler"):
        with pytest.raises(NotImplementedError, match=f"{argument}=.*tinygpt"):
            DataLoader(data, **{argument: object()})
    with pytest.raises(NotImplementedError, match="worker_init_fn=.*tinygpt"):
        DataLoader(data, num_workers=1, worker_init_fn=print)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(data, num_workers=-1)


# --- shuffle and drop_last --------------------------------------------------------------------


def _epoch(loader):
    return [host(rows) for rows, _ in loader]


def test_shuffle_repeats_under_manual_seed_and_differs_per_epoch():
    loader = DataLoader(Multiples(40), batch_size=8, shuffle=True)
    torch.manual_seed(123)
    first, second = _epoch(loader), _epoch(loader)
    torch.manual_seed(123)
    again = _epoch(loader)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    seen = sorted(int(r[1]) for r in np.concatenate(first))  # column 1 is 2 * i
    assert seen == [2 * i for i in range(40)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last(shuffle):
    kept = DataLoader(Multiples(7), batch_size=3, shuffle=shuffle, drop_last=False)
    dropped = DataLoader(Multiples(7), batch_size=3, shuffle=shuffle, drop_last=True)
    assert [r.shape[0] for r in _epoch(kept)] == [3, 3, 1] and len(kept) == 3
    assert [r.shape[0] for r in _epoch(dropped)] == [3, 3] and len(dropped) == 2


# --- chapter 5's helpers, called as the book calls them ----------------------------------------


def test_print_sampled_tokens_as_the_book_calls_it(capsys):
    assert list(TOY_VOCAB) == ["closer", "every", "effort", "forward", "inches", "moves",
                               "pizza", "toward", "you"]
    assert TOY_INVERSE_VOCAB == {i: w for w, i in TOY_VOCAB.items()}
    probas = torch.softmax(torch.tensor(TOY_NEXT_TOKEN_LOGITS), dim=0)
    counts = print_sampled_tokens(probas)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9 and lines[3].endswith(" x forward")
    assert isinstance(counts, tinygpt.Tensor) and int(counts.sum()) == 1000
    with pytest.raises(ValueError, match="toy vocabulary"):
        print_sampled_tokens(torch.softmax(torch.randn(12), dim=0))


def test_sampling_helpers_take_and_give_tensors():
    logits = torch.tensor(TOY_NEXT_TOKEN_LOGITS)
    ours = softmax_with_temperature(logits, 0.5)
    assert isinstance(ours, tinygpt.Tensor)
    np.testing.assert_allclose(host(ours), softmax_with_temperature(TOY_NEXT_TOKEN_LOGITS, 0.5))
    # the book's two steps end in torch.softmax: a Tensor for an array too
    assert isinstance(softmax_with_temperature(TOY_NEXT_TOKEN_LOGITS, 0.5), tinygpt.Tensor)


TINY = dict(GPT_CONFIG_124M, context_length=16, emb_dim=16, n_heads=2, n_layers=1,
            drop_rate=0.0)


@pytest.fixture(scope="module")
def tiny_model():
    tinygpt.manual_seed(7)
    return GPTModel(TINY)


def test_generate_answers_a_tensor_with_a_tensor(tiny_model):
    tokenizer = get_tokenizer()
    idx = text_to_token_ids("Every effort moves you", tokenizer)
    assert isinstance(idx, tinygpt.Tensor) and idx.shape == (1, 4) and idx.dtype == torch.long
    for generate in (
        lambda i: tinygpt.generation.generate_fast(tiny_model, i, 5, TINY["context_length"],
                                        temperature=1.4, top_k=25, rng=3),
        lambda i: tinygpt.generate_text_simple(tiny_model, i, 5, TINY["context_length"]),
    ):
        out = generate(idx)
        assert isinstance(out, tinygpt.Tensor) and out.shape == (1, 9)
        as_array = generate(host(idx))
        assert isinstance(as_array, np.ndarray)
        np.testing.assert_array_equal(host(out), as_array)
        assert token_ids_to_text(out, tokenizer) == token_ids_to_text(as_array, tokenizer)


def _pairs(n, seed):
    ids = np.random.default_rng(seed).integers(0, 50257, size=(n, 2, TINY["context_length"] + 1))
    return [(torch.tensor(row[:, :-1]), torch.tensor(row[:, 1:])) for row in ids]


def test_train_model_simple_takes_a_plain_list_of_tensor_pairs(capsys):
    tinygpt.manual_seed(11)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.1)
    train, val = _pairs(3, seed=1), _pairs(1, seed=2)
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train, val, optimizer, tinygpt.backend.device_name(), num_epochs=2,
        eval_freq=2, eval_iter=1, start_context="Every effort moves you",
        tokenizer=get_tokenizer())
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 3  # steps 0, 2, 4
    assert tokens_seen == [2 * 16, 3 * 2 * 16, 5 * 2 * 16]
    assert train_losses[-1] < train_losses[0]
    assert capsys.readouterr().out.count("Every effort moves you") == 2
    assert calc_loss_loader(iter(val), model) == calc_loss_loader(val, model)  # no len()


def test_resuming_mid_epoch_needs_tinygpt_loader(tiny_model):
    from tinygpt.train import TrainingState, train_model

    state = TrainingState(batch_in_epoch=1, global_step=0)
    with pytest.raises(ValueError, match="tinygpt's DataLoader"):
        train_model(tiny_model, _pairs(2, 0), _pairs(1, 1),
                    torch.optim.AdamW(tiny_model.parameters()), num_epochs=1, eval_freq=1,
                    eval_iter=1, start_context="Every", tokenizer=get_tokenizer(), state=state)


def test_device_arguments_are_checked(tiny_model):
    wrong = "cuda" if tinygpt.backend.device_name() == "cpu" else "mps"
    with pytest.raises(BackendError):
        calc_loss_loader([], tiny_model, device=wrong)
    with pytest.raises(BackendError):
        evaluate_model(tiny_model, [], [], wrong, 1)


def test_plot_losses_keeps_the_backend_and_returns_the_figure(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    try:
        matplotlib.use("pdf")  # non-interactive, and not the Agg the old code forced
        epochs = torch.linspace(0, 2, 4)
        losses = [torch.tensor(v) for v in (9.0, 7.0, 5.0, 4.0)]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # plt.show() on a non-interactive backend: quiet
            fig = plot_losses(epochs, [10, 20, 30, 40], losses, [9.5, 8.0, 7.0, 7.5],
                              path=tmp_path / "loss.png")
        assert matplotlib.get_backend() == "pdf"
        assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
        assert [a.get_xlabel() for a in fig.axes] == ["Epochs", "Tokens seen"]
        plt.close(fig)
        quiet = plot_losses([0, 1], [1, 2], [3.0, 2.0], [3.5, 3.0], show=False)
        assert quiet not in map(plt.figure, plt.get_fignums())  # not pyplot's: never shown
    finally:
        matplotlib.use(before)


def test_assign_checks_shapes_like_the_book():
    layer = torch.nn.Linear(3, 2)
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    layer.weight = assign(layer.weight, weights)
    assert isinstance(layer.weight, torch.nn.Parameter) and layer.weight.requires_grad
    np.testing.assert_array_equal(host(layer.weight), weights)
    assert any(p is layer.weight for p in layer.parameters())
    with pytest.raises(ValueError, match=r"Shape mismatch. Left: \(2, 3\), Right: \(3, 2\)"):
        assign(layer.weight, weights.T)
