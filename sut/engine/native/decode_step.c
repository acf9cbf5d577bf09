/* The engine's whole batched step in one call: n rows (decode rows, prefills' tokens), through every
   layer to the logits of the rows that need them (float32, one thread).

   Built and loaded by sut/engine/native/library.py, with decode_attention.c (and sampling.c, the retry draws) in the
   same translation unit (included below) so the step calls the attention and the cache write directly. Why a step of our own:
   a decode step of this model is small (a 128-wide model: 1 to 128 rows through 128 x 384 .. 128 x 1536
   weights), and in eager torch it is ~80 operator calls whose fixed overhead, plus matmuls padded to 8
   rows for batch invariance, is most of its time (docs/engine.md). Here it is one call, no padding.

   Numerics, and why a row's bits never depend on the other rows: every output of a matmul is its bias
   followed by one fused multiply-add per input, in input order (one chain per output, whatever the
   row or column tiling around it); LayerNorm, GELU and the embeddings work on one row at a time; the
   attention is decode_attention.c's. The results agree with torch's to float rounding, not bit for
   bit (tests/test_native_step.py). */
#include "decode_attention.c"
#include "sampling.c"

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vf;
#define VW 16
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VFMA _mm512_fmadd_ps
#define VSET1 _mm512_set1_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vf;
#define VW 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VFMA _mm256_fmadd_ps
#define VSET1 _mm256_set1_ps
#else
typedef float vf;
#define VW 1
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VFMA(a, b, c) fmaf((a), (b), (c))
#define VSET1(x) (x)
#endif

/* The matmul's tile shapes, all built in; sut/engine/native/tiles.py times them on the model's shapes and
   picks one per machine (a shape tuned on one core is slow on another). A tile of TR rows x TV
   vectors keeps TR*TV accumulators, TV weight vectors and a broadcast in registers: AVX-512 has 32
   (embedded broadcasts), AVX2 16. */
#if VW == 16
#define TILES X(8, 2) X(12, 2) X(14, 2) X(8, 3) X(6, 4) X(4, 4)
#elif VW == 8
#define TILES X(4, 2) X(6, 2) X(5, 2) X(4, 3) X(3, 4)
#else
#define TILES X(4, 2) X(4, 4)
#endif
enum { MAX_TR = 16, MAX_TV = 4 };

/* The packed weights of a (K, N) matrix for a kernel of TV vectors: panel p holds columns p*PW ..
   p*PW+pw-1 (PW = TV * VW; pw = PW, or what is left for the last), K rows of pw floats, at wt + p*PW*K.
   A tile walks its panel front to back. */
int vector_width(void) { return VW; }

/* y[r, j0 + j] = b[j0 + j] + sum_k x[r, k] panel[k, j] for R rows and NV vectors of columns (b already
   offset to j0; NULL: no bias). R and NV are constants where this is inlined, so acc lives in registers.
   The chain of fused multiply-adds runs k = 0..K-1 for every output, so the tile shape changes nothing. */
