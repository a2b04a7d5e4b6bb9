/* gw_listen.c -- the gateway's public port: accepting, per-address limits,
 * request heads, and the WebSocket upgrade.
 *
 * Every accepted socket first passes two per-source-address limits: open
 * sockets (TETHER_PER_IP_CONNS) and new sockets per second (a token bucket,
 * TETHER_PER_IP_RATE with a burst of twice that); beyond either it is closed
 * at once. An IPv6 peer is its /64. The address table is bounded (PEERS_MAX entries; a full table
 * tracks no new addresses) and idle entries expire.
 *
 * A socket is then "pre-head" until its request head is complete: it counts
 * against TETHER_MAX_PREAUTH (shared with upgraded connections before their
 * hello), must finish its head within TETHER_HEAD_TIMEOUT_MS and within
 * HEAD_MAX bytes (431). The head is only peeked (recv MSG_PEEK, nothing
 * consumed; SO_RCVLOWAT makes the loop wake only when more bytes than the
 * last peek saw have arrived, so a partial head costs nothing while it
 * waits). A request that is not a GET, or a GET that asks for no WebSocket,
 * goes untouched to lib/http (http_server_adopt), which gw_http.c serves.
 * An upgrade is parsed with http-parser, checked, answered (101 or an error
 * with a JSON body), its head consumed, and the socket handed to gw_ws.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "gw_http.h"
#include "http.h"
#include "log.h"

#define HEAD_MAX (16u << 10)
#define PEERS_MAX 65536
#define MAX_HDRS 64
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100

typedef struct peer_ent {
    unsigned conns;      /* sockets held (pre-head and WebSocket) */
    double tokens;       /* the new-socket bucket */
    uint64_t last_ms;    /* when tokens was last refilled */
} peer_ent;

typedef struct pre_sock {
    int fd;
    struct sockaddr_storage sa;
    socklen_t salen;
    char peer[64];
    int tracked;         /* counted in its peer_ent */
    size_t seen;         /* bytes the last peek saw */
    loop_timer deadline;
    list_node link;      /* on pres */
} pre_sock;

static int lfd = -1;
static hmap *peers;
static list_node pres = LIST_HEAD_INIT(pres); /* sockets before their head */
static loop_timer accept_timer;
static char head[HEAD_MAX + 1];

/* ---- per-address limits ------------------------------------------------------------- */

/* The limits' key for a peer: its IPv4 address (IPv4-mapped ones too), or
 * its IPv6 /64, the block one subscriber is given and picks addresses from. */
static void peer_key(const struct sockaddr *sa, char *out, size_t n)
{
    out[0] = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    } else if (sa->sa_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
            inet_ntop(AF_INET, a.s6_addr + 12, out, (socklen_t)n);
        } else {
            memset(a.s6_addr + 8, 0, 8);
            if (inet_ntop(AF_INET6, &a, out, (socklen_t)(n > 3 ? n - 3 : 0)))
                strcat(out, "/64");
        }
    }
}

static peer_ent *peer_get(const char *key, uint64_t now)
{
    peer_ent *e = hmap_get(peers, key);
    if (e || hmap_count(peers) >= PEERS_MAX)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->tokens = 2.0 * G.cfg.per_ip_rate;
    e->last_ms = now;
    if (hmap_put(peers, key, e) < 0) {
        free(e);
        return NULL;
    }
    return e;
}

static void peer_refill(peer_ent *e, uint64_t now)
{
    double burst = 2.0 * G.cfg.per_ip_rate;
    e->tokens += (double)(now - e->last_ms) * G.cfg.per_ip_rate / 1000.0;
    if (e->tokens > burst)
        e->tokens = burst;
    e->last_ms = now;
}

void gw_listen_release(const char *peer)
{
    if (!peer || !peer[0] || !peers)
        return;
    peer_ent *e = hmap_get(peers, peer);
    if (e && e->conns)
        e->conns--;
}

void gw_listen_sweep(void)
{
    if (!peers)
        return;
    uint64_t now = loop_now_ms(G.l);
    size_t n = hmap_count(peers), k = 0;
    if (!n)
        return;
    char **gone = malloc(n * sizeof(*gone));
    if (!gone)
        return;
    hmap_iter it = { 0 };
    const char *key;
    void *v;
    while (hmap_next(peers, &it, &key, &v)) {
        peer_ent *e = v;
        peer_refill(e, now);
        if (!e->conns && e->tokens >= 2.0 * G.cfg.per_ip_rate)
            gone[k++] = strdup(key);
    }
    for (size_t i = 0; i < k; i++) {
        if (gone[i])
            free(hmap_del(peers, gone[i]));
        free(gone[i]);
    }
    free(gone);
}

