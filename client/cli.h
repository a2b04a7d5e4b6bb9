/* cli.h -- the `tether` command: subcommands and what they share.
 *
 * cli_main.c dispatches argv[1] through a table of subcommands; each lives in
 * its own cli_<name>.c. cli_common.c holds what every connecting subcommand
 * shares: the connection options (--url, --token and friends), token
 * sources, JSON event lines on stderr, and signal handling on the loop.
 */
#ifndef TETHER_CLI_H
#define TETHER_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "tether_client.h"

/* Exit codes, the same for every subcommand (documented in `tether --help`). */
enum {
    CLI_OK = 0,
    CLI_ERR = 1,      /* runtime failure (a publish refused, out of memory...) */
    CLI_USAGE = 2,    /* bad command line */
    CLI_AUTH = 3,     /* the server refused us for good (4501, 4502 without a new token, 4503, 4006...) */
    CLI_GAVE_UP = 4,  /* --max-attempts exhausted */
    CLI_TIMEOUT = 5,  /* --timeout passed before the work was done */
};

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_cmd;

int cli_token(int argc, char **argv);
int cli_sub(int argc, char **argv);
int cli_pub(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_ptt(int argc, char **argv);

/* ---- cli_common.c ------------------------------------------------------------------ */

#define CLI_DEFAULT_URL "ws://127.0.0.1:8080/ws"
/* --max-attempts by default: finite, so that a first-time user with a wrong
 * port is told (about a minute with the default backoff). */
#define CLI_DEFAULT_ATTEMPTS 8
#define CLI_DEFAULT_ATTEMPTS_S "8"

/* Connection options shared by sub, pub and bench. */
typedef struct cli_conn {
    const char *url;
    const char *token;         /* --token or $TETHER_TOKEN */
    const char *token_file;    /* re-read when a fresh token is needed */
    const char *token_cmd;     /* re-run when a fresh token is needed */
    int no_refresh;
    int quiet;                 /* no event lines on stderr */
    tc_backoff_cfg backoff;
} cli_conn;

/* Long option ids of the shared options (above any short option letter). */
enum {
    CLI_O_URL = 1000, CLI_O_TOKEN, CLI_O_TOKEN_FILE, CLI_O_TOKEN_CMD, CLI_O_NO_REFRESH, CLI_O_QUIET,
    CLI_O_MAX_ATTEMPTS, CLI_O_BACKOFF_INITIAL, CLI_O_BACKOFF_MAX, CLI_O_JITTER, CLI_O_STABLE,
};

/* The getopt_long entries of the shared options, terminated by a zero entry
 * when nothing is appended; cli_long_opts() appends 'extra' to them. */
struct option *cli_long_opts(const struct option *extra);
/* Text for --help describing the shared options. */
extern const char cli_conn_help[];

void cli_conn_init(cli_conn *o);
/* Handles a shared option. Returns 1 if it was one, 0 if not, -1 on a bad
 * value (message printed). */
int cli_conn_opt(cli_conn *o, int opt, const char *arg);
/* Resolves the initial token (--token, $TETHER_TOKEN, --token-file,
 * --token-cmd, in that order). Returns a malloc'd token or NULL (message
 * printed, naming what to do). */
char *cli_conn_token(const cli_conn *o);
/* Fills tc_options from o (token must stay valid while the client lives). */
void cli_conn_options(const cli_conn *o, tc_options *to, const char *token);
/* Gets a fresh token from --token-file/--token-cmd and sets it on c.
 * Returns 0, or -1 when there is no source or it failed. */
int cli_conn_refresh(const cli_conn *o, tc_client *c);

/* Exit code for a client that went FAILED with this close code. */
int cli_exit_for_code(int code);
/* Exit code for a FAILED state (gave_up: 4, else by close code). */
int cli_exit_for_failure(const tc_state_info *si);
/* The state event line (unless --quiet), a plain line per reconnection
 * attempt (unless --quiet), a stats event on each reconnection (what waited
 * offline: outbox, audio FIFO, drops; unless --quiet), and always a plain
 * line saying why it failed, what to do and the exit code. */
void cli_report_state(const cli_conn *o, const tc_client *c, const tc_state_info *si);

/* Prints one JSON event line on stderr: {"event": name, "t_ms": ..., fields}.
 * fields: a json_pack format for an object, or NULL. */
void cli_event(const char *name, const char *fields, ...);
/* The standard state/subscribed/gap/floor/error event lines. */
void cli_event_state(const tc_state_info *si);
void cli_event_subscribed(const tc_subscribed *s);
void cli_event_gap(const tc_gap *g);
void cli_event_floor(const tc_floor_info *f);
/* {"event":"stats", ...}: the client's counters (tc_get_stats). */
void cli_event_stats(const tc_client *c);

/* SIGINT/SIGTERM delivered on the loop (signalfd): cb(arg, signo). */
int cli_signals(tc_loop *l, void (*cb)(void *arg, int signo), void *arg);

/* Parses an unsigned decimal into *v within [lo, hi]. Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v);
/* Writes s as a JSON string (with quotes) to f. */
void cli_json_str(FILE *f, const char *s);

#endif
