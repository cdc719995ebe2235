"""The ``tinygpt`` command, driven through its real entry points in subprocesses.

Every subcommand runs as ``python -m tinygpt ...`` (and a few through the
installed ``tinygpt`` script when it is on PATH), with the network pointed at a
closed port on 127.0.0.1 so nothing can leave the machine: training on "The
Verdict" then generating and evaluating from the result, Ctrl-C and --resume,
downloading GPT-2 from a local HTTP server, the self-test, and the error paths
(each must exit non-zero with one ``tinygpt: error:`` line and no traceback).
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygpt.app import cli

from .helpers.file_server import FileServer, closed_port_url
from .helpers.gpt2_fixtures import write_gpt2_folder

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.name != "posix", reason="signals and paths as on POSIX"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Every effort moves you"




@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """The environment of every command: no way out to the internet, a private cache, and
    a temporary working folder (``WORKDIR``), so a default output such as runs/<name> never
    lands in the checkout."""
    env = dict(os.environ)
    env.pop("TINYGPT_DATA", None)
    # the checkout's tinygpt, also from a working folder outside it (a relative entry such
    # as tests/fake_cupy made absolute, as it meant here)
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *inherited])
    env["WORKDIR"] = str(tmp_path_factory.mktemp("workdir"))
    # TINYGPT_BACKEND (and PYTHONPATH, for tests/fake_cupy) are inherited on purpose: under
    # TINYGPT_BACKEND=cupy the commands themselves run on CuPy, not only the test process.
    dead = closed_port_url()
    env.update(
        OPENBLAS_NUM_THREADS="1",
        TINYGPT_CACHE=str(tmp_path_factory.mktemp("cache")),
        TINYGPT_GPT2_URL=dead,
        TINYGPT_GPT2_BACKUP_URL=dead,
        TINYGPT_VERDICT_URL=dead + "/the-verdict.txt",
        PYTHONIOENCODING="utf-8",
    )
    return env


def run_cli(env, *args, script=False, timeout=90, **extra_env):
    """Run ``tinygpt ARGS`` (``python -m tinygpt``, or the installed script)."""
    command = ["tinygpt"] if script else [sys.executable, "-m", "tinygpt"]
    return subprocess.run(
        command + [str(a) for a in args], cwd=env["WORKDIR"], env=dict(env, **extra_env),
        capture_output=True, text=True, encoding="utf-8", timeout=timeout,
    )


def assert_ok(result):
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr


def assert_error(result, code, *fragments, one_line=True):
    """Exit ``code``; stderr opens with one ``tinygpt: error:`` line naming ``fragments``."""
    stderr = result.stderr
    assert result.returncode == code, (
        f"expected exit {code}, got {result.returncode}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{stderr}"
    )
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tinygpt: error: ")]
    assert len(errors) == 1, stderr
    if one_line:
        assert lines == errors, f"more than one line on stderr:\n{stderr}"
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"
    return errors[0]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start_cli(env, *args):
    """``tinygpt ARGS`` as a running process whose Ctrl-C, SIGTERM and SIGHUP work as on a
    terminal.

    A shell's background job inherits SIGINT ignored (and under nohup SIGHUP), and so
    would the child; while it starts, this process handles them instead, which a child
    resets to the default."""
    previous = {s: signal.signal(s, signal.default_int_handler) for s in STOP_SIGNALS}
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tinygpt"] + [str(a) for a in args], cwd=env["WORKDIR"],
            env=dict(env, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def flip_byte(path, offset_from_end=50):
    with open(path, "r+b") as f:
        f.seek(-offset_from_end, os.SEEK_END)
        byte = f.read(1)
        f.seek(-offset_from_end, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


# --- train, then generate and eval from the result -------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, verdict_path, cli_env):
    """One epoch of the small config on "The Verdict": (output folder, the run's result)."""
    out = tmp_path_factory.mktemp("run") / "verdict"
    result = run_cli(cli_env, "train", "--text", verdict_path, "--config", "small",
                     "--epochs", 1, "--out", out, "--eval-freq", 10, "--eval-iter", 2,
                     "--no-progress")
    assert_ok(result)
    return out, result


def test_train_writes_model_checkpoint_plot_and_summary(trained):
    out, result = trained
    for name in ("model.safetensors", "checkpoint.safetensors", "loss-plot.png",
                 "summary.json"):
        assert (out / name).is_file(), f"{name} missing; stdout:\n{result.stdout}"
    assert "Ep 1 (Step 000000): Train loss" in result.stdout
    assert f"Next: tinygpt generate --model {out / 'model.safetensors'}" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["config"]["emb_dim"] == 128
    # 10.8 = ln(50257) is where an untrained model starts; one epoch must move off it
    assert math.isfinite(summary["final_val_loss"]) and summary["final_train_loss"] < 10.5


def test_generate_from_trained_model_greedy_is_deterministic_with_and_without_cache(
        trained, cli_env):
    model = trained[0] / "model.safetensors"
    cached = run_cli(cli_env, "generate", "--model", model, "--prompt", PROMPT,
                     "--max-new-tokens", 12)
    assert_ok(cached)
    assert cached.stdout.startswith(PROMPT) and len(cached.stdout) > len(PROMPT) + 1
    assert "12 tokens" in cached.stderr  # the notes go to stderr, not into the text
    plain = run_cli(cli_env, "generate", "--model", model, "--prompt", PROMPT,
                    "--max-new-tokens", 12, "--no-cache", "--quiet")
    assert_ok(plain)
    assert plain.stdout == cached.stdout and plain.stderr == ""


def test_generate_sampling_repeats_with_a_seed_and_takes_folder_checkpoint_and_empty_prompt(
        trained, cli_env):
    out = trained[0]
    args = ["--prompt", "日本語 and", "--max-new-tokens", 15, "--temperature", 1.5,
            "--top-k", 40, "--top-p", 0.95, "--seed", 7, "-q"]
    first = run_cli(cli_env, "generate", "--model", out, *args)  # the run's folder
    second = run_cli(cli_env, "generate", "--model", out / "checkpoint.safetensors", *args)
    assert_ok(first)
    assert_ok(second)
    assert first.stdout.startswith("日本語 and")
    assert first.stdout == second.stdout  # same weights, same seed
    empty = run_cli(cli_env, "generate", "--model", out, "--prompt", "",
                    "--max-new-tokens", 3, "-q")
    assert_ok(empty)


def test_eval_prints_losses_and_perplexity(trained, cli_env, verdict_path):
    result = run_cli(cli_env, "eval", "--model", trained[0] / "model.safetensors",
                     "--text", verdict_path)
    assert_ok(result)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.startswith(("training", "validation"))}
    assert set(rows) == {"training", "validation"}, result.stdout
    for split, (_, _tokens, batches, loss, ppl) in rows.items():
        assert int(batches) >= 1, split
        assert math.isclose(math.exp(float(loss)), float(ppl), rel_tol=2e-3), split
    assert "windows of 64 tokens" in result.stdout  # the model's context (< 256)


