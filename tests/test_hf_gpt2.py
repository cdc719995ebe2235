"""GPT-2 in Hugging Face's safetensors layout: export, import, round trips."""

import json

import numpy as np
import pytest

from tinygpt.grad_mode import no_grad
from tinygpt.io.hf_gpt2 import (
    export_hf_gpt2,
    hf_config_to_gpt_config,
    load_hf_gpt2,
    load_hf_gpt2_into_gpt,
    load_hf_gpt2_params,
)
from tinygpt.io.pretrained import gpt2_config, load_gpt2_params_from_tf_ckpt, load_weights_into_gpt
from tinygpt.model import GPTModel

from .helpers.assertions import host
from .helpers.gpt2_fixtures import write_gpt2_folder

safetensors_numpy = pytest.importorskip("safetensors.numpy")

CFG = gpt2_config("gpt2-small", n_layers=2, context_length=16, vocab_size=64)


def _params_equal(a, b, path="params"):
    assert type(a) is type(b) or isinstance(a, np.ndarray), path
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for k in a:
            _params_equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _params_equal(x, y, f"{path}[{i}]")
    else:
        assert a.shape == b.shape and a.dtype == b.dtype, path
        assert np.array_equal(host(a), host(b)), path


def _same_weights(m1, m2):
    p1, p2 = dict(m1.named_parameters()), dict(m2.named_parameters())
    assert p1.keys() == p2.keys()
    for k in p1:
        assert np.array_equal(host(p1[k]), host(p2[k])), k


@pytest.fixture(scope="module")
def openai(tmp_path_factory):
    """A synthetic OpenAI checkpoint, its params, and a model loaded from them."""
    folder = tmp_path_factory.mktemp("openai")
    write_gpt2_folder(folder, n_layer=2, n_embd=768, n_head=12, n_ctx=16, n_vocab=64, seed=3)
    settings = json.loads((folder / "hparams.json").read_text())
    params = load_gpt2_params_from_tf_ckpt(str(folder / "model.ckpt"), settings)
    model = GPTModel(CFG)
    load_weights_into_gpt(model, params)
    return params, model


def test_keys_and_shapes_are_hugging_faces(openai, tmp_path):
    _, model = openai
    export_hf_gpt2(model, tmp_path)
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    C, V, T = 768, 64, 16
    expected = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
                "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(2):
        h = f"transformer.h.{i}."
        expected.update({
            h + "ln_1.weight": (C,), h + "ln_1.bias": (C,),
            h + "attn.c_attn.weight": (C, 3 * C), h + "attn.c_attn.bias": (3 * C,),
            h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
            h + "ln_2.weight": (C,), h + "ln_2.bias": (C,),
            h + "mlp.c_fc.weight": (C, 4 * C), h + "mlp.c_fc.bias": (4 * C,),
            h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,),
        })
    assert {k: v.shape for k, v in tensors.items()} == expected  # tied: no lm_head.weight
    assert all(v.dtype == np.float32 for v in tensors.values())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_embd"], config["n_layer"], config["n_head"], config["n_positions"],
            config["vocab_size"]) == (768, 2, 12, 16, 64)
    assert config["activation_function"] == "gelu_new"
    assert config["layer_norm_epsilon"] == 1e-5 and config["tie_word_embeddings"] is True
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), framework="np") as f:
        assert f.metadata() == {"format": "pt"}  # transformers refuses files without it


def test_hf_layout_is_openais_layout(openai, tmp_path):
    """Exporting a model loaded from OpenAI's params gives back exactly those params."""
    params, model = openai
    export_hf_gpt2(model, tmp_path)
    settings, hf_params = load_hf_gpt2_params(tmp_path)
    assert settings == {"n_vocab": 64, "n_ctx": 16, "n_embd": 768, "n_head": 12, "n_layer": 2}
    _params_equal(hf_params, params)


def test_round_trip_tied(openai, tmp_path):
    _, model = openai
    export_hf_gpt2(model, tmp_path)
    back = load_hf_gpt2(tmp_path)
    assert back.cfg == model.cfg and not back.training
    _same_weights(model, back)


