"""Appendix A's pieces, a Llama-style block and the names they need, against torch.

As in test_finetuning.py, each model is written once against torch's names and run with
``lib`` = torch and ``lib`` = tinygpt from the same weights, in float64: outputs, loss,
every gradient and the parameters after optimizer steps.
"""

import math

import numpy as np
import pytest

import tinygpt

from .helpers.assertions import assert_close, host
from .helpers.torch_twins import TOL, compare_parameters, copy_weights

torch = pytest.importorskip("torch")


def compare_gradients(ours, ref):
    ref_params = dict(ref.named_parameters())
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in ref.parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert_close(f"grad {name}", p.grad, ref_params[name].grad.numpy(), TOL, floor=floor)


# ----------------------------------------------------------------------------------
# Appendix A: autograd by hand, sigmoid and BCE (SGD on its MLP: test_optim.py).


def test_logistic_regression_gradients_by_autograd_grad_and_backward():
    results = []
    for lib in (tinygpt, torch):
        y = lib.tensor([1.0], dtype=lib.float64)
        x1 = lib.tensor([1.1], dtype=lib.float64)
        w1 = lib.tensor([2.2], dtype=lib.float64, requires_grad=True)
        b = lib.tensor([0.0], dtype=lib.float64, requires_grad=True)
        z = x1 * w1 + b
        a = lib.sigmoid(z)
        loss = lib.nn.functional.binary_cross_entropy(a, y)
        grad_L_w1 = lib.autograd.grad(loss, w1, retain_graph=True)
        grad_L_b = lib.autograd.grad(loss, b, retain_graph=True)
        loss.backward()
        results.append([grad_L_w1[0], grad_L_b[0], w1.grad, b.grad, loss])
    for name, ours, ref in zip(("dL/dw1", "dL/db", "w1.grad", "b.grad", "loss"), *results):
        assert_close(name, ours, ref.detach().numpy(), TOL)


def test_binary_cross_entropy_values_and_gradients_match_torch():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0.01, 0.99, 6), [0.0, 1.0]])  # the ends: torch's clamp
    t = np.array([0.0, 1.0, 0.3, 1.0, 0.0, 0.7, 1.0, 0.0])
    z = rng.standard_normal(8) * 30  # large logits: no overflow
    for reduction in ("mean", "sum", "none"):
        grads = []
        for lib in (tinygpt, torch):
            F = lib.nn.functional
            pp = lib.tensor(p[:6], requires_grad=True, dtype=lib.float64)
            zz = lib.tensor(z, requires_grad=True, dtype=lib.float64)
            ends = F.binary_cross_entropy(lib.tensor(p, dtype=lib.float64),
                                          lib.tensor(t, dtype=lib.float64), reduction=reduction)
            a = F.binary_cross_entropy(pp, lib.tensor(t[:6], dtype=lib.float64),
                                       reduction=reduction)
            b = F.binary_cross_entropy_with_logits(zz, lib.tensor(t, dtype=lib.float64),
                                                   reduction=reduction)
            (a.sum() + b.sum()).backward()
            grads.append([ends, a, b, pp.grad, zz.grad])
        for name, ours, ref in zip(("clamped", "bce", "bce-logits", "dp", "dz"), *grads):
            assert_close(f"{reduction} {name}", ours, ref.detach().numpy(), TOL)
    with pytest.raises(ValueError, match="between 0"):
        tinygpt.nn.functional.binary_cross_entropy(tinygpt.tensor([1.5]), tinygpt.tensor([1.0]))


# ----------------------------------------------------------------------------------
# A Llama-style block: RMSNorm, RoPE, SwiGLU and grouped-query attention.


def rope_tables(lib, head_dim, context_length, theta_base=10_000.0):
    inv_freq = 1.0 / (theta_base ** (lib.arange(0, head_dim, 2).double() / head_dim))
    positions = lib.arange(context_length).double()
    angles = positions[:, None] * inv_freq[None, :]  # (context_length, head_dim // 2)
    angles = lib.cat([angles, angles], dim=1)
    return lib.cos(angles), lib.sin(angles)