static inline __attribute__((always_inline)) void tile(const float *x, int64_t K, const float *panel, int64_t pw,
                                                       const float *b, float *y, int64_t N, const int R,
                                                       const int NV) {
    vf acc[MAX_TR][MAX_TV];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = b ? VLOAD(b + c * VW) : VSET1(0.0f);
    for (int64_t k = 0; k < K; k++) {
        vf w[MAX_TV];
        for (int c = 0; c < NV; c++) w[c] = VLOAD(panel + k * pw + c * VW);
        for (int r = 0; r < R; r++) {
            const vf xr = VSET1(x[r * K + k]);
            for (int c = 0; c < NV; c++) acc[r][c] = VFMA(xr, w[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < NV; c++) VSTORE(y + r * N + c * VW, acc[r][c]);
}

#define TILE_CASE(R_) case R_: if (R_ <= TR) tile(x, K, panel, pw, b, y, N, R_, NV); break;
static inline __attribute__((always_inline)) void tile_rows(const float *x, int64_t K, const float *panel, int64_t pw,
                                                            const float *b, float *y, int64_t N, int64_t R,
                                                            const int TR, const int NV) {
    switch (R) {   /* constant row counts keep the accumulators in registers */
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7) TILE_CASE(8)
        TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12) TILE_CASE(13) TILE_CASE(14) TILE_CASE(15) TILE_CASE(16)
    }
}

/* y (n, N) = x (n, K) @ w + b (N) with tiles of TR rows x TV vectors, w packed in panels of TV * VW
   columns (above); b may be NULL (no bias). Panels outermost: a panel stays in L1 across the row tiles. */
static inline __attribute__((always_inline)) void linear_tiled(const float *x, int64_t n, int64_t K, const float *w,
                                                               const float *b, int64_t N, float *y, const int TR,
                                                               const int TV) {
    const int64_t PW = TV * VW;
    for (int64_t j0 = 0; j0 < N; j0 += PW) {
        const float *panel = w + j0 * K, *bj = b ? b + j0 : NULL;
        const int64_t pw = N - j0 < PW ? N - j0 : PW;
        if (pw % VW)                 /* a last panel not a whole number of vectors: the same chains, one by one */
            for (int64_t r = 0; r < n; r++)
                for (int64_t j = 0; j < pw; j++) {
                    float acc = bj ? bj[j] : 0.0f;
                    for (int64_t k = 0; k < K; k++) acc = fmaf(x[r * K + k], panel[k * pw + j], acc);
                    y[r * N + j0 + j] = acc;
                }
        else
            for (int64_t r0 = 0; r0 < n; r0 += TR) {
                const int64_t R = n - r0 < TR ? n - r0 : TR;
                if (pw == PW)
                    tile_rows(x + r0 * K, K, panel, pw, bj, y + r0 * N + j0, N, R, TR, TV);
                else         /* a narrower last panel: a vector of columns at a time */
                    for (int64_t v = 0; v < pw; v += VW)
                        tile_rows(x + r0 * K, K, panel + v, pw, bj ? bj + v : NULL, y + r0 * N + j0 + v, N, R, TR, 1);
            }
    }
}

typedef void (*linear_fn)(const float *x, int64_t n, int64_t K, const float *w, const float *b, int64_t N, float *y);
#define X(R, V)                                                                                               \
    static void linear_##R##x##V(const float *x, int64_t n, int64_t K, const float *w, const float *b, int64_t N, \
                                 float *y) { linear_tiled(x, n, K, w, b, N, y, R, V); }
TILES
#undef X
#define X(R, V) {R, V, linear_##R##x##V},
static const struct { int rows, vectors; linear_fn fn; } KERNELS[] = {TILES};
#undef X
enum { N_KERNELS = sizeof KERNELS / sizeof KERNELS[0] };

int kernel_count(void) { return N_KERNELS; }
int kernel_rows(int k) { return k >= 0 && k < N_KERNELS ? KERNELS[k].rows : 0; }
int kernel_vectors(int k) { return k >= 0 && k < N_KERNELS ? KERNELS[k].vectors : 0; }

/* One kernel's matmul on its own, for the tile timing, tests and benchmarks (sut/engine/native/library.py); w packed for
   that kernel. Returns -3 for a kernel that does not exist. */
int linear_packed(int64_t kernel, const float *x, int64_t n, int64_t K, const float *w, const float *b, int64_t N,
                  float *y) {
    if (kernel < 0 || kernel >= N_KERNELS) return -3;
    KERNELS[kernel].fn(x, n, K, w, b, N, y);
    return 0;
}

/* Sum of C floats in a fixed order: 8 running lane sums, then the lanes pairwise. */
static inline float sum_row(const float *x, int64_t C) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= C; i += 8)
        for (int j = 0; j < 8; j++) s[j] += x[i + j];
    for (int j = 0; i < C; i++, j++) s[j] += x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* torch.nn.functional.layer_norm over each of n rows of C: biased variance, eps inside the root. */
