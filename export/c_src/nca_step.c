/* nca-edge C firmware: the int8 CA step, exactly as firmware_sim/int8.py (the golden model),
 * computed the way firmware_sim/xnor.py does it for binary activations.
 * C99; <stdint.h> and <string.h> only; no heap, no floating point. */
#include "nca_step.h"

#include <string.h>


/* MBQM is inlined where 64-bit arithmetic is native (a host); on a 32-bit microcontroller it is a
 * call: each copy would cost flash. */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define NCA_HOT_INLINE inline
#else
#define NCA_HOT_INLINE
#endif

#define I32_MIN (-2147483647 - 1)
#define I32_MAX 2147483647

/* Arithmetic right shift (floor division by 2^e), also for negative values (C99 leaves >> of
 * negatives to the compiler): the bits of x, complemented when x < 0 (s: all ones), shifted, and
 * complemented back; branch-free. */
static inline int64_t asr64(int64_t x, int e) {
    const uint64_t s = (uint64_t)0 - ((uint64_t)x >> 63);
    return (int64_t)((((uint64_t)x ^ s) >> e) ^ s);
}

/* TFLite's MultiplyByQuantizedMultiplier (firmware_sim/fixedpoint.py), the same integers in closed form:
 * - SaturatingRoundingDoublingHighMul(a, m): (a m + nudge) / 2^31 truncated toward zero, nudge = 2^30
 *   if a m >= 0 else 1 - 2^30, is floor((a m + 2^30) / 2^31) for every a m (for a m = -k < 0 both are
 *   -ceil((k - 2^30) / 2^31)); the one saturating case, a = m = INT32_MIN, is the only product whose
 *   result exceeds INT32_MAX, and is clamped to it;
 * - RoundingDivideByPOT(r, e) (round half away from zero): floor((r + 2^(e-1) - [r < 0]) / 2^e) for
 *   e > 0, in 64 bits so that nothing overflows. */
static NCA_HOT_INLINE int32_t mbqm(int32_t x, int32_t mult, int32_t shift) {
    const int left = shift > 0 ? (int)shift : 0, right = shift > 0 ? 0 : (int)-shift;
    int64_t r = asr64((int64_t)(int32_t)((uint32_t)x << left) * mult + ((int64_t)1 << 30), 31);
    if (r > I32_MAX) r = I32_MAX;
    if (right > 0) r = asr64(r + ((int64_t)1 << (right - 1)) - (r < 0), right);
    return (int32_t)r;
}

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

#define NCA_MAX_WORDS ((NCA_MAX_UNITS + 63) / 64)
#if NCA_MAX_UNITS > 256
#error "NCA_MAX_UNITS > 256: conv_lanes's 16-bit lanes add at most 256 inputs' weights + 128"
#endif
#define NCA_PLANES 10 /* bits of the sliced layer's R (conv_sliced) */
#define HALF_ADD(plane, carry) (t = (plane) & (carry), (plane) ^= (carry), (carry) = t)
#define BIT(v, j) ((int)(((v)[(j) >> 6] >> ((j) & 63)) & 1u))

/* Row buffers: the old values of the rows above, at and below the current one, each with a border
 * cell of Zin on both sides (the in-place update reads its neighbours from these). */
static int8_t rows[3][(NCA_MAX_WIDTH + 2) * NCA_MAX_CHANNELS];

/* Tables built from the model's constants on the first step with that model (one value in, one
 * value out, so a lookup is the arithmetic exactly). */
static struct {
    const nca_model_t *m;
    int8_t rest[2][256]; /* [dead][v + 128]: the next value of a channel at v in a cell that does not
                            compute (one MUL operand is its zero point, so the update is a constant) */
    int keeps[2];        /* rest[dead] is the identity: such cells are left as they are */
    int32_t in1[256];    /* the ADD's first operand rescaled, by old value */
    int32_t in2[256];    /* its second, by the last conv's output ds of a firing cell (through the MUL chain) */
    int64_t pair_k[NCA_MAX_UNITS / 2]; /* depthwise_bits: Zin * (sum of the pair's taps) + K[o] + K[o + 1] * 2^32
                                          - 2^31, K = thr - bias */
    int kernel[3];       /* the kernel of each conv (kernel_of) */
} tab;

