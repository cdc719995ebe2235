"""tinygpt.optim: AdamW and SGD against torch.optim, step by step.

Written against torch's names (``import tinygpt as torch``); the real torch, where it is
installed, computes the reference. The whole-model AdamW parity (10 steps of GPTModel) is in
test_parity_torch.py, the AdamW kernel in test_cuda_kernels.py, and refusals of hostile
optimizer state in robustness/."""

import numpy as np
import pytest

import tinygpt
import tinygpt as torch

from .helpers.assertions import host
from .helpers.torch_twins import TOL, compare_parameters, copy_weights

pytestmark = pytest.mark.usefixtures("keep_global_rng")


# --- AdamW param_groups, against torch.optim.AdamW --------------------------------------------


def _twin_params(pt, shapes, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape) for shape in shapes]  # float64: tight comparisons
    ours = [tinygpt.nn.Parameter(v.copy()) for v in values]
    ref = [pt.nn.Parameter(pt.tensor(v)) for v in values]
    return ours, ref


def _step_both(ours_opt, ref_opt, ours, ref, rng):
    for p, q in zip(ours, ref, strict=True):
        g = rng.standard_normal(p.shape)
        p.grad = tinygpt.backend.asarray(g)
        q.grad = pytest.importorskip("torch").tensor(g)
    ours_opt.step()
    ref_opt.step()


def _assert_params_equal(ours, ref, what):
    for k, (p, q) in enumerate(zip(ours, ref, strict=True)):
        np.testing.assert_allclose(host(p), q.detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=f"{what}: parameter {k}")


def test_param_group_lr_change_takes_effect_like_torch():
    pt = pytest.importorskip("torch")
    ours, ref = _twin_params(pt, [(4, 3), (3,)])
    opt = torch.optim.AdamW(ours, lr=1e-2, weight_decay=0.1)
    ref_opt = pt.optim.AdamW(ref, lr=1e-2, weight_decay=0.1)
    assert [sorted(g) for g in opt.param_groups] == [sorted(g) for g in ref_opt.param_groups]
    rng = np.random.default_rng(1)
    for step in range(6):
        lr = 1e-2 * (step + 1) / 6  # appendix D: a warmup written into every group
        for o in (opt, ref_opt):
            for param_group in o.param_groups:
                param_group["lr"] = lr
        _step_both(opt, ref_opt, ours, ref, rng)
        _assert_params_equal(ours, ref, f"step {step}")
    assert opt.lr == pytest.approx(1e-2)


def test_param_groups_with_their_own_weight_decay_like_torch():
    pt = pytest.importorskip("torch")
    ours, ref = _twin_params(pt, [(5, 4), (4,), (4,), (5, 4)])

    def groups(params):
        return [{"params": [params[0], params[3]], "weight_decay": 0.1},
                {"params": [params[1], params[2]], "weight_decay": 0.0, "lr": 3e-3}]

    opt = torch.optim.AdamW(groups(ours), lr=1e-2, betas=(0.8, 0.99))
    ref_opt = pt.optim.AdamW(groups(ref), lr=1e-2, betas=(0.8, 0.99))
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 3e-3]
    assert [p is q for p, q in zip(opt.params, [ours[0], ours[3], ours[1], ours[2]])] == [True] * 4
    rng = np.random.default_rng(2)
    for step in range(5):
        _step_both(opt, ref_opt, ours, ref, rng)
        _assert_params_equal(ours, ref, f"step {step}")
    with pytest.raises(ValueError, match="2 param groups"):
        opt.lr = 1e-3
    with pytest.raises(ValueError, match="2 param groups"):
        opt.hyperparameters()
    with pytest.raises(ValueError, match="more than one parameter group"):
        torch.optim.AdamW([{"params": ours[:2]}, {"params": ours[1:]}])


def test_torch_made_optimizer_state_loads_and_continues_alike():
    """torch's own AdamW state dict (steps as float tensors, moments as arrays)."""
    pt = pytest.importorskip("torch")
    ours, ref = _twin_params(pt, [(3, 2), (2,)])
    opt = torch.optim.AdamW(ours, lr=5e-3)
    ref_opt = pt.optim.AdamW(ref, lr=2e-3, weight_decay=0.05)
    rng = np.random.default_rng(3)
    for q in ref:  # three torch steps, then copy torch's weights and state across
        q.grad = pt.tensor(rng.standard_normal(tuple(q.shape)))
    for _ in range(3):
        ref_opt.step()
    for p, q in zip(ours, ref, strict=True):
        p.data[...] = tinygpt.backend.asarray(q.detach().numpy())
    sd = ref_opt.state_dict()
    opt.load_state_dict({
        "state": {i: {k: v.numpy() for k, v in s.items()} for i, s in sd["state"].items()},
        "param_groups": sd["param_groups"],
    })
    assert opt.state[0]["step"] == 3 and opt.lr == 2e-3 and opt.weight_decay == 0.05
    for _ in range(3):
        _step_both(opt, ref_opt, ours, ref, rng)
    _assert_params_equal(ours, ref, "after loading torch's state")