def test_round_trip_untied_head(tmp_path):
    model = GPTModel(CFG)  # random init: out_head differs from tok_emb
    export_hf_gpt2(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    assert np.array_equal(tensors["lm_head.weight"], host(model.state_dict()["out_head.weight"]))
    _same_weights(model, load_hf_gpt2(tmp_path))
    _, params = load_hf_gpt2_params(tmp_path / "model.safetensors")
    assert np.array_equal(host(params["lm_head"]), host(model.state_dict()["out_head.weight"]))
    fresh = GPTModel(CFG)
    load_weights_into_gpt(fresh, params)  # the book loader honours an untied head too
    _same_weights(model, fresh)


def test_qkv_bias_false_exports_zero_biases(tmp_path):
    cfg = dict(CFG, qkv_bias=False)
    model = GPTModel(cfg).eval()
    export_hf_gpt2(model, tmp_path)
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    assert not tensors["transformer.h.1.attn.c_attn.bias"].any()
    back = load_hf_gpt2(tmp_path)
    assert back.cfg["qkv_bias"] is True
    ids = np.arange(10).reshape(1, 10)
    with no_grad():
        assert np.array_equal(host(model(ids).data), host(back(ids).data))
    with pytest.raises(ValueError, match="qkv_bias=False"):
        load_hf_gpt2_into_gpt(GPTModel(cfg), tmp_path)


def test_plain_keys_and_mask_buffers(openai, tmp_path):
    """Files written by GPT2Model (no 'transformer.' prefix) with the old attn.bias /
    attn.masked_bias buffers load too; with no config.json the size comes from shapes."""
    params, model = openai
    export_hf_gpt2(model, tmp_path / "src")
    tensors = safetensors_numpy.load_file(str(tmp_path / "src" / "model.safetensors"))
    plain = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    for i in range(2):
        plain[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
        plain[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    (tmp_path / "plain").mkdir()
    safetensors_numpy.save_file(plain, str(tmp_path / "plain" / "model.safetensors"))
    back = load_hf_gpt2(tmp_path / "plain")
    _same_weights(model, back)
    _, hf_params = load_hf_gpt2_params(tmp_path / "plain")
    _params_equal(hf_params, params)


def test_errors(openai, tmp_path):
    _, model = openai
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_gpt2(tmp_path)
    export_hf_gpt2(model, tmp_path / "ok")
    tensors = safetensors_numpy.load_file(str(tmp_path / "ok" / "model.safetensors"))
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    (tmp_path / "bad").mkdir()
    safetensors_numpy.save_file(tensors, str(tmp_path / "bad" / "model.safetensors"))
    target = GPTModel(CFG)
    with pytest.raises(ValueError, match=r"\['blocks'\]\[1\]\['mlp'\]\['c_fc'\]\['b'\] is missing"):
        load_hf_gpt2_into_gpt(target, tmp_path / "bad")
    with pytest.raises(ValueError, match="lacks GPT-2 tensors.*h.1.mlp.c_fc.bias"):
        load_hf_gpt2_params(tmp_path / "bad")
    with pytest.raises(ValueError, match="context_length is 8"):
        load_hf_gpt2_into_gpt(GPTModel(dict(CFG, context_length=8)), tmp_path / "ok")
    with pytest.raises(ValueError, match="model_type"):
        hf_config_to_gpt_config({"model_type": "llama"})


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_reads_our_export(openai, tmp_path, tied):
    """If Hugging Face transformers is installed (not a tinygpt dependency):
    GPT2LMHeadModel loads the export with no missing or unexpected key and gives
    our logits, and what its save_pretrained writes loads back into tinygpt."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    _, loaded = openai
    model = GPTModel(CFG)
    load_weights_into_gpt(model, load_hf_gpt2_params(export_hf_gpt2(loaded, tmp_path / "a"))[1])
    if not tied:
        head = dict(model.named_parameters())["out_head.weight"]
        head.data[...] = head.data + 0.01
    model.eval()
    export_hf_gpt2(model, tmp_path / "ours")
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "ours"),
                                                             output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert hf.config.tie_word_embeddings is tied
    hf.eval()
    ids = np.random.default_rng(0).integers(0, CFG["vocab_size"], (2, CFG["context_length"]))
    with no_grad():
        ours = host(model(ids))
    with torch.no_grad():
        theirs = hf(torch.from_numpy(ids)).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    hf.save_pretrained(str(tmp_path / "theirs"))
    _same_weights(model, load_hf_gpt2(tmp_path / "theirs"))
