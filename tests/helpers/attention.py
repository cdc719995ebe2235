"""The middle of the book's MultiHeadAttention on fused.FusedCausalAttention, for the tests
that check the attention op (gradients, dropout, kernels) without a whole model."""

from tinygpt.fused import FusedCausalAttention
from tinygpt.tensor import Tensor


def multi_head_attention(queries, keys, values, num_heads, dropout_p=0.0):
    """Causal self-attention of (b, num_tokens, d_out) projections, split into
    ``num_heads`` heads and merged back (``model.py`` writes the same steps out)."""
    b, num_tokens, d_out = queries.shape
    head_dim = d_out // num_heads

    def heads(t):  # (b, num_tokens, d_out) -> (b, num_heads, num_tokens, head_dim)
        return t.view(b, num_tokens, num_heads, head_dim).transpose(1, 2)

    queries, keys, values = (heads(t if isinstance(t, Tensor) else Tensor(t))
                             for t in (queries, keys, values))
    context_vec = FusedCausalAttention.apply(queries, keys, values, dropout_p=dropout_p)
    return context_vec.transpose(1, 2).reshape(b, num_tokens, d_out)
