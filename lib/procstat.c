/* procstat.c -- CPU time and memory of a process from /proc (see procstat.h).
 * Kept in one place for every load generator, so that all of them count a
 * process the same way. */
#include "procstat.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

double procstat_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    /* utime and stime are fields 14 and 15; the command name before them may
     * hold spaces and parentheses, so count from the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

long procstat_kb(pid_t pid, const char *file, const char *key)
{
    char path[96], line[256];
    long kb = -1;
    size_t kl = strlen(key);
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && sscanf(line + kl, " %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