def test_optimizer_state_dict_round_trips_through_save_and_load(tmp_path):
    tinygpt.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    decay, no_decay = [model.weight], [model.bias]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    rng = np.random.default_rng(4)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in model.parameters()]
             for _ in range(6)]

    def step(optimizer, params, g):
        for p, gp in zip(params, g, strict=True):
            p.grad = tinygpt.backend.asarray(gp)
        optimizer.step()

    for g in grads[:3]:
        step(opt, [model.weight, model.bias], g)
    for param_group in opt.param_groups:
        param_group["lr"] = 4e-3
    torch.save({"model_state_dict": model.state_dict(),
                "optimizer_state_dict": opt.state_dict()}, tmp_path / "ckpt.pth")
    checkpoint = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    state = checkpoint["optimizer_state_dict"]["state"]
    assert isinstance(state[0]["exp_avg"], tinygpt.Tensor)

    resumed = torch.nn.Linear(4, 3)
    resumed.load_state_dict(checkpoint["model_state_dict"])
    resumed_opt = torch.optim.AdamW([{"params": [resumed.weight]}, {"params": [resumed.bias]}])
    resumed_opt.load_state_dict(checkpoint["optimizer_state_dict"])
    assert [(g["lr"], g["weight_decay"]) for g in resumed_opt.param_groups] == [
        (4e-3, 0.1), (4e-3, 0.0)]
    for g in grads[3:]:
        step(opt, [model.weight, model.bias], g)
        step(resumed_opt, [resumed.weight, resumed.bias], g)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(host(getattr(resumed, name)), host(getattr(model, name)),
                                      err_msg=name)


def test_optimizer_load_state_dict_is_all_or_nothing_across_groups():
    params = [tinygpt.nn.Parameter(np.ones((2, 2), dtype=np.float32)) for _ in range(2)]
    opt = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:]}], lr=1e-3)
    for p in params:
        p.grad = tinygpt.backend.asarray(np.ones((2, 2), dtype=np.float32))
    opt.step()
    sd = opt.state_dict()
    bad = {"state": sd["state"], "param_groups": [dict(sd["param_groups"][0], lr=5.0),
                                                  dict(sd["param_groups"][1], lr=-1.0)]}
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.load_state_dict(bad)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match="expected 2 param group"):
        opt.load_state_dict({"state": {}, "param_groups": sd["param_groups"][:1]})


# --- SGD on a small MLP (appendix A), against torch.optim.SGD ----------------------------------


def make_mlp(lib, num_inputs, num_outputs):
    nn = lib.nn
    return nn.Sequential(
        nn.Linear(num_inputs, 30), nn.ReLU(),
        nn.Linear(30, 20), nn.ReLU(),
        nn.Linear(20, num_outputs),
    )


