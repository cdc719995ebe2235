"""File formats and downloads: what goes in and out of the chapter's model.

    checkpoint.py     section 5.4: model files and training checkpoints (safetensors)
    records.py        the training state a checkpoint stores (TrainingState)
    serialization.py  torch.save / torch.load on the same safetensors writer and reader
    pretrained.py     section 5.5: OpenAI's GPT-2 weights, downloaded and loaded
    tf_checkpoint.py  a NumPy reader for TensorFlow checkpoints (OpenAI's format)
    hf_gpt2.py        Hugging Face's GPT-2 files, read and written
    textsource.py     "The Verdict": found on disk or downloaded, checked by sha256
    files.py          what a path is before it is opened; atomic writes; sha256
    progress.py       the progress bars of long reads, writes and downloads

Import their names from the modules (``from tinygpt.io.checkpoint import save_model``).
``tinygpt`` itself has the ones the book or torch uses: ``save`` and ``load``
(torch.save / torch.load), and section 5.5's ``download_and_load_gpt2``,
``load_weights_into_gpt``, ``assign`` and ``model_configs``, with the chapter's helpers
``gpt2_config`` and ``load_verdict``. The errors they raise are in ``tinygpt.errors``.
Nothing here imports the training loop or the command line.
"""
