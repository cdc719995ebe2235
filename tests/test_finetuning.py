"""Finetuning as chapters 6 and 7 and appendix E do it, against torch from the same weights.

Each helper below is written once against torch's names and run twice: with ``lib`` =
torch and with ``lib`` = tinygpt. The tinygpt side then loads the torch side's weights,
and the two are compared in float64: logits, loss, every gradient (frozen parameters
get none), and the parameters after one optimizer step.
"""

import math

import numpy as np
import pytest

import tinygpt
from tinygpt import GPTModel

from .helpers.assertions import assert_close, host

torch = pytest.importorskip("torch")
from .reference.torch_gpt import GPTModel as TorchGPT  # noqa: E402
from .reference.torch_gpt import numpy_state_dict  # noqa: E402

TINY = {"vocab_size": 500, "context_length": 12, "emb_dim": 16, "n_heads": 2,
        "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True}
TOL = 1e-9
PAD = 50256


def same_weights(ours, ref):
    """Load ``ref``'s weights (masks dropped) into ``ours``, in float64."""
    ours.to(tinygpt.float64)
    ours.load_state_dict(numpy_state_dict(ref))
    return ours


def compare_gradients(ours, ref, trainable):
    """Every trainable parameter's gradient equals torch's; the frozen ones have none."""
    ref_params = dict(ref.named_parameters())
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in ref.parameters() if p.grad is not None)
    for name, p in ours.named_parameters():
        assert p.requires_grad == ref_params[name].requires_grad, name
        if name in trainable:
            assert p.grad is not None, f"{name}: no gradient"
            assert_close(f"grad {name}", p.grad, ref_params[name].grad.numpy(), TOL, floor=floor)
        else:
            assert p.grad is None and ref_params[name].grad is None, f"{name} is frozen"


def compare_parameters(ours, ref, what):
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(f"{what} {name}", p, ref_params[name].detach().numpy(), TOL)


# ----------------------------------------------------------------------------------
# Chapter 6: a classification head, the last block and final norm trainable.


def prepare_classifier(model, lib, num_classes=2):
    for param in model.parameters():
        param.requires_grad = False
    model.out_head = lib.nn.Linear(in_features=TINY["emb_dim"], out_features=num_classes)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model


class ReviewDataset:
    """Fixed-length token ids with a 0/1 label, as the chapter's padded SMS dataset gives."""

    def __init__(self, lib, encoded, labels):
        self.lib, self.encoded, self.labels = lib, encoded, labels

    def __getitem__(self, index):
        return (self.lib.tensor(self.encoded[index], dtype=self.lib.long),
                self.lib.tensor(self.labels[index], dtype=self.lib.long))

    def __len__(self):
        return len(self.labels)


def accuracy_over_loader(lib, data_loader, model):
    model.eval()
    correct_predictions, num_examples = 0, 0
    for input_batch, target_batch in data_loader:
        with lib.no_grad():
            logits = model(input_batch)[:, -1, :]  # the last token's logits
        predicted_labels = lib.argmax(logits, dim=-1)
        num_examples += predicted_labels.shape[0]
        correct_predictions += (predicted_labels == target_batch).sum().item()
    return correct_predictions / num_examples


def classifier_pair():
    torch.manual_seed(0)
    ref = prepare_classifier(TorchGPT(TINY), torch).double()
    ours = same_weights(prepare_classifier(GPTModel(TINY), tinygpt), ref)
    return ours, ref


def test_classification_head_logits_loss_gradients_and_a_step_match_torch():
    ours, ref = classifier_pair()
    trainable = {n for n, p in ref.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in ours.named_parameters() if p.requires_grad}
    assert any(n.startswith("trf_blocks.1.") for n in trainable)
    assert not any(n.startswith(("trf_blocks.0.", "tok_emb", "pos_emb")) for n in trainable)
    assert {"out_head.weight", "out_head.bias", "final_norm.scale"} <= trainable

    rng = np.random.default_rng(3)
    ids = rng.integers(0, TINY["vocab_size"], size=(4, 10))
    labels = np.array([0, 1, 1, 0])
    results = []
    for lib, model in ((tinygpt, ours), (torch, ref)):
        model.train()
        optimizer = lib.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
        optimizer.zero_grad()
        logits = model(lib.tensor(ids))[:, -1, :]
        loss = lib.nn.functional.cross_entropy(logits, lib.tensor(labels))
        loss.backward()
        results.append((logits, loss, optimizer))
    (logits, loss, opt), (logits_ref, loss_ref, opt_ref) = results
    assert tuple(logits.shape) == (4, 2)
    assert_close("last-token logits", logits, logits_ref.detach().numpy(), TOL)
    assert_close("loss", loss, loss_ref.item(), TOL, scale_by_max=False)
    compare_gradients(ours, ref, trainable)
    opt.step()
    opt_ref.step()
    compare_parameters(ours, ref, "after one AdamW step:")


def test_classification_accuracy_over_a_loader_matches_torch():
    ours, ref = classifier_pair()
    rng = np.random.default_rng(4)
    encoded = rng.integers(0, 500, size=(10, 8)).tolist()
    labels = rng.integers(0, 2, size=10).tolist()
    accuracies = []
    for lib, model in ((tinygpt, ours), (torch, ref)):
        loader = lib.utils.data.DataLoader(ReviewDataset(lib, encoded, labels), batch_size=4,
                                           shuffle=False, drop_last=False)
        accuracies.append(accuracy_over_loader(lib, loader, model))
    assert accuracies[0] == accuracies[1]
    assert 0.0 <= accuracies[0] <= 1.0


