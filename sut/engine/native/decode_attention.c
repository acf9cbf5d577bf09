/* One-query attention of the engine's decode rows over its slot KV cache (float32, one thread).

   Built and loaded by sut/engine/native/library.py. Why a kernel of our own: with one query per row and head,
   torch runs the scores and the weighted sum as batched GEMMs of 1 x head_dim matrices, and pays a
   per-matrix overhead that is most of the decode step's attention time (docs/engine.md). Here a call
   streams the position-major cache once for the keys and once for the values; every row is
   computed in a fixed order of its own, so its bits never depend on the other rows of the call. */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));   /* 8 floats: one AVX register, two SSE ones */
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }


#define EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define ODD 1, 3, 5, 7, 9, 11, 13, 15
static inline v8 pairs(v8 a, v8 b) { return __builtin_shufflevector(a, b, EVEN) + __builtin_shufflevector(a, b, ODD); }

/* Lane j of the result is the sum of s[j]'s 8 lanes in a fixed order, ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)):
   three rounds of adjacent-pair sums. */
static inline v8 sum8x8(const v8 *s) {
    v8 a0 = pairs(s[0], s[1]), a1 = pairs(s[2], s[3]), a2 = pairs(s[4], s[5]), a3 = pairs(s[6], s[7]);
    return pairs(pairs(a0, a1), pairs(a2, a3));
}

/* exp(x) for x <= 0, 8 lanes: x = n ln2 + r with n the nearest integer (the 1.5 * 2^23 rounding trick)
   and |r| <= ln2/2, e^r by its Taylor series to r^7 (relative error below 1e-8 before rounding), times
   2^n built in the exponent bits. */
static inline v8 exp_nonpos8(v8 x) {
    const v8 lo = {-87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f};
    const v8i below = x < lo;
    x = (v8)((below & (v8i)lo) | (~below & (v8i)x));
    const v8 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const v8 r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    v8 p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * (v8)((__builtin_convertvector(n, v8i) + 127) << 23);
}

/* The cache layout (one layer): key p of slot s is C = nh*hd floats at kv + p*p_stride + s*C (heads one
   after the other), its value v_off floats further. Position-major: a step's rows sit in adjacent
   slots, so the keys the step reads form one contiguous block per position, which streams from
   memory at about twice the rate of per-(slot, head) blocks (docs/engine.md). */

#define MAX_CHUNKS 32   /* head_dim up to 256 */

/* q . key for one (row, head): the 8-lane products over its head_dim, to be summed by sum8/sum8x8. */
static inline __attribute__((always_inline)) v8 dot_lanes(const float *q, const float *k, const int CH) {
    v8 s = load8(q) * load8(k);
    for (int c = 1; c < CH; c++) s += load8(q + 8 * c) * load8(k + 8 * c);
    return s;
}

/* A value update: four positions at once, or one (a row's last few). */
static inline v8 add4(v8 o, float w0, v8 v0, float w1, v8 v1, float w2, v8 v2, float w3, v8 v3) {
    return o + ((w0 * v0 + w1 * v1) + (w2 * v2 + w3 * v3));
}
static inline v8 add1(v8 o, float w, v8 v) { return o + w * v; }

/* Rows x heads are "lanes" rh = r*nh + h, RH of them (a multiple of 8). Three passes over positions
   p = 0..max(lens)-1, each row's work in a fixed order, so a row's result depends on its own query,
   keys and length only (a position past its length contributes an exact zero):
   1. scores e[p][rh] = scale * q_rh . key_p, eight lanes at a time through one lane-sum network,
      four positions per pass over the lanes (each query loaded once for the four);
   2. per lane, the running max, then e = exp(e - max) (0 past the row's length) and the sum, in p order;
   3. out_rh = sum_p e[p][rh] * value_p / sum, accumulated in p order. */
