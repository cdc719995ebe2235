"""Philox4x32-10: the counter-based random numbers behind dropout on the GPU.

A counter-based generator is a pure function, ``block = philox(counter, key)``: four
random 32-bit words for every 128-bit counter. Nothing has to be advanced in order, so
each GPU thread computes the random numbers of its own elements, and the backward pass
recomputes a dropout mask instead of storing it. (Salmon, Moraes, Dror and Shaw,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011; cuRAND and PyTorch use the same
generator on GPUs.)

tinygpt's dropout draw number ``d`` (the d-th mask since ``manual_seed(seed)``), for
element ``i`` of the flattened array:

    key      = (seed mod 2^32, seed div 2^32)
    counter  = (i div 4 mod 2^32, i div 2^34, d mod 2^32, d div 2^32)
    u_i      = (word (i mod 4) of philox(counter, key)  >> 8) * 2^-24     in [0, 1)
    keep_i   = u_i >= p

``u_i`` has 24 random bits, so it is exact in float32. The CUDA kernels compute exactly
this (``kernels.cu``); the functions below are their twin in array code, run on the
CPU with NumPy, or on the GPU with CuPy by the tests that compare the two.
"""

import numpy

# The multipliers and the key increments (Weyl sequence) of Philox4x32.
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
_LOW32 = 0xFFFFFFFF


def philox4x32(counter, key, xp=numpy):
    """Philox4x32-10 of each counter.

    counter: four uint32 arrays of one shape (or Python ints); key: two Python ints.
    Returns the four uint32 words of each block, as four arrays of that shape."""
    u64 = numpy.uint64  # every operand uint64: NumPy 1.x turns uint64 (op) Python int into float64
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) for c in counter)
    k0, k1 = int(key[0]) & _LOW32, int(key[1]) & _LOW32
    m0, m1, low32, shift = u64(M0), u64(M1), u64(_LOW32), u64(32)
    for r in range(ROUNDS):
        if r > 0:
            k0, k1 = (k0 + W0) & _LOW32, (k1 + W1) & _LOW32
        p0 = c0 * m0  # 32 x 32 -> 64-bit products: exact in uint64
        p1 = c2 * m1
        c0, c1, c2, c3 = ((p1 >> shift) ^ c1 ^ u64(k0), p1 & low32,
                          (p0 >> shift) ^ c3 ^ u64(k1), p0 & low32)
    return tuple(c.astype(xp.uint32) for c in (c0, c1, c2, c3))


def uniforms(shape, seed, draw, xp=numpy):
    """float32 uniforms in [0, 1) of dropout draw ``draw`` after ``manual_seed(seed)``."""
    n = int(numpy.prod(shape, dtype=numpy.int64))
    blocks = xp.arange((n + 3) // 4, dtype=xp.uint64)
    draw = int(draw)
    words = philox4x32(
        (blocks & _LOW32, blocks >> 32, draw & _LOW32, (draw >> 32) & _LOW32),
        (seed & _LOW32, (seed >> 32) & _LOW32), xp,
    )
    words = xp.stack(words, axis=-1).reshape(-1)[:n]  # element i: word i % 4 of block i // 4
    return ((words >> 8).astype(xp.float32) * xp.float32(2.0**-24)).reshape(shape)