/* A layer's int32 accumulators -> its outputs: bits (a binary output: unit o is on when
 * acc[o] >= thr[o]) or the requantized int8 values. */
static void finish(const nca_conv_t *c, const int32_t *acc, int32_t *out, uint64_t *bits) {
    int o;
    if (c->thr) { /* 8 units a byte (independent comparisons, constant shifts), bytes into words */
        const int32_t *t = c->thr;
        uint64_t byte;
        for (o = 0; o + 8 <= c->out; o += 8) {
            byte = (uint64_t)(acc[o] >= t[o]) | (uint64_t)(acc[o + 1] >= t[o + 1]) << 1
                 | (uint64_t)(acc[o + 2] >= t[o + 2]) << 2 | (uint64_t)(acc[o + 3] >= t[o + 3]) << 3
                 | (uint64_t)(acc[o + 4] >= t[o + 4]) << 4 | (uint64_t)(acc[o + 5] >= t[o + 5]) << 5
                 | (uint64_t)(acc[o + 6] >= t[o + 6]) << 6 | (uint64_t)(acc[o + 7] >= t[o + 7]) << 7;
            bits[o >> 6] = (o & 63 ? bits[o >> 6] : 0) | byte << (o & 63);
        }
        for (; o < c->out; o++)
            bits[o >> 6] = (o & 63 ? bits[o >> 6] : 0) | (uint64_t)(acc[o] >= t[o]) << (o & 63);
    } else {
        for (o = 0; o < c->out; o++) out[o] = clamp(mbqm(acc[o], c->mult[o], c->shift[o]) + c->zout, c->act_min, c->act_max);
    }
}

/* ---- The layer kernels. Each layout in the header has its kernel (tab.kernel says which computes
 * each conv); nca_config.h, generated with the model, says which of them this build compiles. */
enum { K_PATCH, K_DEPTHWISE_BITS, K_INT8, K_XNOR, K_LANES, K_SLICED };

/* K_PATCH: the 3x3 conv for one cell from its neighbourhood: nb[dy] points at the old values of the
 * cell left of it in row dy (a row buffer with a border of Zin, so an outside tap adds 0: TFLite's
 * padding). Depthwise (output o reads input channel o / dm only: 9 taps) or dense (an int8 or
 * binary kernel over xc[i * 9 + t] = value - Zin of channel i at tap t = 3 dy + dx). */
static void conv_patch(const nca_conv_t *c, const int8_t *const nb[3], int cin, int32_t *out, uint64_t *bits) {
    int32_t xc[9 * NCA_MAX_CHANNELS], acc[NCA_MAX_UNITS];
    int o, t, i, l;
    for (i = 0, o = 0; c->dm && i < cin; i++) { /* x[t]: channel i at tap t, minus Zin */
        const int8_t *r0 = nb[0] + i, *r1 = nb[1] + i, *r2 = nb[2] + i;
        const int32_t x[9] = {r0[0] - c->zin, r0[cin] - c->zin, r0[2 * cin] - c->zin, r1[0] - c->zin, r1[cin] - c->zin,
                              r1[2 * cin] - c->zin, r2[0] - c->zin, r2[cin] - c->zin, r2[2 * cin] - c->zin};
        for (l = 0; l < c->dm; l++, o++) {
            const int8_t *w = c->w + (int32_t)o * 9;
            acc[o] = c->bias[o] + w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] * x[3] + w[4] * x[4]
                   + w[5] * x[5] + w[6] * x[6] + w[7] * x[7] + w[8] * x[8];
        }
    }
    for (t = 0; !c->dm && t < 9; t++) {
        const int8_t *src = nb[t / 3] + (t % 3) * cin;
        for (i = 0; i < cin; i++) xc[i * 9 + t] = src[i] - c->zin;
    }
    for (o = 0; !c->dm && o < c->out; o++) {
        int32_t sum = 0;
        if (c->w) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            for (t = 0; t < 9; t++)
                for (i = 0; i < cin; i++) sum += (int32_t)row[t * cin + i] * xc[i * 9 + t];
        } else {
            const uint64_t *row = c->bits + (int32_t)o * c->words;
            for (t = 0; t < 9; t++)
                for (i = 0; i < cin; i++) sum += BIT(row, t * cin + i) ? -xc[i * 9 + t] : xc[i * 9 + t];
            sum *= c->magnitude;
        }
        acc[o] = c->bias[o] + sum;
    }
    finish(c, acc, out, bits);
}