/* ---- pre-head sockets ----------------------------------------------------------------- */

static void pre_unlink(pre_sock *p)
{
    loop_timer_stop(G.l, &p->deadline);
    loop_del_fd(G.l, p->fd);
    list_remove(&p->link);
    G.npreauth--;
}

/* Closes a socket that is not handed on. */
static void pre_drop(pre_sock *p)
{
    pre_unlink(p);
    close(p->fd);
    if (p->tracked)
        gw_listen_release(p->peer);
    free(p);
}

static void pre_timeout(loop *l, loop_timer *t, void *arg)
{
    (void)l;
    (void)t;
    G.st.head_timeouts++;
    pre_drop(arg);
}

static void set_lowat(int fd, int n)
{
    setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n));
}

/* Not an upgrade: lib/http takes the untouched socket. */
static void pre_to_http(pre_sock *p)
{
    pre_unlink(p);
    set_lowat(p->fd, 1);
    if (p->tracked)
        gw_listen_release(p->peer);
    http_server_adopt(G.http, p->fd, (struct sockaddr *)&p->sa, p->salen);
    free(p);
}

/* Answers an upgrade with an error and closes (the head is consumed first,
 * so that closing does not reset the connection before the status is read). */
static void pre_reject(pre_sock *p, size_t headlen, int status, const char *why)
{
    char body[256], buf[768];
    int bl = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", why, status);
    int n = bl < 0 || bl >= (int)sizeof(body)
                ? -1
                : snprintf(buf, sizeof(buf),
                           "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                           "%s%sconnection: close\r\n\r\n%s",
                           status, http_status_text(status), bl,
                           status == 401 ? "www-authenticate: Bearer\r\n" : "",
                           status == 426 ? "sec-websocket-version: 13\r\n" : "", body);
    G.st.upgrades_refused++;
    if (headlen && recv(p->fd, head, headlen, 0) < 0) {
        /* Nothing to keep: the answer is sent regardless. */
    }
    if (n > 0 && n < (int)sizeof(buf) && send(p->fd, buf, (size_t)n, MSG_NOSIGNAL) > 0)
        shutdown(p->fd, SHUT_WR);
    pre_drop(p);
}

/* ---- the upgrade -------------------------------------------------------------------------- */

typedef struct hdr {
    const char *name, *value;
    size_t nlen, vlen;
} hdr;

typedef struct upg {
    hdr h[MAX_HDRS];
    int n;
    int in_value;
    int too_many;
    int done;
} upg;

static int on_field(http_parser *hp, const char *at, size_t len)
{
    upg *u = hp->data;
    if (u->in_value || u->n == 0 || u->h[u->n - 1].name + u->h[u->n - 1].nlen != at) {
        if (u->n == MAX_HDRS) {
            u->too_many = 1;
            return 1;
        }
        u->h[u->n].name = at;
        u->h[u->n].nlen = 0;
        u->h[u->n].value = NULL;
        u->h[u->n].vlen = 0;
        u->n++;
        u->in_value = 0;
    }
    u->h[u->n - 1].nlen += len;
    return 0;
}

static int on_value(http_parser *hp, const char *at, size_t len)
{
    upg *u = hp->data;
    hdr *h = &u->h[u->n - 1];
    if (!h->value)
        h->value = at;
    h->vlen = (size_t)(at + len - h->value);
    u->in_value = 1;
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    ((upg *)hp->data)->done = 1;
    return 0;
}

/* The one header named name; *dup set when it occurs more than once. Values
 * are NUL-terminated in place (the head buffer is ours). */
static const char *get_hdr(upg *u, const char *name, int *dup)
{
    const char *v = NULL;
    size_t nl = strlen(name);
    for (int i = 0; i < u->n; i++) {
        if (u->h[i].nlen == nl && !strncasecmp(u->h[i].name, name, nl)) {
            if (v && dup)
                *dup = 1;
            if (!v)
                v = u->h[i].value ? u->h[i].value : "";
        }
    }
    return v;
}