@pytest.mark.parametrize("loss_name", ["sigmoid+bce", "bce_with_logits"])
@pytest.mark.parametrize("settings", [
    {"lr": 0.5},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
    {"lr": 0.1, "momentum": 0.9, "dampening": 0.2},
    {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-2},
    {"lr": 0.05, "momentum": 0.5, "weight_decay": 1e-2, "maximize": True},
], ids=["plain", "momentum-decay", "dampening", "nesterov", "maximize"])
def test_sgd_on_an_mlp_matches_torch_step_by_step(loss_name, settings):
    pt = pytest.importorskip("torch")
    pt.manual_seed(0)
    ref = make_mlp(pt, 2, 1).double()
    ours = copy_weights(make_mlp(tinygpt, 2, 1), ref)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 2))
    y = (X[:, :1] > 0).astype(np.float64)
    runs = {}
    for lib, model in ((tinygpt, ours), (pt, ref)):
        F = lib.nn.functional
        optimizer = lib.optim.SGD(model.parameters(), **settings)
        losses = []
        for _ in range(3):
            logits = model(lib.tensor(X))
            if loss_name == "sigmoid+bce":
                loss = F.binary_cross_entropy(lib.sigmoid(logits), lib.tensor(y))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, lib.tensor(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs[lib.__name__] = (losses, optimizer)
    np.testing.assert_allclose(runs["tinygpt"][0], runs["torch"][0], rtol=TOL)
    compare_parameters(ours, ref, "after 3 SGD steps:")

    # the state dict round trip, and param_groups read at every step
    ours_opt, ref_opt = runs["tinygpt"][1], runs["torch"][1]
    assert len(ours_opt.state_dict()["state"]) == len(ref_opt.state_dict()["state"])
    fresh = tinygpt.optim.SGD(ours.parameters(), **settings)
    fresh.load_state_dict(ref_opt.state_dict())
    for group in fresh.param_groups + ref_opt.param_groups:
        group["lr"] = 0.01
    for lib, model, optimizer in ((tinygpt, ours, fresh), (pt, ref, ref_opt)):
        optimizer.zero_grad()
        lib.nn.functional.binary_cross_entropy_with_logits(
            model(lib.tensor(X)), lib.tensor(y)).backward()
        optimizer.step()
    compare_parameters(ours, ref, "after a step from the loaded state:")


def test_sgd_refuses_what_torch_refuses_and_differentiable():
    p = tinygpt.nn.Parameter(tinygpt.zeros(2))
    with pytest.raises(ValueError, match="Nesterov"):
        tinygpt.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        tinygpt.optim.SGD([p], lr=-1.0)
    with pytest.raises(NotImplementedError, match="differentiable"):
        tinygpt.optim.SGD([p], lr=0.1, differentiable=True)


# --- Adam, against torch.optim.Adam ----------------------------------------------------------

ADAM_SETTINGS = {
    "defaults": (torch.optim.Adam, {}),
    "L2 weight decay": (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}),
    "amsgrad": (torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "betas": (0.5, 0.9)}),
    "amsgrad + L2": (torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05}),
    "maximize": (torch.optim.Adam, {"lr": 1e-2, "maximize": True, "weight_decay": 0.1}),
    "decoupled": (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1,
                                     "decoupled_weight_decay": True}),
    "AdamW amsgrad": (torch.optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    "foreach/fused hints": (torch.optim.Adam, {"foreach": False, "fused": None}),
}


@pytest.mark.parametrize("name", list(ADAM_SETTINGS))
def test_adam_matches_torch_step_by_step(name):
    pt = pytest.importorskip("torch")
    cls, settings = ADAM_SETTINGS[name]
    ours, ref = _twin_params(pt, [(4, 3), (3,)])
    opt = cls(ours, **settings)
    ref_opt = getattr(pt.optim, cls.__name__)(ref, **settings)
    rng = np.random.default_rng(5)
    for step in range(8):
        _step_both(opt, ref_opt, ours, ref, rng)
        _assert_params_equal(ours, ref, f"{name}, step {step}")
    assert sorted(opt.state[0]) == sorted(ref_opt.state[ref[0]])

    # the state dict round trip, both ways, then more steps
    sd = ref_opt.state_dict()
    fresh = cls(ours, **settings)
    fresh.load_state_dict(sd)
    ref_fresh = getattr(pt.optim, cls.__name__)(ref, **settings)
    ref_fresh.load_state_dict(_as_torch(pt, opt.state_dict()))
    for step in range(3):
        _step_both(fresh, ref_fresh, ours, ref, rng)
        _assert_params_equal(ours, ref, f"{name}, step {step} after the round trip")


def _as_torch(pt, state_dict):
    """tinygpt's optimizer state dict with torch tensors for torch to load."""
    return {"state": {i: {k: pt.tensor(host(v)) if isinstance(v, tinygpt.Tensor) else
                          pt.tensor(float(v)) if k == "step" else v for k, v in s.items()}
                      for i, s in state_dict["state"].items()},
            "param_groups": state_dict["param_groups"]}


def test_param_group_keys_and_defaults_are_torchs():
    pt = pytest.importorskip("torch")
    ours, ref = _twin_params(pt, [(2,)])
    for name in ("Adam", "AdamW", "SGD"):
        opt, ref_opt = getattr(torch.optim, name)(ours), getattr(pt.optim, name)(ref)
        assert opt.defaults == ref_opt.defaults, name
        packed = opt.state_dict()["param_groups"][0]
        assert packed == ref_opt.state_dict()["param_groups"][0], name


