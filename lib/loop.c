/* loop.c -- epoll + timerfd event loop (see loop.h for how it is embedded).
 *
 * Timers live in a binary min-heap ordered by deadline; the timerfd is armed
 * for the earliest one, or earlier (a stopped timer's deadline is left armed:
 * the early wake-up arms the real one). Watched fds live in a small open table indexed by fd.
 * Deleting a timer marks it dead in place (lazy deletion) so that callbacks
 * may cancel timers, including themselves, at any point.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef struct watch {
    loop_fd_cb *cb;
    void *arg;
    unsigned events;
    int active;
} watch;

typedef struct deferred {
    loop_defer_cb *cb;
    void *arg;
} deferred;

typedef struct sigwatch {
    int signo;
    loop_signal_cb *cb;
    void *arg;
} sigwatch;

struct loop {
    int epfd;
    int tfd;
    int sfd;
    sigset_t sigmask;
    sigwatch sigs[8];
    int nsigs;
    watch *watches;     /* indexed by fd */
    int nwatches;
    loop_timer **heap;
    size_t nheap, capheap;
    uint64_t armed_for;  /* deadline the timerfd is armed for, 0 = disarmed */
    deferred *defer;
    size_t ndefer, capdefer;
    int embedded;        /* loop_fd() was asked for: another loop waits on it */
    int prepared;        /* the embedding loop calls loop_prepare() before each wait */
    uint64_t now;
    int stop;
};

uint64_t loop_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t loop_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t loop_now_ms(loop *l) { return l->now; }
void loop_now_update(loop *l) { l->now = loop_mono_ms(); }
static void arm(loop *l);

int loop_fd(loop *l)
{
    /* Someone else waits now: deadlines and deferred calls must make the
     * epoll fd readable, through the timerfd. */
    if (!l->embedded) {
        l->embedded = 1;
        l->armed_for = 0;
        arm(l);
    }
    return l->epfd;
}
void loop_stop(loop *l) { l->stop = 1; }

static void tfd_cb(loop *l, int fd, unsigned events, void *arg);
static void sfd_cb(loop *l, int fd, unsigned events, void *arg);

loop *loop_new(void)
{
    loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->sfd = -1;
    sigemptyset(&l->sigmask);
    l->now = loop_mono_ms();
    if (l->epfd < 0 || l->tfd < 0 || loop_add_fd(l, l->tfd, LOOP_READ, tfd_cb, NULL) < 0) {
        int e = errno;
        loop_free(l);
        errno = e;
        return NULL;
    }
    return l;
}

void loop_free(loop *l)
{
    if (!l)
        return;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->tfd >= 0)
        close(l->tfd);
    if (l->sfd >= 0)
        close(l->sfd);
    free(l->watches);
    free(l->heap);
    free(l->defer);
    free(l);
}

static uint32_t to_epoll(unsigned ev)
{
    uint32_t e = 0;
    if (ev & LOOP_READ)
        e |= EPOLLIN;
    if (ev & LOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

int loop_add_fd(loop *l, int fd, unsigned events, loop_fd_cb *cb, void *arg)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= l->nwatches) {
        int n = l->nwatches ? l->nwatches : 64;
        while (n <= fd)
            n *= 2;
        watch *w = realloc(l->watches, (size_t)n * sizeof(*w));
        if (!w)
            return -ENOMEM;
        memset(w + l->nwatches, 0, (size_t)(n - l->nwatches) * sizeof(*w));
        l->watches = w;
        l->nwatches = n;
    }
    if (l->watches[fd].active)
        return -EEXIST;
    struct epoll_event ee = { .events = to_epoll(events), .data.fd = fd };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
        return -errno;
    l->watches[fd] = (watch){ .cb = cb, .arg = arg, .events = events, .active = 1 };
    return 0;
}

int loop_mod_fd(loop *l, int fd, unsigned events)
{
    if (fd < 0 || fd >= l->nwatches || !l->watches[fd].active)
        return -ENOENT;
    if (l->watches[fd].events == events)
        return 0;
    struct epoll_event ee = { .events = to_epoll(events), .data.fd = fd };
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ee) < 0)
        return -errno;
    l->watches[fd].events = events;
    return 0;
}

int loop_del_fd(loop *l, int fd)
{
    if (fd < 0 || fd >= l->nwatches || !l->watches[fd].active)
        return -ENOENT;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->watches[fd].active = 0;
    return 0;
}

/* ---- timers ---------------------------------------------------------------- */

static void heap_set(loop *l, size_t i, loop_timer *t)
{
    l->heap[i] = t;
    t->idx = i + 1;
}

