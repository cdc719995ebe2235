"""Loading GPT-2 weights into tinygpt's GPTModel, against the book's PyTorch loader.

For each GPT-2 size (its emb_dim and n_heads, at reduced depth, vocabulary and
context) a synthetic OpenAI checkpoint is read into the book's params; tinygpt
loads them with ``load_weights_into_gpt`` and the PyTorch reference with the
book's listing 5.5; the logits must agree.
"""

import numpy as np
import pytest

from tinygpt.grad_mode import no_grad
from tinygpt.io.pretrained import (
    _path_to_tf_name,
    _squeezed_shape,
    as_gpt2_array,
    as_parameter,
    by_gpt2_array,
    download_and_load_gpt2,
    gpt2_config,
    gpt2_model_size,
    gpt2_weight_map,
    load_gpt2_params_from_tf_ckpt,
    load_pretrained_gpt2,
    load_tf_ckpt_into_gpt,
    load_weights_into_gpt,
    model_configs,
)
from tinygpt.model import GPT_CONFIG_124M, GPTModel

from .helpers.assertions import assert_close, host
from .helpers.gpt2_fixtures import (
    gpt2_tensor_shapes,
    gpt2_tensors,
    write_gpt2_folder,
    write_tf_checkpoint,
)
from .helpers.tools import REPO, load_script

SMALL = {"n_vocab": 96, "n_ctx": 24}


