"""Every shell command README.md shows works as written.

The commands are read from the README's fenced ``bash`` / ``sh`` / ``shell`` blocks (each
line, with ``\\`` continuations joined) and ``console`` blocks (the lines after ``$ ``), and
run in order, each with ``bash``, in one temporary working folder that sees the checkout's
files (so ``python demos/...`` works and ``runs/...`` lands in the temporary folder):

- the text is supplied as the README says, through ``TINYGPT_DATA``;
- nothing can reach the internet: downloads of GPT-2 come from a small synthetic "124M"
  served on 127.0.0.1 (``TINYGPT_GPT2_URL``), the text's download URL is a closed port,
  and tinygpt's cache is a temporary folder;
- ``tinygpt`` and ``python`` are this interpreter (small scripts first on ``PATH``).

Not run, and reported as skipped:

- ``pip ...``: installing would change the environment the suite runs in;
- a command whose trailing comment starts with ``long`` (``# long: the chapter's full
  run``): it takes too long for a test (the full run has a test and a demo of its own);
- a command whose trailing comment starts with ``GPU`` (``# GPU: ...``) when CuPy is not
  installed.
"""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers.file_server import FileServer, closed_port_url
from .helpers.gpt2_fixtures import write_gpt2_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
# TINYGPT_README: check a draft (a file of the same layout) before it becomes README.md
README = Path(os.environ.get("TINYGPT_README") or REPO_ROOT / "README.md")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
COMMAND_TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(os.name != "posix" or shutil.which("bash") is None,
                                reason="the README's commands are POSIX shell")


# --- reading the README -----------------------------------------------------------------------


def _comment_start(line):
    """Index of the ``#`` that starts a shell comment in ``line``, or None: a ``#`` at the
    start of a word, outside quotes."""
    quote = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return i
    return None


def split_comment(line):
    """(command, trailing comment without '#', or '')."""
    at = _comment_start(line)
    if at is None:
        return line.rstrip(), ""
    return line[:at].rstrip(), line[at + 1:].strip()


def shell_commands(markdown):
    """[(command as written, trailing comment)] of every fenced shell block, in order."""
    commands = []
    language = None
    pending = ""
    for raw in markdown.splitlines():
        fence = re.match(r"^\s*```\s*([\w+-]*)\s*$", raw)
        if fence:
            language = None if language is not None else (fence.group(1).lower() or "")
            pending = ""
            continue
        if language not in SHELL_LANGUAGES:
            continue
        line = raw.strip()
        if language == "console":
            if not pending:
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
        if not pending and (not line or line.startswith("#")):
            continue
        code, comment = split_comment(line)
        if code.endswith("\\"):
            pending += code[:-1].rstrip() + " "
            continue
        commands.append(((pending + code).strip(), comment))
        pending = ""
    return commands


def why_not_run(command, comment):
    """Why the test leaves ``command`` out (a phrase), or None to run it."""
    words = comment.lower()
    if re.match(r"(\w+=\S*\s+)*pip3?\s|(\w+=\S*\s+)*python3?\s+-m\s+pip\s", command + " "):
        return "installs packages (the suite runs in an installed environment)"
    if words.startswith("long"):
        return "marked long in the README"
    if words.startswith("gpu") and importlib.util.find_spec("cupy") is None:
        return "needs a GPU (CuPy is not installed)"
    return None


COMMANDS = shell_commands(README.read_text(encoding="utf-8")) if README.is_file() else []


# --- the sandbox the commands run in ----------------------------------------------------------




