/* The engine's token choice, as sut.agent.sample_next makes it with torch on CPU, bit for bit: the
   greedy rows' argmax, the sampled rows' scores (temperature, top-k), and their draw, without
   drawing what cannot win. The softmax between the last two stays torch's (its exp and summation
   order are torch's own; sut/engine/native/sampling.py).

   torch's one-sample multinomial is argmax_j probs[j] / q[j] with q[j] ~ Exp(1), one per vocabulary
   entry, drawn from the row's generator (ATen: q.exponential_(1, g), then a divide and an argmax;
   sut.engine.batch.sample_rows). Its CPU generator is the reference MT19937 seeded with the low 32
   bits of the seed; an Exp(1) draw takes two 32-bit outputs (the first the high word), keeps 53
   bits u in [0, 1) and returns (float)-log1p(-u). Those are 1,536 logarithms a token, most of them
   for entries that top-k sampling has zeroed: 0 / q is 0 and never the argmax. So this walks the
   same stream (every entry still advances the generator by two outputs) and takes the logarithm
   only where probs[j] != 0. What it returns is the same index, ties (first maximum) and NaN
   (first NaN, as torch's argmax) included; sut/engine/native/sampling.py checks the stream against torch
   once per process and falls back to torch if they ever differ.

   Included by decode_step.c: one library. */
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { MT_N = 624, MT_M = 397 };
/* A generator's state: MT_N words, then the index of the next word (MT_N: twist first). */
enum { MT_WORDS = MT_N + 1 };

int mt_state_words(void) { return MT_WORDS; }

void mt_seed(uint32_t *st, uint64_t seed) {
    st[0] = (uint32_t)seed;
    for (uint32_t j = 1; j < MT_N; j++) st[j] = 1812433253u * (st[j - 1] ^ (st[j - 1] >> 30)) + j;
    st[MT_N] = MT_N;
}

