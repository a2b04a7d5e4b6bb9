/* procstat.h -- CPU time and memory of a process, read from /proc (for the
 * load generators' reports: tether bench, peerbench). */
#ifndef TETHER_PROCSTAT_H
#define TETHER_PROCSTAT_H

#include <sys/types.h>

/* User + system CPU seconds of pid (0: this process), or -1. */
double procstat_cpu_s(pid_t pid);
/* The "<key> <n> kB" line of /proc/<pid>/<file> (e.g. "status", "VmRSS:";
 * "smaps_rollup", "Pss:"), in KiB, or -1. */
long procstat_kb(pid_t pid, const char *file, const char *key);

#endif
