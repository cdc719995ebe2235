"""``torch.utils`` for tinygpt: only ``data`` (``Dataset``, ``DataLoader``)."""

from . import data

__all__ = ["data"]