def _script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture(scope="module")
def gpt2_origin(tmp_path_factory):
    """A local server with a small synthetic GPT-2 "124M" (1 layer, 32 wide, context 1024,
    GPT-2's vocabulary) and the real encoder.json / vocab.bpe, so every file checks."""
    from tinygpt.tokenizer import gpt2_data_files

    folder = tmp_path_factory.mktemp("gpt2-origin") / "124M"
    write_gpt2_folder(folder, n_layer=1, n_embd=32, n_head=2, n_ctx=1024)
    encoder_json, vocab_bpe = gpt2_data_files()
    shutil.copyfile(encoder_json, folder / "encoder.json")
    shutil.copyfile(vocab_bpe, folder / "vocab.bpe")
    server = FileServer({f"/124M/{p.name}": p.read_bytes() for p in folder.iterdir()})
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, verdict_path, gpt2_origin):
    """(working folder, environment) shared by the README's commands, run in order."""
    work = tmp_path_factory.mktemp("readme")
    for entry in REPO_ROOT.iterdir():  # the checkout's files, seen from the working folder
        if entry.name not in (".git", "runs") and not entry.name.startswith("."):
            (work / entry.name).symlink_to(entry)
    bin_dir = tmp_path_factory.mktemp("bin")
    _script(bin_dir / "python", f'exec "{sys.executable}" "$@"')
    _script(bin_dir / "python3", f'exec "{sys.executable}" "$@"')
    _script(bin_dir / "tinygpt", f'exec "{sys.executable}" -m tinygpt "$@"')
    env = dict(os.environ)  # TINYGPT_BACKEND inherited: under cupy the commands run on it too
    for name in ("TINYGPT_DATA", "TINYGPT_CACHE", "XDG_CACHE_HOME"):
        env.pop(name, None)
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    dead = closed_port_url()
    env.update(
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *inherited]),
        TINYGPT_DATA=str(verdict_path.parent),  # as the README says to supply the text
        TINYGPT_CACHE=str(tmp_path_factory.mktemp("cache")),
        TINYGPT_GPT2_URL=gpt2_origin,
        TINYGPT_GPT2_BACKUP_URL=gpt2_origin,
        TINYGPT_VERDICT_URL=dead + "/the-verdict.txt",
        OPENBLAS_NUM_THREADS="1",
        MPLBACKEND="Agg",
        PYTHONIOENCODING="utf-8",
    )
    return work, env


# --- the tests --------------------------------------------------------------------------------


def test_the_readme_shows_commands_and_most_of_them_run():
    assert COMMANDS, f"no shell commands found in {README.name}'s ```bash blocks"
    run = [c for c, comment in COMMANDS if why_not_run(c, comment) is None]
    assert run, "every command of the README is skipped: nothing checks them"


@pytest.mark.parametrize("command,comment", COMMANDS,
                         ids=[re.sub(r"\s+", " ", c)[:60] for c, _ in COMMANDS])
def test_readme_command_works_as_written(request, command, comment):
    reason = why_not_run(command, comment)
    if reason:
        pytest.skip(f"not run: {reason}")
    work, env = request.getfixturevalue("sandbox")  # only for a command that runs
    result = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True,
                            text=True, encoding="utf-8", timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, (
        f"{command}\nexit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# --- the reader itself ------------------------------------------------------------------------


def test_reader_joins_continuations_reads_console_prompts_and_keeps_markers():
    markdown = "\n".join([
        "```bash",
        "# a comment line",
        "tinygpt train --config small --epochs 1 --out runs/quick   # fast",
        "tinygpt generate --model runs/quick \\",
        '    --prompt "a # inside quotes" --top-k 5',
        "python demos/train_verdict.py   # long: the chapter's full run",
        "pip install -e '.[test]'",
        "```",
        "```python",
        "print('not shell')",
        "```",
        "```console",
        "$ tinygpt --version",
        "tinygpt 0.1.0",
        "```",
    ])
    commands = shell_commands(markdown)
    assert commands == [
        ("tinygpt train --config small --epochs 1 --out runs/quick", "fast"),
        ('tinygpt generate --model runs/quick --prompt "a # inside quotes" --top-k 5', ""),
        ("python demos/train_verdict.py", "long: the chapter's full run"),
        ("pip install -e '.[test]'", ""),
        ("tinygpt --version", ""),
    ]
    assert [why_not_run(*c) is None for c in commands] == [True, True, False, False, True]