/* Joins every header named name into out as a comma-separated list. */
static const char *join_hdr(upg *u, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), o = 0;
    int any = 0;
    for (int i = 0; i < u->n; i++) {
        if (u->h[i].nlen != nl || strncasecmp(u->h[i].name, name, nl))
            continue;
        const char *v = u->h[i].value ? u->h[i].value : "";
        int w = snprintf(out + o, cap - o, "%s%s", any ? ", " : "", v);
        if (w < 0 || (size_t)w >= cap - o)
            return NULL;
        o += (size_t)w;
        any = 1;
    }
    return any ? out : "";
}

/* 1 when the comma-separated list v holds tok (case-insensitive). */
static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == tl && !strncasecmp(v, tok, tl))
            return 1;
        v = e;
    }
    return 0;
}

static int origin_allowed(const char *origin)
{
    if (!origin || !G.cfg.origins)
        return 1;
    for (size_t i = 0; i < G.cfg.norigins; i++)
        if (!strcasecmp(G.cfg.origins[i], origin))
            return 1;
    return 0;
}

/* The bearer token of an Authorization value: 1 and *tok, 0 when absent,
 * -1 when malformed. */
static int bearer_of(const char *v, const char **tok)
{
    if (!v)
        return 0;
    if (strncasecmp(v, "Bearer ", 7) != 0)
        return -1;
    v += 7;
    while (*v == ' ')
        v++;
    if (!*v)
        return -1;
    *tok = v;
    return 1;
}

static void pre_upgrade(pre_sock *p, size_t headlen)
{
    static upg u;
    memset(&u, 0, sizeof(u));
    http_parser hp;
    http_parser_settings st;
    memset(&st, 0, sizeof(st));
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers_complete;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &u;
    size_t used = http_parser_execute(&hp, &st, head, headlen);
    if (u.too_many)
        return pre_reject(p, headlen, 431, "too many header fields");
    if (!u.done || (HTTP_PARSER_ERRNO(&hp) != HPE_OK && used < headlen))
        return pre_reject(p, headlen, 400, "malformed request");
    /* NUL-terminate names and values in place: each is followed by at least
     * one byte of the head (':' or CR). */
    for (int i = 0; i < u.n; i++) {
        char *v = (char *)u.h[i].value;
        if (!v)
            continue;
        size_t vl = u.h[i].vlen;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        v[vl] = 0;
    }
    int dup = 0;
    const char *host = get_hdr(&u, "Host", &dup);
    const char *upgrade = get_hdr(&u, "Upgrade", &dup);
    const char *key = get_hdr(&u, "Sec-WebSocket-Key", &dup);
    const char *version = get_hdr(&u, "Sec-WebSocket-Version", &dup);
    const char *origin = get_hdr(&u, "Origin", &dup);
    const char *auth = get_hdr(&u, "Authorization", &dup);
    const char *clen = get_hdr(&u, "Content-Length", &dup);
    const char *te = get_hdr(&u, "Transfer-Encoding", &dup);
    char conn_buf[512], proto_buf[512], ext_buf[1024];
    const char *connection = join_hdr(&u, "Connection", conn_buf, sizeof(conn_buf));
    const char *protos = join_hdr(&u, "Sec-WebSocket-Protocol", proto_buf, sizeof(proto_buf));
    const char *exts = join_hdr(&u, "Sec-WebSocket-Extensions", ext_buf, sizeof(ext_buf));
    if (dup)
        return pre_reject(p, headlen, 400, "duplicate header field");
    if (!connection || !protos || !exts)
        return pre_reject(p, headlen, 431, "header field too long");
    if (hp.http_major != 1 || hp.http_minor != 1)
        return pre_reject(p, headlen, 400, "a WebSocket upgrade needs HTTP/1.1");
    if (clen || te)
        return pre_reject(p, headlen, 400, "an upgrade request has no body");
    if (!host || !*host)
        return pre_reject(p, headlen, 400, "missing Host");
    if (!upgrade || !has_token(upgrade, "websocket"))
        return pre_reject(p, headlen, 400, "Upgrade must be websocket");
    if (!has_token(connection, "upgrade"))
        return pre_reject(p, headlen, 400, "Connection must contain upgrade");
    if (!version || strcmp(version, "13") != 0)
        return pre_reject(p, headlen, 426, "unsupported WebSocket version");
    char accept[29];
    if (!key || ws_accept_key(key, accept) < 0)
        return pre_reject(p, headlen, 400, "invalid Sec-WebSocket-Key");
    if (!origin_allowed(origin))
        return pre_reject(p, headlen, 403, "origin not allowed");
    if (G.draining)
        return pre_reject(p, headlen, 503, "draining");
    const char *tok = NULL;
    int b = bearer_of(auth, &tok);
    if (b < 0 || (tok && strlen(tok) >= 8192))
        return pre_reject(p, headlen, 401, "malformed Authorization header");
    jwt_claims cl;
    memset(&cl, 0, sizeof(cl));
    if (b > 0) {
        const char *why = "invalid token";
        int r = jwtv_verify(G.jwt, tok, (int64_t)time(NULL), &cl, &why);
        if (r < 0) {
            jwt_claims_clear(&cl);
            G.st.auth_failures++;
            return pre_reject(p, headlen, 401, r == -EKEYEXPIRED ? "token expired" : "authentication failed");
        }
    }
    /* The sub-protocol: the client's first one we speak; none offered (or
     * none of ours) is tether.v1.json, answered without the header. */
    const char *sel = NULL;
    for (const char *s = protos; *s;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if (e - s == 14 && !strncmp(s, "tether.v1.json", 14)) {
            sel = "tether.v1.json";
            break;
        }
        if (e - s == 15 && !strncmp(s, "tether.v1.proto", 15)) {
            sel = "tether.v1.proto";
            break;
        }
        s = e;
    }
    char pmd[128];
    int deflate = ws_pmd_negotiate(*exts ? exts : NULL, pmd, sizeof(pmd)) == 1;
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                     accept, sel ? "Sec-WebSocket-Protocol: " : "", sel ? sel : "", sel ? "\r\n" : "",
                     deflate ? "Sec-WebSocket-Extensions: " : "", deflate ? pmd : "", deflate ? "\r\n" : "");
    /* Consume exactly the head: frames sent right behind it stay queued. */
    ssize_t got = recv(p->fd, head, headlen, 0);
    if (got != (ssize_t)headlen || n <= 0 || n >= (int)sizeof(resp) ||
        send(p->fd, resp, (size_t)n, MSG_NOSIGNAL) != n) {
        jwt_claims_clear(&cl);
        pre_drop(p);
        return;
    }
    int fd = p->fd;
    char peer[64];
    memcpy(peer, p->peer, sizeof(peer));
    int tracked = p->tracked;
    pre_unlink(p);
    free(p);
    set_lowat(fd, 1);
    /* The pre-head slot becomes the connection's pre-hello slot. */
    G.npreauth++;
    gw_conn *c = gw_ws_adopt(fd, tracked ? peer : "", sel && !strcmp(sel, "tether.v1.proto"), deflate);
    if (!c) {
        G.npreauth--;
        if (tracked)
            gw_listen_release(peer);
        jwt_claims_clear(&cl);
        return;
    }
    if (b > 0) {
        c->claims = cl;
        c->authed = 1;
    }
    LOG_DEBUG("websocket open", "{s:I,s:s,s:b}", "conn", (json_int_t)c->id, "peer", peer, "deflate", deflate);
}

