/* nca-edge C firmware: one int8 CA step (docs/integer_semantics.md), C99, no heap, no floats.
 *
 * The model's constants are in nca_model.h, the layer kernels it needs in nca_config.h (both generated
 * by `nca-edge export MODEL --format c`).
 * State layout: int8 [H][W][C] (row-major, channels last), channel 0 = the grey pixel.
 */
#ifndef NCA_STEP_H
#define NCA_STEP_H

#include <stdint.h>

#include "nca_config.h" /* generated with the model: NCA_USE_*, and NCA_MAX_UNITS for one wider than 128 */

typedef struct {
    int32_t out, k;            /* output channels, reduction length (9*C, P or H) */
    int32_t taps;              /* 9 for the 3x3 conv, 1 for a 1x1 conv */
    int32_t dm;                /* depthwise 3x3: output o reads input channel o / dm only, w is [out][taps] (or pairs); 0: dense */
    const int8_t *w;           /* int8 kernel [out][k] (or [out][taps] when dm > 0) on an int8 input, or NULL */
    const int64_t *pairs;      /* depthwise with an even dm and a binary output: [out / 2][taps], w[o][t] + w[o + 1][t]
                                  * 2^32 for even o (two 9-tap sums in one 64-bit sum: each is < 2^19 in size), or NULL */
    const uint64_t *bits;      /* binary kernel [out][words]: bit j of word j/64, 1 = -1, or NULL */
    const uint64_t *lanes;     /* int8 kernel on a binary input, by input: [k][(out + 3) / 4] words, lane
                                  l of word q of input j (bits 16l..16l+15) = w[4q + l][j] + 128, or NULL */
    const uint64_t *cols;      /* binary kernel on a binary input with a binary output, by input: [k][words],
                                  bit o of word o/64 of input j = w[o][j] is -1, or NULL (bits instead) */
    const uint64_t *planes;    /* with cols: [2][10][words], the bounds B (inputs on) and B - 2 W (off) in
                                  10-bit two's complement, plane p = bit p of each output's (conv_sliced) */
    int32_t words, magnitude;  /* words per row of bits (per input of cols), |w| of the binary kernel */
    const int32_t *bias;       /* bias (NULL when the input is binary: folded into c0) */
    const int32_t *mult;       /* requantization (NULL when the output is binary: thr instead) */
    const int8_t *shift;
    int32_t zin, zout, act_min, act_max;
    /* Binary input (ban, bnn: conv 1 and 2), firmware_sim/xnor.py: acc = c0[o] + step * (sum of the
     * weights of the inputs that are on) = c1[o] - step * (sum of those of the inputs that are off);
     * a binary kernel's sum is magnitude * (popcount(x) - 2 popcount(x AND bits)). NULL / 0 for an
     * int8 input (c1: NULL for a binary kernel too). */
    const int32_t *c0, *c1;
    int32_t step;
    /* Binary output (ban, bnn: conv 0 and 1): unit o is on when acc >= thr[o]. NULL: requantize. */
    const int32_t *thr;
} nca_conv_t;

typedef struct { int32_t za, zb, zout, mult, shift; } nca_mul_t;
typedef struct { int32_t za, zb, zout, ma, sa, mb, sb, mo, so; } nca_add_t;

typedef struct {
    int32_t channels, perception, hidden, n_classes;
    int32_t state_zero, alive_min, fire_on, fire_off, alive_on, alive_off;
    const int8_t *pixel_lut;   /* [256] */
    nca_conv_t conv[3];        /* conv 0 reads the int8 3x3 neighbourhood; 1 and 2 read conv 0 / 1 */
    nca_mul_t mul1, mul2;
    nca_add_t add;
} nca_model_t;

/* Largest sizes the step's scratch space is compiled for (checked by nca_step). */
#ifndef NCA_MAX_CHANNELS
#define NCA_MAX_CHANNELS 32
#endif
#ifndef NCA_MAX_WIDTH
#define NCA_MAX_WIDTH 64
#endif
#ifndef NCA_MAX_UNITS  /* at most 256 (export.C_MAX_UNITS); nca_config.h sets it for models wider than 128 */
#define NCA_MAX_UNITS 128
#endif

/* The model compiled into this build (nca_model.c, from the generated nca_model.h). */
const nca_model_t *nca_get_model(void);

/* One step in place: state [h][w][C]; fire[y*w + x] != 0 where the cell fires.
 * Returns 0, or -1 (state untouched) if the grid or model exceeds the compiled maxima or a layer
 * needs a kernel this build does not compile (nca_config.h, generated with the model). Tables
 * derived from the model (256-entry lookups for cells that rest and for the write-back ADD, the
 * depthwise pairs' constants, each layer's kernel) are built on the first call with a given model
 * pointer (a model's constants are const: changing them in place at the same address is not
 * supported). Not reentrant. */
int nca_step(const nca_model_t *m, int8_t *state, int h, int w, const uint8_t *fire);

/* The fire-mask PRNG (firmware_sim/prng.py): 1 if cell (row, col) fires at `step`. */
uint32_t nca_mix32(uint32_t x);
int nca_fires(uint32_t seed, uint32_t stream, uint32_t step, uint32_t row, uint32_t col, uint32_t threshold);

/* Host helpers: the seed state from grey levels, the protocol's mutation, a cell's label. */
void nca_seed(const nca_model_t *m, int8_t *state, const uint8_t *grey, int h, int w);
void nca_mutate(const nca_model_t *m, int8_t *state, const uint8_t *grey, int h, int w);
int nca_label(const nca_model_t *m, const int8_t *cell);

#endif
