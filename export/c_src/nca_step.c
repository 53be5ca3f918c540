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

/* One conv layer for one cell: in[k] (int32 values of int8 inputs, in (tap, channel) order,
 * with `valid[tap]` saying whether that tap is inside the grid) -> out[o]. */
static void conv(const nca_conv_t *c, const int32_t *in, const uint8_t *valid, int cin, int32_t *out) {
    int o, t, i;
    for (o = 0; o < c->out; o++) {
        int32_t acc = 0;
        if (c->w) {
            const int8_t *row = c->w + (int32_t)o * c->k;
            for (t = 0; t < c->taps; t++) {
                if (!valid[t]) continue;
                for (i = 0; i < cin; i++) acc += (int32_t)row[t * cin + i] * (in[t * cin + i] - c->zin);
            }
        } else {
            const uint32_t *row = c->bits + (int32_t)o * c->words;
            int32_t sum = 0;
            for (t = 0; t < c->taps; t++) {
                if (!valid[t]) continue;
                for (i = 0; i < cin; i++) {
                    int j = t * cin + i;
                    int32_t v = in[j] - c->zin;
                    sum += ((row[j >> 5] >> (j & 31)) & 1u) ? -v : v;
                }
            }
            acc = c->magnitude * sum;
        }
        acc += c->bias[o];
        out[o] = clamp(mbqm(acc, c->mult[o], c->shift[o]) + c->zout, c->act_min, c->act_max);
    }
}

/* A binary activation on n values, in place (docs/integer_semantics.md, "Binary activations"). */
static void threshold(const nca_act_t *a, int32_t *v, int n) {
    int i;
    if (!a->enabled) return;
    for (i = 0; i < n; i++) v[i] = v[i] >= a->min_q ? a->on : a->off;
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

int nca_step(const nca_model_t *m, int8_t *state, int h, int w, const uint8_t *fire) {
    int32_t patch[9 * NCA_MAX_CHANNELS], p[NCA_MAX_UNITS], hid[NCA_MAX_UNITS], ds[NCA_MAX_CHANNELS];
    uint8_t valid[9];
    const uint8_t all[1] = {1};
    const int C = m->channels;
    const size_t row_bytes = (size_t)w * (size_t)C;
    int y, x, dy, dx, c;
    if (C > NCA_MAX_CHANNELS || w > NCA_MAX_WIDTH || m->perception > NCA_MAX_UNITS || m->hidden > NCA_MAX_UNITS)
        return -1;
    for (y = 0; y < h; y++) {
        memcpy(row_here, state + (size_t)y * row_bytes, row_bytes);
        for (x = 0; x < w; x++) {
            int8_t *cell = state + ((size_t)y * (size_t)w + (size_t)x) * (size_t)C;
            int alive = row_here[x * C] >= m->alive_min;
            int32_t fq = fire[y * w + x] ? m->fire_on : m->fire_off;
            int32_t aq = alive ? m->alive_on : m->alive_off;
            if (fq != m->fire_off && aq != m->alive_off) {
                int t = 0;
                for (dy = -1; dy <= 1; dy++) {
                    for (dx = -1; dx <= 1; dx++, t++) {
                        int yy = y + dy, xx = x + dx;
                        const int8_t *src;
                        valid[t] = (uint8_t)(yy >= 0 && yy < h && xx >= 0 && xx < w);
                        if (!valid[t]) continue;
                        src = dy < 0 ? row_above + xx * C : dy == 0 ? row_here + xx * C
                                     : state + ((size_t)yy * (size_t)w + (size_t)xx) * (size_t)C;
                        for (c = 0; c < C; c++) patch[t * C + c] = src[c];
                    }
                }
                conv(&m->conv[0], patch, valid, C, p);
                threshold(&m->act[0], p, m->perception);
                conv(&m->conv[1], p, all, m->perception, hid);
                threshold(&m->act[1], hid, m->hidden);
                conv(&m->conv[2], hid, all, m->hidden, ds);
                for (c = 1; c < C; c++) {
                    int32_t m1 = mul(&m->mul1, ds[c - 1], fq);
                    cell[c] = add(&m->add, row_here[x * C + c], mul(&m->mul2, m1, aq));
                }
            } else {
                /* a resting or dead cell: one MUL operand is its zero point, so ds cannot matter */
                int32_t m1 = mul(&m->mul1, m->mul1.za, fq);
                int32_t mm = mul(&m->mul2, m1, aq);
                for (c = 1; c < C; c++) cell[c] = add(&m->add, row_here[x * C + c], mm);
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
