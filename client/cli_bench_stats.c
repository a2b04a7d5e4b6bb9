/* cli_bench_stats.c -- measuring for `tether bench`: a mergeable log-linear
 * latency histogram, CPU and RSS of processes from /proc, and a TCP probe
 * that tells when a restarted gateway listens again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_bench.h"
#include "procstat.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 7.. */
    if (e > 40)
        return BH_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - 6)) & 63u;
    unsigned idx = 128u + (e - 7u) * 64u + sub;
    return idx < BH_BUCKETS ? idx : BH_BUCKETS - 1;
}

/* The largest value that falls in bucket i. */
static uint64_t bucket_top(unsigned i)
{
    if (i < 128)
        return i;
    unsigned e = (i - 128u) / 64u + 7u, sub = (i - 128u) % 64u;
    return ((uint64_t)(64u + sub) << (e - 6)) + ((uint64_t)1 << (e - 6)) - 1;
}

void bh_add(bench_hist *h, uint64_t us)
{
    h->b[bucket_of(us)]++;
    h->n++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
}

void bh_merge(bench_hist *into, const bench_hist *from)
{
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t bh_quantile(const bench_hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)((double)h->n * q + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < BH_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t top = bucket_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

json_t *bh_json(const bench_hist *h)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "n", (json_int_t)h->n, "mean",
                     (json_int_t)(h->n ? h->sum / h->n : 0), "p50", (json_int_t)bh_quantile(h, 0.5), "p90",
                     (json_int_t)bh_quantile(h, 0.9), "p99", (json_int_t)bh_quantile(h, 0.99), "p999",
                     (json_int_t)bh_quantile(h, 0.999), "max", (json_int_t)h->max);
}

double bench_self_cpu(void)
{
    return procstat_cpu_s(0);
}

double bench_pid_cpu(pid_t pid)
{
    return procstat_cpu_s(pid);
}

long bench_pid_rss_kb(pid_t pid)
{
    return procstat_kb(pid, "status", "VmRSS:");
}

int bench_probe(const char *host, int port)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n";
    struct sockaddr_in sa;
    char buf[64];
    int ok = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        struct pollfd p = { fd, POLLOUT, 0 };
        int err = 0;
        socklen_t el = sizeof(err);
        if (errno != EINPROGRESS || poll(&p, 1, 50) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
            err)
            goto out;
    }
    /* A whole HTTP request, not a bare connect: "back" means serving, and
     * an empty connection is not what clients do. */
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
        goto out;
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, 200) == 1) {
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n > 12) {
            buf[n] = 0;
            ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
        }
    }
out:
    close(fd);
    return ok;
}

int bench_url_hostport(const char *url, char *host, size_t hl, int *port)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    p += 3;
    size_t n = strcspn(p, ":/");
    if (!n || n >= hl)
        return -1;
    memcpy(host, p, n);
    host[n] = 0;
    *port = strncmp(url, "wss", 3) ? 80 : 443;
    if (p[n] == ':')
        *port = atoi(p + n + 1);
    return *port > 0 ? 0 : -1;
}