def test_generate_from_a_hugging_face_export_matches_the_model_file(trained, tmp_path, cli_env):
    from tinygpt.io.checkpoint import load_model
    from tinygpt.io.hf_gpt2 import export_hf_gpt2

    model_file = trained[0] / "model.safetensors"
    export_hf_gpt2(load_model(model_file), tmp_path / "hf")
    args = ["--prompt", PROMPT, "--max-new-tokens", 8, "-q"]
    ours = run_cli(cli_env, "generate", "--model", model_file, *args)
    hf_folder = run_cli(cli_env, "generate", "--model", tmp_path / "hf", *args)
    hf_file = run_cli(cli_env, "generate", "--model", tmp_path / "hf" / "model.safetensors", *args)
    for result in (ours, hf_folder, hf_file):
        assert_ok(result)
    assert hf_folder.stdout == ours.stdout and hf_file.stdout == ours.stdout


def test_ctrl_c_stops_generation_with_exit_130(trained, cli_env):
    proc = start_cli(cli_env, "generate", "--model", trained[0] / "model.safetensors",
                     "--max-new-tokens", 100000, "--no-cache", "-q")
    try:
        assert proc.stdout.read(len(PROMPT) + 1)  # text is streaming
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert stderr.strip() == "tinygpt: interrupted"


def test_decode_stream_never_splits_a_character():
    """Tokens that cut a character in half: each printed piece is whole text."""
    from tinygpt.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    text = "日本語 𝄞 naïve 🤖 ok"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.split())  # multi-byte characters do span several tokens
    pieces = list(cli.decode_stream(iter(ids), tokenizer))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


