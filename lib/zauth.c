/* zauth.c -- CURVE keys from the bus secret and the ZAP handler (see zauth.h). */
#include "zauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "zsock.h"

#define ZAUTH_MAX_SECRETS 2
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define REFUSAL_LOG_EVERY_MS 10000
#define ZAUTH_MAX_WATCH 8

typedef struct zauth_keyset {
    uint8_t server_sk[ZAUTH_KEY_LEN], server_pk[ZAUTH_KEY_LEN];
    uint8_t client_sk[ZAUTH_KEY_LEN], client_pk[ZAUTH_KEY_LEN];
} zauth_keyset;

static struct {
    int configured;
    int nkeys;
    zauth_keyset keys[ZAUTH_MAX_SECRETS];
    int warned_clear;
    loop *l;
    zsock *zap;
    zauth_stats st;
    unsigned long long refused_logged; /* refusals covered by a log line */
    uint64_t last_refusal_log_ms;
    unsigned long long failed_logged;
    uint64_t last_failure_log_ms;
    metrics_series *m_admitted, *m_refused;
    zsock *mon[ZAUTH_MAX_WATCH];
    int nmon;
} Z;

int zauth_derive(const void *secret, size_t len, const char *label, uint8_t sk[ZAUTH_KEY_LEN],
                 uint8_t pk[ZAUTH_KEY_LEN])
{
    if (!secret || len == 0 || !label || !*label)
        return -EINVAL;
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)label, strlen(label), sk, &outlen) ||
        outlen != ZAUTH_KEY_LEN)
        return -EIO;
    char sk_z85[41], pk_z85[41];
    if (!zmq_z85_encode(sk_z85, sk, ZAUTH_KEY_LEN) || zmq_curve_public(pk_z85, sk_z85) < 0 ||
        !zmq_z85_decode(pk, pk_z85))
        return -EIO;
    memset(sk_z85, 0, sizeof(sk_z85));
    return 0;
}

