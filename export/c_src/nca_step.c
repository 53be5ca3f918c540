/* nca-edge C firmware: the int8 CA step, exactly as firmware_sim/int8.py (the golden model).
 * C99; <stdint.h> and <string.h> only; no heap, no floating point. */
#include "nca_step.h"

#include <string.h>

#define I32_MIN (-2147483647 - 1)
#define I32_MAX 2147483647

/* Arithmetic right shift, also for negative values (C99 leaves >> of negatives to the compiler). */
static int32_t asr(int32_t x, int e) { return x < 0 ? ~(int32_t)(~(uint32_t)x >> e) : (int32_t)((uint32_t)x >> e); }

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

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

#define NCA_MAX_WORDS ((NCA_MAX_UNITS + 31) / 32)

/* A layer's int32 accumulator -> its output: a bit (binary output: acc >= thr[o]) or the
 * requantized int8 value. */
static inline void emit(const nca_conv_t *c, int o, int32_t acc, int32_t *out, uint32_t *bits) {
    if (c->thr) {
        if (acc >= c->thr[o]) bits[o >> 5] |= 1u << (o & 31);
    } else {
        out[o] = clamp(mbqm(acc, c->mult[o], c->shift[o]) + c->zout, c->act_min, c->act_max);
    }
}

/* The 3x3 conv for one cell. xc[i * 9 + t] = neighbourhood value - Zin of input channel i at
 * tap t (tap = 3 dy + dx; 0 outside the grid: TFLite skips those taps, the same sum) -> out[o]
 * or bits. Dense (int8 or binary) or depthwise kernel. */
static void conv_patch(const nca_conv_t *c, const int32_t *xc, int cin, int32_t *out, uint32_t *bits) {
    int o, t, i;
    for (o = 0; o < c->out; o++) {
        int32_t acc = 0;
        if (c->dm) {
            const int8_t *row = c->w + (int32_t)o * 9;
            const int32_t *x = xc + (o / c->dm) * 9;
            acc = row[0] * x[0] + row[1] * x[1] + row[2] * x[2] + row[3] * x[3] + row[4] * x[4]
                + row[5] * x[5] + row[6] * x[6] + row[7] * x[7] + row[8] * x[8];
        } else if (c->w) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            for (t = 0; t < 9; t++)
                for (i = 0; i < cin; i++) acc += (int32_t)row[t * cin + i] * xc[i * 9 + t];
        } else {
            const uint32_t *row = c->bits + (int32_t)o * c->words;
            int32_t sum = 0;
            for (t = 0; t < 9; t++) {
                for (i = 0; i < cin; i++) {
                    int j = t * cin + i;
                    sum += ((row[j >> 5] >> (j & 31)) & 1u) ? -xc[i * 9 + t] : xc[i * 9 + t];
                }
            }
            acc = c->magnitude * sum;
        }
        emit(c, o, acc + c->bias[o], out, bits);
    }
}

/* A 1x1 conv on int8 inputs in[0..k-1] -> out[o] or bits. */
static void conv_int8(const nca_conv_t *c, const int32_t *in, int32_t *out, uint32_t *bits) {
    int32_t xz[NCA_MAX_UNITS];
    int o, j;
    for (j = 0; j < c->k; j++) xz[j] = in[j] - c->zin;
    for (o = 0; o < c->out; o++) {
        int32_t acc = 0;
        if (c->w) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            for (j = 0; j < c->k; j++) acc += (int32_t)row[j] * xz[j];
        } else {
            const uint32_t *row = c->bits + (int32_t)o * c->words;
            int32_t sum = 0;
            for (j = 0; j < c->k; j++) sum += ((row[j >> 5] >> (j & 31)) & 1u) ? -xz[j] : xz[j];
            acc = c->magnitude * sum;
        }
        emit(c, o, acc + c->bias[o], out, bits);
    }
}

/* Set bits of a few words: SWAR byte counts summed before the one horizontal add (n <= 31). */
static int32_t popcount_and(const uint32_t *a, const uint32_t *b, int n) {
    uint32_t s = 0;
    int j;
    for (j = 0; j < n; j++) {
        uint32_t v = b ? a[j] & b[j] : a[j];
        v = v - ((v >> 1) & 0x55555555u);
        v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
        s += (v + (v >> 4)) & 0x0F0F0F0Fu;
    }
    return (int32_t)((s * 0x01010101u) >> 24);
}

/* A 1x1 conv on binary inputs x (bit j = input j is on) -> out[o] or bits (firmware_sim/xnor.py):
 * acc = c0[o] + step * (sum of w[o][j] over the inputs j that are on)
 *     = c1[o] - step * (sum of w[o][j] over the inputs j that are off). */
static void conv_bits(const nca_conv_t *c, const uint32_t *x, int32_t *out, uint32_t *bits) {
    int o, j, n_on = 0, n_off = 0, words = (c->k + 31) / 32;
    if (c->bits) { /* XNOR/popcount: the sum is magnitude * (popcount(x) - 2 popcount(x AND bits[o])) */
        int32_t px = popcount_and(x, 0, words), a = c->step * c->magnitude;
        for (o = 0; o < c->out; o++)
            emit(c, o, c->c0[o] + a * (px - 2 * popcount_and(x, c->bits + (int32_t)o * c->words, words)), out, bits);
    } else { /* int8 kernel: add the weights of the shorter of the two lists */
        int16_t on[NCA_MAX_UNITS], off[NCA_MAX_UNITS];
        for (j = 0; j < c->k; j++) {
            if ((x[j >> 5] >> (j & 31)) & 1u) on[n_on++] = (int16_t)j;
            else off[n_off++] = (int16_t)j;
        }
        for (o = 0; o < c->out; o++) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            int32_t sum = 0;
            if (n_on <= n_off) {
                for (j = 0; j < n_on; j++) sum += row[on[j]];
                emit(c, o, c->c0[o] + c->step * sum, out, bits);
            } else {
                for (j = 0; j < n_off; j++) sum += row[off[j]];
                emit(c, o, c->c1[o] - c->step * sum, out, bits);
            }
        }
    }
}