def test_switches_tinygpt_cannot_follow_and_torchs_own_refusal():
    p = tinygpt.nn.Parameter(tinygpt.zeros(2))
    for switch in ("differentiable", "capturable"):
        with pytest.raises(NotImplementedError, match=switch):
            torch.optim.Adam([p], **{switch: True})
    pt = pytest.importorskip("torch")
    for lib, q in ((pt, pt.nn.Parameter(pt.zeros(2))), (tinygpt, p)):
        with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True`"):
            lib.optim.Adam([q], fused=True, foreach=True)
        with pytest.raises(ValueError, match="both floats"):
            lib.optim.Adam([q], betas=(0, 0.9))


def test_adamw_checkpoint_settings_refuse_what_they_cannot_hold():
    p = tinygpt.nn.Parameter(tinygpt.zeros(2))
    assert torch.optim.AdamW([p], lr=0.5).hyperparameters()["lr"] == 0.5
    for switch in ("amsgrad", "maximize"):
        with pytest.raises(ValueError, match=f"without {switch}"):
            torch.optim.AdamW([p], **{switch: True}).hyperparameters()


# --- named parameters (torch 2.13) ---------------------------------------------------------------


def test_named_parameters_are_kept_like_torch():
    pt = pytest.importorskip("torch")
    pt.manual_seed(0)
    ref = pt.nn.Linear(3, 2).double()
    ours = copy_weights(tinygpt.nn.Linear(3, 2), ref)
    X = np.random.default_rng(0).standard_normal((4, 3))
    runs = {}
    for lib, model in ((tinygpt, ours), (pt, ref)):
        weight, bias = model.named_parameters()
        optimizer = lib.optim.AdamW([{"params": [weight], "weight_decay": 0.1},
                                     {"params": [bias], "weight_decay": 0.0}], lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            y = model(lib.tensor(X))
            (y * y).sum().backward()
            optimizer.step()
        single = lib.optim.SGD(model.named_parameters(), lr=0.1)
        runs[lib.__name__] = ([g["param_names"] for g in optimizer.param_groups],
                              [g["param_names"] for g in optimizer.state_dict()["param_groups"]],
                              single.state_dict()["param_groups"][0]["param_names"])
    assert runs["tinygpt"] == runs["torch"]
    assert runs["torch"][0] == [["weight"], ["bias"]]
    compare_parameters(ours, ref, "after 2 AdamW steps over named parameters:")

    # loading keeps the optimizer's names unless the state dict brings its own
    plain = tinygpt.optim.AdamW(ours.parameters())
    named = tinygpt.optim.AdamW(ours.named_parameters())
    named.load_state_dict(plain.state_dict())
    assert named.param_groups[0]["param_names"] == ["weight", "bias"]
    renamed = named.state_dict()
    renamed["param_groups"][0]["param_names"] = ["w", "b"]
    plain.load_state_dict(renamed)
    assert plain.param_groups[0]["param_names"] == ["w", "b"]


@pytest.mark.parametrize("make,error,match", [
    (lambda m, opt: opt([("weight", m.weight), m.bias]), ValueError, "Some param names"),
    (lambda m, opt: opt([{"params": [("weight", m.weight)]}, {"params": [m.bias]}]),
     ValueError, "cannot add param group without names"),
    (lambda m, opt: opt([{"params": [m.weight]}, {"params": [("bias", m.bias)]}]),
     ValueError, "cannot add param group with names"),
    (lambda m, opt: opt([{"params": {m.weight}}]), TypeError, "ordered collections"),
])
def test_named_parameter_mistakes_raise_torchs_errors(make, error, match):
    pt = pytest.importorskip("torch")
    for lib in (pt, tinygpt):
        with pytest.raises(error, match=match):
            make(lib.nn.Linear(2, 2), lib.optim.AdamW)


# --- a state dict of another kind of optimizer, as torch loads it ------------------------------

KINDS = {"SGD": {"lr": 0.1}, "SGD momentum": {"lr": 0.1, "momentum": 0.9},
         "Adam": {"lr": 0.1, "weight_decay": 0.2}, "AdamW": {"lr": 0.1, "weight_decay": 0.2}}


def _swap_outcome(lib, source, target, grads):
    """Step a ``source`` optimizer, load its state dict into a ``target`` one, step that:
    ("load", error class), ("step", error class, the missing key), or ("ok", the
    parameter afterwards)."""
    p = lib.nn.Parameter(lib.tensor(np.linspace(-1.0, 1.0, 4)))
    src = getattr(lib.optim, source.split()[0])([p], **KINDS[source])
    p.grad = lib.tensor(grads[0])
    src.step()
    q = lib.nn.Parameter(lib.tensor(np.linspace(-1.0, 1.0, 4)))
    dst = getattr(lib.optim, target.split()[0])([q], lr=0.5)
    stage = "load"
    try:
        dst.load_state_dict(src.state_dict())
        stage = "step"
        q.grad = lib.tensor(grads[1])
        dst.step()
    except Exception as exc:  # noqa: BLE001 - the class is what we compare
        return (stage, type(exc)) + ((str(exc),) if stage == "step" else ())
    return "ok", np.asarray(q.tolist())


@pytest.mark.parametrize("target", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("source", list(KINDS))
def test_loading_another_optimizers_state_dict_behaves_as_torch(source, target):
    pt = pytest.importorskip("torch")
    grads = np.random.default_rng(9).standard_normal((2, 4))
    expected = _swap_outcome(pt, source, target, grads)
    got = _swap_outcome(tinygpt, source, target, grads)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-14)
    else:
        assert issubclass(got[1], expected[1]) and got[2:] == expected[2:], (got, expected)
