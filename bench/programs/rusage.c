/*
 * Runs a command and writes what the kernel accounted to it and to every process it started, to OUT:
 *
 *   user_us sys_us maxrss_kib exit_status
 *
 * This process is a child subreaper: a descendant its parent did not wait for (perf stat -I leaves its
 * workload to be reaped by someone else) is reaped here, so user_us and sys_us cover the whole tree either way.
 * maxrss_kib is the command's own peak (wait4's ru_maxrss: the largest of the process and the children it
 * waited for). Used by bench/overhead.ts around the agent or perf stat, like `time -v`.
 * Usage: rusage OUT PROGRAM [ARGS...]
 */
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static long us(struct timeval t) { return t.tv_sec * 1000000L + t.tv_usec; }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rusage OUT PROGRAM [ARGS...]\n");
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) perror("prctl(PR_SET_CHILD_SUBREAPER)");
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  long user = 0, sys = 0, maxrss = 0, code = 1;
  for (;;) {
    int status;
    struct rusage ru;
    pid_t p = wait4(-1, &status, 0, &ru);
    if (p < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) break;
      perror("wait4");
      return 1;
    }
    user += us(ru.ru_utime);
    sys += us(ru.ru_stime);
    if (p == pid) {
      maxrss = ru.ru_maxrss;
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  FILE *f = fopen(argv[1], "w");
  if (f == NULL) {
    perror(argv[1]);
    return 1;
  }
  fprintf(f, "%ld %ld %ld %ld\n", user, sys, maxrss, code);
  if (fclose(f) != 0) return 1;
  return (int)code;
}
