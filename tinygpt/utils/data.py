"""``torch.utils.data`` for tinygpt: ``from tinygpt.utils.data import Dataset, DataLoader``.

The classes live in ``tinygpt/data.py`` beside the book's ``GPTDatasetV1``; this module
only gives them torch's address.
"""

from ..data import (
    DataLoader,
    Dataset,
    Subset,
    default_collate,
    default_convert,
    random_split,
)

__all__ = ["DataLoader", "Dataset", "Subset", "default_collate", "default_convert",
           "random_split"]