static inline uint32_t twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_refill(uint32_t *s) {
    int j = 0;
    for (; j < MT_N - MT_M; j++) s[j] = s[j + MT_M] ^ twist(s[j], s[j + 1]);
    for (; j < MT_N - 1; j++) s[j] = s[j + MT_M - MT_N] ^ twist(s[j], s[j + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ twist(s[MT_N - 1], s[0]);
}

static inline uint32_t temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* The 53 bits of the next Exp(1) draw's uniform (torch's random64, masked) from state s, whose next
   word is s[*at] (kept in a local by the callers: the loop then stores no index a word). */
static inline uint64_t next_bits(uint32_t *s, uint32_t *at) {
    if (*at >= MT_N) { mt_refill(s); *at = 0; }
    uint64_t hi = temper(s[(*at)++]);
    if (*at >= MT_N) { mt_refill(s); *at = 0; }
    uint64_t lo = temper(s[(*at)++]);
    return ((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1);
}

static inline float exp_draw(uint64_t bits) {
    return (float)(-log1p(-((double)bits * (1.0 / (double)(UINT64_C(1) << 53)))));
}

/* n draws of Exp(1), what torch's float exponential_(1, g) writes: for tests and the check. */
void mt_exponentials(uint32_t *s, int64_t n, float *out) {
    uint32_t at = s[MT_N];
    for (int64_t i = 0; i < n; i++) out[i] = exp_draw(next_bits(s, &at));
    s[MT_N] = at;
}

/* The first maximum of row[0..V-1], or the first NaN: scalar, the reference for argmax_rows. */
static int64_t argmax_scalar(const float *row, int64_t V) {
    int64_t best = 0;
    float top = row[0];
    if (top != top) return 0;
    for (int64_t j = 1; j < V; j++) {
        float v = row[j];
        if (v > top) {
            top = v;
            best = j;
        } else if (v != v) {
            return j;
        }
    }
    return best;
}

/* torch.argmax(x, -1) for R rows of V: the first maximum, or the first NaN where there is one.
   Two vector passes a row (the maximum and whether a NaN is there, then the first entry equal to
   it); a row with a NaN takes the scalar pass. */
void argmax_rows(const float *x, int64_t R, int64_t V, int64_t *out) {
    for (int64_t r = 0; r < R; r++) {
        const float *row = x + r * V;
        int64_t j = 0, V8 = V & ~(int64_t)7;
        if (V8 == 0) {
            out[r] = argmax_scalar(row, V);
            continue;
        }
        v8 m, v;
        v8i nan = {0};
        memcpy(&m, row, sizeof m);
        for (j = 8; j < V8; j += 8) {
            memcpy(&v, row + j, sizeof v);
            nan |= v != v;
            v8i gt = v > m;
            m = (v8)(((v8i)v & gt) | ((v8i)m & ~gt));
        }
        nan |= m != m;
        float top = m[0];
        int any_nan = 0;
        for (int i = 0; i < 8; i++) {
            any_nan |= nan[i] != 0;
            top = m[i] > top ? m[i] : top;
        }
        for (; j < V; j++) {
            any_nan |= row[j] != row[j];
            top = row[j] > top ? row[j] : top;
        }
        if (any_nan) {
            out[r] = argmax_scalar(row, V);
            continue;
        }
        v8 t = {top, top, top, top, top, top, top, top};
        int64_t k = 0;
        for (; k < V8; k += 8) {
            memcpy(&v, row + k, sizeof v);
            v8i eq = v == t;
            int64_t any = 0;
            for (int i = 0; i < 8; i++) any |= eq[i];
            if (any) break;
        }
        while (row[k] != top) k++;
        out[r] = k;
    }
}

/* x[r] = logits[rows[r]] / temperature with every entry below the row's top_k-th largest (counted
   with repeats, as torch.topk(x, top_k).values[-1]) set to -inf: what sample_next feeds its softmax.
   top_k <= 0 or >= V: no cut. Returns 0; 1 if a row holds a NaN (x is then not to be used: the caller
   takes torch's path); -1 if top_k is over 256 (the same). */
int topk_scores(const float *logits, int64_t V, const int64_t *rows, int64_t R, float temperature, int64_t top_k,
                float *x) {
    if (top_k > 256 && top_k < V) return -1;
    float keep[256];
    for (int64_t r = 0; r < R; r++) {
        const float *in = logits + rows[r] * V;
        float *o = x + r * V;
        int64_t n = 0;
        for (int64_t j = 0; j < V; j++) {
            float v = in[j] / temperature;
            if (v != v) return 1;
            o[j] = v;
            if (top_k <= 0 || top_k >= V) continue;
            if (n == top_k && !(v > keep[n - 1])) continue;
            int64_t i = n < top_k ? n++ : n - 1;          /* keep[] descending: insert v */
            while (i > 0 && keep[i - 1] < v) {
                keep[i] = keep[i - 1];
                i--;
            }
            keep[i] = v;
        }
        if (top_k > 0 && top_k < V) {
            float kth = keep[top_k - 1];
            for (int64_t j = 0; j < V; j++)
                if (o[j] < kth) o[j] = -INFINITY;
        }
    }
    return 0;
}

/* out[r] = argmax_j probs[r, j] / q[j] with q drawn from the generator at states[r], for R rows of V. */
void sample_race(const float *probs, int64_t R, int64_t V, const uint64_t *states, int64_t *out) {
    for (int64_t r = 0; r < R; r++) {
        uint32_t *s = (uint32_t *)(uintptr_t)states[r], at = s[MT_N];
        const float *p = probs + r * V;
        int64_t best = 0, nan_at = -1;
        float top = -INFINITY;
        for (int64_t j = 0; j < V; j++) {
            uint64_t bits = next_bits(s, &at);
            float ratio;
            if (p[j] != 0.0f) ratio = p[j] / exp_draw(bits);   /* NaN probs compare != 0 too */
            else ratio = bits ? 0.0f : NAN;                      /* 0 / 0 when the draw is exactly 0 */
            if (ratio != ratio) {
                if (nan_at < 0) nan_at = j;
            } else if (ratio > top) {
                top = ratio;
                best = j;
            }
        }
        s[MT_N] = at;
        out[r] = nan_at >= 0 ? nan_at : best;
    }
}

/* A retry's drafted continuation checked the way sequential sampling would produce it: row j of probs
   (m rows) is the distribution after the context and draft[0..j-1]; draw row 0's token from the
   generator, and while it equals the draft token, draw the next row's. Writes the tokens drawn
   (the accepted draft tokens and the first one that differs, or one past a fully accepted draft)
   and returns how many: each was drawn from the generator state sequential decoding would have had,
   so they are its tokens, bit for bit. */
int64_t race_accept(const float *probs, int64_t m, int64_t V, const int64_t *draft, uint64_t state, int64_t *out) {
    int64_t n = 0;
    while (n < m) {
        sample_race(probs + n * V, 1, V, &state, out + n);
        n++;
        if (n == m || out[n - 1] != draft[n - 1]) break;
    }
    return n;
}
