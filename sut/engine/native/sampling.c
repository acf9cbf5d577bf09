/* The engine's token choice in native code; its contract is sut/engine/token_choice.py's, which is the
   reference and documents it:

   - a greedy row's token is its argmax (the first maximum, or the first NaN, as torch.argmax);
   - a sampled row's scores are its logits over the temperature, entries below the top-k-th largest
     at -inf (topk_scores); the softmax over them is torch's (the caller's);
   - its token is the inverse CDF of those probabilities at one uniform: the first j with
     u < p[0] + ... + p[j], the sum in double precision in index order (j past the end: the last
     j with p[j] > 0). u is the top 53 bits of the first output of Philox4x64-10 with key (key, 0)
     and counter (n + 1, 0, 0, 0): what numpy.random.Philox(key=[key, 0], counter=[n, 0, 0, 0])
     .random_raw() returns, where key stands for (seed, task, attempt, redraw) and n is the token's
     index in the attempt. Counter-based: a token's uniform depends on its key and index only, so a
     draft of several tokens is checked in one pass with the uniforms sequential decoding would use.

   Integer arithmetic and IEEE double additions in a fixed order: the same bits as numpy, on any CPU
   and compiler (tests/test_token_choice.py). Included by decode_step.c: one library. */
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline void mulhilo64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
    unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    *lo = (uint64_t)p;
}

/* Philox4x64-10 (Salmon et al., SC'11; Random123's constants) of counter c under key k: out[0..3]. */
static void philox4x64_10(const uint64_t c_in[4], const uint64_t k_in[2], uint64_t out[4]) {
    uint64_t c0 = c_in[0], c1 = c_in[1], c2 = c_in[2], c3 = c_in[3], k0 = k_in[0], k1 = k_in[1];
    for (int round = 0; round < 10; round++) {
        if (round) {
            k0 += UINT64_C(0x9E3779B97F4A7C15);
            k1 += UINT64_C(0xBB67AE8584CAA73B);
        }
        uint64_t hi0, lo0, hi1, lo1;
        mulhilo64(UINT64_C(0xD2E7470EE14C6C93), c0, &hi0, &lo0);
        mulhilo64(UINT64_C(0xCA5A826395121157), c2, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The uniform in [0, 1) of token n under key (the contract above). */
double philox_uniform(uint64_t key, uint64_t n) {
    uint64_t c[4] = {n + 1, n + 1 == 0, 0, 0}, k[2] = {key, 0}, out[4];
    philox4x64_10(c, k, out);
    return (double)(out[0] >> 11) * (1.0 / 9007199254740992.0);
}

/* The inverse CDF of probs[0..V-1] at u (the contract above). */
static int64_t inverse_cdf(const float *p, int64_t V, double u) {
    double acc = 0.0;
    int64_t last = -1;
    for (int64_t j = 0; j < V; j++) {
        if (!(p[j] > 0.0f)) continue;    /* zero (or NaN) mass: never chosen, adds nothing */
        acc += (double)p[j];
        last = j;
        if (u < acc) return j;
    }
    return last >= 0 ? last : 0;
}

/* out[r] = the token of row r of probs (R x V) at token index counters[r] under keys[r]. */
void draw_rows(const float *probs, int64_t R, int64_t V, const uint64_t *keys, const uint64_t *counters,
               int64_t *out) {
    for (int64_t r = 0; r < R; r++) out[r] = inverse_cdf(probs + r * V, V, philox_uniform(keys[r], counters[r]));
}

/* A retry's drafted continuation checked the way sequential sampling would produce it: row j of probs
   (m rows) is the distribution after the context and draft[0..j-1], its token index n0 + j. Draws row
   0's token, and while it equals the draft token, the next row's. Writes the tokens drawn (the accepted
   draft tokens and the first that differs, or one past a fully accepted draft) and returns how many:
   each drawn with the uniform sequential decoding would use, so they are its tokens. */
int64_t draw_accept(const float *probs, int64_t m, int64_t V, const int64_t *draft, uint64_t key, uint64_t n0,
                    int64_t *out) {
    int64_t n = 0;
    while (n < m) {
        out[n] = inverse_cdf(probs + n * V, V, philox_uniform(key, n0 + (uint64_t)n));
        n++;
        if (n == m || out[n - 1] != draft[n - 1]) break;
    }
    return n;
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
   with repeats, as torch.topk(x, top_k).values[-1]) set to -inf: what a sampled row's softmax takes.
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
