/*
 * The 1 kHz path in C, the reference of bench/perf.ts and bench/csv_format.ts: the design of the agent's perf
 * source (issue 12, item 3) with nothing in between. One perf group per CPU (pid -1, or this process when
 * system-wide counting is not allowed) with read_format GROUP | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING | ID,
 * the leader opened disabled and the group enabled once all are open, as src/ffi/perf_event.ts does; then per
 * tick: clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to the next deadline, CLOCK_REALTIME formatted once as
 * RFC 3339 with nine digits (trailing zeros trimmed, as the csv output does), one read(2) per group, and the
 * csv output's lines (one per counter, then perf_running_ratio with the events attribute) fprintf'ed to a
 * buffered file flushed every `flush` ticks.
 *
 * usage: tick TICKS PERIOD_US FLUSH_TICKS OUT.csv CPUS EVENTS_ATTR EVENT...
 *   CPUS: comma-separated CPU numbers; EVENTS_ATTR: the `events` attribute of the ratio lines;
 *   EVENT: METRIC=TYPE:CONFIG (the metric name as the csv output writes it, with its unit suffix).
 * Exits 2 when system-wide counting is refused (the caller then skips the comparison).
 */
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

#define MAX_EV 16
#define MAX_CPU 256

static int open_ev(unsigned type, unsigned long long config, int cpu, int group) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.type = type;
  a.config = config;
  a.disabled = group == -1;
  a.read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING |
                  PERF_FORMAT_ID;
  return syscall(SYS_perf_event_open, &a, -1, cpu, group, PERF_FLAG_FD_CLOEXEC);
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: tick TICKS PERIOD_US FLUSH_TICKS OUT.csv CPUS EVENTS_ATTR METRIC=TYPE:CONFIG...\n");
    return 1;
  }
  long n = atol(argv[1]);
  long period = atol(argv[2]) * 1000;
  long flush = atol(argv[3]);
  FILE *out = fopen(argv[4], "w");
  if (out == NULL) { perror("fopen"); return 1; }
  int cpus[MAX_CPU], ncpu = 0;
  for (char *s = argv[5]; *s && ncpu < MAX_CPU;) {
    cpus[ncpu++] = (int)strtol(s, &s, 10);
    if (*s == ',') s++;
  }
  const char *attr = argv[6];
  int nev = argc - 7;
  if (nev > MAX_EV) nev = MAX_EV;
  char *names[MAX_EV];
  unsigned types[MAX_EV];
  unsigned long long configs[MAX_EV];
  for (int e = 0; e < nev; e++) {
    char *eq = strchr(argv[7 + e], '=');
    if (eq == NULL) { fprintf(stderr, "bad event %s\n", argv[7 + e]); return 1; }
    *eq = 0;
    names[e] = argv[7 + e];
    char *colon;
    types[e] = (unsigned)strtoul(eq + 1, &colon, 0);
    configs[e] = strtoull(colon + 1, NULL, 0);
  }
  int fd[MAX_CPU];
  for (int c = 0; c < ncpu; c++) {
    fd[c] = -1;
    for (int e = 0; e < nev; e++) {
      int f = open_ev(types[e], configs[e], cpus[c], fd[c]);
      if (f < 0) { perror("perf_event_open"); return 2; }
      if (e == 0) fd[c] = f;
    }
    ioctl(fd[c], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP);
  }
  fprintf(out, "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;events;__late_attributes\n");
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  uint64_t buf[3 + 2 * MAX_EV];
  size_t len = 8 * (3 + 2 * nev);
  for (long i = 0; i < n; i++) {
    t.tv_nsec += period;
    while (t.tv_nsec >= 1000000000) { t.tv_nsec -= 1000000000; t.tv_sec++; }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
    struct timespec w;
    clock_gettime(CLOCK_REALTIME, &w);
    struct tm tm;
    gmtime_r(&w.tv_sec, &tm);
    char ts[64];
    int l = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    if (w.tv_nsec != 0) {
      l += snprintf(ts + l, sizeof ts - l, ".%09ld", w.tv_nsec);
      while (ts[l - 1] == '0') l--;
    }
    ts[l++] = 'Z';
    ts[l] = 0;
    for (int c = 0; c < ncpu; c++) {
      if (read(fd[c], buf, len) != (ssize_t)len) { perror("read"); return 1; }
      for (uint64_t e = 0; e < buf[0]; e++)
        fprintf(out, "%s;%s;%llu;cpu_core;%d;local_machine;;;\n", names[e], ts, (unsigned long long)buf[3 + 2 * e],
                cpus[c]);
      fprintf(out, "perf_running_ratio;%s;%.17g;cpu_core;%d;local_machine;;%s;\n", ts,
              buf[1] == 0 ? 0.0 : (double)buf[2] / (double)buf[1], cpus[c], attr);
    }
    if (i % flush == flush - 1) fflush(out);
  }
  fclose(out);
  return 0;
}