static void heap_up(loop *l, size_t i)
{
    loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due <= t->due)
            break;
        heap_set(l, i, l->heap[p]);
        i = p;
    }
    heap_set(l, i, t);
}

static void heap_down(loop *l, size_t i)
{
    loop_timer *t = l->heap[i];
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        uint64_t md = t->due;
        if (a < l->nheap && l->heap[a]->due < md) {
            m = a;
            md = l->heap[a]->due;
        }
        if (b < l->nheap && l->heap[b]->due < md)
            m = b;
        if (m == i)
            break;
        heap_set(l, i, l->heap[m]);
        i = m;
    }
    heap_set(l, i, t);
}

static void heap_remove(loop *l, loop_timer *t)
{
    size_t i = t->idx - 1;
    t->idx = 0;
    loop_timer *last = l->heap[--l->nheap];
    if (i == l->nheap)
        return;
    heap_set(l, i, last);
    heap_down(l, i);
    heap_up(l, last->idx - 1);
}

static void arm(loop *l)
{
    /* Not embedded: loop_run_once() waits with the earliest deadline as
     * epoll_wait's timeout and needs no timerfd (whose re-arming cost two
     * syscalls per 0 ms timer, e.g. replayd's per-iteration flush). */
    if (!l->embedded)
        return;
    /* Deferred calls pending: an embedding loop must wake us now, whatever
     * timer is next. armed_for == 1 marks this "fire at once" arming; the
     * real deadline is restored once the deferred calls have run. An
     * embedding loop that calls loop_prepare() before it waits needs no
     * wake-up for them (each one cost two timerfd_settime calls, a wake-up
     * and a read). */
    if (l->ndefer && !l->prepared) {
        if (l->armed_for != 1) {
            struct itimerspec now = { .it_value = { .tv_nsec = 1 } };
            timerfd_settime(l->tfd, 0, &now, NULL);
            l->armed_for = 1;
        }
        return;
    }
    uint64_t due = l->nheap ? l->heap[0]->due : 0;
    if (due == l->armed_for)
        return;
    /* Armed for an earlier deadline than the earliest timer (which was
     * stopped), or for one when no timer is left: leave it. It fires early
     * once and run_timers arms the real deadline, instead of a
     * timerfd_settime per stopped timer: request timeouts are stopped in
     * the order they were started, so each reply used to move the earliest
     * deadline (measured: 2 % of the gateway's CPU under publish load). */
    if (l->armed_for > 1 && (!due || due > l->armed_for))
        return;
    struct itimerspec its = { 0 };
    if (due) {
        /* Absolute monotonic deadline; a past deadline fires at once. */
        its.it_value.tv_sec = (time_t)(due / 1000);
        its.it_value.tv_nsec = (long)(due % 1000) * 1000000L;
    }
    timerfd_settime(l->tfd, due ? TFD_TIMER_ABSTIME : 0, &its, NULL);
    l->armed_for = due;
}

int loop_timer_active(const loop_timer *t) { return t->idx != 0; }

int loop_timer_start(loop *l, loop_timer *t, uint64_t ms, uint64_t repeat_ms, loop_timer_cb *cb, void *arg)
{
    if (t->idx)
        heap_remove(l, t);
    if (l->nheap == l->capheap) {
        size_t n = l->capheap ? l->capheap * 2 : 64;
        loop_timer **h = realloc(l->heap, n * sizeof(*h));
        if (!h)
            return -ENOMEM;
        l->heap = h;
        l->capheap = n;
    }
    t->due = loop_mono_ms() + ms;
    t->repeat = repeat_ms;
    t->cb = cb;
    t->arg = arg;
    l->heap[l->nheap] = t;
    t->idx = ++l->nheap;
    heap_up(l, l->nheap - 1);
    arm(l);
    return 0;
}

void loop_timer_stop(loop *l, loop_timer *t)
{
    if (!t->idx)
        return;
    heap_remove(l, t);
    arm(l);
}

static int run_timers(loop *l)
{
    int ran = 0;
    uint64_t now = loop_mono_ms();
    l->now = now;
    while (l->nheap && l->heap[0]->due <= now) {
        loop_timer *t = l->heap[0];
        heap_remove(l, t);
        if (t->repeat) {
            t->due = now + t->repeat;
            l->heap[l->nheap] = t;
            t->idx = ++l->nheap;
            heap_up(l, l->nheap - 1);
        }
        /* The callback may free t (after stopping it) or restart it. */
        t->cb(l, t, t->arg);
        ran++;
    }
    l->armed_for = 0;
    arm(l);
    return ran;
}

