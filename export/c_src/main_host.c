/* Host driver: run the C step on test vectors (docs/test_vectors.md) and write every state.
 *
 *   nca_host VECTOR_DIR N STEPS H W MASK_SEED FIRE_THRESHOLD MUTATE_AT OUT_FILE [STREAM0]
 *
 * Reads VECTOR_DIR/input.bin (uint8 [N][H][W]) and, when MUTATE_AT > 0, mutate_input.bin;
 * generates the fire masks with the PRNG (stream = STREAM0 + grid index, STREAM0 default 0); writes int8
 * [N][STEPS+1][H][W][C] to OUT_FILE. Exit status 0 on success.
 * OUT_FILE "-" (a benchmark): nothing is written; prints the processor seconds spent stepping
 * (clock() around each grid's steps; the fire masks are made before). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nca_step.h"

static int read_all(const char *dir, const char *name, uint8_t *buf, size_t n) {
    char path[1024];
    FILE *f;
    size_t got;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return -1; }
    got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) { fprintf(stderr, "%s: expected %lu bytes\n", path, (unsigned long)n); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    int n, steps, h, w, mutate_at, g, t, y, x;
    unsigned long seed, thr, stream0 = 0;
    size_t cells, grid_bytes;
    uint8_t *grey, *mgrey = NULL, *fire;
    int8_t *state;
    FILE *out = NULL;
    clock_t in_step = 0, t0;
    const nca_model_t *m = nca_get_model();
    if (argc != 10 && argc != 11) {
        fprintf(stderr, "usage: %s VECTOR_DIR N STEPS H W MASK_SEED FIRE_THRESHOLD MUTATE_AT OUT_FILE [STREAM0]\n", argv[0]);
        return 2;
    }
    if (argc == 11) stream0 = strtoul(argv[10], NULL, 10);
    n = atoi(argv[2]); steps = atoi(argv[3]); h = atoi(argv[4]); w = atoi(argv[5]);
    seed = strtoul(argv[6], NULL, 10); thr = strtoul(argv[7], NULL, 10); mutate_at = atoi(argv[8]);
    cells = (size_t)h * (size_t)w;
    grid_bytes = cells * (size_t)m->channels;
    grey = malloc(cells * (size_t)n);
    fire = malloc(cells * (size_t)(steps > 0 ? steps : 1));
    state = malloc(grid_bytes);
    if (!grey || !fire || !state) return 3;
    if (read_all(argv[1], "input.bin", grey, cells * (size_t)n)) return 4;
    if (mutate_at > 0) {
        mgrey = malloc(cells * (size_t)n);
        if (!mgrey || read_all(argv[1], "mutate_input.bin", mgrey, cells * (size_t)n)) return 4;
    }
    if (strcmp(argv[9], "-") != 0) {
        out = fopen(argv[9], "wb");
        if (!out) { fprintf(stderr, "cannot write %s\n", argv[9]); return 5; }
    }
    for (g = 0; g < n; g++) {
        nca_seed(m, state, grey + (size_t)g * cells, h, w);
        if (out) fwrite(state, 1, grid_bytes, out);
        for (t = 0; t < steps; t++) /* every mask of this grid first, so a benchmark times steps only */
            for (y = 0; y < h; y++)
                for (x = 0; x < w; x++)
                    fire[(size_t)t * cells + (size_t)(y * w + x)] = (uint8_t)nca_fires((uint32_t)seed,
                        (uint32_t)(stream0 + (unsigned long)g), (uint32_t)t, (uint32_t)y, (uint32_t)x, (uint32_t)thr);
        t0 = clock();
        for (t = 0; t < steps; t++) {
            if (mgrey && t == mutate_at) nca_mutate(m, state, mgrey + (size_t)g * cells, h, w);
            if (nca_step(m, state, h, w, fire + (size_t)t * cells) != 0) {
                fprintf(stderr, "nca_step refused the model or grid: larger than this build's maxima, or a layer's "
                                "kernel is not compiled in (nca_config.h)\n");
                return 6;
            }
            if (out) fwrite(state, 1, grid_bytes, out);
        }
        in_step += clock() - t0;
    }
    if (out) fclose(out);
    else printf("%.6f\n", (double)in_step / CLOCKS_PER_SEC);
    free(grey);
    free(mgrey);
    free(fire);
    free(state);
    return 0;
}
