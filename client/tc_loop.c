/* tc_loop.c -- the SDK's event loop: one libwebsockets client context shared
 * by any number of clients, with timers, cross-thread posting and fd watches.
 *
 * libwebsockets 4.1 runs everything from lws_service(): its poll wait ends at
 * the next scheduled "sul" timer, so tc_loop_service(l, timeout) bounds the
 * wait by scheduling one more sul. Cross-thread work uses the only
 * thread-safe lws call, lws_cancel_service(), which makes the service thread
 * deliver LWS_CALLBACK_EVENT_WAIT_CANCELLED, where the posted functions run.
 * Per-client deadlines that need no precision (connect timeout, watchdog,
 * token refresh) are checked by one 1 s sweep over the loop's clients rather
 * than by a timer each: lws keeps timers in a sorted list, and re-arming one
 * timer per received frame for thousands of clients would cost a list walk
 * per frame.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tc_internal.h"

#define SWEEP_US (1000 * 1000)

typedef struct post_item post_item;
struct post_item {
    post_item *next;
    void (*fn)(tc_loop *l, void *arg);
    void *arg;
};

typedef struct fd_watch {
    int fd;
    int ended;                     /* cb returned negative: never call it again */
    int (*cb)(void *arg, int fd);
    void *arg;
} fd_watch;

struct tc_loop {
    struct lws_context *ctx;
    int owned;
    atomic_int stop;
    pthread_mutex_t mu;
    post_item *posts, *posts_tail;
    lws_sorted_usec_list_t wake, sweep;
    tc_client *clients;
    unsigned nclients;
    int deflate;                   /* permessage-deflate offered: lws frames what we send */
    unsigned char *scratch;        /* the frames of one send() */
    size_t scratch_cap;
    unsigned char keys[256];       /* masking keys, refilled from getrandom() */
    unsigned keys_used;
    tc_loop *next;                 /* registry */
};

struct tc_timer {
    lws_sorted_usec_list_t sul;    /* first: lws hands us this pointer */
    tc_loop *l;
    void (*cb)(tc_timer *t, void *arg);
    void *arg;
};

/* The loops of the process, so that a context-wide event (which carries no
 * user pointer for a wrapped context) finds its loop. */
static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_loop *g_loops;

static tc_loop *loop_of(struct lws_context *ctx)
{
    tc_loop *l;
    pthread_mutex_lock(&g_reg_mu);
    for (l = g_loops; l && l->ctx != ctx; l = l->next)
        ;
    pthread_mutex_unlock(&g_reg_mu);
    return l;
}

uint64_t tc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t tc_now_ms(void)
{
    return tc_now_us() / 1000u;
}

static void run_posts(tc_loop *l)
{
    pthread_mutex_lock(&l->mu);
    post_item *p = l->posts;
    l->posts = l->posts_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (p) {
        post_item *n = p->next;
        p->fn(l, p->arg);
        free(p);
        p = n;
    }
}

static int loop_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        tc_loop *l = loop_of(lws_get_context(wsi));
        if (l)
            run_posts(l);
        return 0;
    }
    case LWS_CALLBACK_RAW_ADOPT_FILE:
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE: {
        fd_watch *w = lws_get_opaque_user_data(wsi);
        if (!w || w->ended)
            return -1;
        if (w->cb(w->arg, w->fd) < 0) {
            w->ended = 1;
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_RAW_CLOSE_FILE: {
        /* lws closes a raw file on POLLHUP (a pipe's writer went away)
         * without an RX callback: let the owner read what is left and see
         * the end of file, which it reports by returning negative. */
        fd_watch *w = lws_get_opaque_user_data(wsi);
        for (int i = 0; w && !w->ended && i < 4096 && w->cb(w->arg, w->fd) >= 0; i++)
            ;
        free(w);
        lws_set_opaque_user_data(wsi, NULL);
        return 0;
    }
    default:
        return tc_link__callback(wsi, reason, in, len);
    }
}

