/*
 * pointer_chase.c: the reference for Fathom's memory.latency probe.
 *
 *   cc -O2 -o pointer_chase pointer_chase.c
 *   ./pointer_chase BYTES SECONDS      -> prints nanoseconds per load, one number
 *
 * The same method as the probe: BYTES / 64 cache-line nodes, each holding the address of the
 * next at its start, linked in one random cycle by Sattolo's algorithm; the buffer is 2 MiB
 * aligned and advised MADV_HUGEPAGE, so page walks stay out of the figure; the thread is
 * pinned to the CPU it starts on. It follows the cycle with dependent loads (p = *p, 16 per
 * loop iteration) for about SECONDS after a warm-up, and prints the time per load.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define LINE 64
#define HUGE_PAGE (2u << 20)

/* splitmix64: a small, fixed-seed generator; any good one will do. */
static uint64_t rng_state = 0x5eed;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift, rejecting the biased few). */
static uint32_t below(uint32_t n) {
    uint64_t m = (uint64_t)(uint32_t)next_random() * n;
    if ((uint32_t)m < n) {
        uint32_t threshold = -n % n;
        while ((uint32_t)m < threshold) m = (uint64_t)(uint32_t)next_random() * n;
    }
    return (uint32_t)(m >> 32);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define STEP p = *(void **)p;
#define STEP16 STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP STEP

static void *chase(void *p, size_t count) {
    for (size_t i = 0; i < count / 16; i++) {
        STEP16
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s BYTES SECONDS\n", argv[0]);
        return 2;
    }
    size_t bytes = strtoull(argv[1], NULL, 10);
    double seconds = atof(argv[2]);
    size_t n = bytes / LINE;
    if (n < 16 || n > UINT32_MAX || seconds <= 0) {
        fprintf(stderr, "BYTES must be 1 KiB to 256 GiB and SECONDS positive\n");
        return 2;
    }

    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu(), &set);
    sched_setaffinity(0, sizeof set, &set);

    size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    char *buf = aligned_alloc(HUGE_PAGE, size);
    uint32_t *next = malloc(n * sizeof *next);
    if (!buf || !next) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    madvise(buf, size, MADV_HUGEPAGE);
    memset(buf, 0, size);

    /* Sattolo: next[i] follows i, and the permutation is a single cycle through all n. */
    for (uint32_t i = 0; i < n; i++) next[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = below(i), t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    for (size_t i = 0; i < n; i++) *(void **)(buf + i * LINE) = buf + (size_t)next[i] * LINE;
    free(next);

    /* Warm-up of a tenth of the time (at least one lap for working sets that fit a cache),
     * which also sizes the rounds to about 10 ms each. */
    void *p = buf;
    size_t count = 4096;
    double t0 = now(), t;
    while ((t = now() - t0) < seconds / 10) {
        p = chase(p, count);
        count *= 2;
    }
    double ns = t * 1e9 / (count - 4096);
    size_t round = (size_t)(0.01e9 / (ns > 0.05 ? ns : 0.05)) / 16 * 16 + 16;

    size_t loads = 0;
    t0 = now();
    do {
        p = chase(p, round);
        loads += round;
    } while ((t = now() - t0) < seconds);

    /* Print p's low bit too (always 0) so the compiler must keep the chase. */
    printf("%.3f\n", t * 1e9 / loads + (double)((uintptr_t)p & 1));
    free(buf);
    return 0;
}
