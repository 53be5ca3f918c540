/* nca-edge C firmware: the int8 CA step, exactly as firmware_sim/int8.py (the golden model),
 * computed the way firmware_sim/xnor.py does it for binary activations.
 * C99; <stdint.h> and <string.h> only; no heap, no floating point. */
#include "nca_step.h"

#include <string.h>

#define I32_MIN (-2147483647 - 1)
#define I32_MAX 2147483647

/* Arithmetic right shift, also for negative values (C99 leaves >> of negatives to the compiler). */
static inline int32_t asr(int32_t x, int e) { return x < 0 ? ~(int32_t)(~(uint32_t)x >> e) : (int32_t)((uint32_t)x >> e); }

/* TFLite's SaturatingRoundingDoublingHighMul. */
static int32_t srdhm(int32_t a, int32_t b) {
    int64_t ab, nudge;
    if (a == I32_MIN && b == I32_MIN) return I32_MAX;
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    ab += nudge; /* then divide by 2^31, truncating toward zero (C division), with shifts */
    return (int32_t)(ab >= 0 ? (ab >> 31) : -((-ab) >> 31));
}

/* TFLite's RoundingDivideByPOT (round half away from zero). */
static int32_t rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return asr(x, e) + (rem > thr ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding). */
static int32_t mbqm(int32_t x, int32_t mult, int32_t shift) {
    int left = shift > 0 ? (int)shift : 0, right = shift > 0 ? 0 : (int)-shift;
    return rdbpot(srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

#define NCA_MAX_WORDS ((NCA_MAX_UNITS + 63) / 64)
#if NCA_MAX_UNITS > 128
#error "NCA_MAX_UNITS > 128: a binary layer's input is at most two 64-bit words here"
#endif
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
    int64_t pair_zero[NCA_MAX_UNITS / 2]; /* conv 0 as pairs: Zin * (sum of the pair's taps) */
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

/* The 3x3 conv for one cell from its neighbourhood: nb[dy] points at the old values of the cell
 * left of it in row dy (a row buffer with a border of Zin, so an outside tap adds 0: TFLite's
 * padding). Depthwise (output o reads input channel o / dm only: 9 taps) or dense (an int8 or
 * binary kernel over xc[i * 9 + t] = value - Zin of channel i at tap t = 3 dy + dx). */
static void conv_patch(const nca_conv_t *c, const int8_t *const nb[3], int cin, int32_t *out, uint64_t *bits) {
    int32_t xc[9 * NCA_MAX_CHANNELS], acc[NCA_MAX_UNITS];
    int o, t, i, l;
    for (i = 0, o = 0; c->dm && i < cin; i++) { /* v[t]: channel i at tap t */
        const int8_t *r0 = nb[0] + i, *r1 = nb[1] + i, *r2 = nb[2] + i;
        const int32_t v[9] = {r0[0], r0[cin], r0[2 * cin], r1[0], r1[cin], r1[2 * cin], r2[0], r2[cin], r2[2 * cin]};
        if (c->pairs) { /* outputs o and o + 1 in the two halves of one 64-bit sum (see pairs); the
                           zero point's part, Zin * (sum of the taps), is subtracted once (tab.pair_zero) */
            for (l = 0; l < c->dm; l += 2, o += 2) {
                const int64_t *w = c->pairs + (int32_t)o / 2 * 9;
                const int64_t s = w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3] + w[4] * v[4]
                                + w[5] * v[5] + w[6] * v[6] + w[7] * v[7] + w[8] * v[8] - tab.pair_zero[o / 2];
                const int64_t lo = (int64_t)((uint64_t)s & 0xFFFFFFFFu) - (int64_t)(((uint64_t)s & 0x80000000u) << 1);
                acc[o] = c->bias[o] + (int32_t)lo;
                acc[o + 1] = c->bias[o + 1] + (int32_t)((s - lo) / 4294967296); /* exact */
            }
        } else {
            const int32_t x[9] = {v[0] - c->zin, v[1] - c->zin, v[2] - c->zin, v[3] - c->zin, v[4] - c->zin,
                                  v[5] - c->zin, v[6] - c->zin, v[7] - c->zin, v[8] - c->zin};
            for (l = 0; l < c->dm; l++, o++) {
                const int8_t *w = c->w + (int32_t)o * 9;
                acc[o] = c->bias[o] + w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] * x[3] + w[4] * x[4]
                       + w[5] * x[5] + w[6] * x[6] + w[7] * x[7] + w[8] * x[8];
            }
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

/* A 1x1 conv on int8 inputs in[0..k-1] -> out[o] or bits. */
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

/* Index of the lowest set bit of v != 0 (de Bruijn multiplication). */
static inline int lowest_bit(uint64_t v) {
    static const uint8_t index[64] = {
        0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
        63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6};
    return index[((v & (0 - v)) * 0x03F79D71B4CB0A89ull) >> 58];
}

/* A 1x1 conv on binary inputs x (bit j = input j is on) -> out[o] or bits (firmware_sim/xnor.py):
 * acc = c0[o] + step * (sum of w[o][j] over the inputs j that are on)
 *     = c1[o] - step * (sum of w[o][j] over the inputs j that are off). */
static void conv_bits(const nca_conv_t *c, const uint64_t *x, int32_t *out, uint64_t *bits) {
    int32_t acc[NCA_MAX_UNITS], list[NCA_MAX_UNITS];
    int o, q, j, n = 0, n_on = 0, nx = (c->k + 63) / 64, nl = (c->out + 3) / 4, use_on;
    uint64_t counts = 0;
    for (q = 0; q < nx; q++) counts += nibble_counts(x[q]);
    n_on = popcount_fields(counts);
    if (c->bits) { /* XNOR/popcount: the sum is magnitude * (popcount(x) - 2 popcount(x AND bits[o])) */
        const int32_t a = c->step * c->magnitude, *c0 = c->c0;
        const uint64_t *row = c->bits, x0 = x[0], x1 = nx > 1 ? x[1] : 0;
        for (o = 0; o < c->out; o++, row += nx) {
            counts = nibble_counts(x0 & row[0]);
            if (nx > 1) counts += nibble_counts(x1 & row[1]);
            acc[o] = c0[o] + a * (n_on - 2 * popcount_fields(counts));
        }
        finish(c, acc, out, bits);
        return;
    }
    /* An int8 kernel: the weights of the shorter list (inputs on, or off) are added. lanes holds
     * the kernel by input (input j's weights + 128 in 16-bit lanes, 4 outputs a word): a word
     * adds 4 weights at once, without overflow (k * 255 < 65536); then minus 128 per input. */
    use_on = 2 * n_on <= c->k;
    for (q = 0; q < nx; q++) {
        uint64_t v = use_on ? x[q] : ~x[q];
        if (64 * q + 64 > c->k) v &= ((uint64_t)1 << (c->k - 64 * q)) - 1u; /* no inputs past k */
        for (; v; v &= v - 1u) list[n++] = (64 * q + lowest_bit(v)) * nl;
    }
    for (q = 0; q < nl; q++) {
        const uint64_t *col = c->lanes + q;
        uint64_t lanes = 0;
        for (j = 0; j < n; j++) lanes += col[list[j]];
        for (o = 4 * q; o < 4 * q + 4 && o < c->out; o++) {
            const int32_t sum = (int32_t)((lanes >> (16 * (o & 3))) & 0xFFFFu) - 128 * n;
            acc[o] = use_on ? c->c0[o] + c->step * sum : c->c1[o] - c->step * sum;
        }
    }
    finish(c, acc, out, bits);
}

static int32_t mul(const nca_mul_t *p, int32_t a, int32_t b) {
    return clamp(p->zout + mbqm((a - p->za) * (b - p->zb), p->mult, p->shift), -128, 127);
}

/* The ADD's two operands rescaled (TFLite's ADD: each input to a common scale, then the output's). */
static int32_t add_in1(const nca_add_t *p, int32_t a) { return mbqm((a - p->za) * (1 << 20), p->ma, p->sa); }
static int32_t add_in2(const nca_add_t *p, int32_t b) { return mbqm((b - p->zb) * (1 << 20), p->mb, p->sb); }
static int8_t add_out(const nca_add_t *p, int32_t s) { return (int8_t)clamp(mbqm(s, p->mo, p->so) + p->zout, -128, 127); }


static void build_tables(const nca_model_t *m) {
    int dead, v;
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
    for (v = 0; m->conv[0].pairs && v < m->conv[0].out / 2; v++) {
        int t;
        tab.pair_zero[v] = 0;
        for (t = 0; t < 9; t++) tab.pair_zero[v] += m->conv[0].pairs[v * 9 + t] * m->conv[0].zin;
    }
    tab.m = m;
}

/* ds of one alive, firing cell from its neighbourhood nb (see conv_patch). */
static void cell_update(const nca_model_t *m, const int8_t *const nb[3], int32_t *ds) {
    int32_t p[NCA_MAX_UNITS], hid[NCA_MAX_UNITS];
    uint64_t pb[NCA_MAX_WORDS], hb[NCA_MAX_WORDS];
    conv_patch(&m->conv[0], nb, m->channels, p, pb);
    if (m->conv[1].c0) conv_bits(&m->conv[1], pb, hid, hb); else conv_int8(&m->conv[1], p, hid, hb);
    if (m->conv[2].c0) conv_bits(&m->conv[2], hb, ds, 0); else conv_int8(&m->conv[2], hid, ds, 0);
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
    if (tab.m != m) build_tables(m);
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
