/*
 * The measured program of bench/overhead.ts: CPU-bound, single-threaded, with a 256 KiB working set (so that
 * what shares its core, and its caches, slows it down). Runs ITERATIONS rounds, then writes one line to OUT:
 *
 *   wall_ns cpu_ns voluntary_ctx_switches involuntary_ctx_switches rusage_cpu_us checksum
 *
 * wall_ns from CLOCK_MONOTONIC around the loop, cpu_ns from CLOCK_PROCESS_CPUTIME_ID around the loop, the
 * switches and rusage_cpu_us (user + system of the whole process so far) from getrusage(RUSAGE_SELF).
 * Usage: spin ITERATIONS OUT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define WORDS (256 * 1024 / 8)

static uint64_t table[WORDS];

static int64_t ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: spin ITERATIONS OUT\n");
    return 2;
  }
  long n = atol(argv[1]);
  for (long i = 0; i < WORDS; i++) table[i] = (uint64_t)i * 0x9e3779b97f4a7c15ULL;
  int64_t w0 = ns(CLOCK_MONOTONIC), c0 = ns(CLOCK_PROCESS_CPUTIME_ID);
  uint64_t x = 88172645463325252ULL, sum = 0;
  for (long i = 0; i < n; i++) {
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t *slot = &table[x % WORDS];
    sum += *slot;
    *slot = sum ^ x;
  }
  int64_t w1 = ns(CLOCK_MONOTONIC), c1 = ns(CLOCK_PROCESS_CPUTIME_ID);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  FILE *f = fopen(argv[2], "w");
  if (f == NULL) {
    perror(argv[2]);
    return 1;
  }
  long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
  fprintf(f, "%lld %lld %ld %ld %ld %llu\n", (long long)(w1 - w0), (long long)(c1 - c0), ru.ru_nvcsw, ru.ru_nivcsw,
          cpu_us, (unsigned long long)sum);
  return fclose(f) == 0 ? 0 : 1;
}