# --- Ctrl-C (and SIGTERM, SIGHUP) and --resume ----------------------------------------------


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: s.name)
def test_ctrl_c_sigterm_and_sighup_save_a_checkpoint_and_resume_finishes(
        tmp_path, verdict_text, cli_env, signum):
    """Ctrl-C, and what `kill`, a job scheduler or a closed terminal sends: the run stops
    after the step, saves its checkpoint, prints the command that resumes it, releases
    its lock and exits 128 + the signal (130, 143, 129)."""
    text = tmp_path / "part.txt"
    text.write_text(verdict_text[:4500], encoding="utf-8")  # a short epoch (7 batches)
    out = tmp_path / "run"
    proc = start_cli(cli_env, "train", "--text", text, "--config", "small", "--epochs", 40,
                     "--out", out, "--eval-freq", 1, "--eval-iter", 1, "--no-progress")
    try:
        seen = []
        for line in proc.stdout:  # wait until the loop (and its Ctrl-C handler) runs
            seen.append(line)
            if line.startswith("Ep 1 (Step 000001)"):
                break
        else:
            pytest.fail("training never reached step 1:\n" + "".join(seen) + proc.stderr.read())
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(seen) + stdout
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "stopping after this step" in stderr, stderr
    checkpoint = out / "checkpoint.safetensors"
    assert checkpoint.is_file()
    assert stdout.rstrip().endswith(f"Continue with:\n  tinygpt train --resume {checkpoint}")
    assert not (out / ".tinygpt-train.lock").exists()

    # the hint works as printed (the checkpoint remembers the text); stop after epoch 1
    resumed = run_cli(cli_env, "train", "--resume", checkpoint, "--epochs", 1, "--no-progress")
    assert_ok(resumed)
    assert resumed.stdout.startswith(f"Resuming {checkpoint}: epoch 1, step ")
    assert (out / "model.safetensors").is_file()
    # a setting that would change the run is refused, not silently ignored
    assert_error(run_cli(cli_env, "train", "--resume", checkpoint, "--epochs", 3, "--lr", 0.1),
                 2, "--lr 0.1 differs from the run being resumed")
    assert_error(run_cli(cli_env, "train", "--resume", checkpoint), 2,
                 "has already trained 1 epoch(s)")


# --- download, and GPT-2 by name ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_server(tmp_path_factory):
    """A local server holding a small synthetic "124M" (1 layer, 32 wide, GPT-2's
    vocabulary) with the real encoder.json / vocab.bpe, so every downloaded file checks."""
    from tinygpt.tokenizer import gpt2_data_files

    folder = tmp_path_factory.mktemp("origin") / "124M"
    write_gpt2_folder(folder, n_layer=1, n_embd=32, n_head=2, n_ctx=64)
    encoder_json, vocab_bpe = gpt2_data_files()
    shutil.copyfile(encoder_json, folder / "encoder.json")
    shutil.copyfile(vocab_bpe, folder / "vocab.bpe")
    server = FileServer({f"/124M/{p.name}": p.read_bytes() for p in folder.iterdir()})
    yield server, folder
    server.close()


def test_download_then_generate_and_eval_by_name_offline(gpt2_server, tmp_path, cli_env,
                                                         verdict_path):
    server, origin = gpt2_server
    models = tmp_path / "models"
    result = run_cli(cli_env, "download", "gpt2-small", "--dir", models,
                     TINYGPT_GPT2_URL=server.url, TINYGPT_GPT2_BACKUP_URL=server.url)
    assert_ok(result)
    for f in origin.iterdir():
        assert (models / "124M" / f.name).read_bytes() == f.read_bytes(), f.name
    assert str(models / "124M") in result.stdout

    gen = run_cli(cli_env, "generate", "--model", "gpt2-small", "--models-dir", models,
                  "--offline", "--max-new-tokens", 5)
    assert_ok(gen)
    assert gen.stdout.startswith(PROMPT) and "GPT-2 124M" in gen.stderr
    folder = run_cli(cli_env, "generate", "--model", models / "124M", "--max-new-tokens", 5)
    assert_ok(folder)  # OpenAI's folder given as a path: the same model, the same text
    assert folder.stdout == gen.stdout
    ev = run_cli(cli_env, "eval", "--model", "124M", "--models-dir", models, "--offline",
                 "--text", verdict_path)
    assert_ok(ev)
    assert "validation" in ev.stdout


def test_download_from_an_unreachable_server_fails_cleanly(tmp_path, cli_env):
    result = run_cli(cli_env, "download", "gpt2-small", "--dir", tmp_path, "--timeout", 5)
    line = assert_error(result, 1, "Connection refused", one_line=False)
    assert "could not download" in line
    assert "=" not in result.stderr.split("tried:")[1].replace("TINYGPT_GPT2", "")  # no kwargs
    assert not any(tmp_path.iterdir())  # no empty 124M folder left behind