static inline __attribute__((always_inline)) void attend_rows(
        const float *q, int64_t q_row, const float *kv, int64_t p_stride, int64_t v_off, const int64_t *slots,
        const int64_t *lens, int64_t n, int64_t nh, const int CH, float scale, float *out, int64_t out_row,
        float *scratch, int64_t max_len) {
    const int64_t hd = 8 * CH, C = nh * hd, RH = (n * nh + 7) / 8 * 8;
    float *e = scratch, *mx = scratch + max_len * RH, *sum = mx + RH, *len = sum + RH, glen[RH / 8];
    int64_t top = 0;
    for (int64_t r = 0; r < n; r++) top = lens[r] > top ? lens[r] : top;
    for (int64_t rh = 0; rh < RH; rh++) {
        mx[rh] = -INFINITY;
        sum[rh] = 0.0f;
        len[rh] = rh < n * nh ? (float)lens[rh / nh] : 0.0f;
    }
    for (int64_t g = 0; g < RH / 8; g++)      /* a group of 8 lanes is skipped past its longest row */
        glen[g] = fmaxf(fmaxf(fmaxf(len[8 * g], len[8 * g + 1]), fmaxf(len[8 * g + 2], len[8 * g + 3])),
                        fmaxf(fmaxf(len[8 * g + 4], len[8 * g + 5]), fmaxf(len[8 * g + 6], len[8 * g + 7])));
    for (int64_t p0 = 0; p0 < top; p0 += 4) {                /* 1. scores, 4 positions per pass over the lanes */
        const int64_t np = top - p0 < 4 ? top - p0 : 4;      /* (each query is loaded once for all 4) */
        for (int64_t rh0 = 0; rh0 < RH; rh0 += 8) {
            if ((float)p0 >= glen[rh0 / 8]) continue;
            int64_t r = rh0 / nh, h = rh0 % nh;              /* lane rh0 + j is (r, h), walked in order */
            v8 s[4][8];
            for (int j = 0; j < 8; j++) {
                const float *qh = q + r * q_row + h * hd, *kh = kv + (r < n ? slots[r] : 0) * C + h * hd;
                for (int64_t i = 0; i < np; i++)
                    s[i][j] = r < n && p0 + i < lens[r] ? dot_lanes(qh, kh + (p0 + i) * p_stride, CH)
                                                        : (v8){0, 0, 0, 0, 0, 0, 0, 0};
                if (++h == nh) { h = 0; r++; }
            }
            for (int64_t i = 0; i < np; i++) {
                const int64_t p = p0 + i;
                const v8 x = sum8x8(s[i]) * scale, live = (v8)(load8(len + rh0) > (float)p);
                const v8i gt = (x > load8(mx + rh0)) & (v8i)live;    /* running max over the live lanes */
                store8(mx + rh0, (v8)((gt & (v8i)x) | (~gt & (v8i)load8(mx + rh0))));
                store8(e + p * RH + rh0, x);
            }
        }
    }
    for (int64_t p = 0; p < top; p++)                       /* 2. softmax numerators and their sums, in p order */
        for (int64_t rh0 = 0; rh0 < RH; rh0 += 8) {
            if ((float)p >= glen[rh0 / 8]) continue;
            const v8i live = (v8i)(load8(len + rh0) > (float)p);
            const v8 x = (v8)(live & (v8i)exp_nonpos8(load8(e + p * RH + rh0) - load8(mx + rh0)));  /* 0 when dead */
            store8(e + p * RH + rh0, x);
            store8(sum + rh0, load8(sum + rh0) + x);
        }
    for (int64_t r = 0; r < n; r++) memset(out + r * out_row, 0, (size_t)C * sizeof(float));
    for (int64_t p = 0; p < top; p += 4) {                   /* 3. weighted values, 4 positions per update */
        const float *vp = kv + v_off + p * p_stride, *ep = e + p * RH;
        for (int64_t r = 0; r < n; r++) {
            if (p >= lens[r]) continue;
            const float *v = vp + slots[r] * C;
            float *o = out + r * out_row;
            const int64_t k = lens[r] - p < 4 ? lens[r] - p : 4;  /* live positions of this group */
            for (int64_t h = 0; h < nh; h++) {
                const float *w = ep + r * nh + h, *vh = v + h * hd;
                for (int c = 0; c < CH; c++) {
                    const int64_t d = h * hd + 8 * c;
                    if (k == 4)
                        store8(o + d, add4(load8(o + d), w[0], load8(vh + 8 * c), w[RH], load8(vh + p_stride + 8 * c),
                                           w[2 * RH], load8(vh + 2 * p_stride + 8 * c),
                                           w[3 * RH], load8(vh + 3 * p_stride + 8 * c)));
                    else
                        for (int64_t i = 0; i < k; i++)
                            store8(o + d, add1(load8(o + d), w[i * RH], load8(vh + i * p_stride + 8 * c)));
                }
            }
        }
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t h = 0; h < nh; h++) {
            const float inv = 1.0f / sum[r * nh + h];
            float *o = out + r * out_row + h * hd;
            for (int64_t d = 0; d < hd; d++) o[d] *= inv;
        }
}