static void layer_norm(const float *x, int64_t n, int64_t C, const float *w, const float *b, float eps, float *y,
                       float *tmp) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        const float mean = sum_row(xr, C) / (float)C;
        for (int64_t i = 0; i < C; i++) tmp[i] = (xr[i] - mean) * (xr[i] - mean);
        const float inv = 1.0f / sqrtf(sum_row(tmp, C) / (float)C + eps);
        for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

/* GELU, exact form x/2 (1 + erf(x/sqrt 2)), in place on m floats. erf by Abramowitz & Stegun 7.1.26
   (absolute error below 1.5e-7), the approximation torch's own vectorised CPU erf uses, with the exp
   of decode_attention.c. */
static inline v8 gelu8(v8 v) {
    const v8 one = {1, 1, 1, 1, 1, 1, 1, 1}, z = v * 0.70710678118654752f;
    const v8i neg = z < 0.0f;
    const v8 a = (v8)((v8i)z & ~(v8i)(v8){-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f});  /* |z| */
    const v8 t = one / (a * 0.3275911f + 1.0f);
    v8 p = t * 1.061405429f - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const v8 e = one - p * t * exp_nonpos8(-(a * a));              /* erf(|z|) */
    const v8 erf = (v8)((neg & (v8i)(-e)) | (~neg & (v8i)e));
    return v * 0.5f * (one + erf);
}

static void gelu(float *x, int64_t m) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) store8(x + i, gelu8(load8(x + i)));
    if (i < m) {                     /* the last few through the same arithmetic */
        float tail[8] = {0};
        memcpy(tail, x + i, (size_t)(m - i) * sizeof(float));
        store8(tail, gelu8(load8(tail)));
        memcpy(x + i, tail, (size_t)(m - i) * sizeof(float));
    }
}

/* The weights, as an array of pointers: per layer (LAYER_PTRS of them) ln_1 weight, bias; c_attn
   weight transposed (C, 3C), bias; attn c_proj transposed (C, C), bias; ln_2 weight, bias; c_fc
   transposed (C, 4C), bias; mlp c_proj transposed (4C, C), bias. Then wte (V, C), wpe, wse, ln_f
   weight, bias, and the LM head transposed (C, V). */
enum { LAYER_PTRS = 12 };

/* Scratch the step needs for n rows (floats): the attention's, then x, h, y (n*C each), a (n*4C) and
   a row of C for LayerNorm. */
int64_t decode_step_scratch(int64_t n, int64_t C, int64_t nh, int64_t window) {
    return decode_attention_scratch(n, nh, window) + 7 * n * C + C;
}

/* One step of n rows: row r is token tok[r] at position pos[r] of slot slots[r], retry step steps[r]
   (meta is 4 x n int64: slots, tok, steps, pos). A decode row is one such row; a prefill is several
   rows of one slot at consecutive positions. Each layer writes every row's key and value into the
   cache kv (n_layer, 2, window, n_slots, nh, hd) before any row attends, and row r attends to keys
   0..pos[r] of its slot: a prefill's rows see each other causally, and a row's result is the same
   whether its sequence came in one call, in several, or a token at a time. A longer prefill may be
   split over calls in position order. The LM head runs on rows head[0..n_head-1] only: logits
   (n_head, V). The matmuls run KERNELS[kernel] (the weights packed for it). Returns 0, -1 for
   a head_dim the attention does not handle, -2 for an index out of range, -3 for a kernel that does not
   exist (nothing is written then). */