def test_offline_without_files_says_how_to_get_them(tmp_path, cli_env):
    result = run_cli(cli_env, "generate", "--model", "gpt2-small", "--models-dir", tmp_path,
                     "--offline")
    assert_error(result, 2, f"tinygpt download gpt2-small --dir {tmp_path}", one_line=False)
    assert "download=" not in result.stderr
    # the default folder: the command needs no --dir
    default = run_cli(cli_env, "generate", "--model", "gpt2-small", "--offline")
    assert_error(default, 2, "run: tinygpt download gpt2-small\n", one_line=False)
    assert str(Path(cli_env["TINYGPT_CACHE"]) / "gpt2" / "124M") in default.stderr


def test_generate_gpt2_demo_uses_the_command_lines_folder_and_speaks_options(cli_env):
    """demos/generate_gpt2.py --offline looks where 'tinygpt download' puts the files, and
    says what to do in options."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "demos" / "generate_gpt2.py"),
                             "--offline"], cwd=cli_env["WORKDIR"], env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(Path(cli_env["TINYGPT_CACHE"]) / "gpt2" / "124M") in result.stderr
    assert "Drop --offline to download them, or run: tinygpt download 124M" in result.stderr
    assert "download=" not in result.stderr


# --- error paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (["train", "--text", "/no/such/file.txt"], "/no/such/file.txt does not exist"),
    (["train", "--epochs", "-1"], "argument --epochs: must be an integer >= 1, got -1"),
    (["train", "--config", "huge"], "argument --config: invalid choice: 'huge'"),
    (["generate", "--model", "x", "--temperature", "-1"], "argument --temperature: must be"),
    (["generate", "--model", "x", "--top-p", "2"], "argument --top-p: must be in (0, 1]"),
    (["generate", "--model", "x", "--top-k", "many"], "argument --top-k: expected an integer"),
    (["generate", "--model", "gpt5"], "unknown model 'gpt5'"),
    (["generate", "--model", "no/such/model.safetensors"], "does not exist"),
    (["generate"], "the following arguments are required: --model"),
    (["download", "gpt2-huge"], "unknown model 'gpt2-huge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_bad_input_is_one_line_and_exit_2(cli_env, args, fragment):
    assert_error(run_cli(cli_env, *args), 2, fragment)


def test_texts_that_cannot_be_trained_on(tmp_path, cli_env):
    short = tmp_path / "short.txt"
    short.write_text("Too short to hold one window of 64 tokens.", encoding="utf-8")
    assert_error(run_cli(cli_env, "train", "--text", short, "--config", "small"), 2,
                 "not enough for one window of max_length=64")
    assert not (Path(cli_env["WORKDIR"]) / "runs" / "short").exists()  # a refused run: no folder
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café crème".encode("latin-1"))
    assert_error(run_cli(cli_env, "train", "--text", latin1), 2, "is not UTF-8 text")


def test_corrupted_and_wrong_files(trained, tmp_path, cli_env, verdict_path):
    out = trained[0]
    bad = tmp_path / "checkpoint.safetensors"
    shutil.copyfile(out / "checkpoint.safetensors", bad)
    flip_byte(bad)
    assert_error(run_cli(cli_env, "train", "--resume", bad), 2, "is corrupted")
    bad_model = tmp_path / "bad-model.safetensors"
    shutil.copyfile(out / "model.safetensors", bad_model)
    flip_byte(bad_model)
    assert_error(run_cli(cli_env, "generate", "--model", bad_model), 2, "is corrupted")
    truncated = tmp_path / "model.safetensors"
    truncated.write_bytes((out / "model.safetensors").read_bytes()[:5000])
    assert_error(run_cli(cli_env, "eval", "--model", truncated, "--text", verdict_path), 2,
                 "is truncated")
    assert_error(run_cli(cli_env, "train", "--resume", out / "model.safetensors"), 2,
                 "is a model file")
    assert_error(run_cli(cli_env, "train", "--text", verdict_path, "--config", "small",
                         "--out", out), 2, "already holds a run", "--overwrite")
    assert_error(run_cli(cli_env, "eval", "--model", out, "--text", tmp_path / "missing.txt"),
                 2, "missing.txt does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run_cli(cli_env, "generate", "--model", empty), 2, "holds no model")


def test_debug_shows_the_traceback(cli_env):
    result = run_cli(cli_env, "generate", "--model", "gpt5", "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("tinygpt: error: unknown model")


# --- help, the installed script, selftest -----------------------------------------------------


def test_help_of_every_command_has_examples(capsys):
    for command in ([], ["train"], ["generate"], ["eval"], ["download"], ["selftest"]):
        assert cli.main(command + ["--help"]) == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: tinygpt"), command
        assert ("examples:" in text) or command == ["selftest"], command
    assert cli.main([]) == 2  # no command: the help, as a usage error
    assert "commands:" in capsys.readouterr().err


def test_python_dash_m_tinygpt_is_the_command(cli_env):
    result = subprocess.run([sys.executable, "-m", "tinygpt", "--help"], cwd=cli_env["WORKDIR"],
                            env=cli_env, capture_output=True, text=True, timeout=60)
    assert_ok(result)
    assert result.stdout.startswith("usage: tinygpt ") and "tinygpt train" in result.stdout
    assert_error(subprocess.run([sys.executable, "-m", "tinygpt", "generate", "--model", "gpt5"],
                                cwd=cli_env["WORKDIR"], env=cli_env, capture_output=True,
                                text=True, timeout=60), 2, "unknown model")


def test_help_texts_offer_what_each_command_uses(capsys):
    assert cli.main(["download", "--help"]) == 0
    download = capsys.readouterr().out
    assert "--threads" not in download and "--no-progress" in download  # nothing to compute
    assert cli.main(["selftest", "--help"]) == 0
    selftest = capsys.readouterr().out
    description = selftest.split("options:")[0]
    assert "parity" not in description and "no PyTorch" in description
    for command in ("generate", "eval"):
        assert cli.main([command, "--help"]) == 0
        assert "--no-progress" in capsys.readouterr().out, command


def test_a_missing_verdict_given_with_text_says_how_to_leave_it_out(cli_env):
    result = run_cli(cli_env, "train", "--text", "the-verdict.txt", "--config", "small",
                     "--out", Path(cli_env["WORKDIR"]) / "never")
    assert_error(result, 2, "the-verdict.txt does not exist", "leave out --text",
                 "TINYGPT_DATA, the cache or a download")


@pytest.mark.skipif(shutil.which("tinygpt") is None, reason="the tinygpt script is not on PATH")
def test_installed_script(cli_env, trained):
    result = run_cli(cli_env, "--help", script=True)
    assert_ok(result)
    assert "tinygpt train" in result.stdout
    version = run_cli(cli_env, "--version", script=True)
    assert_ok(version)
    assert version.stdout.startswith("tinygpt ")
    assert_error(run_cli(cli_env, "generate", "--model", "gpt5", script=True), 2,
                 "unknown model")
    gen = run_cli(cli_env, "generate", "--model", trained[0] / "model.safetensors",
                  "--max-new-tokens", 3, "-q", script=True)
    assert_ok(gen)


def test_selftest_passes(cli_env):
    started = time.perf_counter()
    result = run_cli(cli_env, "selftest")
    assert_ok(result)
    rows = [line for line in result.stdout.splitlines()
            if line.split()[-1:] and line[42:46] in ("PASS", "FAIL")]
    assert not [r for r in rows if r[42:46] == "FAIL"], result.stdout
    assert sum(r.startswith("gradient") for r in rows) >= 20, result.stdout
    # nothing outside the package: the torch comparison lives in tests/test_parity_torch.py
    assert {r.split()[0] for r in rows} == {"gradient", "training", "kv-cache", "save/load"}
    assert len(rows) == sum(r.startswith("gradient") for r in rows) + 4, result.stdout
    assert " 0 failed in " in result.stdout
    assert time.perf_counter() - started < 600  # generous: the brief says < 1 min on a laptop


def test_selftest_fails_loudly_on_a_wrong_gradient(monkeypatch, capsys):
    """The checker catches a 1% error in one op's backward, and the command exits 1."""
    from tinygpt import fused
    from tinygpt.app import selftest

    right = fused.FusedGELU.backward
    monkeypatch.setattr(fused.FusedGELU, "backward", lambda self, dy: right(self, dy) * 1.01)
    results = {r.label.split()[-1]: r for r in selftest.run_checks() if r.group == "gradient"}
    assert results["FusedGELU"].status == "FAIL" and results["FusedGELU"].error > 1e-3
    assert results["FusedGELU"].note.startswith("FusedGELU: ")
    assert "analytic" in results["FusedGELU"].note
    assert results["FusedLayerNorm"].status == "PASS"
    assert cli.main(["selftest"]) == 1
    assert "FAILED: gradient FusedGELU" in capsys.readouterr().out
