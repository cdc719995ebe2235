"""Bad input gets a clear error that says what is wrong, and changes nothing."""

import copy

import numpy as np
import pytest

import tinygpt
from tinygpt import AdamW, GPTModel
from tinygpt.backend import asarray
from tinygpt.loss import cross_entropy
from tinygpt.model import validate_config

from ..helpers.assertions import host

CFG = {"vocab_size": 29, "context_length": 6, "emb_dim": 12, "n_heads": 3,
       "n_layers": 2, "drop_rate": 0.1, "qkv_bias": True}


pytestmark = pytest.mark.usefixtures("keep_global_rng")


@pytest.fixture
def model():
    tinygpt.manual_seed(0)
    return GPTModel(CFG)


def snapshot(model):
    return {name: p.array.copy() for name, p in model.named_parameters()}


def assert_unchanged(model, before):
    after = dict(model.named_parameters())
    assert list(after) == list(before)
    for name, array in before.items():
        np.testing.assert_array_equal(host(after[name]), host(array), err_msg=f"{name} changed")


# --- forward pass ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids,match",
    [
        (np.array([[1, 2, CFG["vocab_size"]]]), r"token id 29 is outside the vocabulary \[0, 29\)"),
        (np.array([[1, -1, 2]]), r"token id -1 is outside"),
        (np.array([[0, 10**6]]), r"outside the vocabulary"),
        (np.zeros((2, CFG["context_length"] + 1), dtype=np.int64), r"longer than context_length=6"),
        (np.zeros(4, dtype=np.int64), r"2-D"),
        (np.zeros((1, 3)), r"integers"),
        (np.zeros((1, 0), dtype=np.int64), r"no tokens"),
    ],
    ids=["id-eq-vocab", "negative-id", "huge-id", "too-long", "1-d", "float-ids", "empty"],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bad_ids_raise_and_change_nothing(model, ids, match, mode):
    model.train(mode == "train")
    before = snapshot(model)
    rng_state = tinygpt.get_rng_state()
    with pytest.raises(ValueError, match=match):
        model(ids)
    assert_unchanged(model, before)
    assert tinygpt.get_rng_state() == rng_state, "a rejected forward must not draw dropout masks"
    assert all(p.grad is None for p in model.parameters())


def test_context_length_tokens_are_fine(model):
    ids = np.full((1, CFG["context_length"]), CFG["vocab_size"] - 1)
    assert model(ids).shape == (1, CFG["context_length"], CFG["vocab_size"])


def test_bad_targets_raise():
    logits = np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        cross_entropy(logits, np.array([[0, 1, 5], [0, 0, 0]]))
    with pytest.raises(ValueError, match="one id per logits row"):
        cross_entropy(logits, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(logits, np.zeros((2, 3)))


# --- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,match",
    [
        ({"emb_dim": 10}, r"'emb_dim' \(10\) must be divisible by 'n_heads' \(3\)"),
        ({"vocab_size": 0}, r"'vocab_size' must be an integer >= 1, got 0"),
        ({"context_length": -4}, r"'context_length' must be an integer >= 1"),
        ({"emb_dim": 0}, r"'emb_dim' must be an integer >= 1"),
        ({"n_heads": 0}, r"'n_heads' must be an integer >= 1"),
        ({"n_layers": -1}, r"'n_layers' must be an integer >= 1"),
        ({"n_layers": 2.5}, r"'n_layers' must be an integer >= 1"),
        ({"vocab_size": True}, r"'vocab_size' must be an integer >= 1"),
        ({"drop_rate": -0.1}, r"'drop_rate' must be a number in \[0, 1\)"),
        ({"drop_rate": 1.0}, r"'drop_rate' must be a number in \[0, 1\)"),
        ({"drop_rate": 1.5}, r"'drop_rate'"),
        ({"drop_rate": "0.1"}, r"'drop_rate'"),
        ({"qkv_bias": "no"}, r"'qkv_bias' must be True or False"),
    ],
)
def test_bad_config_raises_and_changes_nothing(change, match):
    cfg = dict(CFG, **change)
    given = copy.deepcopy(cfg)
    rng_state = tinygpt.get_rng_state()
    with pytest.raises(ValueError, match=match):
        GPTModel(cfg)
    assert cfg == given, "the caller's config dict was modified"
    assert tinygpt.get_rng_state() == rng_state, "a rejected config must not draw init numbers"


