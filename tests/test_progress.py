"""Progress bars on the slow work around a model (writing and reading model files and
checkpoints, loading GPT-2 weights, 'tinygpt eval'): on stderr, only on a terminal by
default, never with --no-progress."""

import pytest

import tinygpt
from tinygpt.app import cli
from tinygpt.io import progress
from tinygpt.io.checkpoint import load_model, save_model

TINY = dict(tinygpt.GPT_CONFIG_124M, vocab_size=64, context_length=8, emb_dim=16, n_heads=2,
            n_layers=1)


@pytest.fixture
def restore_progress():
    yield
    progress.set_progress(None)


@pytest.fixture
def tiny_model(keep_global_rng):
    tinygpt.manual_seed(0)
    return tinygpt.GPTModel(TINY)


def test_writing_and_reading_a_model_file_show_progress_when_asked(
        tiny_model, tmp_path, capsys, restore_progress):
    progress.set_progress(True)
    save_model(tiny_model, tmp_path / "model.safetensors")
    load_model(tmp_path / "model.safetensors")
    err = capsys.readouterr().err
    assert "writing model.safetensors" in err and "reading model.safetensors" in err


def test_no_bars_off_a_terminal_or_when_turned_off(tiny_model, tmp_path, capsys,
                                                   restore_progress):
    for choice in (None, False):  # pytest's captured stderr is not a terminal
        progress.set_progress(choice)
        assert progress.progress_enabled() is False
        save_model(tiny_model, tmp_path / "model.safetensors")
        load_model(tmp_path / "model.safetensors")
        assert capsys.readouterr().err == ""


def test_loading_gpt2_weights_shows_progress(tmp_path, capsys, restore_progress):
    from tinygpt.io.pretrained import load_gpt2_folder

    from .helpers.gpt2_fixtures import write_gpt2_folder

    write_gpt2_folder(tmp_path / "124M", n_layer=1, n_embd=16, n_head=2, n_ctx=8, n_vocab=64)
    progress.set_progress(True)
    load_gpt2_folder(tmp_path / "124M")
    err = capsys.readouterr().err
    assert "checking weights" in err and "loading weights" in err


def test_set_progress_takes_only_true_false_none(restore_progress):
    with pytest.raises(ValueError, match="True, False or None"):
        progress.set_progress("yes")


def test_no_progress_option_turns_bars_off(tmp_path, restore_progress):
    progress.set_progress(True)
    cli.main(["eval", "--no-progress", "--model", str(tmp_path / "none.safetensors")])
    assert progress.progress_enabled() is False
    cli.main(["eval", "--model", str(tmp_path / "none.safetensors")])
    assert progress._choice is None  # back to "on a terminal"
