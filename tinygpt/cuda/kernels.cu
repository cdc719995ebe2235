// The CUDA kernels of tinygpt's CuPy backend (compiled at run time by NVRTC).
//
// Each kernel does in one pass what a few lines of array code do in ops.py, optim.py or
// kv_cache.py; those lines are its twin, and tests/test_cuda_kernels.py compares the two
// on a GPU. Python wrappers, with the shapes: tinygpt/cuda/kernels.py.
//
// float32 only; arrays are C-contiguous (the wrappers make sure). Layout of a launch:
// "grid-stride" kernels cover n elements with any grid; "row" kernels take one block
// (or one warp) per row.

#define NEG_INF __int_as_float(0xff800000)
#define GELU_C 0.7978845608028654f  // sqrt(2 / pi)

// ---------------------------------------------------------------------------------
// Reductions inside a warp and a block.

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum (or max) over the whole block; every thread gets the result. `shared`: 32 floats.
__device__ float block_sum(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // `shared` may still be read by a previous reduction
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < n_warps ? shared[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < n_warps ? shared[lane] : NEG_INF;
    return warp_max(v);
}

// ---------------------------------------------------------------------------------
// Philox4x32-10 and dropout's uniforms (tinygpt/philox.py is the twin and the spec):
// element i of draw d: word i % 4 of philox((i / 4, d), seed), top 24 bits / 2^24.

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k.x += 0x9E3779B9u;
            k.y += 0xBB67AE85u;
        }
        unsigned int hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// The uniforms of one dropout draw (the seed is the key; the draw number fills the upper
// half of the counter), computing each Philox block once for consecutive elements.
struct Uniforms {
    uint2 key, draw;
    unsigned long long block;
    uint4 words;

    __device__ Uniforms(unsigned int key0, unsigned int key1, unsigned int draw0,
                        unsigned int draw1)
        : key(make_uint2(key0, key1)), draw(make_uint2(draw0, draw1)), block(~0ull) {}

    __device__ float at(unsigned long long i) {
        unsigned long long b = i >> 2;
        if (b != block) {
            block = b;
            words = philox4x32_10(make_uint4((unsigned int)b, (unsigned int)(b >> 32),
                                             draw.x, draw.y), key);
        }
        unsigned int w = (i & 3) == 0 ? words.x : (i & 3) == 1 ? words.y
                       : (i & 3) == 2 ? words.z : words.w;
        return (float)(w >> 8) * 5.9604644775390625e-08f;  // 2^-24
    }
};

// y = x * (u >= p ? scale : 0)   (grid-stride over groups of 4 elements: one Philox block
// each). Dropout's backward is the same call on dy with the same draw.
extern "C" __global__ void dropout_apply(const float* x, float* y, long long n,
                                         unsigned int key0, unsigned int key1,
                                         unsigned int draw0, unsigned int draw1, float p,
                                         float scale) {
    Uniforms u(key0, key1, draw0, draw1);
    long long n_groups = (n + 3) >> 2;
    for (long long g = blockIdx.x * (long long)blockDim.x + threadIdx.x; g < n_groups;
         g += (long long)gridDim.x * blockDim.x) {
        for (int k = 0; k < 4; ++k) {
            long long i = 4 * g + k;
            if (i < n) y[i] = x[i] * (u.at(i) >= p ? scale : 0.0f);
        }
    }
}

// ---------------------------------------------------------------------------------
// GELU, GPT-2's tanh form:  y = 0.5 x (1 + tanh(c (x + 0.044715 x^3)))

extern "C" __global__ void gelu_forward(const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        float t = tanhf(GELU_C * (v + 0.044715f * v * v * v));
        y[i] = 0.5f * v * (1.0f + t);
    }
}

// dx = dy (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2))
extern "C" __global__ void gelu_backward(const float* x, const float* dy, float* dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i], v2 = v * v;
        float t = tanhf(GELU_C * (v + 0.044715f * v2 * v));
        float dt = GELU_C * (1.0f + 3.0f * 0.044715f * v2);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dt);
    }
}

// ---------------------------------------------------------------------------------
// Layer norm over rows of C: one warp per row.
//   y = (x - mean) * rstd * scale + shift,  rstd = 1 / sqrt(var + eps)
// mean and rstd (one per row) are kept for the backward.