def _settings(name, n_layer):
    c = model_configs[name]
    return {"n_vocab": SMALL["n_vocab"], "n_ctx": SMALL["n_ctx"], "n_embd": c["emb_dim"],
            "n_head": c["n_heads"], "n_layer": n_layer}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A synthetic models_dir per size: {size name: (models_dir, settings)}."""
    out = {}
    for k, name in enumerate(model_configs):
        n_layer = 2 if "small" in name else 1
        s = _settings(name, n_layer)
        models_dir = tmp_path_factory.mktemp(f"models{k}")
        write_gpt2_folder(models_dir / gpt2_model_size(name), n_layer=n_layer,
                          n_embd=s["n_embd"], n_head=s["n_head"], n_ctx=s["n_ctx"],
                          n_vocab=s["n_vocab"], seed=k)
        out[name] = (models_dir, s)
    return out


def _load(folders, name):
    models_dir, _ = folders[name]
    return download_and_load_gpt2(gpt2_model_size(name), models_dir, download=False,
                                  known_sha256={})


def _cfg(settings):
    return gpt2_config(_name_for(settings), vocab_size=settings["n_vocab"],
                       context_length=settings["n_ctx"], n_layers=settings["n_layer"])


def _name_for(settings):
    """The model_configs name of the size with this emb_dim."""
    return next(n for n, c in model_configs.items() if c["emb_dim"] == settings["n_embd"])


@pytest.mark.parametrize("name", list(model_configs))
def test_logits_match_the_book_loader(folders, name):
    torch = pytest.importorskip("torch")
    from .reference.torch_gpt import GPTModel as TorchGPT
    from .reference.torch_gpt import load_weights_into_gpt as torch_load

    settings, params = _load(folders, name)
    cfg = _cfg(settings)
    assert (cfg["emb_dim"], cfg["n_heads"]) == (model_configs[name]["emb_dim"],
                                                model_configs[name]["n_heads"])
    ours = GPTModel(cfg)
    load_weights_into_gpt(ours, params)
    ours.eval()
    torch.manual_seed(0)
    ref = TorchGPT(cfg)
    torch_load(ref, params)
    ref.eval()

    ids = np.random.default_rng(1).integers(0, cfg["vocab_size"], (2, cfg["context_length"]))
    with no_grad():
        logits = ours(ids).data
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids)).numpy()
    assert_close(f"{name} logits", logits, expected, 1e-5)
    # the weights went where the book puts them
    sd = ours.state_dict()
    c_attn = params["blocks"][0]["attn"]["c_attn"]
    C = cfg["emb_dim"]
    assert np.array_equal(host(sd["trf_blocks.0.att.W_key.weight"]), c_attn["w"][:, C:2 * C].T)
    assert np.array_equal(host(sd["trf_blocks.0.att.W_value.bias"]), c_attn["b"][2 * C:])
    assert np.array_equal(host(sd["out_head.weight"]), params["wte"])


@pytest.mark.parametrize("name", ["gpt2-small (124M)", "gpt2-xl (1558M)"])
def test_streaming_load_equals_params_load(folders, name):
    models_dir, settings = folders[name]
    cfg = _cfg(settings)
    a, b = GPTModel(cfg), GPTModel(cfg)
    _, params = _load(folders, name)
    load_weights_into_gpt(a, params)
    load_tf_ckpt_into_gpt(b, models_dir / gpt2_model_size(name) / "model.ckpt")
    for (key, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(host(pa), host(pb)), key


def test_load_pretrained_gpt2_offline(folders):
    models_dir, settings = folders["gpt2-medium (355M)"]
    gpt = load_pretrained_gpt2("gpt2-medium", models_dir, download=False, known_sha256={})
    assert gpt.cfg == _cfg(settings)
    assert not gpt.training
    _, params = _load(folders, "gpt2-medium (355M)")
    assert np.array_equal(host(gpt.state_dict()["pos_emb.weight"]), params["wpe"])


def test_the_weight_map_is_each_parameter_once_and_reads_backwards():
    """gpt2_weight_map, the one map every loader uses: a row per GPTModel parameter, the
    checkpoint's tensors and shapes (by the fixture's own list), and as_gpt2_array undoes
    as_parameter (what export_hf_gpt2 relies on)."""
    V, T, C, L = 20, 8, 16, 2
    model = GPTModel(gpt2_config("gpt2-small", vocab_size=V, context_length=T, emb_dim=C,
                                 n_heads=2, n_layers=L))
    named = dict(model.named_parameters())
    rows = list(gpt2_weight_map(L, V, T, C, 4 * C))
    assert sorted(row.parameter for row in rows) == sorted(named)
    gpt2 = [(_path_to_tf_name(path), shape) for path, shape, _ in by_gpt2_array(rows)]
    assert gpt2 == [(name, _squeezed_shape(shape))
                    for name, shape in gpt2_tensor_shapes(L, C, T, V)]
    rng = np.random.default_rng(0)
    for path, shape, group in by_gpt2_array(rows):
        array = rng.standard_normal(shape)
        parts = [as_parameter(array, row) for row in group]
        assert [p.shape for p in parts] == [named[row.parameter].shape for row in group], path
        assert np.array_equal(as_gpt2_array(parts, group), array), path
    untied = list(gpt2_weight_map(L, V, T, C, 4 * C, untied_head=True))
    assert untied[-1].parameter == "out_head.weight" and untied[-1].path == ("lm_head",)


# ------------------------------------------------------------------ errors


def _snapshot(model):
    return {k: p.array.copy() for k, p in model.named_parameters()}


def _unchanged(model, snapshot):
    return all(np.array_equal(host(p), host(snapshot[k])) for k, p in model.named_parameters())


@pytest.fixture(scope="module")
def small(folders):
    settings, params = _load(folders, "gpt2-small (124M)")
    return _cfg(settings), params


def test_wrong_shape_names_key_and_shapes(small):
    cfg, params = small
    bad = {**params, "blocks": [dict(b) for b in params["blocks"]]}
    bad["blocks"][1] = {**bad["blocks"][1], "mlp": {
        **bad["blocks"][1]["mlp"], "c_fc": {"w": np.zeros((768, 3000), np.float32),
                                            "b": params["blocks"][1]["mlp"]["c_fc"]["b"]}}}
    model = GPTModel(cfg)
    before = _snapshot(model)
    with pytest.raises(ValueError) as info:
        load_weights_into_gpt(model, bad)
    message = str(info.value)
    assert "params['blocks'][1]['mlp']['c_fc']['w']" in message
    assert "(768, 3000)" in message and "(768, 3072)" in message
    assert "trf_blocks.1.ff.layers.0.weight" in message
    assert _unchanged(model, before)


def test_missing_param_is_named(small):
    cfg, params = small
    bad = {**params, "blocks": [dict(b) for b in params["blocks"]]}
    bad["blocks"][0]["ln_2"] = {"g": params["blocks"][0]["ln_2"]["g"]}
    model = GPTModel(cfg)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[0\]\['ln_2'\]\['b'\] is missing"):
        load_weights_into_gpt(model, bad)
    assert _unchanged(model, before)


def test_missing_variable_in_checkpoint(tmp_path):
    tensors = dict(gpt2_tensors(n_layer=1, n_embd=16, n_ctx=8, n_vocab=20))
    del tensors["model/h0/attn/c_proj/b"]
    write_tf_checkpoint(tmp_path / "model.ckpt", tensors)
    settings = {"n_vocab": 20, "n_ctx": 8, "n_embd": 16, "n_head": 2, "n_layer": 1}
    with pytest.raises(ValueError, match="model/h0/attn/c_proj/b"):
        load_gpt2_params_from_tf_ckpt(str(tmp_path / "model.ckpt"), settings)
    cfg = dict(GPT_CONFIG_124M, vocab_size=20, context_length=8, emb_dim=16, n_heads=2,
               n_layers=1, qkv_bias=True)
    model = GPTModel(cfg)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[0\]\['attn'\]\['c_proj'\]\['b'\]"):
        load_tf_ckpt_into_gpt(model, tmp_path / "model.ckpt")
    assert _unchanged(model, before)
    with pytest.raises(ValueError, match="n_layer=2"):  # settings of another depth
        load_gpt2_params_from_tf_ckpt(str(tmp_path / "model.ckpt"), {**settings, "n_layer": 2})


def test_qkv_bias_false_says_how_to_fix(small):
    cfg, params = small
    model = GPTModel({**cfg, "qkv_bias": False})
    before = _snapshot(model)
    with pytest.raises(ValueError) as info:
        load_weights_into_gpt(model, params)
    message = str(info.value)
    assert "qkv_bias=False" in message and "'qkv_bias': True" in message
    assert "gpt2_config('gpt2-small (124M)')" in message
    assert _unchanged(model, before)


def test_book_context_length_256_says_how_to_fix(small):
    cfg, params = small
    model = GPTModel({**cfg, "context_length": 256})
    with pytest.raises(ValueError) as info:
        load_weights_into_gpt(model, params)
    message = str(info.value)
    assert "context_length is 256" in message and f"{SMALL['n_ctx']} rows" in message
    assert "'context_length': 1024" in message


def test_other_size_and_depth_are_explained(small, folders):
    cfg, params = small
    with pytest.raises(ValueError, match="2 transformer blocks, the model has n_layers=3"):
        load_weights_into_gpt(GPTModel({**cfg, "n_layers": 3}), params)
    _, medium = _load(folders, "gpt2-medium (355M)")
    with pytest.raises(ValueError, match=r"emb_dim 1024 \(gpt2-medium \(355M\)\)") as info:
        load_weights_into_gpt(GPTModel(cfg), medium)
    assert "gpt2_config('gpt2-medium (355M)')" in str(info.value)


# ------------------------------------------------------------------ names and configs


def test_model_configs_is_the_books_table():
    assert model_configs == {
        "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
        "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
        "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
        "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
    }


def test_gpt2_config_spellings():
    book = GPT_CONFIG_124M.copy()  # the book's NEW_CONFIG recipe
    book.update(model_configs["gpt2-large (774M)"])
    book.update({"context_length": 1024, "qkv_bias": True, "drop_rate": 0.0})
    for spelling in ("gpt2-large (774M)", "gpt2-large", "774M", "774m", "GPT2-Large(774M)"):
        assert gpt2_config(spelling) == book
        assert gpt2_model_size(spelling) == "774M"
    assert gpt2_config("gpt2")["emb_dim"] == 768
    assert gpt2_config("124M", drop_rate=0.1)["drop_rate"] == 0.1
    with pytest.raises(ValueError) as info:
        gpt2_config("gpt2-huge")
    for name in model_configs:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown config keys"):
        gpt2_config("124M", emb_size=3)


# ------------------------------------------------------------------ the demo


def test_demo_runs_offline(tmp_path, verdict_path, capsys):
    """demos/generate_gpt2.py end to end on a synthetic 50257-token GPT-2, offline."""
    import shutil

    from tinygpt.tokenizer import gpt2_data_files

    folder = tmp_path / "124M"
    write_gpt2_folder(folder, n_layer=1, n_embd=32, n_head=2, n_ctx=256, n_vocab=50257)
    for src in gpt2_data_files():  # the real BPE files, so the default sha256 check passes
        shutil.copy(src, folder / src.name)
    demo = load_script(REPO / "demos" / "generate_gpt2.py", "generate_gpt2_demo")
    result = demo.main(["--models-dir", str(tmp_path), "--offline", "--text", str(verdict_path),
                        "--max-new-tokens", "5"])
    out = capsys.readouterr().out
    assert result["text"].startswith("Every effort moves you") and "Output text:" in out
    # small random weights: close to the uniform model's ln(50257) = 10.82
    assert abs(result["train_loss"] - 10.82) < 0.5 and abs(result["val_loss"] - 10.82) < 0.5
    assert "Training loss:" in out and "Validation loss:" in out