def apply_rope(lib, x, cos, sin):
    batch_size, num_heads, seq_len, head_dim = x.shape
    x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2:]
    rotated = lib.cat((-x2, x1), dim=-1)
    return x * cos[:seq_len, :] + rotated * sin[:seq_len, :]


def llama_block(lib, emb_dim=16, hidden_dim=24, n_heads=4, n_kv_groups=2, context_length=8):
    nn, F = lib.nn, lib.nn.functional

    class FeedForward(nn.Module):  # SwiGLU
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(emb_dim, hidden_dim, bias=False)
            self.fc2 = nn.Linear(emb_dim, hidden_dim, bias=False)
            self.fc3 = nn.Linear(hidden_dim, emb_dim, bias=False)

        def forward(self, x):
            return self.fc3(F.silu(self.fc1(x)) * self.fc2(x))

    class GroupedQueryAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.head_dim = emb_dim // n_heads
            self.group_size = n_heads // n_kv_groups
            self.W_query = nn.Linear(emb_dim, emb_dim, bias=False)
            self.W_key = nn.Linear(emb_dim, n_kv_groups * self.head_dim, bias=False)
            self.W_value = nn.Linear(emb_dim, n_kv_groups * self.head_dim, bias=False)
            self.out_proj = nn.Linear(emb_dim, emb_dim, bias=False)
            cos, sin = rope_tables(lib, self.head_dim, context_length)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

        def forward(self, x, padding=None):
            b, num_tokens, _ = x.shape
            queries = self.W_query(x).view(b, num_tokens, n_heads, self.head_dim)
            keys = self.W_key(x).view(b, num_tokens, n_kv_groups, self.head_dim)
            values = self.W_value(x).view(b, num_tokens, n_kv_groups, self.head_dim)
            queries, keys, values = (t.transpose(1, 2) for t in (queries, keys, values))
            queries = apply_rope(lib, queries, self.cos, self.sin)
            keys = apply_rope(lib, keys, self.cos, self.sin)
            keys = keys.repeat_interleave(self.group_size, dim=1)  # shared by a group
            values = values.repeat_interleave(self.group_size, dim=1)
            attn_scores = queries @ keys.transpose(2, 3)
            ones = lib.ones(num_tokens, num_tokens, dtype=lib.bool)
            mask = ~lib.tril(ones)  # True above the diagonal: the later tokens
            if padding is not None:  # and keys that are padding
                mask = mask | padding[:, None, None, :]
            attn_scores = attn_scores.masked_fill(mask, -lib.inf)
            attn_weights = lib.softmax(attn_scores / self.head_dim**0.5, dim=-1)
            context_vec = (attn_weights @ values).transpose(1, 2)
            return self.out_proj(context_vec.reshape(b, num_tokens, emb_dim))

    class TransformerBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = GroupedQueryAttention()
            self.ff = FeedForward()
            self.norm1 = nn.RMSNorm(emb_dim, eps=1e-5)
            self.norm2 = nn.RMSNorm(emb_dim)  # eps None: the dtype's machine epsilon

        def forward(self, x, padding=None):
            x = x + self.att(self.norm1(x), padding)
            return x + self.ff(self.norm2(x))

    return TransformerBlock()


