/* http_sock.c -- sockets of lib/http (see http.h): the listener, accepting
 * and adopting sockets, and the global and per-address connection limits
 * (503 and close beyond them, before MHD sees the socket).
 */

#include "http_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/tcp.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* ---- per-address counts -------------------------------------------------------- */

void http_ip_key(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (sa && sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        key[0] = 1; /* a Unix socket or unknown: all such peers share one count */
    }
}

static size_t ip_hash(const unsigned char key[17], size_t cap)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h & (cap - 1);
}

/* The slot of key, or of the empty slot where it would go. */
static ip_slot *ip_find(http_server *s, const unsigned char key[17])
{
    size_t i = ip_hash(key, s->ipcap);
    while (s->ips[i].key[0] && memcmp(s->ips[i].key, key, 17) != 0)
        i = (i + 1) & (s->ipcap - 1);
    return &s->ips[i];
}

static unsigned ip_count(http_server *s, const unsigned char key[17])
{
    return ip_find(s, key)->n;
}

void http_ip_add(http_server *s, const unsigned char key[17])
{
    ip_slot *e = ip_find(s, key);
    if (!e->key[0])
        memcpy(e->key, key, 17);
    e->n++;
}

/* Backward-shift deletion keeps every probe sequence unbroken. */
void http_ip_del(http_server *s, const unsigned char key[17])
{
    ip_slot *e = ip_find(s, key);
    if (!e->key[0] || --e->n > 0)
        return;
    size_t mask = s->ipcap - 1, i = (size_t)(e - s->ips), j = i;
    for (;;) {
        s->ips[i].key[0] = 0;
        s->ips[i].n = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!s->ips[j].key[0])
                return;
            size_t home = ip_hash(s->ips[j].key, s->ipcap);
            /* j's entry may move to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        s->ips[i] = s->ips[j];
        i = j;
    }
}

/* ---- sockets --------------------------------------------------------------------- */

/* Beyond a limit: what the client sent so far is read (so that closing does
 * not reset the connection under the answer), 503 is sent, the socket closed.
 * Bounded work, no state kept. */
static void turn_away(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                              "Service Unavailable\n";
    char drop[4096];
    for (int i = 0; i < 4 && recv(fd, drop, sizeof(drop), MSG_DONTWAIT) > 0; i++)
        ;
    (void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    close(fd);
}

static int admit(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
    unsigned char key[17];
    http_ip_key(sa, key);
    if (s->nconns >= s->max_conns || ip_count(s, key) >= s->per_ip) {
        int per_address = s->nconns < s->max_conns;
        LOG_DEBUG("http refused", "{s:i,s:b}", "status", 503, "per_address", per_address);
        metrics_inc(http_m_refused[per_address ? REF_PER_ADDRESS : REF_CONNECTIONS]);
        turn_away(fd);
        return -EBUSY;
    }
    if (MHD_add_connection(s->d, fd, sa, salen) != MHD_YES) {
        int err = errno ? errno : ENOMEM;
        return -err; /* MHD closed fd */
    }
    http_srv_kick(s);
    return 0;
}

int http_server_adopt(http_server *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
    if (!s || fd < 0 || !sa || salen == 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    return admit(s, fd, sa, salen);
}

static void accept_resume(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    http_server *s = arg;
    loop_mod_fd(l, s->lfd, LOOP_READ);
}

void http_on_accept(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    http_server *s = arg;
    for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: the pending connection would wake us in a
                 * tight loop. Pause accepting briefly instead. */
                LOG_WARN("http accept paused", "{s:s}", "error", strerror(errno));
                loop_mod_fd(l, fd, 0);
                loop_timer_start(l, &s->accept_timer, HTTP_ACCEPT_PAUSE_MS, 0, accept_resume, s);
            }
            return;
        }
        admit(s, cfd, (struct sockaddr *)&ss, sl);
    }
}

/* Binds hostport. Returns the listening fd and the port, or -errno. */
int http_listen_on(const char *hostport, int *portp, char *host, size_t hostlen)
{
    int port;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (cfg_parse_hostport(hostport, host, (unsigned)hostlen, &port) < 0)
        return -EINVAL;
    if (strcmp(host, "*") == 0)
        snprintf(host, hostlen, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        sl = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*v6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return -err;
    }
    *portp = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}