int decode_step(const int64_t *meta, int64_t n, const int64_t *head, int64_t n_head, const uint64_t *w,
                int64_t n_layer, int64_t C, int64_t nh, int64_t V, int64_t n_retry, float eps, float *kv,
                int64_t n_slots, int64_t window, float *logits, float *scratch, int64_t kernel) {
    const int64_t *slots = meta, *tok = meta + n, *steps = meta + 2 * n, *pos = meta + 3 * n, hd = C / nh;
    if (C % nh || hd % 8 || hd > 8 * MAX_CHUNKS) return -1;
    if (kernel < 0 || kernel >= N_KERNELS) return -3;
    const linear_fn linear = KERNELS[kernel].fn;
    for (int64_t r = 0; r < n; r++)
        if (slots[r] < 0 || slots[r] >= n_slots || pos[r] < 0 || pos[r] >= window || tok[r] < 0 || tok[r] >= V ||
            steps[r] < 0 || steps[r] >= n_retry)
            return -2;
    for (int64_t i = 0; i < n_head; i++)
        if (head[i] < 0 || head[i] >= n) return -2;
    const float *const *W = (const float *const *)w;
    const float *const *G = W + n_layer * LAYER_PTRS;
    float *att = scratch, *x = att + decode_attention_scratch(n, nh, window), *h = x + n * C, *y = h + n * C,
          *a = y + n * C, *tmp = a + 4 * n * C;
    int64_t lens[n];
    for (int64_t r = 0; r < n; r++) {
        lens[r] = pos[r] + 1;
        const float *te = G[0] + tok[r] * C, *pe = G[1] + pos[r] * C, *se = G[2] + steps[r] * C;
        for (int64_t i = 0; i < C; i++) x[r * C + i] = (te[i] + pe[i]) + se[i];   /* as model._embed */
    }
    const int64_t layer = 2 * window * n_slots * C, v_off = window * n_slots * C, p_stride = n_slots * C;
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int64_t l = 0; l < n_layer; l++) {
        const float *const *L = W + l * LAYER_PTRS;
        float *kvl = kv + l * layer;
        layer_norm(x, n, C, L[0], L[1], eps, h, tmp);
        linear(h, n, C, L[2], L[3], 3 * C, a);                                /* q, k, v */
        copy_kv(a, 3 * C, kvl, p_stride, v_off, slots, pos, n, C);                    /* inputs checked above */
        attend(a, 3 * C, kvl, p_stride, v_off, slots, lens, n, nh, hd, scale, y, C, att, window);
        linear(y, n, C, L[4], L[5], C, h);
        for (int64_t i = 0; i < n * C; i++) x[i] += h[i];
        layer_norm(x, n, C, L[6], L[7], eps, h, tmp);
        linear(h, n, C, L[8], L[9], 4 * C, a);
        gelu(a, 4 * n * C);
        linear(a, n, 4 * C, L[10], L[11], C, h);
        for (int64_t i = 0; i < n * C; i++) x[i] += h[i];
    }
    for (int64_t i = 0; i < n_head; i++) memcpy(y + i * C, x + head[i] * C, (size_t)C * sizeof(float));
    layer_norm(y, n_head, C, G[3], G[4], eps, h, tmp);
    linear(h, n_head, C, G[5], NULL, V, logits);
    return 0;
}

/* Positions 0..n-1 of slot src copied to slot dst in every layer, keys and values (n_layer * 2 * n rows
   of C floats): BatchModel.move_slot, for the engine's compaction, without torch's indexing overhead.
   Returns -2 for an index out of range. */
int copy_slot(float *kv, int64_t n_layer, int64_t window, int64_t n_slots, int64_t C, int64_t src, int64_t dst,
              int64_t n) {
    if (src < 0 || src >= n_slots || dst < 0 || dst >= n_slots || n < 0 || n > window) return -2;
    for (int64_t lk = 0; lk < 2 * n_layer; lk++) {
        float *base = kv + lk * window * n_slots * C;
        for (int64_t p = 0; p < n; p++)
            memcpy(base + (p * n_slots + dst) * C, base + (p * n_slots + src) * C, (size_t)C * sizeof(float));
    }
    return 0;
}