/* K_DEPTHWISE_BITS: the depthwise 3x3 conv with an even multiplier and a binary output (bnn's
 * perception), from the neighbourhood nb (see conv_patch): per pair of outputs o, o + 1 one 64-bit
 * sum (see pairs) minus tab.pair_k = Zin * (sum of the taps) + K[o] + K[o + 1] * 2^32 - 2^31,
 * K = thr - bias, gives u = (h[o] + 2^31) + h[o + 1] * 2^32 with h = acc - thr, |h| < 2^22: unit o
 * is on (h >= 0) when bit 31 of u is 1, unit o + 1 when bit 63 is 0. The bits enter the top of a
 * word shifted down. */
static void depthwise_bits(const nca_conv_t *c, const int8_t *const nb[3], int cin, uint64_t *bits) {
    const int64_t *w = c->pairs, *k = tab.pair_k;
    uint64_t word = 0;
    int i, l, o = 0;
    for (i = 0; i < cin; i++) {
        const int8_t *r0 = nb[0] + i, *r1 = nb[1] + i, *r2 = nb[2] + i;
        const int64_t v0 = r0[0], v1 = r0[cin], v2 = r0[2 * cin], v3 = r1[0], v4 = r1[cin], v5 = r1[2 * cin],
                      v6 = r2[0], v7 = r2[cin], v8 = r2[2 * cin];
        for (l = 0; l < c->dm; l += 2, o += 2, w += 9) {
            const uint64_t u = (uint64_t)(w[0] * v0 + w[1] * v1 + w[2] * v2 + w[3] * v3 + w[4] * v4 + w[5] * v5
                                        + w[6] * v6 + w[7] * v7 + w[8] * v8 - *k++);
            word = word >> 2 | (u << 31 & (uint64_t)1 << 62) | (~u & (uint64_t)1 << 63);
            if ((o & 63) == 62) bits[o >> 6] = word;
        }
    }
    if (o & 63) bits[o >> 6] = word >> (64 - (o & 63));
}

/* K_INT8: a 1x1 conv on int8 inputs in[0..k-1] -> out[o] or bits. */
static void conv_int8(const nca_conv_t *c, const int32_t *in, int32_t *out, uint64_t *bits) {
    int32_t xz[NCA_MAX_UNITS], acc[NCA_MAX_UNITS];
    int o, j;
    for (j = 0; j < c->k; j++) xz[j] = in[j] - c->zin;
    for (o = 0; o < c->out; o++) {
        int32_t sum = 0;
        if (c->w) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            for (j = 0; j < c->k; j++) sum += (int32_t)row[j] * xz[j];
        } else {
            const uint64_t *row = c->bits + (int32_t)o * c->words;
            for (j = 0; j < c->k; j++) sum += BIT(row, j) ? -xz[j] : xz[j];
            sum *= c->magnitude;
        }
        acc[o] = c->bias[o] + sum;
    }
    finish(c, acc, out, bits);
}

/* Set bits of each 4-bit field of v (SWAR: 2-, then 4-bit sums; at most 4 a field, so up to 3
 * such words add without overflow); popcount_fields adds the fields. */