extern "C" __global__ void layernorm_forward(const float* x, const float* scale,
                                             const float* shift, float* y, float* mean_out,
                                             float* rstd_out, int rows, int C, float eps) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (long long)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += xr[c];
    float mean = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = xr[c] - mean;
        v += d * d;
    }
    float rstd = 1.0f / sqrtf(warp_sum(v) / C + eps);
    float* yr = y + (long long)row * C;
    for (int c = lane; c < C; c += 32) yr[c] = (xr[c] - mean) * rstd * scale[c] + shift[c];
    if (lane == 0) {
        mean_out[row] = mean;
        rstd_out[row] = rstd;
    }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)),  g = dy * scale,  per row (one warp).
// Also writes dy * xhat, whose column sums (dscale) the wrapper takes with a deterministic
// reduction (atomics would make every run round differently).
extern "C" __global__ void layernorm_backward(const float* dy, const float* x,
                                              const float* scale, const float* mean,
                                              const float* rstd, float* dx, float* dy_xhat,
                                              int rows, int C) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    long long base = (long long)row * C;
    float m = mean[row], r = rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[base + c] - m) * r, g = dy[base + c] * scale[c];
        sum_g += g;
        sum_gx += g * xhat;
    }
    float mean_g = warp_sum(sum_g) / C, mean_gx = warp_sum(sum_gx) / C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[base + c] - m) * r, g = dy[base + c] * scale[c];
        dx[base + c] = r * (g - mean_g - xhat * mean_gx);
        dy_xhat[base + c] = dy[base + c] * xhat;
    }
}

// ---------------------------------------------------------------------------------
// Causal attention's weights, one block per row of the (B, H, T, T) scores; row r is
// query t = r mod T, which sees keys 0..t.
//   forward:  P = softmax(S * scale) over keys 0..t (0 beyond), Pd = P * dropout mask
//   backward: dP = dPd * mask,  dS = (dP - sum(dP * P)) * P * scale

extern "C" __global__ void attention_softmax_forward(float* S, float* Pd, int T, float scale,
                                                     int dropout, unsigned int key0,
                                                     unsigned int key1, unsigned int draw0,
                                                     unsigned int draw1, float p,
                                                     float keep_scale) {
    __shared__ float shared[32];
    long long r = blockIdx.x, base = r * T;
    int n = (int)(r % T) + 1;
    float* row = S + base;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, row[j] * scale);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(row[j] * scale - m);
    s = block_sum(s, shared);
    Uniforms u(key0, key1, draw0, draw1);
    // each thread writes 4 consecutive entries, so they share one Philox block
    for (int j0 = 4 * threadIdx.x; j0 < T; j0 += 4 * blockDim.x) {
        for (int j = j0; j < j0 + 4 && j < T; ++j) {
            float pj = j < n ? expf(row[j] * scale - m) / s : 0.0f;
            row[j] = pj;
            if (dropout) Pd[base + j] = j < n ? pj * (u.at(base + j) >= p ? keep_scale : 0.0f)
                                              : 0.0f;
        }
    }
}

extern "C" __global__ void attention_softmax_backward(float* dP, const float* P, int T,
                                                      float scale, int dropout,
                                                      unsigned int key0, unsigned int key1,
                                                      unsigned int draw0, unsigned int draw1,
                                                      float p, float keep_scale) {
    __shared__ float shared[32];
    long long r = blockIdx.x, base = r * T;
    int n = (int)(r % T) + 1;
    Uniforms u(key0, key1, draw0, draw1);
    float acc = 0.0f;
    for (int j0 = 4 * threadIdx.x; j0 < n; j0 += 4 * blockDim.x) {
        for (int j = j0; j < j0 + 4 && j < n; ++j) {
            float g = dP[base + j];
            if (dropout) {
                g = g * (u.at(base + j) >= p ? keep_scale : 0.0f);
                dP[base + j] = g;  // read back below by this same thread
            }
            acc += g * P[base + j];
        }
    }
    acc = block_sum(acc, shared);
    for (int j0 = 4 * threadIdx.x; j0 < T; j0 += 4 * blockDim.x) {
        for (int j = j0; j < j0 + 4 && j < T; ++j)
            dP[base + j] = j < n ? (dP[base + j] - acc) * P[base + j] * scale : 0.0f;
    }
}