/* ---- reading heads ------------------------------------------------------------------------- */

static void pre_io(loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)events;
    pre_sock *p = arg;
    ssize_t n = recv(fd, head, HEAD_MAX, MSG_PEEK);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            pre_drop(p);
        return;
    }
    if (n == 0) {
        pre_drop(p); /* gone before a head */
        return;
    }
    size_t len = (size_t)n;
    if (len <= p->seen) {
        /* Readable with nothing new past the low-water mark: the peer shut
         * its side before finishing the head. */
        pre_drop(p);
        return;
    }
    /* Only a GET can be an upgrade: anything else is lib/http's at once. */
    size_t cmp = len < 4 ? len : 4;
    if (memcmp(head, "GET ", cmp) != 0) {
        pre_to_http(p);
        return;
    }
    size_t from = p->seen > 3 ? p->seen - 3 : 0;
    char *end = len >= 4 ? memmem(head + from, len - from, "\r\n\r\n", 4) : NULL;
    if (!end) {
        if (len >= HEAD_MAX) {
            pre_reject(p, 0, 431, "request head too large");
            return;
        }
        /* Wake again only when more than this has arrived. */
        p->seen = len;
        set_lowat(fd, (int)len + 1);
        return;
    }
    size_t headlen = (size_t)(end - head) + 4;
    head[headlen] = 0;
    /* A WebSocket upgrade names itself; any other GET is lib/http's. */
    int ws = 0;
    for (char *s = strchr(head, '\n'); s && s < head + headlen; s = strchr(s + 1, '\n')) {
        if (!strncasecmp(s + 1, "upgrade:", 8) || !strncasecmp(s + 1, "sec-websocket-key:", 18)) {
            ws = 1;
            break;
        }
    }
    if (!ws) {
        pre_to_http(p);
        return;
    }
    pre_upgrade(p, headlen);
}

