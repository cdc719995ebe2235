"""The top floor: the ``tinygpt`` command and the training run it drives.

    cli.py       the ``tinygpt`` command: train, generate, eval, download, selftest
    options.py   the training options and their types, shared by the command and the demo
    workflow.py  one training run in one folder: config, checkpoints, metrics.csv, resume
    selftest.py  ``tinygpt selftest``: gradients, a short training run, the KV cache, save/load

Nothing below this folder imports it; ``python -m tinygpt`` runs ``cli.main``.
"""