def test_config_missing_keys_are_all_listed():
    cfg = {k: v for k, v in CFG.items() if k not in ("n_heads", "drop_rate")}
    with pytest.raises(ValueError) as info:
        GPTModel(cfg)
    message = str(info.value)
    assert "missing key 'n_heads'" in message and "missing key 'drop_rate'" in message


def test_config_lists_every_problem_at_once():
    cfg = dict(CFG, vocab_size=0, n_layers=-2, drop_rate=2.0)
    with pytest.raises(ValueError) as info:
        validate_config(cfg)
    message = str(info.value)
    for key in ("vocab_size", "n_layers", "drop_rate"):
        assert f"'{key}'" in message, f"{key} not named in: {message}"


def test_config_must_be_a_dict():
    with pytest.raises(ValueError, match="must be a dict"):
        GPTModel([("vocab_size", 3)])


def test_good_config_is_accepted_and_not_modified():
    cfg = dict(CFG, vocab_size=np.int64(29))
    clean = validate_config(cfg)
    assert clean["vocab_size"] == 29 and type(clean["vocab_size"]) is int
    assert type(cfg["vocab_size"]) is np.int64


# --- model state dicts ----------------------------------------------------------------------


def other_weights(model):
    """A complete, valid state dict whose every value differs from ``model``'s."""
    return {name: p.data + 1.0 for name, p in model.named_parameters()}


def test_load_state_dict_good_input_copies(model):
    sd = other_weights(model)
    model.load_state_dict(sd)
    assert_unchanged(model, sd)
    sd["tok_emb.weight"][...] = 0.0
    assert not np.all(host(model.tok_emb.weight) == 0.0), "load_state_dict must copy, not alias"


def test_load_state_dict_lists_every_offending_key_and_keeps_weights(model):
    before = snapshot(model)
    sd = other_weights(model)  # every valid key carries new values: a partial load would show
    del sd["pos_emb.weight"], sd["trf_blocks.1.norm2.shift"]  # missing
    sd["trf_blocks.0.att.mask"] = np.triu(np.ones((6, 6)), 1)  # the torch model's: fine
    sd["extra.weight"], sd["trf_blocks.9.ff.layers.0.bias"] = np.zeros(3), np.zeros(3)  # unexpected
    sd["out_head.weight"] = np.zeros((CFG["vocab_size"], CFG["emb_dim"] + 1))  # mis-shaped
    sd["trf_blocks.0.att.W_query.bias"] = np.zeros((CFG["emb_dim"], 1))  # mis-shaped
    sd["final_norm.scale"] = np.full(CFG["emb_dim"], np.nan)  # non-finite
    sd["trf_blocks.1.att.W_key.weight"][2, 3] = np.inf  # non-finite
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    for key in ("pos_emb.weight", "trf_blocks.1.norm2.shift", "extra.weight",
                "trf_blocks.9.ff.layers.0.bias", "out_head.weight",
                "trf_blocks.0.att.W_query.bias", "final_norm.scale",
                "trf_blocks.1.att.W_key.weight"):
        assert key in message, f"{key} is not named in the error:\n{message}"
    assert "trf_blocks.0.att.mask" not in message
    assert "keeps its previous weights" in message
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda sd: sd.pop("tok_emb.weight"),
        lambda sd: sd.update({"surprise": np.ones(2)}),
        lambda sd: sd.update({"final_norm.shift": np.ones(CFG["emb_dim"] + 1)}),
        lambda sd: sd.update({"final_norm.shift": np.ones((1, CFG["emb_dim"]))}),
        lambda sd: sd["trf_blocks.0.ff.layers.2.weight"].__setitem__((0, 0), -np.inf),
        lambda sd: sd.update({"final_norm.shift": np.array(["a"] * CFG["emb_dim"])}),
    ],
    ids=["missing", "unexpected", "wrong-length", "extra-dim", "minus-inf", "strings"],
)
def test_load_state_dict_single_problem_keeps_weights(model, spoil):
    before = snapshot(model)
    sd = other_weights(model)
    spoil(sd)
    with pytest.raises(ValueError, match=r"Error\(s\) in loading state_dict for GPTModel"):
        model.load_state_dict(sd)
    assert_unchanged(model, before)