/* Floats of scratch attend() needs for n rows of nh heads and lengths up to max_len: scores, maxima,
   sums and lengths of every lane, RH = n*nh rounded up to a multiple of 8. */
int64_t decode_attention_scratch(int64_t n, int64_t nh, int64_t max_len) {
    return (max_len + 3) * ((n * nh + 7) / 8 * 8);
}

/* attend_rows for any head_dim (a multiple of 8, at most 256), on checked inputs. */
static void attend(const float *q, int64_t q_row, const float *kv, int64_t p_stride, int64_t v_off,
                   const int64_t *slots, const int64_t *lens, int64_t n, int64_t nh, int64_t hd, float scale,
                   float *out, int64_t out_row, float *scratch, int64_t max_len) {
    switch (hd) {   /* constant chunk counts let the compiler unroll a head */
        case 16: attend_rows(q, q_row, kv, p_stride, v_off, slots, lens, n, nh, 2, scale, out, out_row, scratch, max_len); break;
        case 32: attend_rows(q, q_row, kv, p_stride, v_off, slots, lens, n, nh, 4, scale, out, out_row, scratch, max_len); break;
        case 64: attend_rows(q, q_row, kv, p_stride, v_off, slots, lens, n, nh, 8, scale, out, out_row, scratch, max_len); break;
        default: attend_rows(q, q_row, kv, p_stride, v_off, slots, lens, n, nh, (int)(hd / 8), scale, out, out_row, scratch, max_len);
    }
}

/* One-query attention of every head of n decode rows over keys 0..lens[r]-1 of slot slots[r] (layout
   above). q: row r at q + r*q_row, heads one after the other; out likewise at out + r*out_row.
   scratch: decode_attention_scratch(n, nh, max_len) floats. hd: a multiple of 8, at most 256.
   Returns 0, or -1 for a head_dim it does not handle, -2 for a slot outside 0..n_slots-1 or a
   length outside 1..max_len. */
int decode_attention(const float *q, int64_t q_row, const float *kv, int64_t p_stride, int64_t v_off,
                     const int64_t *slots, const int64_t *lens, int64_t n, int64_t nh, int64_t hd, float scale,
                     float *out, int64_t out_row, float *scratch, int64_t n_slots, int64_t max_len) {
    if (hd % 8 || hd > 8 * MAX_CHUNKS) return -1;
    for (int64_t r = 0; r < n; r++)   /* never read outside the cache */
        if (slots[r] < 0 || slots[r] >= n_slots || lens[r] < 1 || lens[r] > max_len) return -2;
    attend(q, q_row, kv, p_stride, v_off, slots, lens, n, nh, hd, scale, out, out_row, scratch, max_len);
    return 0;
}

/* write_kv's copies, on checked inputs. */
static void copy_kv(const float *qkv, int64_t qkv_row, float *kv, int64_t p_stride, int64_t v_off,
                    const int64_t *slots, const int64_t *pos, int64_t m, int64_t C) {
    for (int64_t r = 0; r < m; r++) {
        const float *src = qkv + r * qkv_row + C;
        float *dst = kv + pos[r] * p_stride + slots[r] * C;
        memcpy(dst, src, (size_t)C * sizeof(float));
        memcpy(dst + v_off, src + C, (size_t)C * sizeof(float));
    }
}

/* The step's new keys and values into the cache: row r of qkv (its keys at column C, its values at
   2C, C = nh*hd) to position pos[r] of slot slots[r]. Pure copies: the cache holds exactly what
   torch's index_put would write. Returns 0, or -2 for a slot or position out of range. */
int write_kv(const float *qkv, int64_t qkv_row, float *kv, int64_t p_stride, int64_t v_off, const int64_t *slots,
             const int64_t *pos, int64_t m, int64_t C, int64_t n_slots, int64_t max_len) {
    for (int64_t r = 0; r < m; r++)
        if (slots[r] < 0 || slots[r] >= n_slots || pos[r] < 0 || pos[r] >= max_len) return -2;
    copy_kv(qkv, qkv_row, kv, p_stride, v_off, slots, pos, m, C);
    return 0;
}
