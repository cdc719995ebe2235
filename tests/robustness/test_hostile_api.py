"""Hostile inputs to the public API: each one ends in the right result or in
one clear ValueError / TypeError that names the argument, in bounded time and memory,
and changes nothing when it fails. Tests are named after the failure they guard
against: a silent wrong result, leaked state, unbounded memory, a confusing error."""

import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import tinygpt
from tinygpt import sampling
from tinygpt.generation import generate_fast as generate
from tinygpt.generation import generate_stream, generate_text_simple
from tinygpt.grad_mode import enable_grad, is_grad_enabled, no_grad
from tinygpt.kv_cache import CachedDecoder
from tinygpt.loss import cross_entropy
from tinygpt.model import GPTModel
from tinygpt.nn import functional as F
from tinygpt.nn.module import Parameter
from tinygpt.ops import softmax_array
from tinygpt.optim import AdamW
from tinygpt.tensor import Tensor
from tinygpt.tokenizer import token_ids_to_text

from ..helpers.assertions import host

pytestmark = pytest.mark.usefixtures("keep_global_rng")

SMALL = {"vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4,
         "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False}
PROMPTS = [[1, 2, 3], [40, 5, 77]]
TINY_TEMPERATURES = [1e-40, 1e-300, 5e-324]


@pytest.fixture(scope="module")
def model():
    tinygpt.manual_seed(0)
    return GPTModel(SMALL)


# --- 1. temperatures so small that logits / T overflow act as greedy ------------------------


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_silent_wrong_result_tiny_temperature_generate_is_greedy(model, temperature, use_cache):
    greedy = generate(model, PROMPTS, 6, 16, use_cache=use_cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cold = generate(model, PROMPTS, 6, 16, temperature=temperature, rng=0,
                        use_cache=use_cache)
        cold_topped = generate(model, PROMPTS, 6, 16, temperature=temperature, top_k=5,
                               top_p=0.5, rng=0, use_cache=use_cache)
        streamed = np.stack(list(generate_stream(model, PROMPTS, 6, 16,
                                                 temperature=temperature, rng=0)), axis=1)
    np.testing.assert_array_equal(cold, greedy)
    np.testing.assert_array_equal(cold_topped, greedy)
    np.testing.assert_array_equal(streamed, greedy[:, 3:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_silent_wrong_result_tiny_temperature_sampling_helpers(dtype, temperature):
    # softmax(x / T) itself, not NaN: one-hot at the maximum; logits tied exactly at the
    # maximum share it evenly, as they do at every T > 0
    logits = np.array([[1.0, 3.0, 3.0, -np.inf], [0.0, -2.0, 0.5, 0.25]], dtype=dtype)
    expected = np.array([[0, 0.5, 0.5, 0], [0, 0, 1, 0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        probs = sampling.next_token_probabilities(logits, temperature)  # the fast path's guard
        exact = sampling.next_token_probabilities(logits, temperature, top_k=3, top_p=0.9)
        filtered = sampling.process_logits(logits, temperature)
        ids = np.concatenate([sampling.sample_next_token(logits, temperature, rng=seed)
                              for seed in range(40)], axis=1)  # (2, 40)
        one_row = sampling.sample_next_token(logits[1], temperature, top_p=0.2, rng=1)
    np.testing.assert_array_equal(probs, expected)
    np.testing.assert_array_equal(exact, expected)
    assert probs.dtype == dtype and exact.dtype == dtype
    assert not np.isnan(filtered).any() and not np.isposinf(filtered).any()
    np.testing.assert_array_equal(softmax_array(filtered), expected)
    assert set(ids[0]) == {1, 2} and set(ids[1]) == {2}
    assert one_row.tolist() == [2]


def test_silent_wrong_result_tiny_temperature_only_cold_rows_are_shifted():
    # 1e-36: row 0 (logits ~1e3) would overflow float32, row 1 (~1) does not
    logits = np.array([[1000.0, 999.0, 0.0], [0.0, 1.0, 0.5]], dtype=np.float32)
    out = sampling.process_logits(logits, 1e-36)
    assert out[0, 0] == 0 and out[0, 1] < -1e30 and out[0, 2] < -1e30
    np.testing.assert_array_equal(out[1], logits[1] / np.float32(1e-36))
    np.testing.assert_array_equal(softmax_array(out), [[1, 0, 0], [0, 1, 0]])
    # ordinary small temperatures are untouched
    x = np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(sampling.next_token_probabilities(x, 0.05),
                               np.exp(x / 0.05) / np.exp(x / 0.05).sum())


def test_silent_wrong_result_tiny_temperature_cli(tmp_path, capsys):
    from tinygpt.app import cli
    from tinygpt.io.checkpoint import save_model

    tinygpt.manual_seed(3)
    tiny = GPTModel({"vocab_size": 50257, "context_length": 8, "emb_dim": 8, "n_heads": 1,
                     "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False})
    path = tmp_path / "tiny.safetensors"
    save_model(tiny, path)
    outputs = []
    for temperature in ("0", "1e-40", "5e-324"):
        assert cli.main(["generate", "--model", path, "--prompt", "Every effort",
                         "--max-new-tokens", 4, "--temperature", temperature, "-q"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), -1.0, -1e-300, True, "0.5",
                                         None, np.array(0.5)])
def test_clear_error_bad_temperature_in_sampling_helpers(temperature):
    logits = np.zeros((1, 5), dtype=np.float32)
    for call in (lambda: sampling.sample_next_token(logits, temperature),
                 lambda: sampling.next_token_probabilities(logits, temperature),
                 lambda: sampling.process_logits(logits, temperature),
                 lambda: sampling.softmax_with_temperature(logits, temperature)):
        with pytest.raises(ValueError, match="temperature"):
            call()


# --- 2. no_grad / enable_grad are re-entrant --------------------------------------------------


def test_state_leak_no_grad_decorator_recursion_restores_grad():
    depths = []

    @no_grad()
    def countdown(n):
        depths.append(is_grad_enabled())
        return countdown(n - 1) if n else n

    countdown(5)
    assert depths == [False] * 6
    assert is_grad_enabled(), "a recursive @no_grad() function left gradients disabled"

    @no_grad()
    def fails(n):
        if n == 0:
            raise KeyError("deep")
        fails(n - 1)

    with pytest.raises(KeyError):
        fails(3)
    assert is_grad_enabled()


def test_state_leak_no_grad_same_instance_nested_and_enable_grad():
    off = no_grad()
    with off:
        with off:
            assert not is_grad_enabled()
        assert not is_grad_enabled(), "the inner exit of a reused instance re-enabled grad"
    assert is_grad_enabled()

    @enable_grad()
    def inner(n):
        assert is_grad_enabled()
        if n:
            with no_grad():
                return inner(n - 1)
        return n

    with no_grad():
        inner(3)
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_state_leak_no_grad_bare_decorator_generator_and_threads():
    @no_grad
    def bare():
        return is_grad_enabled()

    assert bare() is False and is_grad_enabled()

    @no_grad()
    def gen():
        for _ in range(3):
            yield is_grad_enabled()

    seen = []
    for value in gen():
        seen.append((value, is_grad_enabled()))  # the consumer keeps its own setting
    assert seen == [(False, True)] * 3
    g = gen()
    next(g)
    g.close()
    assert is_grad_enabled()

    barrier = threading.Barrier(2)
    after = []

    @no_grad()
    def wait():
        barrier.wait(timeout=10)

    def worker():
        wait()
        after.append(is_grad_enabled())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert after == [True, True]

    x = Tensor(np.ones(2, np.float32), requires_grad=True)
    assert (x * 2).requires_grad  # graphs are recorded again afterwards


# --- 3. generate's memory follows the tokens produced, not max_new_tokens -------------------


def test_unbounded_memory_generate_huge_max_new_tokens_stops_on_eos(model):
    first = generate(model, [PROMPTS[0]], 4, 16)[0, 3:].tolist()
    eos = first[2]
    stop = first.index(eos)
    tracemalloc.start()
    try:
        out = generate(model, [PROMPTS[0]], 10**12, 16, eos_id=eos)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.tolist() == [PROMPTS[0] + first[:stop]]
    assert peak < 64 * 2**20, f"generate allocated {peak / 2**20:.0f} MiB for a few tokens"
    stream = generate_stream(model, PROMPTS, 10**12, 16, use_cache=False)
    assert len([next(stream) for _ in range(3)]) == 3
    stream.close()


@pytest.mark.parametrize("bad", [True, -1, 2.5, None, "3", 10**12 + 0.5])
def test_clear_error_bad_max_new_tokens(model, bad):
    for call in (generate, generate_stream, generate_text_simple):
        with pytest.raises(ValueError, match="max_new_tokens"):
            call(model, PROMPTS, bad, 16)


# --- 4. AdamW: duplicates, hyper-parameters, state dicts ---------------------------------------


def test_silent_wrong_result_adamw_duplicate_parameters_refused():
    p = Parameter(np.ones(3, np.float32))
    q = Parameter(np.ones(2, np.float32))
    with pytest.raises(ValueError, match="more than one parameter group"):
        AdamW([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        AdamW([{"params": [p]}, {"params": [q, p]}])
    opt = AdamW([p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("kwargs,name", [
    ({"betas": (0.9,)}, "betas"), ({"betas": (0.9, 0.99, 0.999)}, "betas"),
    ({"betas": 0.9}, "betas"), ({"betas": "ab"}, "betas"),
    ({"betas": (float("nan"), 0.999)}, r"betas\[0\]"), ({"betas": (0.9, 1.0)}, r"betas\[1\]"),
    ({"betas": (-0.1, 0.9)}, r"betas\[0\]"), ({"betas": (True, 0.9)}, r"betas\[0\]"),
    ({"lr": -1e-3}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"lr": "1e-3"}, "lr"), ({"lr": True}, "lr"), ({"lr": None}, "lr"),
    ({"eps": -1.0}, "eps"), ({"eps": float("inf")}, "eps"),
    ({"weight_decay": float("nan")}, "weight_decay"), ({"weight_decay": -0.1}, "weight_decay"),
])
def test_clear_error_adamw_bad_hyperparameters(kwargs, name):
    p = Parameter(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=name):
        AdamW([p], **kwargs)
    opt = AdamW([p])
    key, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=name):
        setattr(opt, key, value)
    assert opt.param_groups[0][key] == AdamW([p]).defaults[key]


def test_clear_error_adamw_bad_params():
    p = Parameter(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="iterable of Tensors"):
        AdamW(p)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        AdamW([p, 3])
    with pytest.raises(ValueError, match="non-leaf"):
        AdamW([p * 2])
    assert AdamW([p], lr=np.float32(1e-3), betas=[0.8, 0.9]).betas == (0.8, 0.9)


def _trained_optimizer():
    p = Parameter(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    opt = AdamW([p], lr=1e-2)
    p.grad = tinygpt.backend.asarray(np.full((2, 3), 0.5, np.float32))
    opt.step()
    return p, opt


def _state(step=1, exp_avg=None, exp_avg_sq=None):
    return {"step": step,
            "exp_avg": np.zeros((2, 3)) if exp_avg is None else exp_avg,
            "exp_avg_sq": np.ones((2, 3)) if exp_avg_sq is None else exp_avg_sq}


def _groups(params=(0,)):
    return [{"params": list(params), "lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8,
             "weight_decay": 0.01}]


BAD_OPTIMIZER_STATES = {
    "step -1": ({0: _state(step=-1)}, _groups(), "step"),
    "step True": ({0: _state(step=True)}, _groups(), "step"),
    "step 1.5": ({0: _state(step=1.5)}, _groups(), "step"),
    "step inf": ({0: _state(step=float("inf"))}, _groups(), "step"),
    "step nan": ({0: _state(step=float("nan"))}, _groups(), "step"),
    "step str": ({0: _state(step="3")}, _groups(), "step"),
    "negative exp_avg_sq": ({0: _state(exp_avg_sq=-np.ones((2, 3)))}, _groups(), "negative"),
    "exp_avg_sq overflows float32": (
        {0: _state(exp_avg_sq=np.full((2, 3), 1e300))}, _groups(), "infinite"),
    "nan exp_avg": ({0: _state(exp_avg=np.full((2, 3), np.nan))}, _groups(), "NaN"),
    "wrong shape": ({0: _state(exp_avg=np.zeros((3, 2)))}, _groups(), "shape"),
    "object dtype": ({0: _state(exp_avg=np.full((2, 3), None))}, _groups(), "real numbers"),
    "ragged list": ({0: _state(exp_avg=[[0, 0, 0], [0]])}, _groups(), "ragged"),
    "complex": ({0: _state(exp_avg=np.zeros((2, 3), complex))}, _groups(), "real numbers"),
    "unknown parameter": ({5: _state()}, _groups(), "does not exist"),
    "params not a list": ({}, [dict(_groups()[0], params=0)], "list of parameter ids"),
    "bad betas": ({0: _state()}, [dict(_groups()[0], betas=(0.9,))], "betas"),
    "inf lr": ({0: _state()}, [dict(_groups()[0], lr=float("inf"))], "lr"),
}


@pytest.mark.parametrize("name", list(BAD_OPTIMIZER_STATES))
def test_state_corruption_adamw_load_state_dict_is_checked_and_all_or_nothing(name):
    states, groups, match = BAD_OPTIMIZER_STATES[name]
    p, opt = _trained_optimizer()
    before = {k: host(v) if not isinstance(v, int) else v
              for k, v in opt.state[0].items()}
    settings = dict(opt.param_groups[0])
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict({"state": states, "param_groups": groups})
    assert opt.state[0]["step"] == before["step"]
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(host(opt.state[0][key]), before[key])
    assert opt.param_groups[0] == settings


def test_silent_wrong_result_adamw_duplicate_saved_parameter_ids():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = AdamW([a, b])
    with pytest.raises(ValueError, match="more than once"):
        opt.load_state_dict({"state": {0: _state(exp_avg=np.ones(2), exp_avg_sq=np.ones(2))},
                             "param_groups": [dict(_groups()[0], params=[0, 0])]})
    assert opt.state == {}


def test_adamw_load_state_dict_accepts_torch_style_float_step():
    p, opt = _trained_optimizer()
    opt.load_state_dict({"state": {0: _state(step=np.float32(4.0))}, "param_groups": _groups()})
    assert opt.state[0]["step"] == 4
    p.grad = tinygpt.backend.asarray(np.ones((2, 3), np.float32))
    opt.step()
    assert np.isfinite(host(p)).all()


# --- 5. Module.load_state_dict --------------------------------------------------------------


def test_clear_error_module_load_state_dict_not_a_dict(model):
    with pytest.raises(TypeError, match="dict"):
        model.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="string keys"):
        model.load_state_dict({0: np.zeros(3)})


def test_silent_wrong_result_load_state_dict_value_overflows_float32():
    tinygpt.manual_seed(1)
    net = GPTModel(SMALL)
    before = {k: host(v).copy() for k, v in net.state_dict().items()}
    state = {k: host(v).astype(np.float64) for k, v in net.state_dict().items()}
    state["out_head.weight"][3, 4] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="out_head.weight") as info:
        net.load_state_dict(state)
    assert "infinite" in str(info.value) and "Nothing was loaded" in str(info.value)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(host(v), before[k], err_msg=k)
    # ragged lists and wrong shapes: named, and still nothing changes
    state["out_head.weight"] = host(net.out_head.weight).tolist()
    state["out_head.weight"][0] = state["out_head.weight"][0][:-1]
    state["tok_emb.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="ragged") as info:
        net.load_state_dict(state)
    assert "tok_emb.weight" in str(info.value)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(host(v), before[k], err_msg=k)
    # float64 values that fit load fine (cast to float32)
    good = {k: v.astype(np.float64) for k, v in before.items()}
    net.load_state_dict(good)


# --- 6. cross_entropy's target shape --------------------------------------------------------


def test_silent_wrong_result_cross_entropy_transposed_targets():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
    targets = rng.integers(0, 5, size=(2, 3))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3, 5\)"):
        cross_entropy(logits, targets.T)
    with pytest.raises(ValueError, match="one id per logits row"):
        cross_entropy(logits, targets.reshape(-1))  # (6,) for (2, 3, V): flatten both
    with pytest.raises(ValueError, match="one id per logits row"):
        cross_entropy(logits.reshape(6, 5), targets)  # (2, 3) for (6, V)
    book = F.cross_entropy(Tensor(logits).flatten(0, 1), Tensor(targets).flatten())
    ours = cross_entropy(logits, targets)
    flat = cross_entropy(Tensor(logits).flatten(0, 1), Tensor(targets).flatten())
    assert book.item() == pytest.approx(ours.item(), rel=1e-6) == flat.item()


@pytest.mark.parametrize("targets,ignore_index,match", [
    (np.array([0, 5]), -100, r"\[0, 5\)"),
    (np.array([-1, 0]), -100, r"\[0, 5\)"),
    (np.array([0.0, 1.0]), -100, "integer"),
    (np.array([True, False]), -100, "integer"),
    ([[0], [1, 2]], -100, "ragged"),
    (np.array([0, 1]), 1.5, "ignore_index"),
    (np.array([0, 1]), True, "ignore_index"),
])
def test_clear_error_cross_entropy_bad_targets(targets, ignore_index, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(np.zeros((2, 5), np.float32), targets, ignore_index=ignore_index)


def test_clear_error_cross_entropy_bad_logits():
    with pytest.raises(ValueError, match="floating point"):
        cross_entropy(np.zeros((2, 5), np.int64), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        cross_entropy(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="empty"):
        cross_entropy(np.zeros((2, 0), np.float32), np.array([-100, -100]))
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        cross_entropy(np.zeros(5, np.float32), np.array(1))


# --- 7. ragged lists of ids -----------------------------------------------------------------


class _Decoder:
    n_vocab = 97

    def decode(self, ids):
        return " ".join(map(str, ids))


def test_clear_error_ragged_ids(model):
    ragged = [[1, 2], [3]]
    calls = {
        "tinygpt.tensor": lambda: tinygpt.tensor(ragged),
        "Tensor": lambda: Tensor(ragged),
        "generate": lambda: generate(model, ragged, 2, 16),
        "generate_stream": lambda: generate_stream(model, ragged, 2, 16),
        "generate_text_simple": lambda: generate_text_simple(model, ragged, 2, 16),
        "token_ids_to_text": lambda: token_ids_to_text(ragged, _Decoder()),
        "sample_next_token": lambda: sampling.sample_next_token([[0.5, 1.0], [2.0]]),
        "CachedDecoder.prime": lambda: CachedDecoder(model, 2).prime(ragged),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="ragged") as info:
            call()
        assert "lengths (2 and 1)" in str(info.value), name
    with pytest.raises(ValueError, match=r"ragged: .*lengths \(1 and 2\)"):
        tinygpt.tensor([[[1], [2]], [[3], [4, 5]]])
    with pytest.raises(ValueError, match="ragged: it mixes lists and single numbers"):
        tinygpt.tensor([[1, 2], 3])
    assert token_ids_to_text([[5, 6]], _Decoder()) == "5 6"


# --- 8. seeds ----------------------------------------------------------------------------------


def test_clear_error_negative_seed(model):
    for call, name in [
        (lambda: generate(model, PROMPTS, 2, 16, temperature=1.0, rng=-1), "rng"),
        (lambda: generate_stream(model, PROMPTS, 2, 16, rng=-1), "rng"),
        (lambda: sampling.sample_next_token(np.zeros(3), 1.0, rng=-5), "rng"),
        (lambda: sampling.print_sampled_tokens(np.ones(9) / 9, seed=-1), "seed"),
        (lambda: tinygpt.multinomial(tinygpt.tensor([0.5, 0.5]), 1, generator=-1), "generator"),
        (lambda: generate(model, PROMPTS, 2, 16, rng=1.5), "rng"),
        (lambda: generate(model, PROMPTS, 2, 16, rng=True), "rng"),
    ]:
        with pytest.raises(ValueError, match=f"{name} must be") as info:
            call()
        assert "Generator" in str(info.value)
    big = generate(model, PROMPTS, 2, 16, temperature=1.0, rng=2**70)  # any size >= 0
    assert big.shape == (2, 5)


# --- close variants ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad,match,error", [
    ({"idx": "Every effort"}, "text_to_token_ids", TypeError),
    ({"idx": np.array([[True, False]])}, "integers", ValueError),
    ({"idx": np.array([[1.0, 2.0]], np.float32)}, "integers", ValueError),
    ({"idx": 5}, "shape", ValueError),
    ({"top_k": True}, "top_k", ValueError),
    ({"top_k": 0}, "top_k", ValueError),
    ({"top_k": 98}, "top_k", ValueError),
    ({"top_p": 0.0}, "top_p", ValueError),
    ({"top_p": 1.0000001}, "top_p", ValueError),
    ({"top_p": float("nan")}, "top_p", ValueError),
    ({"top_p": True}, "top_p", ValueError),
    ({"temperature": True}, "temperature", ValueError),
    ({"temperature": None}, "temperature", ValueError),
    ({"context_size": True}, "context_size", ValueError),
    ({"context_size": 2.5}, "context_size", ValueError),
    ({"eos_id": True}, "eos_id", ValueError),
    ({"eos_id": 3.0}, "eos_id", ValueError),
])
def test_clear_error_generate_variants(model, bad, match, error):
    args = {"idx": PROMPTS, "max_new_tokens": 2, "context_size": 16, "temperature": 1.0}
    args.update(bad)
    with pytest.raises(error, match=match):
        generate(model, **args)


@pytest.mark.parametrize("logits", [
    np.array([[1 + 1j, 2]]), [["a", "b"]], np.array([[np.nan, 1.0]]), np.array([[np.inf, 1.0]]),
    np.full((1, 2), -np.inf), np.zeros((1, 0)), np.zeros((1, 2, 3)),
])
def test_clear_error_bad_logits_in_sampling(logits):
    with pytest.raises(ValueError, match="logits"):
        sampling.sample_next_token(logits, 1.0, rng=0)


def test_clear_error_generate_bad_model_and_ids(model):
    with pytest.raises(TypeError, match="GPTModel"):
        generate(None, PROMPTS, 2, 16)
    with pytest.raises(ValueError, match="beyond int64"):
        generate(model, [[2**70]], 2, 16)
    with pytest.raises(TypeError, match="no arguments"):
        no_grad(5)


def test_silent_wrong_result_adamw_saved_ids_not_integers():
    p = Parameter(np.ones(2, np.float32))
    opt = AdamW([p], lr=1e-3)
    with pytest.raises(ValueError, match="not an integer"):
        opt.load_state_dict({"state": {}, "param_groups": [dict(_groups()[0], params=["x"])]})
    assert opt.lr == 1e-3


def test_clear_error_cached_decoder_sizes(model):
    for kwargs, name in [({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
                         ({"batch_size": 1, "window": 2.5}, "window"),
                         ({"batch_size": 1, "window": 17}, "window")]:
        with pytest.raises(ValueError, match=name):
            CachedDecoder(model, **kwargs)


def test_silent_wrong_result_torch_functions_truncating_sizes():
    # torch's classes: a fractional size is a TypeError, a negative one or a zero step
    # a RuntimeError
    for call, name, error in [
            (lambda: tinygpt.zeros(2.5), "size", TypeError),
            (lambda: tinygpt.ones(-1), "size", RuntimeError),
            (lambda: tinygpt.rand(2, 1.5), "size", TypeError),
            (lambda: tinygpt.linspace(0, 1, 2.5), "steps", ValueError),
            (lambda: tinygpt.topk(tinygpt.tensor([1.0, 2.0]), 1.5), "k", ValueError),
            (lambda: tinygpt.multinomial(tinygpt.tensor([1.0, 2.0]), 0), "num_samples",
             ValueError),
            (lambda: tinygpt.multinomial(tinygpt.tensor([1.0]), 1.5), "num_samples", ValueError),
            (lambda: tinygpt.arange(0, 5, 0), "step", RuntimeError)]:
        with pytest.raises(error, match=name):
            call()
    assert tinygpt.zeros(np.int64(2), 3).shape == (2, 3)


def test_clear_error_manual_seed_like_torch():
    """Negative seeds are remapped as torch remaps them; floats and out-of-range seeds
    are refused, never truncated."""
    import tinygpt

    a = tinygpt.manual_seed(-1).integers(1 << 30, size=3)
    b = tinygpt.manual_seed((1 << 64) - 2).integers(1 << 30, size=3)
    assert (a == b).all()
    for bad in (1.5, 1 << 64, -(1 << 63) - 1, "7", None):
        with pytest.raises(ValueError, match="seed"):
            tinygpt.manual_seed(bad)


def test_clear_error_ragged_ids_into_the_model():
    import tinygpt

    model = tinygpt.GPTModel(dict(tinygpt.GPT_CONFIG_124M, emb_dim=8, n_heads=2, n_layers=1,
                                  context_length=8))
    with pytest.raises(ValueError, match="input ids is ragged"):
        model([[1, 2], [3]])