/* host is the text between "tcp://" and the port (brackets removed). */
static int host_is_loopback(const char *host, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, host, n);
    buf[n] = 0;
    if (strcasecmp(buf, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, buf, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* "host:port", "[v6]:port"; the port part may be "*" or a number. */
static int tcp_addr_is_loopback(const char *s, size_t n)
{
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (!colon)
        return 0;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']')
        return host_is_loopback(s + 1, hl - 2);
    return host_is_loopback(s, hl);
}

int zauth_is_loopback(const char *ep)
{
    if (!ep)
        return 0;
    if (strncmp(ep, "inproc://", 9) == 0 || strncmp(ep, "ipc://", 6) == 0)
        return 1;
    if (strncmp(ep, "tcp://", 6) != 0)
        return 0;
    const char *a = ep + 6;
    const char *semi = strchr(a, ';');
    if (semi) {
        /* "source;destination": both ends must be loopback. The source may
         * be a bare host or interface, without a port. */
        size_t sl = (size_t)(semi - a);
        if (!tcp_addr_is_loopback(a, sl) && !host_is_loopback(a, sl))
            return 0;
        a = semi + 1;
    }
    return tcp_addr_is_loopback(a, strlen(a));
}

static int add_secret(const char *var, const char *secret)
{
    if (!secret || !*secret)
        return 0;
    if (strlen(secret) < ZAUTH_MIN_SECRET) {
        fprintf(stderr, "%s: shorter than %d characters (generate one with: head -c 32 /dev/urandom | base64)\n",
                var, ZAUTH_MIN_SECRET);
        LOG_ERROR("bad configuration", "{s:s,s:s}", "variable", var, "why",
                  "shorter than 16 characters (generate one with: head -c 32 /dev/urandom | base64)");
        exit(2);
    }
    zauth_keyset *k = &Z.keys[Z.nkeys];
    if (zauth_derive(secret, strlen(secret), "tether-bus-server-v1", k->server_sk, k->server_pk) < 0 ||
        zauth_derive(secret, strlen(secret), "tether-bus-client-v1", k->client_sk, k->client_pk) < 0) {
        LOG_ERROR("cannot derive the bus keys", "{s:s}", "variable", var);
        exit(2);
    }
    /* The same secret twice is one secret. */
    for (int i = 0; i < Z.nkeys; i++)
        if (memcmp(Z.keys[i].server_pk, k->server_pk, ZAUTH_KEY_LEN) == 0)
            return 0;
    Z.nkeys++;
    return 1;
}

int zauth_config(void)
{
    if (Z.configured)
        return Z.nkeys;
    Z.configured = 1;
    const char *cur = cfg_secret_file("TETHER_BUS_SECRET");
    const char *prev = cfg_secret_file("TETHER_BUS_SECRET_PREVIOUS");
    if (!*cur && *prev) {
        fprintf(stderr, "TETHER_BUS_SECRET_PREVIOUS: set without TETHER_BUS_SECRET\n");
        LOG_ERROR("bad configuration", "{s:s,s:s}", "variable", "TETHER_BUS_SECRET_PREVIOUS", "why",
                  "set without TETHER_BUS_SECRET");
        exit(2);
    }
    add_secret("TETHER_BUS_SECRET", cur);
    add_secret("TETHER_BUS_SECRET_PREVIOUS", prev);
    return Z.nkeys;
}

int zauth_enabled(void) { return zauth_config() > 0; }

static void warn_clear(const char *what)
{
    if (Z.warned_clear)
        return;
    Z.warned_clear = 1;
    LOG_WARN("the bus runs unauthenticated and unencrypted: TETHER_BUS_SECRET is not set", "{s:s}", "endpoint",
             what);
}

void zauth_require(const char *var, const char *value)
{
    if (zauth_enabled() || !value)
        return;
    char *list = strdup(value);
    if (!list)
        return;
    char *save = NULL;
    for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        while (*ep == ' ')
            ep++;
        if (!*ep || strcmp(ep, "off") == 0)
            continue;
        if (!zauth_is_loopback(ep)) {
            fprintf(stderr, "%s: '%s' is not a loopback endpoint and TETHER_BUS_SECRET is not set\n", var, ep);
            LOG_ERROR("refusing a non-loopback bus endpoint without TETHER_BUS_SECRET", "{s:s,s:s,s:s,s:s}",
                      "variable", var, "value", ep, "secret_variable", "TETHER_BUS_SECRET", "why",
                      "set TETHER_BUS_SECRET (or TETHER_BUS_SECRET_FILE) on every Tether process; "
                      "without it the bus is allowed on loopback only");
            exit(2);
        }
        warn_clear(ep);
    }
    free(list);
}

/* ---- the ZAP handler (RFC 27) ----------------------------------------------------------- */

static int client_admitted(const zmq_msg_t *cred)
{
    if (zmq_msg_size(cred) != ZAUTH_KEY_LEN)
        return 0;
    for (int i = 0; i < Z.nkeys; i++)
        if (memcmp(zmq_msg_data((zmq_msg_t *)cred), Z.keys[i].client_pk, ZAUTH_KEY_LEN) == 0)
            return 1;
    return 0;
}

static void note_refusal(const zmq_msg_t *address, const char *why)
{
    Z.st.refused++;
    metrics_inc(Z.m_refused);
    uint64_t now = loop_now_ms(Z.l);
    if (Z.last_refusal_log_ms && now - Z.last_refusal_log_ms < REFUSAL_LOG_EVERY_MS)
        return;
    char peer[64] = "";
    size_t n = address ? zmq_msg_size(address) : 0;
    if (n >= sizeof(peer))
        n = sizeof(peer) - 1;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)zmq_msg_data((zmq_msg_t *)address))[i];
        peer[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    peer[n] = 0;
    LOG_WARN("bus handshake refused", "{s:s,s:s,s:I}", "peer", peer, "why", why, "refused_since_last_log",
             (json_int_t)(Z.st.refused - Z.refused_logged));
    Z.refused_logged = Z.st.refused;
    Z.last_refusal_log_ms = now;
}

/* Request: version, request id, domain, address, routing id, mechanism,
 * credentials. Reply: version, request id, status code, status text, user
 * id, metadata. */