static void tfd_cb(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    (void)arg;
    uint64_t n;
    while (read(fd, &n, sizeof(n)) > 0)
        ;
    run_timers(l);
}

/* ---- deferred calls and signals ---------------------------------------------- */

int loop_defer(loop *l, loop_defer_cb *cb, void *arg)
{
    if (l->ndefer == l->capdefer) {
        size_t n = l->capdefer ? l->capdefer * 2 : 32;
        deferred *d = realloc(l->defer, n * sizeof(*d));
        if (!d)
            return -ENOMEM;
        l->defer = d;
        l->capdefer = n;
    }
    l->defer[l->ndefer++] = (deferred){ cb, arg };
    /* Make sure an embedding loop wakes us: fire the timerfd now. */
    arm(l);
    return 0;
}

static int run_deferred(loop *l)
{
    int ran = 0;
    /* Calls deferred while running go to the next round, so a callback that
     * re-defers itself cannot starve the loop. */
    size_t n = l->ndefer;
    size_t i = 0;
    while (i < n) {
        deferred d = l->defer[i++];
        d.cb(l, d.arg);
        ran++;
    }
    if (l->ndefer > n)
        memmove(l->defer, l->defer + n, (l->ndefer - n) * sizeof(*l->defer));
    l->ndefer -= n;
    return ran;
}

static void sfd_cb(loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    (void)arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        for (int i = 0; i < l->nsigs; i++)
            if (l->sigs[i].signo == (int)si.ssi_signo)
                l->sigs[i].cb(l, (int)si.ssi_signo, l->sigs[i].arg);
    }
}

int loop_signal(loop *l, int signo, loop_signal_cb *cb, void *arg)
{
    if (l->nsigs == (int)(sizeof(l->sigs) / sizeof(l->sigs[0])))
        return -ENOSPC;
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return -errno;
    int fd = signalfd(l->sfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (l->sfd < 0) {
        l->sfd = fd;
        int r = loop_add_fd(l, fd, LOOP_READ, sfd_cb, NULL);
        if (r < 0)
            return r;
    }
    l->sigs[l->nsigs++] = (sigwatch){ signo, cb, arg };
    return 0;
}

/* ---- running ------------------------------------------------------------------ */

int loop_run_once(loop *l, int timeout_ms)
{
    struct epoll_event evs[128];
    if (l->ndefer)
        timeout_ms = 0;
    if (!l->embedded && timeout_ms != 0 && l->nheap) {
        uint64_t due = l->heap[0]->due, now = loop_mono_ms();
        uint64_t wait = due > now ? due - now : 0;
        if (wait > INT_MAX)
            wait = INT_MAX;
        if (timeout_ms < 0 || (uint64_t)timeout_ms > wait)
            timeout_ms = (int)wait;
    }
    int n = epoll_wait(l->epfd, evs, 128, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    l->now = loop_mono_ms();
    int ran = 0;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd >= l->nwatches || !l->watches[fd].active)
            continue; /* removed by an earlier callback in this batch */
        unsigned ev = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
            ev |= LOOP_READ;
        if (evs[i].events & EPOLLOUT)
            ev |= LOOP_WRITE;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            ev |= LOOP_ERROR;
        watch w = l->watches[fd];
        w.cb(l, fd, ev, w.arg);
        ran++;
    }
    if (!l->embedded && l->nheap && l->heap[0]->due <= l->now)
        ran += run_timers(l);
    ran += run_deferred(l);
    if (l->ndefer && l->embedded && !l->prepared) {
        /* Calls deferred by deferred calls: the one-shot wake-up may have
         * been consumed already, so arm it again. */
        l->armed_for = 0;
        arm(l);
    } else if (l->armed_for == 1) {
        /* Nothing left to defer: restore the real deadline. */
        l->armed_for = 0;
        uint64_t n2;
        while (read(l->tfd, &n2, sizeof(n2)) > 0)
            ;
        run_timers(l);
    }
    return ran;
}

void loop_embed_prepared(loop *l)
{
    l->prepared = 1;
}

int loop_prepare(loop *l)
{
    int ran = 0;
    /* Calls deferred by deferred calls run here too, a few rounds; one that
     * keeps re-deferring itself gets the timerfd wake-up instead, so that
     * the embedding loop does not block with work pending. */
    for (int round = 0; l->ndefer && round < 4; round++)
        ran += run_deferred(l);
    if (l->ndefer) {
        l->prepared = 0;
        arm(l);
        l->prepared = 1;
    }
    return ran;
}

int loop_run(loop *l)
{
    l->stop = 0;
    while (!l->stop)
        loop_run_once(l, -1);
    return 0;
}
