"""The KV cache's one-position step on a GPU: ``CachedDecoder.feed`` as a fixed sequence
of kernels (``kernels.decode_*``), recorded once as a CUDA graph and replayed for every
new token. Its twin is ``CachedDecoder._forward`` (tinygpt/kv_cache.py), the model's
own forward with the cache, which tests/test_cuda_kernels.py compares it with.

Shapes: B batch, C emb_dim, V vocabulary.
"""

import os

import numpy

from ..backend import xp
from . import kernels
from .kernels import available


class KernelDecodeStep:
    """``CachedDecoder.feed`` for one new position, on a GPU (its twin: ``_forward``).

    The layers run as a fixed sequence of kernels (``kernels.decode_*``) over
    buffers allocated once, with the position and the new ids read from a small device
    array. Nothing in the sequence allocates, calls a library or waits for the host, so
    after a first eager step it is recorded as a CUDA graph and every later token is one
    graph launch instead of ~110 kernel launches from Python. TINYGPT_CUDA_GRAPHS=0
    keeps the eager launches. The graph holds the weights' addresses: if the model's
    arrays are replaced (not updated in place), the step records a new graph.
    """

    @staticmethod
    def applies(decoder):
        return (available(decoder.model.tok_emb.weight.array)
                and kernels.decode_attention_fits(decoder.window, decoder.head_dim))

    def __init__(self, decoder):
        self.decoder = decoder
        model, B = decoder.model, decoder.cache.batch_size
        C = int(model.cfg["emb_dim"])
        hidden = model.trf_blocks[0].ff.layers[0].weight.shape[0]
        V = model.out_head.weight.shape[0]
        f32 = numpy.float32
        self.step_host = numpy.zeros(1 + B, dtype=numpy.int64)  # position, then the ids
        self.step_in = xp.zeros(1 + B, dtype=numpy.int64)
        self.x, self.h = xp.empty((B, C), f32), xp.empty((B, C), f32)
        self.q, self.k, self.v = (xp.empty((B, C), f32) for _ in range(3))
        self.context, self.hidden = xp.empty((B, C), f32), xp.empty((B, hidden), f32)
        self.mean, self.rstd = xp.empty(B, f32), xp.empty(B, f32)
        self.logits = xp.empty((B, V), f32)
        self.use_graph = os.environ.get("TINYGPT_CUDA_GRAPHS", "1") != "0"
        self.graph, self.graph_arrays, self.graph_error = None, None, None
        self.calls = 0

    def __call__(self, next_ids, position):
        """Logits (B, V) after next_ids (host int64 (B,)) at ``position`` (host int)."""
        self.step_host[0] = position
        self.step_host[1:] = next_ids
        self.step_in.set(self.step_host)  # one small copy to the device per token
        if self.use_graph and self.calls > 0:  # the first step runs eagerly: a warm-up
            arrays = self._arrays()
            if self.graph is None or arrays != self.graph_arrays:
                self._record(arrays)
        if self.graph is not None:
            self.graph.launch()
        else:
            self._launch()
        self.calls += 1
        return self.logits.copy()  # the buffer is overwritten by the next token

    def _arrays(self):
        """The weight arrays the kernels read, by identity (replaced arrays: new graph)."""
        return [id(p.array) for p in self.decoder.model.parameters()]

    def _record(self, arrays):
        """Record ``_launch`` as a CUDA graph on a side stream (the launch replays it on
        the default stream, after the work already queued there). If recording fails,
        the step stays eager and ``graph_error`` says why."""
        self.graph = None
        stream = xp.cuda.Stream(non_blocking=True)
        xp.cuda.Device().synchronize()
        try:
            with stream:
                stream.begin_capture()
                try:
                    self._launch()
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # noqa: BLE001 - any failure: keep the eager launches
            self.use_graph, self.graph_error = False, f"{type(exc).__name__}: {exc}"
            return
        self.graph, self.graph_arrays = graph, arrays

    def _launch(self):
        """The one-position forward, kernel by kernel, on the current stream."""
        model, cache, step = self.decoder.model, self.decoder.cache, self.step_in
        x, h = self.x, self.h
        kernels.decode_embed(step, model.tok_emb.weight.array, model.pos_emb.weight.array, x)
        for layer, blk in enumerate(model.trf_blocks):
            att, ff = blk.att, blk.ff
            self._norm(x, blk.norm1, h)
            self._linear(h, att.W_query, self.q)
            self._linear(h, att.W_key, self.k)
            self._linear(h, att.W_value, self.v)
            kernels.decode_attention(step, self.q, self.k, self.v, cache.keys[layer],
                                   cache.values[layer], self.context)
            self._linear(self.context, att.out_proj, x, residual=x)
            self._norm(x, blk.norm2, h)
            self._linear(h, ff.layers[0], self.hidden, gelu=True)
            self._linear(self.hidden, ff.layers[2], x, residual=x)
        self._norm(x, model.final_norm, h)
        kernels.decode_linear(h, model.out_head.weight.array, None, self.logits)

    def _norm(self, x, ln, out):
        kernels.layer_norm_forward(x, ln.scale.array, ln.shift.array, ln.eps, out=out,
                                 mean=self.mean, rstd=self.rstd)

    @staticmethod
    def _linear(x, lin, out, gelu=False, residual=None):
        bias = None if lin.bias is None else lin.bias.array
        kernels.decode_linear(x, lin.weight.array, bias, out, gelu=gelu, residual=residual)