static void on_zap(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)arg;
    static const char version[] = "1.0";
    const void *rid = "";
    size_t rid_len = 0;
    const char *code = "400", *text = "unknown client key";
    if (n >= 2) {
        rid = zmq_msg_data(&parts[1]);
        rid_len = zmq_msg_size(&parts[1]);
    }
    if (n < 6 || zmq_msg_size(&parts[0]) != 3 || memcmp(zmq_msg_data(&parts[0]), version, 3) != 0) {
        text = "malformed ZAP request";
        note_refusal(NULL, text);
    } else if (zmq_msg_size(&parts[5]) != 5 || memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) != 0 || n != 7) {
        text = "mechanism is not CURVE";
        note_refusal(&parts[3], text);
    } else if (!client_admitted(&parts[6])) {
        note_refusal(&parts[3], text);
    } else {
        code = "200";
        text = "OK";
        Z.st.admitted++;
        metrics_inc(Z.m_admitted);
    }
    const void *bufs[6] = { version, rid, code, text, "", "" };
    size_t lens[6] = { 3, rid_len, 3, strlen(text), 0, 0 };
    if (zsock_send(s, bufs, lens, 6) < 0)
        LOG_WARN("cannot answer a ZAP request", "{s:s}", "error", zmq_strerror(errno));
}

static double curve_on(void *arg)
{
    (void)arg;
    return Z.nkeys > 0;
}

int zauth_start(loop *l, void *ctx)
{
    zauth_config();
    Z.l = l;
    metrics_gauge_fn("tether_bus_curve", "1 when the bus is authenticated and encrypted (CURVE), 0 in the clear.",
                     NULL, curve_on, NULL);
    Z.m_admitted = metrics_counter("tether_bus_auth_admitted_total",
                                   "Bus handshakes admitted by this process's ZAP handler.", NULL);
    Z.m_refused = metrics_counter("tether_bus_auth_refused_total",
                                  "Bus handshakes refused by this process's ZAP handler (unknown client key).",
                                  NULL);
    if (!Z.nkeys || Z.zap)
        return 0;
    void *sock = zmq_socket(ctx, ZMQ_REP);
    if (!sock)
        return -errno;
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(sock, ZAP_ENDPOINT) < 0) {
        int e = errno;
        zmq_close(sock);
        return -e;
    }
    Z.zap = zsock_new(l, sock, on_zap, NULL);
    if (!Z.zap) {
        zmq_close(sock);
        return -ENOMEM;
    }
    LOG_INFO("bus authentication on (CURVE)", "{s:i}", "secrets", Z.nkeys);
    return 0;
}

void zauth_stop(void)
{
    zsock_free(Z.zap);
    Z.zap = NULL;
    for (int i = 0; i < Z.nmon; i++)
        zsock_free(Z.mon[i]);
    Z.nmon = 0;
}

/* ---- failed handshakes on bound sockets ------------------------------------------- */

#define MONITOR_EVENTS \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

typedef struct zauth_watcher {
    const char *name;
    metrics_series *m_failed;
} zauth_watcher;

static zauth_watcher watchers[ZAUTH_MAX_WATCH];

static void monitor_endpoint(const char *name, char *out, size_t n)
{
    snprintf(out, n, "inproc://tether-zauth-monitor-%s", name);
}

int zauth_monitor(void *sock, const char *name)
{
    if (!zauth_enabled())
        return 0;
    char ep[128];
    monitor_endpoint(name, ep, sizeof(ep));
    return zmq_socket_monitor(sock, ep, MONITOR_EVENTS) < 0 ? -errno : 0;
}

/* An event is [uint16 event, uint32 value][endpoint]. AUTH failures are the
 * ZAP handler's refusals, counted there. */
static void on_monitor(zsock *s, zmq_msg_t *parts, size_t n, void *arg)
{
    (void)s;
    zauth_watcher *w = arg;
    if (n != 2 || zmq_msg_size(&parts[0]) != 6)
        return;
    uint16_t ev;
    memcpy(&ev, zmq_msg_data(&parts[0]), sizeof(ev));
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return;
    Z.st.failed++;
    metrics_inc(w->m_failed);
    uint64_t now = loop_now_ms(Z.l);
    if (Z.last_failure_log_ms && now - Z.last_failure_log_ms < REFUSAL_LOG_EVERY_MS)
        return;
    LOG_WARN("bus handshake failed (missing or wrong keys)", "{s:s,s:I}", "socket", w->name,
             "failed_since_last_log", (json_int_t)(Z.st.failed - Z.failed_logged));
    Z.failed_logged = Z.st.failed;
    Z.last_failure_log_ms = now;
}

