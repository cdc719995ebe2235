"""Importing tinygpt changes nothing outside tinygpt: malloc is tuned only by training
entry points, plotting never switches matplotlib's backend, and threads are set at run
time, through ``tinygpt.set_num_threads`` or ``--threads``."""

import subprocess
import sys
import textwrap

import threadpoolctl

import tinygpt
from tinygpt import runtime
from tinygpt.app import cli


def run_python(code, **env):
    import os

    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, **env))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


MALLOPT_SPY = """
    import ctypes

    calls = []

    class SpyLibc:
        def __init__(self, name, *args, **kwargs):
            self.name = name

        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    real_cdll = ctypes.CDLL
    def spy_cdll(name, *args, **kwargs):
        return SpyLibc(name) if name == "libc.so.6" else real_cdll(name, *args, **kwargs)

    ctypes.CDLL = spy_cdll
"""


def test_import_does_not_tune_malloc():
    out = run_python(MALLOPT_SPY + """
    import tinygpt, tinygpt.app.cli, tinygpt.app.workflow
    print("after import", calls)
    """)
    assert "after import []" in out


def test_training_entry_points_tune_malloc():
    out = run_python(MALLOPT_SPY + """
    import tinygpt
    from tinygpt.train import train_model

    tinygpt.manual_seed(0)
    cfg = dict(tinygpt.GPT_CONFIG_124M, context_length=4, emb_dim=8,
               n_heads=2, n_layers=1)
    model = tinygpt.GPTModel(cfg)
    opt = tinygpt.AdamW(model.parameters(), lr=1e-3)
    batches = [(tinygpt.tensor([[1, 2, 3, 4]]), tinygpt.tensor([[2, 3, 4, 5]]))]
    train_model(model, batches, batches, opt, num_epochs=1, eval_freq=1, eval_iter=1,
                start_context="Hi", tokenizer=tinygpt.get_tokenizer(), progress=False,
                print_fn=lambda *a: None)
    print("after train_model", sorted(calls))
    """, TINYGPT_MALLOC_TUNING="1")
    assert "after train_model [(-3, 1073741824), (-1, 2147483647)]" in out


def test_plot_losses_leaves_the_backend_alone(tmp_path):
    """Drawing to a file doesn't even import pyplot; showing leaves the backend as set."""
    out = run_python(f"""
    import sys
    import matplotlib
    from tinygpt import plot_losses

    plot_losses([0, 1], [0, 10], [2.0, 1.0], [2.5, 2.0], path={str(tmp_path / "a.png")!r},
                show=False)
    print("pyplot imported:", "matplotlib.pyplot" in sys.modules)
    plot_losses([0, 1], [0, 10], [2.0, 1.0], [2.5, 2.0], path={str(tmp_path / "b.svg")!r})
    print("backend:", matplotlib.get_backend())
    """, MPLBACKEND="svg")
    assert "pyplot imported: False" in out
    assert "backend: svg" in out
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")


def blas_threads():
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"}


def test_threads_change_at_run_time():
    before = tinygpt.get_num_threads()
    try:
        tinygpt.set_num_threads(1)
        assert blas_threads() == {1} and tinygpt.get_num_threads() == 1
        tinygpt.set_num_threads(2)
        assert blas_threads() == {2} and tinygpt.get_num_threads() == 2
    finally:
        tinygpt.set_num_threads(before)


def test_threads_option_of_the_command_line(monkeypatch, capsys, tmp_path):
    asked = []
    monkeypatch.setattr(runtime, "set_num_threads", asked.append)
    cli.main(["eval", "--threads", "3", "--model", str(tmp_path / "none.safetensors")])
    cli.main(["--threads", "2", "eval", "--model", str(tmp_path / "none.safetensors")])
    assert asked == [3, 2]
    assert cli.main(["--threads", "0", "eval"]) == 2
    assert "--threads" in capsys.readouterr().err