def test_llama_style_block_matches_torch_with_gradients_and_a_step():
    torch.manual_seed(3)
    ref = llama_block(torch).double()
    ours = copy_weights(llama_block(tinygpt), ref)
    assert list(ours.state_dict()) == list(ref.state_dict())  # cos/sin not persistent
    assert_close("rope cos", ours.att.cos, ref.att.cos.numpy(), TOL)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 8, 16))
    pad = np.zeros((2, 8), dtype=bool)
    pad[1, 6:] = True  # the second sequence ends in two padding tokens
    outs = []
    for lib, model in ((tinygpt, ours), (torch, ref)):
        optimizer = lib.optim.AdamW(model.parameters(), lr=1e-2)
        out = model(lib.tensor(x), lib.tensor(pad))
        loss = (out * out).mean()
        loss.backward()
        optimizer.step()
        outs.append((out, loss))
    (out, loss), (out_ref, loss_ref) = outs
    assert_close("block output", out, out_ref.detach().numpy(), TOL)
    assert_close("loss", loss, loss_ref.item(), TOL, scale_by_max=False)
    compare_gradients(ours, ref)
    compare_parameters(ours, ref, "after one AdamW step:")


@pytest.mark.parametrize("shape,normalized_shape,eps", [
    ((2, 3, 8), 8, None), ((2, 3, 8), (3, 8), 1e-6), ((4, 5), [5], 0.1)])
def test_rms_norm_matches_torch(shape, normalized_shape, eps):
    x = np.random.default_rng(7).standard_normal(shape)
    results = []
    for lib in (tinygpt, torch):
        torch.manual_seed(0)
        norm = lib.nn.RMSNorm(normalized_shape, eps=eps).double()
        with lib.no_grad():
            norm.weight.copy_(lib.tensor(np.linspace(0.5, 1.5, norm.weight.numel())
                                         .reshape(tuple(norm.weight.shape))))
        xt = lib.tensor(x, requires_grad=True)
        y = norm(xt)
        (y * y).sum().backward()
        results.append((y, xt.grad, norm.weight.grad))
    for name, ours, ref in zip(("y", "dx", "dweight"), *results):
        assert_close(f"RMSNorm {name}", ours, ref.detach().numpy(), TOL)
    assert repr(tinygpt.nn.RMSNorm(normalized_shape, eps=eps)) == repr(
        torch.nn.RMSNorm(normalized_shape, eps=eps))


# ----------------------------------------------------------------------------------
# The names themselves: tensors, printing, nn.init, module replacement.


def test_nonzero_repeat_interleave_and_logic_match_torch():
    data = np.array([[0, 3, 0], [1, 0, 2]])
    for lib_fn in (
        lambda lib, x: lib.nonzero(x),
        lambda lib, x: lib.stack(lib.nonzero(x, as_tuple=True)),
        lambda lib, x: (x > 0).nonzero(),
        lambda lib, x: x.repeat_interleave(2),
        lambda lib, x: lib.repeat_interleave(x, 3, dim=1),
        lambda lib, x: x.repeat_interleave(2, dim=0),
        lambda lib, x: (x > 0) & (x < 3),
        lambda lib, x: (x > 2) | (x == 0),
        lambda lib, x: ~(x > 0),
        lambda lib, x: (x > 0) ^ True,
        lambda lib, x: x.float().matmul(x.T.float()),
        lambda lib, x: lib.triu(lib.ones(3, 3, dtype=lib.bool), diagonal=1),
    ):
        ours, ref = lib_fn(tinygpt, tinygpt.tensor(data)), lib_fn(torch, torch.tensor(data))
        assert str(ours.dtype) == str(ref.dtype)
        np.testing.assert_array_equal(host(ours), ref.numpy())
    with pytest.raises(TypeError, match="bool or integer"):
        tinygpt.tensor([1.0]) & tinygpt.tensor([0.0])
    with pytest.raises(NotImplementedError, match="one int"):
        tinygpt.tensor(data).repeat_interleave(tinygpt.tensor([1, 2]), dim=0)