// ---------------------------------------------------------------------------------
// Cross-entropy over rows of V logits, one block per row.
//   forward:  lse = log(sum(exp(z))) (one pass, running max), loss_row = lse - z[target]
//             (0 for rows whose target is ignore_index)
//   backward: dz = (exp(z - lse) - onehot(target)) * coef,  coef = dloss / n_counted
//             (0 for ignored rows)

__device__ __forceinline__ void logsumexp_merge(float& m, float& s, float m2, float s2) {
    if (m2 == NEG_INF) return;
    if (m == NEG_INF) {
        m = m2;
        s = s2;
        return;
    }
    float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

extern "C" __global__ void cross_entropy_forward(const float* z, const long long* targets,
                                                 float* loss_rows, float* lse_out, int V,
                                                 long long ignore_index) {
    __shared__ float shared_m[32], shared_s[32];
    long long r = blockIdx.x;
    const float* row = z + r * V;
    float m = NEG_INF, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) logsumexp_merge(m, s, row[j], 1.0f);
    for (int offset = 16; offset > 0; offset >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        logsumexp_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    if (lane == 0) {
        shared_m[warp] = m;
        shared_s[warp] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < n_warps; ++w) logsumexp_merge(m, s, shared_m[w], shared_s[w]);
        float lse = m + logf(s);
        long long t = targets[r];
        lse_out[r] = lse;
        loss_rows[r] = t == ignore_index ? 0.0f : lse - row[t];
    }
}

extern "C" __global__ void cross_entropy_backward(const float* z, const long long* targets,
                                                  const float* lse, const float* coef,
                                                  float* dz, int V, long long ignore_index) {
    long long r = blockIdx.x, t = targets[r];
    const float* row = z + r * V;
    float* out = dz + r * V;
    if (t == ignore_index) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) out[j] = 0.0f;
        return;
    }
    float l = lse[r], c = coef[0];
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        out[j] = (expf(row[j] - l) - (j == t ? 1.0f : 0.0f)) * c;
}

// ---------------------------------------------------------------------------------
// Embedding backward without atomics: dW[v] = sum of dy rows whose id is v, added in
// the order they appear (the ids arrive stably sorted, with `order` the original row of
// each), so the result is the same bits on every run and equals NumPy's add.at.
// One block per sorted position; only the first position of each run of an id writes.

extern "C" __global__ void embedding_backward(const long long* sorted_ids,
                                              const long long* order, const float* dy,
                                              float* dW, long long N, int C) {
    long long i = blockIdx.x;
    long long id = sorted_ids[i];
    if (i > 0 && sorted_ids[i - 1] == id) return;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (long long k = i; k < N && sorted_ids[k] == id; ++k) acc += dy[order[k] * C + c];
        dW[id * C + c] = acc;
    }
}

// ---------------------------------------------------------------------------------
// AdamW, one pass over a parameter (torch's update, in the order optim.py writes it):
//   p = p * decay
//   m = m + (g - m) * (1 - beta1)
//   v = v * beta2 + g * g * (1 - beta2)
//   p = p - m / (sqrt(v) / bias2_sqrt + eps) * step_size
// Written with round-to-nearest intrinsics so no multiply-add is fused: the GPU rounds
// every step as NumPy does, and the result is the same bits as the CPU twin.

extern "C" __global__ void adamw_update(float* p, const float* g, float* m, float* v,
                                        long long n, float decay, float one_minus_beta1,
                                        float beta2, float one_minus_beta2, float bias2_sqrt,
                                        float eps, float step_size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float gi = g[i];
        float pi = __fmul_rn(p[i], decay);
        float mi = __fadd_rn(m[i], __fmul_rn(__fsub_rn(gi, m[i]), one_minus_beta1));
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(gi, gi), one_minus_beta2));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias2_sqrt), eps);
        p[i] = __fsub_rn(pi, __fmul_rn(__fdiv_rn(mi, denom), step_size));
        m[i] = mi;
        v[i] = vi;
    }
}

// ---------------------------------------------------------------------------------
// One decoding step with a KV cache: B rows, one new position each. These kernels use
// no library calls and allocate nothing, so the whole step can be captured once as a
// CUDA graph and replayed per token. `step` holds (position, id of row 0, ..., row B-1).