/* ---- accepting ------------------------------------------------------------------------------- */

static void on_accept(loop *l, int fd, unsigned events, void *arg);

static void accept_resume(loop *l, loop_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    loop_mod_fd(l, lfd, LOOP_READ);
}

static void on_accept(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    (void)arg;
    uint64_t now = loop_now_ms(l);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        /* Zeroed: a peer address the kernel does not fill in (AF_UNSPEC)
         * is read as no family, never as stack garbage. */
        struct sockaddr_storage ss = {0};
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: the pending connection would wake us in
                 * a tight loop. Pause accepting briefly instead. */
                LOG_WARN("accept paused", "{s:s}", "error", strerror(errno));
                loop_mod_fd(l, fd, 0);
                loop_timer_start(l, &accept_timer, ACCEPT_PAUSE_MS, 0, accept_resume, NULL);
            }
            return;
        }
        char key[64];
        peer_key((struct sockaddr *)&ss, key, sizeof(key));
        peer_ent *e = peer_get(key, now);
        if (e) {
            peer_refill(e, now);
            if (e->tokens < 1.0) {
                G.st.refused_rate++;
                close(cfd);
                continue;
            }
            e->tokens -= 1.0;
            if (e->conns >= G.cfg.per_ip_conns) {
                G.st.refused_per_ip++;
                close(cfd);
                continue;
            }
        }
        if (G.npreauth >= G.cfg.max_preauth) {
            G.st.refused_preauth++;
            close(cfd);
            continue;
        }
        pre_sock *p = calloc(1, sizeof(*p));
        if (!p || loop_add_fd(l, cfd, LOOP_READ, pre_io, p) < 0) {
            free(p);
            close(cfd);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        p->fd = cfd;
        memcpy(&p->sa, &ss, sl);
        p->salen = sl;
        memcpy(p->peer, key, sizeof(p->peer));
        if (e) {
            e->conns++;
            p->tracked = 1;
        }
        list_insert_head(&pres, &p->link);
        G.npreauth++;
        loop_timer_start(l, &p->deadline, G.cfg.head_timeout_ms, 0, pre_timeout, p);
    }
}

int gw_listen_start(void)
{
    const char *host = G.cfg.http_host;
    struct sockaddr_storage ss;
    socklen_t sl;
    int v6only = 1;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (!strcmp(host, "*") || !strcmp(host, "0.0.0.0") || !host[0]) {
        /* Every interface: IPv6 and IPv4 on one dual-stack socket. */
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_any;
        v6only = 0;
    } else if (!strcmp(host, "localhost")) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
    } else {
        return -EINVAL;
    }
    int fd = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ss.ss_family == AF_INET) {
            v4->sin_port = htons((uint16_t)G.cfg.http_port);
            sl = sizeof(*v4);
        } else {
            v6->sin6_port = htons((uint16_t)G.cfg.http_port);
            sl = sizeof(*v6);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 && ss.ss_family == AF_INET6 && !v6only) {
            /* No IPv6 on this host: every IPv4 interface then. */
            memset(&ss, 0, sizeof(ss));
            v4->sin_family = AF_INET;
            v4->sin_addr.s_addr = htonl(INADDR_ANY);
            continue;
        }
        break;
    }
    int one = 1;
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (!(peers = hmap_new())) {
        close(fd);
        return -ENOMEM;
    }
    int r = loop_add_fd(G.l, fd, LOOP_READ, on_accept, NULL);
    if (r < 0) {
        close(fd);
        return r;
    }
    lfd = fd;
    return 0;
}

void gw_listen_stop(void)
{
    if (lfd >= 0) {
        loop_timer_stop(G.l, &accept_timer);
        loop_del_fd(G.l, lfd);
        close(lfd);
        lfd = -1;
    }
    while (!list_empty(&pres))
        pre_drop(list_entry(pres.next, pre_sock, link));
    if (peers) {
        hmap_iter it = { 0 };
        const char *k;
        void *v;
        while (hmap_next(peers, &it, &k, &v))
            free(v);
        hmap_free(peers);
        peers = NULL;
    }
}
