/* redis.h -- a Redis connection driven by the process's loop.
 *
 * hiredis 0.14.1 brings the reply parser but no TLS, no event-loop glue of
 * ours, no connect or command timeouts and no reconnection. This module adds
 * them, so that replayd, sessiond and mediad each get one robust connection:
 *
 *   - Non-blocking connect to TETHER_REDIS-style URLs, over TLS for
 *     rediss:// (OpenSSL: SNI, the server's name or address verified against
 *     its certificate, TETHER_REDIS_CA, optional client certificate), AUTH (when the URL
 *     or TETHER_REDIS_PASSWORD_FILE gives a password), SELECT of the
 *     database, SCRIPT LOAD of every registered script and a PING, before
 *     any caller's command is accepted (so a caller never runs against the
 *     wrong database or unauthenticated). All of it again on every
 *     reconnection, AUTH first.
 *   - Sentinel (redis+sentinel://): the master is asked of the sentinels
 *     before every connection attempt, its ROLE checked in the handshake, a
 *     +switch-master or a READONLY reply drops the connection so that the
 *     next attempt finds the new master.
 *   - Reconnection with backoff (100 ms doubling to 2 s) whenever the
 *     connection drops or fails.
 *   - One command timeout per connection. Replies on a connection arrive in
 *     the order commands were sent, so deadlines are ordered too and a
 *     periodic sweep only looks at the oldest command. A command past its
 *     deadline means the connection is stuck: every command in flight fails
 *     with -ETIMEDOUT and the connection is recycled.
 *   - Lua scripts by SHA1: EVALSHA, and on NOSCRIPT (script cache flushed, or
 *     a Redis that restarted behind a proxy) SCRIPT LOAD and the same command
 *     again, transparently to the caller.
 *   - Readiness: connected and the last PING (every ping interval) answered.
 *
 * Commands are pipelined: many may be in flight, none waits for another.
 * Replies (and therefore callbacks) come in the order commands were issued on
 * a connection; a caller that needs ordering across its commands keeps them on
 * one redis handle.
 *
 * Single-threaded like the loop.
 */
#ifndef TETHER_REDIS_H
#define TETHER_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "loop.h"

typedef struct redis redis;
typedef struct redis_script redis_script;

/* status 0: rep is the reply, borrowed for the duration of the call (it may
 * be an error reply: check rep->type == REDIS_REPLY_ERROR). Otherwise rep is
 * NULL and status is -ETIMEDOUT (the command or one before it outlived the
 * timeout), -ECONNRESET (the connection dropped) or -ECANCELED (redis_free).
 * A callback may issue new commands. */
typedef void redis_reply_cb(redis *r, int status, redisReply *rep, void *arg);

typedef struct redis_opts {
    const char *name;          /* for logs ("append", "read"); borrowed; NULL: "redis" */
    uint32_t cmd_timeout_ms;   /* 0: 1000 */
    uint32_t ping_ms;          /* interval of readiness PINGs; 0: 1000 */
} redis_opts;

/* A parsed TETHER_REDIS URL:
 *
 *   redis://[user[:password]@]host[:port][/db]
 *   rediss://[user[:password]@]host[:port][/db]     (TLS)
 *   redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/<master-name>[/db]
 *
 * For Sentinel, the hosts are the sentinels (port 26379 by default, at most
 * REDIS_MAX_SENTINELS) and the userinfo is the master's (and the sentinels'
 * unless TETHER_SENTINEL_PASSWORD[_FILE] is set).
 *
 * host may be a name, an IPv4 address or a [v6] literal; port 6379 and db 0
 * by default. user and password are percent-decoded (%XX); a password alone
 * (redis://:pw@host) sends AUTH pw, user and password send AUTH user pw (a
 * Redis 6+ ACL user). A user without a password takes the password from
 * TETHER_REDIS_PASSWORD_FILE. */
#define REDIS_MAX_SENTINELS 8

typedef struct redis_target {
    char host[256];
    int port, db;
    char user[128];       /* "" when none */
    char password[256];   /* valid when has_password */
    int has_password;
    int tls;              /* rediss:// */
    int sentinel;         /* redis+sentinel://: host/port unused */
    int nsentinels;
    struct {
        char host[256];
        int port;         /* 26379 by default */
    } sentinels[REDIS_MAX_SENTINELS];
    char master[128];     /* the master's name at the sentinels (percent-decoded) */
} redis_target;