# ----------------------------------------------------------------------------------
# Chapter 7: the instruction collate (pad, -100 targets after the first pad, truncate).


def instruction_collate(lib, batch, pad_token_id=PAD, ignore_index=-100,
                        allowed_max_length=None):
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        new_item = item.copy()
        new_item += [pad_token_id]  # one end-of-text token that stays a target
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = lib.tensor(padded[:-1])
        targets = lib.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = lib.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index  # every pad after the first is ignored
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return lib.stack(inputs_lst), lib.stack(targets_lst)


BATCH = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


@pytest.mark.parametrize("allowed_max_length", [None, 4])
def test_instruction_collate_matches_torch(allowed_max_length):
    ours = instruction_collate(tinygpt, BATCH, allowed_max_length=allowed_max_length)
    ref = instruction_collate(torch, BATCH, allowed_max_length=allowed_max_length)
    for a, b in zip(ours, ref):
        assert a.dtype == tinygpt.int64 and str(a.dtype) == str(b.dtype)
        np.testing.assert_array_equal(host(a), b.numpy())
    if allowed_max_length is None:
        np.testing.assert_array_equal(host(ours[1])[1], [6, PAD, -100, -100, -100])


def test_instruction_loss_with_ignore_index_matches_torch():
    cfg = dict(TINY, vocab_size=50257)  # GPT-2's vocabulary: the pad id 50256 is a token
    torch.manual_seed(1)
    ref = TorchGPT(cfg).double()
    ours = same_weights(GPTModel(cfg), ref)
    results = []
    for lib, model in ((tinygpt, ours), (torch, ref)):
        inputs, targets = instruction_collate(lib, BATCH)
        logits = model(inputs)
        loss = lib.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        results.append(loss)
    assert_close("instruction loss", results[0], results[1].item(), TOL, scale_by_max=False)
    compare_gradients(ours, ref, {n for n, _ in ref.named_parameters()})


# ----------------------------------------------------------------------------------
# Appendix E: LoRA layers replacing every Linear, only A and B trained.


def lora_classes(lib):
    nn = lib.nn

    class LoRALayer(nn.Module):
        def __init__(self, in_dim, out_dim, rank, alpha):
            super().__init__()
            self.A = nn.Parameter(lib.empty(in_dim, rank))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as Linear initialises
            self.B = nn.Parameter(lib.zeros(rank, out_dim))  # starts as no change at all
            self.alpha = alpha

        def forward(self, x):
            return self.alpha * (x @ self.A @ self.B)

    class LinearWithLoRA(nn.Module):
        def __init__(self, linear, rank, alpha):
            super().__init__()
            self.linear = linear
            self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)

        def forward(self, x):
            return self.linear(x) + self.lora(x)

    def replace_linear_with_lora(model, rank, alpha):
        for name, module in model.named_children():
            if isinstance(module, nn.Linear):
                setattr(model, name, LinearWithLoRA(module, rank, alpha))
            else:
                replace_linear_with_lora(module, rank, alpha)

    return LoRALayer, replace_linear_with_lora


def lora_model(lib, model):
    for param in model.parameters():
        param.requires_grad = False
    _, replace_linear_with_lora = lora_classes(lib)
    replace_linear_with_lora(model, rank=4, alpha=8)
    return model


def test_lora_replacement_keeps_torchs_order_and_trains_only_a_and_b():
    torch.manual_seed(2)
    ref = lora_model(torch, TorchGPT(TINY)).double()
    tinygpt.manual_seed(2)
    ours = lora_model(tinygpt, GPTModel(TINY))
    # replaced in place: the state dict (and print(model)) keep torch's order
    ref_keys = [k for k in ref.state_dict() if not k.endswith(".att.mask")]
    assert [k for k in ours.state_dict() if not k.endswith(".att.mask")] == ref_keys
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in ref.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora.A", "lora.B")) for n in trainable)
    # kaiming_uniform_(a=sqrt(5)) of an (in, rank) matrix: U(-1/sqrt(rank), 1/sqrt(rank))
    a = host(ours.trf_blocks[0].att.W_query.lora.A)
    assert np.abs(a).max() <= 1 / math.sqrt(4) and np.abs(a).max() > 0.8 / math.sqrt(4)
    same_weights(ours, ref)

    rng = np.random.default_rng(5)
    ids = rng.integers(0, TINY["vocab_size"], size=(2, 9))
    targets = rng.integers(0, TINY["vocab_size"], size=(2, 9))
    optimizers = {}
    for step in range(2):  # B is zero at first, so A's gradient is zero until a step
        losses = []
        for lib, model in ((tinygpt, ours), (torch, ref)):
            optimizer = optimizers.setdefault(lib.__name__, lib.optim.AdamW(
                model.parameters(), lr=1e-2, weight_decay=0.01))
            optimizer.zero_grad()
            logits = model(lib.tensor(ids))
            loss = lib.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                   lib.tensor(targets).flatten())
            loss.backward()
            losses.append((logits, loss))
        (logits, loss), (logits_ref, loss_ref) = losses
        assert_close(f"step {step} logits", logits, logits_ref.detach().numpy(), TOL)
        assert_close(f"step {step} loss", loss, loss_ref.item(), TOL, scale_by_max=False)
        compare_gradients(ours, ref, trainable)
        for optimizer in optimizers.values():
            optimizer.step()
        compare_parameters(ours, ref, f"after step {step}:")
