/*
 * zstd_loop.c: a second reference for Fathom's cpu.compress probe, beside `zstd -b`.
 *
 *   cc -O2 -o zstd_loop zstd_loop.c -lzstd
 *   ./zstd_loop FILE LEVEL SECONDS   -> prints `zstd_compress: MB/s`, `zstd_decompress: MB/s`
 *
 * `calibrate` builds it against the system's libzstd; scripts/reference-libzstd builds it
 * against the sources of the release the collector links, for a like-for-like version.
 *
 * The system's libzstd in the plainest loop there is: the whole file compressed as one frame
 * with one reused context (ZSTD_compressCCtx), then decompressed likewise (ZSTD_decompressDCtx),
 * each for about SECONDS / 2 in slices of 50 ms after one untimed call; the median slice is
 * printed in 10^6 bytes per second. This is how the probe measures, in C, against the library
 * the `zstd` command is built from: on the machine in docs/PERFORMANCE.md the command's own
 * benchmark (`-b`) reads about 12 % below this loop over the same library version, so this
 * reference separates the probe's method from the command's harness.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zstd.h>

#define SLICE 0.05
#define MAX_SLICES 4096

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fail(const char *what, size_t code) {
    fprintf(stderr, "zstd_loop: %s: %s\n", what, ZSTD_getErrorName(code));
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: zstd_loop FILE LEVEL SECONDS\n");
        return 2;
    }
    int level = atoi(argv[2]);
    double seconds = atof(argv[3]);
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    rewind(f);
    char *src = malloc(size), *back = malloc(size);
    size_t cap = ZSTD_compressBound(size);
    char *packed = malloc(cap);
    if (!src || !back || !packed || fread(src, 1, size, f) != size) {
        fprintf(stderr, "zstd_loop: cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    static double slices[MAX_SLICES];

    size_t packed_size = ZSTD_compressCCtx(cctx, packed, cap, src, size, level);
    if (ZSTD_isError(packed_size)) fail("compress", packed_size);
    int n = 0;
    for (double end = now() + seconds / 2; n < MAX_SLICES && (n < 5 || now() < end); n++) {
        double start = now(), t;
        size_t bytes = 0;
        do {
            size_t r = ZSTD_compressCCtx(cctx, packed, cap, src, size, level);
            if (ZSTD_isError(r)) fail("compress", r);
            bytes += size;
        } while ((t = now() - start) < SLICE);
        slices[n] = bytes / t / 1e6;
    }
    printf("zstd_compress: %.1f\n", median(slices, n));

    size_t r = ZSTD_decompressDCtx(dctx, back, size, packed, packed_size);
    if (ZSTD_isError(r)) fail("decompress", r);
    n = 0;
    for (double end = now() + seconds / 2; n < MAX_SLICES && (n < 5 || now() < end); n++) {
        double start = now(), t;
        size_t bytes = 0;
        do {
            r = ZSTD_decompressDCtx(dctx, back, size, packed, packed_size);
            if (ZSTD_isError(r)) fail("decompress", r);
            bytes += r;
        } while ((t = now() - start) < SLICE);
        slices[n] = bytes / t / 1e6;
    }
    printf("zstd_decompress: %.1f\n", median(slices, n));
    printf("libzstd %s, level %d, ratio %.3f\n", ZSTD_versionString(), level, (double)size / packed_size);
    return 0;
}
