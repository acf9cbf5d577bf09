/* One-query attention of the engine's decode rows over its slot KV cache (float32, one thread).

   Built and loaded by sut/attention_kernel.py. Why a kernel of our own: with one query per row and head,
   torch runs the scores and the weighted sum as batched GEMMs of 1 x head_dim matrices, and pays a
   per-matrix overhead that is most of the decode step's attention time (docs/engine.md). Here each
   (row, head) is one pass over its keys and one over its values, in a fixed order. */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));   /* 8 floats: one AVX register, two SSE ones */
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* The 8 lanes summed in a fixed pairwise order: ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)), as sum8x8 does. */
static inline float sum8(v8 a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

#define EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define ODD 1, 3, 5, 7, 9, 11, 13, 15
static inline v8 pairs(v8 a, v8 b) { return __builtin_shufflevector(a, b, EVEN) + __builtin_shufflevector(a, b, ODD); }

/* Lane j of the result is sum8(s[j]), in sum8's order: three rounds of adjacent-pair sums. */
static inline v8 sum8x8(const v8 *s) {
    v8 a0 = pairs(s[0], s[1]), a1 = pairs(s[2], s[3]), a2 = pairs(s[4], s[5]), a3 = pairs(s[6], s[7]);
    return pairs(pairs(a0, a1), pairs(a2, a3));
}

/* exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r^7 (relative
   error below 1e-8 before rounding), times 2^n built in the exponent bits. Branch-free: it vectorizes. */
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#define MAX_CHUNKS 32   /* head_dim up to 256 */

/* One (row, head): keys 0..len-1 at k (hd floats apart), values at v, query qr, result to o. */
static inline __attribute__((always_inline)) void attend_one(const float *qr, const float *k, const float *v,
                                                             int64_t len, const int C, float scale, float *scratch,
                                                             float *o) {
    v8 q[MAX_CHUNKS], acc[MAX_CHUNKS];
    for (int c = 0; c < C; c++) q[c] = load8(qr + 8 * c);
    float m = -INFINITY;
    int64_t p0 = 0;
    v8 mv = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (; p0 + 8 <= len; p0 += 8) {          /* 8 keys at a time: one lane-sum network for all 8 */
        v8 s[8];
        for (int j = 0; j < 8; j++) {
            const float *kp = k + (p0 + j) * 8 * C;
            s[j] = q[0] * load8(kp);
            for (int c = 1; c < C; c++) s[j] += q[c] * load8(kp + 8 * c);
        }
        const v8 x = sum8x8(s) * scale;
        store8(scratch + p0, x);
        const v8i gt = x > mv;                 /* lanewise max, as a select (C has no vector ?:) */
        mv = (v8)((gt & (v8i)x) | (~gt & (v8i)mv));
    }
    m = fmaxf(fmaxf(fmaxf(mv[0], mv[1]), fmaxf(mv[2], mv[3])), fmaxf(fmaxf(mv[4], mv[5]), fmaxf(mv[6], mv[7])));
    for (int64_t p = p0; p < len; p++) {       /* the tail, key by key, in the same order */
        const float *kp = k + p * 8 * C;
        v8 s = q[0] * load8(kp);
        for (int c = 1; c < C; c++) s += q[c] * load8(kp + 8 * c);
        const float x = sum8(s) * scale;
        scratch[p] = x;
        m = x > m ? x : m;
    }
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t p = 0;
    for (; p + 8 <= len; p += 8)
        for (int j = 0; j < 8; j++) {
            const float e = exp_nonpos(scratch[p + j] - m);
            scratch[p + j] = e;
            lanes[j] += e;
        }
    for (int j = 0; p + j < len; j++) {
        const float e = exp_nonpos(scratch[p + j] - m);
        scratch[p + j] = e;
        lanes[j] += e;
    }
    const float inv = 1.0f / sum8(load8(lanes));
    for (int c = 0; c < C; c++) acc[c] = (v8){0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t p2 = 0; p2 < len; p2++) {
        const float e = scratch[p2];
        const float *vp = v + p2 * 8 * C;
        for (int c = 0; c < C; c++) acc[c] += e * load8(vp + 8 * c);
    }
    for (int c = 0; c < C; c++) store8(o + 8 * c, acc[c] * inv);
}

/* For each decode row r and head h: scores over keys 0..lens[r]-1 of slot slots[r], softmax, weighted
   sum of the values. q: row r, head h at q + r*q_row + h*hd. Cache: key p of (slot, head) at
   kv + slot*s_stride + h*h_stride + p*hd, its value v_off floats further. out: row r at out + r*out_row.
   scratch: at least max_len floats. hd: a multiple of 8, at most 256. Returns 0, or -1 for a head_dim it
   does not handle, -2 for a slot outside 0..n_slots-1 or a length outside 1..max_len. Each (row, head) is computed
   alone in a fixed order, so its result never depends on the other rows of the call. */
int decode_attention(const float *q, int64_t q_row, const float *kv, int64_t s_stride, int64_t h_stride,
                     int64_t v_off, const int64_t *slots, const int64_t *lens, int64_t n, int64_t nh, int64_t hd,
                     float scale, float *out, int64_t out_row, float *scratch, int64_t n_slots, int64_t max_len) {
    if (hd % 8 || hd > 8 * MAX_CHUNKS) return -1;
    for (int64_t r = 0; r < n; r++)   /* never read outside the cache */
        if (slots[r] < 0 || slots[r] >= n_slots || lens[r] < 1 || lens[r] > max_len) return -2;
    for (int64_t r = 0; r < n; r++)
        for (int64_t h = 0; h < nh; h++) {
            const float *k = kv + slots[r] * s_stride + h * h_stride;
            const float *qr = q + r * q_row + h * hd;
            float *o = out + r * out_row + h * hd;
            switch (hd) {   /* constant chunk counts let the compiler keep the head in registers */
                case 16: attend_one(qr, k, k + v_off, lens[r], 2, scale, scratch, o); break;
                case 32: attend_one(qr, k, k + v_off, lens[r], 4, scale, scratch, o); break;
                case 64: attend_one(qr, k, k + v_off, lens[r], 8, scale, scratch, o); break;
                default: attend_one(qr, k, k + v_off, lens[r], (int)(hd / 8), scale, scratch, o);
            }
        }
    return 0;
}

/* The step's new keys and values into the cache: row r of qkv (its keys at column C, its values at
   2C, C = nh*hd) to position pos[r] of slot slots[r], for every head. Pure copies, so the cache holds
   exactly what torch's index_put would write. Returns 0, or -2 for a slot or position out of range. */
int write_kv(const float *qkv, int64_t qkv_row, float *kv, int64_t s_stride, int64_t h_stride, int64_t v_off,
             const int64_t *slots, const int64_t *pos, int64_t m, int64_t nh, int64_t hd, int64_t n_slots,
             int64_t max_len) {
    for (int64_t r = 0; r < m; r++)
        if (slots[r] < 0 || slots[r] >= n_slots || pos[r] < 0 || pos[r] >= max_len) return -2;
    const int64_t C = nh * hd;
    for (int64_t r = 0; r < m; r++) {
        const float *src = qkv + r * qkv_row + C;
        float *dst = kv + slots[r] * s_stride + pos[r] * hd;
        for (int64_t t = 0; t < 2; t++)
            for (int64_t h = 0; h < nh; h++)
                memcpy(dst + t * v_off + h * h_stride, src + t * C + h * hd, (size_t)hd * sizeof(float));
    }
    return 0;
}