@pytest.mark.parametrize("name", ["sigmoid", "cos", "sin", "rsqrt", "silu"])
def test_elementwise_functions_match_torch(name):
    x = np.random.default_rng(8).uniform(0.2, 3.0, (3, 4)) * np.array([1, -1, 1, -1])
    x = np.abs(x) if name == "rsqrt" else x
    results = []
    for lib in (tinygpt, torch):
        fn = lib.nn.functional.silu if name == "silu" else getattr(lib, name)
        xt = lib.tensor(x, requires_grad=True)
        y = fn(xt)
        y.sum().backward()
        results.append((y, xt.grad))
    assert_close(f"{name}", results[0][0], results[1][0].detach().numpy(), TOL)
    assert_close(f"d{name}", results[0][1], results[1][1].numpy(), TOL)


def test_shapes_and_dtypes_print_as_torchs_and_stay_numpy_dtypes():
    for values, dtype in (([[1.0, 2.0, 3.0]], None), ([1, 2], None), ([True], None),
                          ([1.0], "float64"), ([1], "int32"), ([1], "uint8")):
        kwargs = {} if dtype is None else {"dtype": getattr(torch, dtype)}
        ref = torch.tensor(values, **kwargs)
        ours = tinygpt.tensor(values, **({} if dtype is None else
                                          {"dtype": getattr(tinygpt, dtype)}))
        assert str(ours.shape) == str(ref.shape) and repr(ours.size()) == repr(ref.size())
        assert str(ours.dtype) == str(ref.dtype) and repr(ours.dtype) == repr(ref.dtype)
    x = tinygpt.zeros(2, 3)
    assert x.shape == (2, 3) and x.shape[1:] == (3,) and repr(x.shape[1:]) == "torch.Size([3])"
    assert x.dtype == np.float32 and np.zeros(2, dtype=x.dtype).dtype == np.float32
    assert {np.dtype(np.float32): 1}[x.dtype] == 1 and x.dtype.kind == "f"
    assert tinygpt.float == tinygpt.float32 and str(tinygpt.long) == "torch.int64"
    assert repr(x.double()).endswith("dtype=torch.float64)")


def test_nn_init_fans_gains_and_bounds_follow_torch():
    for shape in ((5, 3), (4, 6, 2), (7, 2, 3, 3)):
        assert tinygpt.nn.init._calculate_fan_in_and_fan_out(tinygpt.empty(shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    for args in (("relu",), ("tanh",), ("leaky_relu", math.sqrt(5)), ("selu",), ("linear",)):
        assert tinygpt.nn.init.calculate_gain(*args) == pytest.approx(
            torch.nn.init.calculate_gain(*args))
    init = tinygpt.nn.init
    w = tinygpt.nn.Parameter(tinygpt.empty(300, 200))
    assert init.kaiming_uniform_(w, a=math.sqrt(5)) is w
    assert float(w.abs().max()) <= 1 / math.sqrt(200) and float(w.abs().max()) > 0.99 / 200**0.5
    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / 500)
    assert bound * 0.99 < float(w.abs().max()) <= bound
    init.normal_(w, mean=1.0, std=0.01)
    assert abs(float(w.mean()) - 1.0) < 1e-3 and w.dtype == tinygpt.float32
    init.uniform_(w, -0.5, 0.25)
    assert -0.5 <= float(w.min()) and float(w.max()) <= 0.25
    assert float(init.zeros_(w).abs().sum()) == 0.0 and float(init.ones_(w).mean()) == 1.0
    assert w.grad is None and w.is_leaf
    with pytest.raises(ValueError, match="fewer than 2"):
        init.kaiming_uniform_(tinygpt.empty(3))


def test_replacing_children_while_iterating_keeps_torchs_order():
    def build(lib):
        nn = lib.nn
        model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        model.extra = nn.Linear(1, 1)
        for name, module in model.named_children():
            if isinstance(module, nn.Linear):
                setattr(model, name, nn.Sequential(module))
        return model

    ours, ref = build(tinygpt), build(torch)
    assert [n for n, _ in ours.named_children()] == [n for n, _ in ref.named_children()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert repr(ours) == repr(ref)
