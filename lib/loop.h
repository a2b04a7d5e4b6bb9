/* loop.h -- the one event loop of a Tether process.
 *
 * An epoll set plus a timer heap driven by a timerfd. Daemons without a
 * foreign loop, the gateway included, call loop_run(). mediad (GLib owns its
 * main context) embeds it instead: loop_fd() is readable
 * whenever a watched fd or a timer is due, so the outer loop watches that one
 * fd and calls loop_run_once(l, 0). Either way there is one thread and one
 * place where callbacks run.
 *
 * Single-threaded: no function here may be called from another thread.
 */
#ifndef TETHER_LOOP_H
#define TETHER_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct loop loop;

/* Readiness bits passed to loop_add_fd / loop_mod_fd and to callbacks. */
#define LOOP_READ  1u
#define LOOP_WRITE 2u
#define LOOP_ERROR 4u   /* only reported, never requested */

typedef struct loop_timer loop_timer;
typedef void loop_fd_cb(loop *l, int fd, unsigned events, void *arg);
typedef void loop_timer_cb(loop *l, loop_timer *t, void *arg);

/* A timer is owned by the caller (embed it in your struct, zero it first),
 * as libuv does: stopping is O(log n) and always safe, even from inside its
 * own callback, even if it already fired. */
struct loop_timer {
    uint64_t due;
    uint64_t repeat;
    loop_timer_cb *cb;
    void *arg;
    size_t idx;     /* position in the heap + 1; 0 when not running */
};
typedef void loop_defer_cb(loop *l, void *arg);

/* Returns a new loop, or NULL (errno set). */
loop *loop_new(void);
/* Frees the loop; pending timers and deferred calls are dropped. NULL is a no-op.
 * Watched fds are not closed (the loop never owns them). */
void loop_free(loop *l);

/* The epoll fd: readable when loop_run_once(l, 0) has work. Asking for it
 * marks l embedded: from then on deadlines and deferred calls (unless
 * loop_embed_prepared) make it readable through a timerfd; a loop that only
 * ever runs through loop_run_once() waits with epoll_wait's timeout instead. */
int loop_fd(loop *l);

/* Watch fd for events (level-triggered). Returns 0 or -errno (-EEXIST if watched). */
int loop_add_fd(loop *l, int fd, unsigned events, loop_fd_cb *cb, void *arg);
/* Change the watched events of fd. Returns 0 or -errno (-ENOENT if not watched). */
int loop_mod_fd(loop *l, int fd, unsigned events);
/* Stop watching fd; safe to call from inside fd's own callback. Returns 0 or -ENOENT. */
int loop_del_fd(loop *l, int fd);

/* (Re)starts t: cb runs after ms milliseconds, then every repeat_ms if
 * repeat_ms > 0. A running t is restarted. Returns 0 or -ENOMEM. */
int loop_timer_start(loop *l, loop_timer *t, uint64_t ms, uint64_t repeat_ms, loop_timer_cb *cb, void *arg);
/* Stops t if it is running; otherwise nothing. */
void loop_timer_stop(loop *l, loop_timer *t);
/* Non-zero while t is scheduled. */
int loop_timer_active(const loop_timer *t);

/* Runs cb once, at the end of the current iteration (or the next one).
 * Returns 0 or -ENOMEM. */
int loop_defer(loop *l, loop_defer_cb *cb, void *arg);

/* One iteration: waits up to timeout_ms (-1: until something happens),
 * dispatches ready fds, due timers and deferred calls. Returns the number of
 * callbacks run, or -errno. */
int loop_run_once(loop *l, int timeout_ms);
/* For an embedding loop that calls loop_prepare(l) every time before it
 * waits (a prepare hook): deferred calls then run there and need no
 * wake-up through loop_fd(). */
void loop_embed_prepared(loop *l);
/* Runs the deferred calls (those they defer too, a few rounds; past that,
 * loop_fd() becomes readable at once). Returns the number run. */
int loop_prepare(loop *l);
/* Runs until loop_stop(). Returns 0. */
int loop_run(loop *l);
void loop_stop(loop *l);

/* Monotonic milliseconds, cached per iteration (loop_now_update refreshes). */
uint64_t loop_now_ms(loop *l);
void loop_now_update(loop *l);
/* Wall clock, milliseconds since the Unix epoch (not cached). */
int64_t loop_wall_ms(void);
/* Monotonic milliseconds (not cached). */
uint64_t loop_mono_ms(void);

/* Signals delivered through the loop (signalfd), never in a handler. */
typedef void loop_signal_cb(loop *l, int signo, void *arg);
/* Blocks signo for the process and reports it through cb. Returns 0 or -errno. */
int loop_signal(loop *l, int signo, loop_signal_cb *cb, void *arg);

#endif