static int32_t mul(const nca_mul_t *p, int32_t a, int32_t b) {
    return clamp(p->zout + mbqm((a - p->za) * (b - p->zb), p->mult, p->shift), -128, 127);
}

static int8_t add(const nca_add_t *p, int32_t a, int32_t b) {
    int32_t a1 = mbqm((a - p->za) * (1 << 20), p->ma, p->sa);
    int32_t b1 = mbqm((b - p->zb) * (1 << 20), p->mb, p->sb);
    return (int8_t)clamp(mbqm(a1 + b1, p->mo, p->so) + p->zout, -128, 127);
}

/* Row buffers: the old values of the row above and of the current row (in-place update). */
static int8_t row_above[NCA_MAX_WIDTH * NCA_MAX_CHANNELS];
static int8_t row_here[NCA_MAX_WIDTH * NCA_MAX_CHANNELS];
/* Tables built from the model's constants on the first step with that model (one value in, one
 * value out):
 * rest[dead][v + 128]: the next value of a channel at v in a cell that does not compute (resting
 * or dead: one MUL operand is its zero point, so m is a constant); fired[ds + 128]: the MUL
 * chain's output m for an alive, firing cell whose last conv gave ds. */
static int8_t rest[2][256];
static int8_t fired[256];
static const nca_model_t *tables_for = 0;

/* ds of one alive, firing cell from its neighbourhood xc (see conv_patch). */
static void cell_update(const nca_model_t *m, const int32_t *xc, int32_t *ds) {
    int32_t p[NCA_MAX_UNITS], hid[NCA_MAX_UNITS];
    uint32_t pb[NCA_MAX_WORDS], hb[NCA_MAX_WORDS];
    memset(pb, 0, sizeof pb);
    memset(hb, 0, sizeof hb);
    conv_patch(&m->conv[0], xc, m->channels, p, pb);
    if (m->conv[1].c0) conv_bits(&m->conv[1], pb, hid, hb); else conv_int8(&m->conv[1], p, hid, hb);
    if (m->conv[2].c0) conv_bits(&m->conv[2], hb, ds, 0); else conv_int8(&m->conv[2], hid, ds, 0);
}

int nca_step(const nca_model_t *m, int8_t *state, int h, int w, const uint8_t *fire) {
    int32_t xc[9 * NCA_MAX_CHANNELS], ds[NCA_MAX_CHANNELS];
    const int C = m->channels;
    const int32_t zin = m->conv[0].zin;
    const size_t row_bytes = (size_t)w * (size_t)C;
    const int computes = m->fire_on != m->fire_off && m->alive_on != m->alive_off;
    int y, x, dy, dx, c, v, dead;
    if (C > NCA_MAX_CHANNELS || w > NCA_MAX_WIDTH || m->perception > NCA_MAX_UNITS || m->hidden > NCA_MAX_UNITS)
        return -1;
    if (tables_for != m) {
        for (dead = 0; dead < 2; dead++) {
            int32_t r = mul(&m->mul2, mul(&m->mul1, m->mul1.za, m->fire_off), dead ? m->alive_off : m->alive_on);
            for (v = -128; v < 128; v++) rest[dead][v + 128] = add(&m->add, v, r);
        }
        for (v = -128; v < 128; v++) fired[v + 128] = (int8_t)mul(&m->mul2, mul(&m->mul1, v, m->fire_on), m->alive_on);
        tables_for = m;
    }
    for (y = 0; y < h; y++) {
        memcpy(row_here, state + (size_t)y * row_bytes, row_bytes);
        for (x = 0; x < w; x++) {
            int8_t *cell = state + ((size_t)y * (size_t)w + (size_t)x) * (size_t)C;
            const int8_t *old = row_here + x * C;
            int alive = old[0] >= m->alive_min;
            if (computes && alive && fire[y * w + x]) {
                int t = 0;
                for (dy = -1; dy <= 1; dy++) {
                    for (dx = -1; dx <= 1; dx++, t++) {
                        int yy = y + dy, xx = x + dx;
                        const int8_t *src;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) {
                            for (c = 0; c < C; c++) xc[c * 9 + t] = 0;
                            continue;
                        }
                        src = dy < 0 ? row_above + xx * C : dy == 0 ? row_here + xx * C
                                     : state + ((size_t)yy * (size_t)w + (size_t)xx) * (size_t)C;
                        for (c = 0; c < C; c++) xc[c * 9 + t] = src[c] - zin;
                    }
                }
                cell_update(m, xc, ds);
                for (c = 1; c < C; c++) cell[c] = add(&m->add, old[c], fired[ds[c - 1] + 128]);
            } else {
                const int8_t *lut = rest[!alive];
                for (c = 1; c < C; c++) cell[c] = lut[old[c] + 128];
            }
        }
        memcpy(row_above, row_here, row_bytes);
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
