"""File formats and downloads: what goes in and out of the chapter's model.

    checkpoint.py     section 5.4: model files and training checkpoints (safetensors)
    serialization.py  torch.save / torch.load on the same safetensors writer and reader
    pretrained.py     section 5.5: OpenAI's GPT-2 weights, downloaded and loaded
    tf_checkpoint.py  a NumPy reader for TensorFlow checkpoints (OpenAI's format)
    hf_gpt2.py        Hugging Face's GPT-2 files, read and written
    textsource.py     "The Verdict": found on disk or downloaded, checked by sha256
    files.py          what a path is before it is opened; atomic writes beside the target

Their public names are importable from ``tinygpt`` itself; the errors they raise are
in ``tinygpt.errors``.
"""