# --- optimizer state dicts ------------------------------------------------------------------


def _trained_optimizer(model, steps, seed, lr=1e-3):
    opt = AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = asarray(rng.standard_normal(p.shape), dtype=p.dtype)
        opt.step()
    opt.zero_grad()
    return opt


def _opt_snapshot(opt):
    return (
        opt.hyperparameters(),
        {i: (s["step"], s["exp_avg"].copy(), s["exp_avg_sq"].copy()) for i, s in opt.state.items()},
    )


def _assert_opt_unchanged(opt, snap):
    hyper, state = snap
    assert opt.hyperparameters() == hyper
    assert sorted(opt.state) == sorted(state)
    for i, (step, m, v) in state.items():
        assert opt.state[i]["step"] == step, f"parameter {i}: step changed"
        np.testing.assert_array_equal(
            host(opt.state[i]["exp_avg"]), host(m), err_msg=f"param {i} exp_avg"
        )
        np.testing.assert_array_equal(
            host(opt.state[i]["exp_avg_sq"]), host(v), err_msg=f"param {i} sq"
        )


def _donor_state(model):
    """A valid state dict with different steps, moments and hyper-parameters."""
    donor = _trained_optimizer(model, steps=3, seed=9, lr=5e-4)
    return copy.deepcopy(donor.state_dict())


def _spoil_shape(sd):
    sd["state"][4]["exp_avg"] = np.zeros((2, 2))


BAD_OPTIMIZER_STATES = {
    "not-a-state-dict": lambda sd: sd.pop("state"),
    "too-few-params": lambda sd: sd["param_groups"][0].update(params=[0, 1]),
    "two-groups": lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])),
    "unknown-param-index": lambda sd: sd["state"].update({999: sd["state"][0]}),
    "mis-shaped-moment": _spoil_shape,
    "missing-moment": lambda sd: sd["state"][3].pop("exp_avg_sq"),
    "missing-step": lambda sd: sd["state"][1].pop("step"),
    "moment-as-list": lambda sd: sd["state"][2].update(exp_avg=[0.0, 1.0]),
    "non-finite-moment": lambda sd: sd["state"][5]["exp_avg"].__setitem__(0, np.nan),
    "non-numeric-lr": lambda sd: sd["param_groups"][0].update(lr="fast"),
    "negative-lr": lambda sd: sd["param_groups"][0].update(lr=-1.0),
    "one-beta": lambda sd: sd["param_groups"][0].update(betas=(0.9,)),
    "beta-of-one": lambda sd: sd["param_groups"][0].update(betas=(0.9, 1.0)),
    "negative-weight-decay": lambda sd: sd["param_groups"][0].update(weight_decay=-0.1),
}


@pytest.mark.parametrize("spoil", BAD_OPTIMIZER_STATES.values(), ids=BAD_OPTIMIZER_STATES.keys())
def test_adamw_load_state_dict_rejects_bad_state_and_changes_nothing(model, spoil):
    opt = _trained_optimizer(model, steps=2, seed=1)
    snap = _opt_snapshot(opt)
    sd = _donor_state(model)
    spoil(sd)
    with pytest.raises(ValueError, match="AdamW|state dict"):
        opt.load_state_dict(sd)
    _assert_opt_unchanged(opt, snap)


def test_adamw_load_state_dict_good_state_round_trips(model):
    opt = _trained_optimizer(model, steps=2, seed=1)
    sd = _donor_state(model)
    opt.load_state_dict(sd)
    assert opt.lr == 5e-4
    for i, s in sd["state"].items():
        assert opt.state[i]["step"] == s["step"] == 3
        np.testing.assert_array_equal(host(opt.state[i]["exp_avg"]), host(s["exp_avg"]))
        assert opt.state[i]["exp_avg"] is not s["exp_avg"], "moments must be copied"