int zauth_watch(loop *l, void *ctx, const char *name)
{
    if (!zauth_enabled())
        return 0;
    if (Z.nmon >= ZAUTH_MAX_WATCH)
        return -ENOSPC;
    if (!Z.l)
        Z.l = l;
    zauth_watcher *w = &watchers[Z.nmon];
    char labels[96];
    snprintf(labels, sizeof(labels), "socket=\"%s\"", name);
    w->name = name;
    w->m_failed = metrics_counter("tether_bus_handshake_failures_total",
                                  "Failed bus handshakes on a bound socket (missing or wrong keys, no CURVE).",
                                  labels);
    char ep[128];
    monitor_endpoint(name, ep, sizeof(ep));
    void *sock = zmq_socket(ctx, ZMQ_PAIR);
    if (!sock)
        return -errno;
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(sock, ep) < 0) {
        int e = errno;
        zmq_close(sock);
        return -e;
    }
    Z.mon[Z.nmon] = zsock_new(l, sock, on_monitor, w);
    if (!Z.mon[Z.nmon]) {
        zmq_close(sock);
        return -ENOMEM;
    }
    Z.nmon++;
    return 0;
}

zauth_stats zauth_get_stats(void) { return Z.st; }

/* ---- sockets -------------------------------------------------------------------------- */

static int refuse_clear(const char *endpoint)
{
    LOG_ERROR("refusing a non-loopback bus endpoint without TETHER_BUS_SECRET", "{s:s}", "endpoint", endpoint);
    errno = EPERM;
    return -EPERM;
}

int zauth_bind(void *sock, const char *endpoint)
{
    if (!zauth_enabled()) {
        if (!zauth_is_loopback(endpoint))
            return refuse_clear(endpoint);
        warn_clear(endpoint);
    } else {
        int one = 1;
        const zauth_keyset *k = &Z.keys[0];
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->server_sk, ZAUTH_KEY_LEN) < 0 ||
            zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAUTH_ZAP_DOMAIN, strlen(ZAUTH_ZAP_DOMAIN)) < 0)
            return -errno;
    }
    return zmq_bind(sock, endpoint) < 0 ? -errno : 0;
}

/* "tcp://host:5550" -> "tcp://host:05550" (libzmq reads the port with atoi). */
static int alias_endpoint(const char *ep, char *out, size_t n)
{
    const char *colon = strrchr(ep, ':');
    if (strncmp(ep, "tcp://", 6) != 0 || !colon || colon < ep + 6 || colon[1] < '1' || colon[1] > '9')
        return -EINVAL;
    size_t head = (size_t)(colon + 1 - ep);
    if (strlen(ep) + 2 > n)
        return -ENAMETOOLONG;
    memcpy(out, ep, head);
    out[head] = '0';
    strcpy(out + head + 1, colon + 1);
    return 0;
}

int zauth_connect(void *sock, const char *endpoint)
{
    if (!zauth_enabled()) {
        if (!zauth_is_loopback(endpoint))
            return refuse_clear(endpoint);
        warn_clear(endpoint);
        return zmq_connect(sock, endpoint) < 0 ? -errno : 0;
    }
    if (Z.nkeys > 1) {
        /* Only a connection whose handshake succeeded may get messages:
         * the one with the other server key never completes. */
        int one = 1;
        if (zmq_setsockopt(sock, ZMQ_IMMEDIATE, &one, sizeof(one)) < 0)
            return -errno;
    }
    for (int i = 0; i < Z.nkeys; i++) {
        const zauth_keyset *k = &Z.keys[i];
        char alias[512];
        const char *ep = endpoint;
        if (i > 0) {
            /* libzmq ignores a second connect of a DEALER, PUB or SUB to the
             * same endpoint string, so the other secret's connection goes
             * to the same address spelt with a leading zero on the port.
             * Only tcp:// has a port; ipc:// peers use the first secret. */
            if (alias_endpoint(endpoint, alias, sizeof(alias)) < 0)
                break;
            ep = alias;
        }
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k->server_pk, ZAUTH_KEY_LEN) < 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k->client_pk, ZAUTH_KEY_LEN) < 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->client_sk, ZAUTH_KEY_LEN) < 0 ||
            zmq_connect(sock, ep) < 0)
            return -errno;
    }
    return 0;
}