static inline uint64_t nibble_counts(uint64_t v) {
    v = v - ((v >> 1) & 0x5555555555555555ull);
    return (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
}

static inline int32_t popcount_fields(uint64_t v) {
    v = (v & 0x0F0F0F0F0F0F0F0Full) + ((v >> 4) & 0x0F0F0F0F0F0F0F0Full);
    return (int32_t)((v * 0x0101010101010101ull) >> 56);
}

/* Set bits of the n words x & y (y NULL: of x), three words' nibble counts per popcount_fields. */
static int32_t popcount_and(const uint64_t *x, const uint64_t *y, int n) {
    int32_t total = 0;
    int q, e;
    for (q = 0; q < n; q += 3) {
        uint64_t counts = 0;
        for (e = q; e < q + 3 && e < n; e++) counts += nibble_counts(y ? x[e] & y[e] : x[e]);
        total += popcount_fields(counts);
    }
    return total;
}

/* Inputs on among the k bits of x (bits past k are 0). */
static int32_t ones(const uint64_t *x, int k) { return popcount_and(x, 0, (k + 63) / 64); }

/* Index of the lowest set bit of v != 0 (de Bruijn multiplication). */
static inline int lowest_bit(uint64_t v) {
    static const uint8_t index[64] = {
        0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
        63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6};
    return index[((v & (0 - v)) * 0x03F79D71B4CB0A89ull) >> 58];
}

/* The inputs j < k that are on (use_on) or off, as j * stride; returns how many. */
static int listed(const uint64_t *x, int k, int use_on, int stride, int *list) {
    int q, n = 0;
    for (q = 0; 64 * q < k; q++) {
        uint64_t v = use_on ? x[q] : ~x[q];
        if (64 * q + 64 > k) v &= ((uint64_t)1 << (k - 64 * q)) - 1u; /* no inputs past k */
        for (; v; v &= v - 1u) list[n++] = (64 * q + lowest_bit(v)) * stride;
    }
    return n;
}

/* On binary inputs x (bit j = input j is on), firmware_sim/xnor.py:
 * acc = c0[o] + step * (sum of w[o][j] over the inputs j that are on)
 *     = c1[o] - step * (sum of w[o][j] over the inputs j that are off). */

/* K_XNOR: a binary kernel (rows of bits) -> out[o] or bits: the sum is magnitude * (popcount(x) -
 * 2 popcount(x AND bits[o])). */
static void conv_xnor(const nca_conv_t *c, const uint64_t *x, int32_t *out, uint64_t *bits) {
    int32_t acc[NCA_MAX_UNITS];
    const int32_t a = c->step * c->magnitude, n_on = ones(x, c->k), nx = c->words;
    const uint64_t *row = c->bits;
    int o;
    if (nx <= 2) { /* the common case (at most 128 inputs), unrolled */
        const uint64_t x0 = x[0], x1 = nx > 1 ? x[1] : 0;
        for (o = 0; o < c->out; o++, row += nx) {
            uint64_t counts = nibble_counts(x0 & row[0]);
            if (nx > 1) counts += nibble_counts(x1 & row[1]);
            acc[o] = c->c0[o] + a * (n_on - 2 * popcount_fields(counts));
        }
    } else {
        for (o = 0; o < c->out; o++, row += nx) acc[o] = c->c0[o] + a * (n_on - 2 * popcount_and(x, row, nx));
    }
    finish(c, acc, out, bits);
}

/* K_LANES: an int8 kernel -> out[o] or bits: the weights of the shorter list (inputs on, or off)
 * are added. lanes holds the kernel by input (input j's weights + 128 in 16-bit lanes, 4 outputs a
 * word): a word adds 4 weights at once, without overflow (k * 255 < 65536); then minus 128 per input. */
static void conv_lanes(const nca_conv_t *c, const uint64_t *x, int32_t *out, uint64_t *bits) {
    int32_t acc[NCA_MAX_UNITS];
    int list[NCA_MAX_UNITS], o, q, j;
    const int nl = (c->out + 3) / 4, use_on = 2 * ones(x, c->k) <= c->k, n = listed(x, c->k, use_on, nl, list);
    for (q = 0; q < nl; q++) {
        const uint64_t *col = c->lanes + q;
        uint64_t lanes = 0;
        for (j = 0; j + 4 <= n; j += 4) lanes += col[list[j]] + col[list[j + 1]] + col[list[j + 2]] + col[list[j + 3]];
        for (; j < n; j++) lanes += col[list[j]];
        for (o = 4 * q; o < 4 * q + 4 && o < c->out; o++) {
            const int32_t sum = (int32_t)((lanes >> (16 * (o & 3))) & 0xFFFFu) - 128 * n;
            acc[o] = use_on ? c->c0[o] + c->step * sum : c->c1[o] - c->step * sum;
        }
    }
    finish(c, acc, out, bits);
}

/* K_SLICED: a binary kernel with a binary output (bnn's hidden layer), bit-sliced across the
 * outputs (64 a word): unit o is on when c0[o] + a (n - 2 pc[o]) >= thr[o], a = step * magnitude > 0,
 * n = inputs on, pc[o] = inputs on where w[o][j] = -1; that is when R[o] = B[o] + n - 2 pc[o] >= 0,
 * B = -ceil((thr - c0) / a) (planes, 10-bit two's complement; c_export.sliced_layer). pc is counted
 * over the shorter list: inputs on (cols[j]: bit o = w[o][j] is -1), or inputs off, where pc = W - q
 * (W[o]: the -1s of row o, q: those of the off inputs) and R = (B - 2 W) + n + 2 q (the second
 * planes). Counting is vertical (planes of the count, carry-save adders 4 columns at a time, the
 * list padded with an all-zero column); the sums are taken modulo 2^10, exact since -512 <= R < 512;
 * unit o is on when R's top bit is 0. */
static void conv_sliced(const nca_conv_t *c, const uint64_t *x, uint64_t *bits) {
    static const uint64_t zero_column[NCA_MAX_WORDS];
    const uint64_t *list[NCA_MAX_UNITS + 3];
    int index[NCA_MAX_UNITS], i, p, q;
    const int n_on = ones(x, c->k), use_on = 2 * n_on <= c->k, n = listed(x, c->k, use_on, c->words, index);
    for (i = 0; i < n; i++) list[i] = c->cols + index[i];
    for (; i & 3; i++) list[i] = zero_column;
    for (q = 0; q < c->words; q++) {
        const uint64_t *b = c->planes + (use_on ? 0 : NCA_PLANES * c->words) + q;
        const uint64_t flip = use_on ? ~(uint64_t)0 : 0; /* subtract 2 q: add its complement and 1 */
        uint64_t n0 = 0, n1 = 0, n2 = 0, n3 = 0, n4 = 0, n5 = 0, n6 = 0, n7 = 0, k1, k2, k, u, t, r = 0, c1 = 0, c2 = flip;
        for (i = 0; i < n; i += 4) { /* 4 columns: two carry-save adders into the 1s, one into the 2s */
            const uint64_t a0 = list[i][q], a1 = list[i + 1][q], a2 = list[i + 2][q], a3 = list[i + 3][q];
            u = n0 ^ a0; k1 = (n0 & a0) | (u & a1); n0 = u ^ a1;
            u = n0 ^ a2; k2 = (n0 & a2) | (u & a3); n0 = u ^ a3;
            u = n1 ^ k1; k = (n1 & k1) | (u & k2); n1 = u ^ k2;
            HALF_ADD(n2, k); HALF_ADD(n3, k); HALF_ADD(n4, k); HALF_ADD(n5, k); HALF_ADD(n6, k); HALF_ADD(n7, k);
        }
        { /* r = (b + n) + ((2 cnt) XOR flip) + carry-in flip (1 in every lane), plane by plane */
            const uint64_t twice[NCA_PLANES] = {0, n0, n1, n2, n3, n4, n5, n6, n7, 0};
            for (p = 0; p < NCA_PLANES; p++) {
                const uint64_t np = (uint64_t)0 - (uint64_t)((n_on >> p) & 1), y = twice[p] ^ flip, bp = b[p * c->words];
                const uint64_t sum = bp ^ np ^ c1;
                c1 = (bp & np) | (c1 & (bp ^ np));
                r = sum ^ y ^ c2;
                c2 = (sum & y) | (c2 & (sum ^ y));
            }
        }
        bits[q] = ~r & (64 * q + 64 > c->out ? ((uint64_t)1 << (c->out - 64 * q)) - 1u : ~(uint64_t)0);
    }
}

/* The kernel that computes conv i of m from the header's layout; -1 if none does. */
static int kernel_of(const nca_conv_t *c, int i) {
    if (i == 0) return c->pairs ? (c->thr ? K_DEPTHWISE_BITS : -1) : K_PATCH;
    if (c->cols) return K_SLICED;
    if (c->c0) return c->bits ? K_XNOR : K_LANES;
    return K_INT8;
}

/* The kernels compiled into this build (nca_config.h). */
static int compiled(int kernel) {
    switch (kernel) {
    case K_PATCH: return NCA_USE_PATCH;
    case K_DEPTHWISE_BITS: return NCA_USE_DEPTHWISE_BITS;
    case K_INT8: return NCA_USE_INT8;
    case K_XNOR: return NCA_USE_XNOR;
    case K_LANES: return NCA_USE_LANES;
    case K_SLICED: return NCA_USE_SLICED;
    default: return 0;
    }
}

/* A 1x1 conv (conv 1 or 2) by its kernel: int8 inputs in or binary inputs x -> out or bits. */
static void conv_1x1(const nca_conv_t *c, int kernel, const int32_t *in, const uint64_t *x, int32_t *out, uint64_t *bits) {
    if (NCA_USE_SLICED && kernel == K_SLICED) conv_sliced(c, x, bits);
    else if (NCA_USE_XNOR && kernel == K_XNOR) conv_xnor(c, x, out, bits);
    else if (NCA_USE_LANES && kernel == K_LANES) conv_lanes(c, x, out, bits);
    else if (NCA_USE_INT8) conv_int8(c, in, out, bits);
}

static int32_t mul(const nca_mul_t *p, int32_t a, int32_t b) {
    return clamp(p->zout + mbqm((a - p->za) * (b - p->zb), p->mult, p->shift), -128, 127);
}

/* The ADD's two operands rescaled (TFLite's ADD: each input to a common scale, then the output's). */
static int32_t add_in1(const nca_add_t *p, int32_t a) { return mbqm((a - p->za) * (1 << 20), p->ma, p->sa); }
static int32_t add_in2(const nca_add_t *p, int32_t b) { return mbqm((b - p->zb) * (1 << 20), p->mb, p->sb); }
static int8_t add_out(const nca_add_t *p, int32_t s) { return (int8_t)clamp(mbqm(s, p->mo, p->so) + p->zout, -128, 127); }


/* Fills tab for m; -1 if a conv of m needs a kernel this build does not compile. */
static int build_tables(const nca_model_t *m) {
    int dead, v;
    tab.m = 0;
    for (v = 0; v < 3; v++) {
        tab.kernel[v] = kernel_of(&m->conv[v], v);
        if (!compiled(tab.kernel[v])) return -1;
    }
    for (dead = 0; dead < 2; dead++) {
        int32_t r = add_in2(&m->add, mul(&m->mul2, mul(&m->mul1, m->mul1.za, m->fire_off), dead ? m->alive_off : m->alive_on));
        tab.keeps[dead] = 1;
        for (v = -128; v < 128; v++) {
            tab.rest[dead][v + 128] = add_out(&m->add, add_in1(&m->add, v) + r);
            tab.keeps[dead] &= tab.rest[dead][v + 128] == v;
        }
    }
    for (v = -128; v < 128; v++) {
        tab.in1[v + 128] = add_in1(&m->add, v);
        tab.in2[v + 128] = add_in2(&m->add, mul(&m->mul2, mul(&m->mul1, v, m->fire_on), m->alive_on));
    }
    for (v = 0; tab.kernel[0] == K_DEPTHWISE_BITS && v < m->conv[0].out / 2; v++) {
        const nca_conv_t *c = &m->conv[0];
        int t;
        tab.pair_k[v] = 0; /* a 9-tap sum is < 2^19 in size: clamping K to 2^20 keeps every comparison */
        for (t = 0; t < 9; t++) tab.pair_k[v] += c->pairs[v * 9 + t] * c->zin;
        tab.pair_k[v] += clamp64((int64_t)c->thr[2 * v] - c->bias[2 * v], -(1 << 20), 1 << 20) - ((int64_t)1 << 31)
                       + clamp64((int64_t)c->thr[2 * v + 1] - c->bias[2 * v + 1], -(1 << 20), 1 << 20) * 4294967296;
    }
    tab.m = m;
    return 0;
}

/* ds of one alive, firing cell from its neighbourhood nb (see conv_patch). */
static void cell_update(const nca_model_t *m, const int8_t *const nb[3], int32_t *ds) {
    int32_t p[NCA_MAX_UNITS], hid[NCA_MAX_UNITS];
    uint64_t pb[NCA_MAX_WORDS], hb[NCA_MAX_WORDS];
    if (NCA_USE_DEPTHWISE_BITS && tab.kernel[0] == K_DEPTHWISE_BITS) depthwise_bits(&m->conv[0], nb, m->channels, pb);
    else if (NCA_USE_PATCH) conv_patch(&m->conv[0], nb, m->channels, p, pb);
    conv_1x1(&m->conv[1], tab.kernel[1], p, pb, hid, hb);
    conv_1x1(&m->conv[2], tab.kernel[2], hid, hb, ds, 0);
}

/* Row y of the state (old values) into a row buffer with its border; outside the grid: all Zin. */
static void load_row(int8_t *buf, const int8_t *state, int y, int h, int w, int C, int8_t zin) {
    if (y < 0 || y >= h) {
        memset(buf, zin, (size_t)(w + 2) * (size_t)C);
        return;
    }
    memset(buf, zin, (size_t)C);
    memcpy(buf + C, state + (size_t)y * (size_t)w * (size_t)C, (size_t)w * (size_t)C);
    memset(buf + (size_t)(w + 1) * (size_t)C, zin, (size_t)C);
}

int nca_step(const nca_model_t *m, int8_t *state, int h, int w, const uint8_t *fire) {
    int32_t ds[NCA_MAX_CHANNELS];
    const int C = m->channels;
    const int8_t zin = (int8_t)m->conv[0].zin;
    const int computes = m->fire_on != m->fire_off && m->alive_on != m->alive_off;
    const nca_add_t *add = &m->add;
    int8_t *above = rows[0], *here = rows[1], *below = rows[2], *t;
    int y, x, c;
    if (C > NCA_MAX_CHANNELS || w > NCA_MAX_WIDTH || m->perception > NCA_MAX_UNITS || m->hidden > NCA_MAX_UNITS)
        return -1;
    if (tab.m != m && build_tables(m) != 0) return -1;
    load_row(above, state, -1, h, w, C, zin);
    load_row(here, state, 0, h, w, C, zin);
    for (y = 0; y < h; y++) {
        load_row(below, state, y + 1, h, w, C, zin); /* not yet updated: old values */
        for (x = 0; x < w; x++) {
            int8_t *cell = state + ((size_t)y * (size_t)w + (size_t)x) * (size_t)C;
            const int8_t *old = here + (x + 1) * C;
            int alive = old[0] >= m->alive_min;
            if (computes && alive && fire[y * w + x]) {
                const int8_t *nb[3];
                nb[0] = above + x * C;
                nb[1] = here + x * C;
                nb[2] = below + x * C;
                cell_update(m, nb, ds);
                for (c = 1; c < C; c++) cell[c] = add_out(add, tab.in1[old[c] + 128] + tab.in2[ds[c - 1] + 128]);
            } else if (!tab.keeps[!alive]) {
                const int8_t *lut = tab.rest[!alive];
                for (c = 1; c < C; c++) cell[c] = lut[old[c] + 128];
            }
        }
        t = above;
        above = here;
        here = below;
        below = t;
    }
    return 0;
}
uint32_t nca_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

int nca_fires(uint32_t seed, uint32_t stream, uint32_t step, uint32_t row, uint32_t col, uint32_t threshold) {
    uint32_t k = nca_mix32(seed ^ 0x9E3779B9u);
    k = nca_mix32(k ^ stream);
    k = nca_mix32(k ^ step);
    k = nca_mix32(k ^ ((row << 16) | col));
    return (k >> 8) < threshold;
}

void nca_seed(const nca_model_t *m, int8_t *state, const uint8_t *grey, int h, int w) {
    int i, c;
    for (i = 0; i < h * w; i++) {
        state[i * m->channels] = m->pixel_lut[grey[i]];
        for (c = 1; c < m->channels; c++) state[i * m->channels + c] = (int8_t)m->state_zero;
    }
}

void nca_mutate(const nca_model_t *m, int8_t *state, const uint8_t *grey, int h, int w) {
    int i, c;
    for (i = 0; i < h * w; i++) {
        int8_t *cell = state + i * m->channels;
        cell[0] = m->pixel_lut[grey[i]];
        if (cell[0] < m->alive_min)
            for (c = 1; c < m->channels; c++) cell[c] = (int8_t)m->state_zero;
    }
}

int nca_label(const nca_model_t *m, const int8_t *cell) {
    int k, best = 0;
    const int8_t *cls = cell + m->channels - m->n_classes;
    for (k = 1; k < m->n_classes; k++)
        if (cls[k] > cls[best]) best = k;
    return best;
}