static const struct lws_protocols g_protocols[] = {
    { "tether-client", loop_cb, 0, 4096, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

const struct lws_protocols *tc_lws_protocol(void)
{
    return &g_protocols[0];
}

static tc_loop *loop_alloc(struct lws_context *ctx, int owned)
{
    tc_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->ctx = ctx;
    l->owned = owned;
    atomic_init(&l->stop, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_lock(&g_reg_mu);
    l->next = g_loops;
    g_loops = l;
    pthread_mutex_unlock(&g_reg_mu);
    return l;
}

tc_loop *tc_loop_new(void)
{
    struct lws_context_creation_info info;
    static const struct lws_extension exts[] = {
        { "permessage-deflate", lws_extension_callback_pm_deflate,
          "permessage-deflate; client_no_context_takeover; client_max_window_bits" },
        { NULL, NULL, NULL },
    };
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = g_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.timeout_secs = 10;
    info.connect_timeout_secs = 10;
    const char *deflate_env = getenv("TETHER_CLIENT_DEFLATE");
    int deflate = deflate_env && !strcmp(deflate_env, "1");
    if (deflate)
        info.extensions = exts;
    /* lws logs to stderr by itself; the CLI's stderr carries JSON events,
     * so only lws errors are kept, and only when asked for. */
    lws_set_log_level(getenv("TETHER_CLIENT_LWS_LOG") ? LLL_ERR | LLL_WARN : 0, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        return NULL;
    tc_loop *l = loop_alloc(ctx, 1);
    if (!l)
        lws_context_destroy(ctx);
    else
        l->deflate = deflate;
    return l;
}

tc_loop *tc_loop_wrap(struct lws_context *ctx)
{
    return ctx ? loop_alloc(ctx, 0) : NULL;
}

struct lws_context *tc_loop_context(tc_loop *l) { return l->ctx; }
struct lws_context *tc_loop__ctx(tc_loop *l) { return l->ctx; }

void tc_loop_free(tc_loop *l)
{
    if (!l)
        return;
    lws_sul_cancel(&l->wake);
    lws_sul_cancel(&l->sweep);
    pthread_mutex_lock(&g_reg_mu);
    for (tc_loop **pp = &g_loops; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_reg_mu);
    if (l->owned)
        lws_context_destroy(l->ctx);
    while (l->posts) {
        post_item *n = l->posts->next;
        free(l->posts);
        l->posts = n;
    }
    pthread_mutex_destroy(&l->mu);
    free(l->scratch);
    free(l);
}

/* ---- what tc_link.c writes with ------------------------------------------------------ */

int tc_loop__frames_ours(tc_loop *l)
{
    /* With permessage-deflate offered, lws frames (and compresses) each
     * message; otherwise uncompressed frames are ours to write (RFC 7692
     * lets a sender leave any message uncompressed anyway). */
    return !l->deflate;
}

unsigned char *tc_loop__scratch(tc_loop *l, size_t n)
{
    if (n <= l->scratch_cap)
        return l->scratch;
    size_t cap = l->scratch_cap ? l->scratch_cap : 16384;
    while (cap < n)
        cap *= 2;
    unsigned char *p = realloc(l->scratch, cap);
    if (!p)
        return NULL;
    l->scratch = p;
    l->scratch_cap = cap;
    return p;
}

int tc_loop__mask_key(tc_loop *l, unsigned char key[4])
{
    /* RFC 6455 5.3: an unpredictable key per frame. One getrandom() call
     * serves 64 frames instead of one random read per frame. */
    if (l->keys_used == 0 || l->keys_used >= sizeof(l->keys)) {
        if (getrandom(l->keys, sizeof(l->keys), 0) != (ssize_t)sizeof(l->keys))
            return -EIO;
        l->keys_used = 0;
    }
    memcpy(key, l->keys + l->keys_used, 4);
    l->keys_used += 4;
    return 0;
}

static void wake_cb(lws_sorted_usec_list_t *s)
{
    (void)s;
}

int tc_loop_service(tc_loop *l, int timeout_ms)
{
    if (atomic_load(&l->stop))
        return -ECANCELED;
    if (timeout_ms == 0) {
        lws_service(l->ctx, -1);     /* lws: negative means do not wait */
    } else {
        if (timeout_ms > 0)
            lws_sul_schedule(l->ctx, 0, &l->wake, wake_cb, (lws_usec_t)timeout_ms * 1000);
        lws_service(l->ctx, 0);
        lws_sul_cancel(&l->wake);
    }
    return atomic_load(&l->stop) ? -ECANCELED : 0;
}

int tc_loop_run(tc_loop *l)
{
    while (tc_loop_service(l, -1) == 0)
        ;
    return 0;
}

void tc_loop_stop(tc_loop *l)
{
    atomic_store(&l->stop, 1);
    lws_cancel_service(l->ctx);
}

int tc_loop_post(tc_loop *l, void (*fn)(tc_loop *l, void *arg), void *arg)
{
    post_item *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&l->mu);
    if (l->posts_tail)
        l->posts_tail->next = p;
    else
        l->posts = p;
    l->posts_tail = p;
    pthread_mutex_unlock(&l->mu);
    lws_cancel_service(l->ctx);
    return 0;
}

int tc_loop_watch_fd(tc_loop *l, int fd, int (*cb)(void *arg, int fd), void *arg)
{
    struct lws_vhost *vh = lws_get_vhost_by_name(l->ctx, "default");
    lws_sock_file_fd_type u;
    fd_watch *w;
    if (!vh || fd < 0 || !cb)
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->cb = cb;
    w->arg = arg;
    u.filefd = fd;
    struct lws *wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, "tether-client", NULL);
    if (!wsi) {
        free(w);
        return -EIO;
    }
    lws_set_opaque_user_data(wsi, w);
    return 0;
}

/* ---- timers ----------------------------------------------------------------------- */

static void timer_fire(lws_sorted_usec_list_t *s)
{
    tc_timer *t = lws_container_of(s, tc_timer, sul);
    t->cb(t, t->arg);
}

tc_timer *tc_timer_new(tc_loop *l, void (*cb)(tc_timer *t, void *arg), void *arg)
{
    tc_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->l = l;
    t->cb = cb;
    t->arg = arg;
    return t;
}

void tc_timer_start(tc_timer *t, uint64_t ms)
{
    lws_sul_schedule(t->l->ctx, 0, &t->sul, timer_fire, (lws_usec_t)ms * 1000);
}

void tc_timer_stop(tc_timer *t)
{
    lws_sul_cancel(&t->sul);
}

void tc_timer_free(tc_timer *t)
{
    if (!t)
        return;
    lws_sul_cancel(&t->sul);
    free(t);
}

/* ---- the client sweep ------------------------------------------------------------ */

static void sweep_cb(lws_sorted_usec_list_t *s)
{
    tc_loop *l = lws_container_of(s, tc_loop, sweep);
    uint64_t now = tc_now_ms();
    for (tc_client *c = l->clients, *n; c; c = n) {
        n = c->lnext;
        tc_client__sweep(c, now);
    }
    if (l->nclients)
        lws_sul_schedule(l->ctx, 0, &l->sweep, sweep_cb, SWEEP_US);
}

void tc_loop__add(tc_loop *l, tc_client *c)
{
    c->lprev = NULL;
    c->lnext = l->clients;
    if (l->clients)
        l->clients->lprev = c;
    l->clients = c;
    if (l->nclients++ == 0)
        lws_sul_schedule(l->ctx, 0, &l->sweep, sweep_cb, SWEEP_US);
}

void tc_loop__remove(tc_loop *l, tc_client *c)
{
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        l->clients = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    c->lnext = c->lprev = NULL;
    if (--l->nclients == 0)
        lws_sul_cancel(&l->sweep);
}
