"""A learner's GPT, typed against torch's names, running on tinygpt.

This is how a reader of chapters 2-4 would build the model with PyTorch: a Dataset of
sliding windows, multi-head attention with a registered causal-mask buffer and an
in-place ``masked_fill_``, a layer norm from ``mean`` and ``var``, the tanh GELU from
``torch.pow``, and the blocks stacked in ``nn.Sequential``. Only the imports say tinygpt.
It is written for these tests, in our own words; the attribute names are the book's,
so its state dict is interchangeable with tinygpt's fused ``GPTModel``.

Nothing here calls tinygpt's fused ops directly: every step goes through the autograd
primitives (matmul, view, transpose, softmax, ...), which is what the tests compare
with the fused model, and what ``bench/bench_unfused.py`` times.
"""

import tinygpt as torch
import tinygpt.nn as nn
from tinygpt.utils.data import DataLoader, Dataset


class SlidingWindows(Dataset):
    """(input, target) pairs: windows of ``length`` token ids, ``step`` apart, and the same
    windows one token later."""

    def __init__(self, token_ids, length, step):
        starts = range(0, len(token_ids) - length, step)
        self.pairs = [(torch.tensor(token_ids[s:s + length]),
                       torch.tensor(token_ids[s + 1:s + length + 1])) for s in starts]

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]


def make_loader(token_ids, batch_size, length, shuffle, drop_last):
    return DataLoader(SlidingWindows(token_ids, length, length), batch_size=batch_size,
                      shuffle=shuffle, drop_last=drop_last, num_workers=0)


class Attention(nn.Module):
    def __init__(self, width, context_length, heads, drop_rate, qkv_bias):
        super().__init__()
        self.heads, self.head_width = heads, width // heads
        self.W_query = nn.Linear(width, width, bias=qkv_bias)
        self.W_key = nn.Linear(width, width, bias=qkv_bias)
        self.W_value = nn.Linear(width, width, bias=qkv_bias)
        self.out_proj = nn.Linear(width, width)
        self.dropout = nn.Dropout(drop_rate)
        future = torch.triu(torch.ones(context_length, context_length), diagonal=1)
        self.register_buffer("mask", future)

    def split_heads(self, x):  # (b, n, width) -> (b, heads, n, head_width)
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_width).transpose(1, 2)

    def forward(self, x):
        b, n, width = x.shape
        q = self.split_heads(self.W_query(x))
        k = self.split_heads(self.W_key(x))
        v = self.split_heads(self.W_value(x))
        scores = q @ k.transpose(2, 3)  # (b, heads, n, n)
        scores.masked_fill_(self.mask.bool()[:n, :n], -torch.inf)
        weights = torch.softmax(scores / self.head_width ** 0.5, dim=-1)
        weights = self.dropout(weights)
        mixed = (weights @ v).transpose(1, 2).contiguous()  # (b, n, heads, head_width)
        return self.out_proj(mixed.view(b, n, width))


class Norm(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(width))
        self.shift = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        spread = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (centred / torch.sqrt(spread + self.eps)) + self.shift


class TanhGELU(nn.Module):
    def forward(self, x):
        c = torch.sqrt(torch.tensor(2.0 / torch.pi))
        return 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3))))


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, 4 * width), TanhGELU(),
                                    nn.Linear(4 * width, width))

    def forward(self, x):
        return self.layers(x)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.att = Attention(cfg["emb_dim"], cfg["context_length"], cfg["n_heads"],
                             cfg["drop_rate"], cfg["qkv_bias"])
        self.ff = MLP(cfg["emb_dim"])
        self.norm1 = Norm(cfg["emb_dim"])
        self.norm2 = Norm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class TypedGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = Norm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, ids):
        _, n = ids.shape
        positions = torch.arange(n, device=ids.device)
        x = self.drop_emb(self.tok_emb(ids) + self.pos_emb(positions))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def loss_of(model, inputs, targets, device):
    inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def train(model, loader, optimizer, device, epochs):
    """A plain loop; returns the loss of every step."""
    losses = []
    for _ in range(epochs):
        model.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = loss_of(model, inputs, targets, device)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def greedy(model, ids, new_tokens, context):
    for _ in range(new_tokens):
        with torch.no_grad():
            logits = model(ids[:, -context:])[:, -1, :]
        ids = torch.cat((ids, torch.argmax(logits, dim=-1, keepdim=True)), dim=1)
    return ids
