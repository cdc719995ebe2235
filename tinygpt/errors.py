"""The errors tinygpt raises on purpose: one base, one branch per concern.

    TinygptError
    ├── FileFormatError (ValueError)       a file that is damaged or of another format
    │   │                                    (.path), e.g. Hugging Face's GPT-2 (io/hf_gpt2.py)
    │   ├── CheckpointError                  our safetensors files: load_model, load_checkpoint,
    │   │   │                                tinygpt.load (which also refuses pickles)
    │   │   └── ModelFileNotCheckpointError  load_checkpoint was given a model file
    │   └── TFCheckpointError                OpenAI's TensorFlow checkpoint (io/tf_checkpoint.py)
    │       ├── ChecksumError                a tensor or block fails its crc32c; .tensor
    │       ├── UnsupportedDtypeError        a dtype NumPy cannot hold
    │       └── MissingVariableError (KeyError)
    ├── DownloadError (OSError)            a GPT-2 file could not be fetched from any URL
    ├── GPT2FilesMissingError (FileNotFoundError)
    │                                      GPT-2 files absent or bad with downloading off
    ├── TextSourceError                    "The Verdict" (io/textsource.py)
    │   ├── VerdictChecksumError (ValueError)
    │   └── VerdictNotFoundError (FileNotFoundError)
    ├── TokenizerFilesError (RuntimeError) the GPT-2 vocabulary files
    ├── RunFolderError (ValueError)        a training output folder that holds another run,
    │                                      or that a running training writes into (workflow.py)
    ├── BackendError (RuntimeError)        NumPy / CuPy, devices: in backend.py
    └── TrainingDivergedError (RuntimeError)
                                           the loss became NaN or infinite: in train.py

The builtin bases stay what they were, so ``except ValueError`` or ``except OSError``
in user code keeps working; ``tinygpt.app.cli`` turns each branch into an exit status.
Bad arguments are plain ValueError / TypeError (see ``tinygpt.checks``).
"""

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "DownloadError",
    "FileFormatError",
    "GPT2FilesMissingError",
    "MissingVariableError",
    "ModelFileNotCheckpointError",
    "RunFolderError",
    "TFCheckpointError",
    "TextSourceError",
    "TinygptError",
    "TokenizerFilesError",
    "UnsupportedDtypeError",
    "VerdictChecksumError",
    "VerdictNotFoundError",
]


class TinygptError(Exception):
    """Base of every error tinygpt raises on purpose; the message says what to do."""


# --- files ------------------------------------------------------------------------


class FileFormatError(TinygptError, ValueError):
    """A file that is damaged, truncated or of another format; ``.path`` names it (or None).

    Raised as it is for Hugging Face's GPT-2 files (io/hf_gpt2.py)."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class CheckpointError(FileFormatError):
    """A model file or checkpoint that cannot be saved or loaded; ``.path`` names the file
    and ``.problem`` says what is wrong."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}", path)
        self.problem = problem


class ModelFileNotCheckpointError(CheckpointError):
    """``load_checkpoint`` was given a model file: weights and config, but no optimizer or
    training state to resume."""


class TFCheckpointError(FileFormatError):
    """A TensorFlow checkpoint that is malformed, truncated or of another format."""


class ChecksumError(TFCheckpointError):
    """Stored and computed crc32c differ: the file is corrupted.

    ``path`` is the corrupted file; ``tensor`` the tensor's name (None for an
    index block)."""

    def __init__(self, message, path=None, tensor=None):
        super().__init__(message, path)
        self.tensor = tensor


class UnsupportedDtypeError(TFCheckpointError):
    """A tensor's dtype has no NumPy counterpart here (string, bfloat16, ...)."""


class MissingVariableError(TFCheckpointError, KeyError):
    """The checkpoint has no tensor of that name."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0])


# --- downloads --------------------------------------------------------------------


class DownloadError(TinygptError, OSError):
    """A GPT-2 file could not be fetched from any URL."""


class GPT2FilesMissingError(TinygptError, FileNotFoundError):
    """GPT-2's files in ``folder`` are missing or bad and downloading is off.

    ``size`` is the model size ("124M"), ``problems`` maps each bad file's name to what
    is wrong with it, ``listing`` says that in lines; the message adds ``advice``."""

    def __init__(self, size, folder, problems, advice):
        self.size, self.folder, self.problems = size, folder, dict(problems)
        lines = "".join(f"\n  {name}: {why}" for name, why in self.problems.items())
        self.listing = f"GPT-2 {size} files in {folder} are incomplete:{lines}"
        super().__init__(f"{self.listing}\n{advice}")


# --- the text, the tokenizer ------------------------------------------------------


class TextSourceError(TinygptError):
    """"The Verdict" could not be found, fetched or verified."""


class VerdictChecksumError(TextSourceError, ValueError):
    """A file that should be "The Verdict" has different contents."""


class VerdictNotFoundError(TextSourceError, FileNotFoundError):
    """No copy of "The Verdict" was found and none could be downloaded."""


class TokenizerFilesError(TinygptError, RuntimeError):
    """The GPT-2 vocabulary files are missing, altered or inconsistent."""


class RunFolderError(TinygptError, ValueError):
    """A training run's output folder can't be used: it holds another run (pass
    ``--overwrite`` to replace it) or another process is training into it (its lock file
    names the process)."""