// x[b] = wte[id_b] + wpe[position]
extern "C" __global__ void decode_embed(const long long* step, const float* wte,
                                        const float* wpe, float* x, int B, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * C) return;
    int b = i / C, c = i % C;
    x[i] = wte[step[1 + b] * C + c] + wpe[step[0] * C + c];
}

__device__ __forceinline__ float gelu(float v) {
    return 0.5f * v * (1.0f + tanhf(GELU_C * (v + 0.044715f * v * v * v)));
}

// y[b, n] = act(x[b] . W[n] + bias[n]) + residual[b, n]     x: (B, K)  W: (N, K)  y: (B, N)
// One warp per output feature n (its row of W read once, coalesced), all B rows at once
// in groups of 8. y may be the residual itself (each element is read, then written, by
// the same thread).
extern "C" __global__ void decode_linear(const float* x, const float* W, const float* bias,
                                         const float* residual, float* y, int B, int K, int N,
                                         int use_bias, int use_gelu, int use_residual) {
    int n = (int)((blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (n >= N) return;
    const float* w = W + (long long)n * K;
    for (int b0 = 0; b0 < B; b0 += 8) {
        float acc[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
        for (int k = lane; k < K; k += 32) {
            float wk = w[k];
#pragma unroll
            for (int i = 0; i < 8; ++i)
                if (b0 + i < B) acc[i] += wk * x[(long long)(b0 + i) * K + k];
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (b0 + i >= B) break;  // the same for every lane of the warp
            float v = warp_sum(acc[i]);
            if (lane == 0) {
                long long o = (long long)(b0 + i) * N + n;
                if (use_bias) v += bias[n];
                if (use_gelu) v = gelu(v);
                if (use_residual) v += residual[o];
                y[o] = v;
            }
        }
    }
}

// Attention of the new position over the cache, one block per (row b, head h):
// store k, v at `position`, then  out = softmax(q . K[0..position] * scale) V[0..position].
// q, k, v, out: (B, H * D);  K, V: (B, H, L, D).  Dynamic shared memory:
// (L + D + blockDim.x) floats.
extern "C" __global__ void decode_attention(const long long* step, const float* q,
                                            const float* k, const float* v, float* K,
                                            float* V, float* out, int H, int L, int D,
                                            float scale) {
    extern __shared__ float shm[];
    __shared__ float shared[32];
    float* scores = shm;               // L
    float* qs = shm + L;               // D
    float* partial = shm + L + D;      // blockDim.x
    int bh = blockIdx.x, b = bh / H, h = bh % H, C = H * D;
    int position = (int)step[0];
    float* Kc = K + (long long)bh * L * D;
    float* Vc = V + (long long)bh * L * D;
    long long col = (long long)b * C + h * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        qs[d] = q[col + d];
        Kc[(long long)position * D + d] = k[col + d];
        Vc[(long long)position * D + d] = v[col + d];
    }
    __syncthreads();
    // one warp per key: lanes read the key's D values side by side
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int j = warp; j <= position; j += n_warps) {
        float s = 0.0f;
        for (int d = lane; d < D; d += 32) s += qs[d] * Kc[(long long)j * D + d];
        s = warp_sum(s);
        if (lane == 0) scores[j] = s * scale;
    }
    __syncthreads();
    float m = NEG_INF;
    for (int j = threadIdx.x; j <= position; j += blockDim.x) m = fmaxf(m, scores[j]);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int j = threadIdx.x; j <= position; j += blockDim.x) {
        float e = expf(scores[j] - m);
        scores[j] = e;
        s += e;
    }
    s = block_sum(s, shared);  // its barriers also publish the exponentials
    // thread (group gi, dimension d) sums keys gi, gi + groups, ...
    int groups = blockDim.x / D, d = threadIdx.x % D, gi = threadIdx.x / D;
    float acc = 0.0f;
    if (gi < groups)
        for (int j = gi; j <= position; j += groups) acc += scores[j] * Vc[(long long)j * D + d];
    partial[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < D) {
        float total = 0.0f;
        for (int g2 = 0; g2 < groups; ++g2) total += partial[g2 * D + threadIdx.x];
        out[col + threadIdx.x] = total / s;
    }
}
