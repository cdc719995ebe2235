"""Worst relative errors of tinygpt against the book's PyTorch GPTModel, as a table.

    python bench/parity_report.py

Same weights in both engines (the torch model's state dict loaded into tinygpt),
dropout off, one batch: logits, loss and every parameter's gradient, in float64 and
float32, for a small config and GPT_CONFIG_124M (context 256, 64 tokens). Relative
error = max |ours - torch| / max |torch| per tensor; the gradient column is the
worst over all parameters (the key bias is left out: softmax makes its gradient
exactly zero, so only roundoff is left to compare). tests/test_parity_torch.py
asserts the tolerances; this prints what is actually seen.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygpt  # noqa: E402
from tests.reference.torch_gpt import GPTModel as TorchGPT  # noqa: E402
from tests.reference.torch_gpt import numpy_state_dict  # noqa: E402

SMALL = {"vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": True}
BIG = dict(tinygpt.GPT_CONFIG_124M, drop_rate=0.0)


def rel(ours, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - ref).max() / np.abs(ref).max())


def compare(cfg, dtype, T):
    torch.manual_seed(123)
    ref = TorchGPT(cfg).to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = tinygpt.GPTModel(cfg, dtype=dtype)
    ours.load_state_dict(numpy_state_dict(ref))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, T))
    targets = rng.integers(0, cfg["vocab_size"], size=(2, T))
    logits_ref = ref(torch.from_numpy(ids))
    loss_ref = torch.nn.functional.cross_entropy(logits_ref.flatten(0, 1),
                                                 torch.from_numpy(targets).flatten())
    loss_ref.backward()
    logits = ours(ids)
    loss = tinygpt.cross_entropy(logits, targets)
    loss.backward()
    ref_grads = dict(ref.named_parameters())
    largest = max(float(p.grad.abs().max()) for p in ref.parameters())
    worst_name, worst = None, 0.0
    for name, p in ours.named_parameters():
        g = ref_grads[name].grad.numpy()
        if np.abs(g).max() < 1e-6 * largest:
            continue  # exactly zero in exact arithmetic (the key bias): roundoff only
        r = rel(p.grad, g)
        if r > worst:
            worst_name, worst = name, r
    loss_rel = abs(loss.item() - loss_ref.item()) / abs(loss_ref.item())
    return rel(logits.data, logits_ref.detach().numpy()), loss_rel, worst, worst_name


def main():
    torch.set_num_threads(2)
    print(f"{'config':18}{'dtype':9}{'logits':>10}{'loss':>10}{'gradients':>11}  worst gradient")
    figures = {}
    for label, cfg, T in (("small", SMALL, 16), ("GPT_CONFIG_124M", BIG, 64)):
        for dtype in (np.float64, np.float32):
            lg, ls, gr, name = compare(cfg, dtype, T)
            print(f"{label:18}{np.dtype(dtype).name:9}{lg:10.1e}{ls:10.1e}{gr:11.1e}  {name}")
            figures.setdefault(label, {})[np.dtype(dtype).name] = {
                "logits_rel": float(lg), "loss_rel": float(ls), "gradients_rel": float(gr),
                "worst_gradient": name}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from record import store  # bench/record.py

    store("parity_report", figures)


if __name__ == "__main__":
    main()