/* Parses url into u. Returns 0 or -EINVAL (bad form, port out of range,
 * a component too long, a bad %-escape or one that decodes to NUL). Log
 * the URL only through cfg_redact_url. */
int redis_url_parse(const char *url, redis_target *u);

/* Everything redis_new would refuse, checked at start so that a daemon can
 * fail fast naming the reason: the URL, TETHER_REDIS_PASSWORD_FILE (readable,
 * and present when an ACL user has no password in the URL), and for
 * rediss:// TETHER_REDIS_CA, TETHER_REDIS_CERT and TETHER_REDIS_KEY. Returns
 * 0, or -errno with err (errlen bytes) saying what is wrong; never a
 * password. */
int redis_check_config(const char *url, char *err, size_t errlen);
/* Names the other variables the connection reads (TETHER_REDIS_PASSWORD_FILE,
 * _CA, _CERT, _KEY, _TLS_INSECURE, TETHER_SENTINEL_PASSWORD[_FILE]) in the
 * effective configuration that cfg_print logs, secrets masked. */
void redis_config_note(void);

/* The password file named by TETHER_REDIS_PASSWORD_FILE, read when the URL
 * carries no password: its content up to the first CR or LF. It is read
 * again before every connection attempt, so a rotated password is picked up
 * without a restart. Reads it into buf (buflen bytes). Returns the length,
 * 0 (buf "") when the variable is unset or empty, or -errno
 * (-ENAMETOOLONG for a password that does not fit). */
int redis_password_file(char *buf, size_t buflen);

/* Creates the handle and starts connecting at once. url and opts are copied.
 * Returns NULL (errno set: EINVAL for a bad URL or a user without any
 * password, the error of reading TETHER_REDIS_PASSWORD_FILE when the URL
 * needs it, ENOMEM). */
redis *redis_new(loop *l, const char *url, const redis_opts *opts);
/* Fails every command in flight with -ECANCELED, closes the connection and
 * frees everything, scripts included. NULL is a no-op. Not from inside one of
 * this handle's callbacks. */
void redis_free(redis *r);

/* Registers a Lua script (body copied). It is loaded on every (re)connection
 * and re-loaded on NOSCRIPT. Register scripts right after redis_new. Returns
 * the script (owned by r) or NULL on out-of-memory. */
redis_script *redis_script_new(redis *r, const char *body);
/* The script's SHA1 in hex (borrowed). */
const char *redis_script_sha(const redis_script *s);

/* Sends a command given as argc strings (argv[i] of lens[i] bytes; lens NULL
 * means NUL-terminated strings). Everything is copied before returning.
 * Returns 0, and cb runs exactly once later; or -ENOTCONN when the
 * connection is not up (cb never runs), -E2BIG / -ENOMEM. */
int redis_command(redis *r, redis_reply_cb *cb, void *arg, int argc, const char *const *argv,
                  const size_t *lens);
/* EVALSHA s with nkeys keys followed by nargs arguments in argv/lens. Same
 * contract as redis_command; a NOSCRIPT reply is handled inside (reload and
 * resend) and reaches cb only if it persists. */
int redis_evalsha(redis *r, redis_script *s, redis_reply_cb *cb, void *arg, int nkeys, int nargs,
                  const char *const *argv, const size_t *lens);

/* 1 when connected (handshake done) and the last PING was answered with PONG. */
int redis_ready(const redis *r);
/* 1 when connected (handshake done): commands are accepted. */
int redis_up(const redis *r);
/* "up", "connecting" or "down", for health details. */
const char *redis_state(const redis *r);
/* The last connection error text ("" if none); borrowed until the next error. */
const char *redis_last_error(const redis *r);
/* Commands sent and not yet answered. */
size_t redis_inflight(const redis *r);

/* Takes a reply out of this module's hands: returns a new reply object with
 * rep's contents (free it with freeReplyObject) and leaves rep empty, so that
 * the free after the callback releases nothing of it. NULL on ENOMEM
 * (rep untouched). */
redisReply *redis_reply_take(redisReply *rep);

typedef struct redis_stats {
    unsigned long long commands;    /* caller commands accepted */
    unsigned long long errors;      /* caller commands failed without a reply, or refused */
    unsigned long long timeouts;    /* connection recycles caused by a deadline */
    unsigned long long reconnects;  /* successful handshakes after the first */
    unsigned long long disconnects; /* connections lost or failed to connect */
    unsigned long long script_reloads; /* NOSCRIPT replies handled */
} redis_stats;
redis_stats redis_get_stats(const redis *r);

#endif
