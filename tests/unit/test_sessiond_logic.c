/* test_sessiond_logic.c -- sessiond's decision rules, without the daemon.
 *
 * The presence state machine and the reconcile rules live in the Lua scripts
 * of sessiond/ss_lua.c (one atomic script per event, so that replicas
 * agree). Here they run on a bare redis-server, driven by a table: each
 * scenario is a list of steps ("open s1 alice 1 g1 0", "close ...", "snap
 * ...") with the presence changes each step must report, exactly and in
 * order. Also: snapshot part assembly (ss_snap.c), input validation
 * (ss_valid.c) and the connection quality thresholds (lib/quality.c) as a
 * table.
 *
 * The sessiond sources are compiled in (the Makefile builds each test alone
 * against libtether.a).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "quality.h"
#include "sessiond/ss_lua.c"
#include "sessiond/ss_snap.c"
#include "sessiond/ss_valid.c"
#include "test_replayd_util.h"

#define TTL_MS 1000

static int g_port;
static pid_t g_redis;
static redisContext *R;
static uint64_t g_rid;

/* ---- script runner ------------------------------------------------------------------------- */

static long long redis_now(void)
{
    redisReply *r = redisCommand(R, "TIME");
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* EVAL body with argv; returns the reply (caller frees). */
static redisReply *eval(const char *body, int argc, const char **argv)
{
    const char *cmd[64];
    size_t lens[64];
    int n = 0;
    cmd[n++] = "EVAL";
    cmd[n++] = body;
    cmd[n++] = "0";
    for (int i = 0; i < argc; i++)
        cmd[n++] = argv[i];
    for (int i = 0; i < n; i++)
        lens[i] = strlen(cmd[i]);
    redisReply *r = redisCommandArgv(R, n, cmd, lens);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script error: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    return r;
}

/* "g1" -> instance g1, incarnation 100; "g1#3" -> g1, 300. */
static void gw_of(const char *tok, char *inst, size_t n, char *inc, size_t m)
{
    const char *h = strchr(tok, '#');
    size_t il = h ? (size_t)(h - tok) : strlen(tok);
    snprintf(inst, n, "%.*s", (int)il, tok);
    snprintf(inc, m, "%d", h ? atoi(h + 1) * 100 : 100);
}

/* Runs one step; writes the changes it reported as "room/user/state ..."
 * ("-" for none), and the code and gw_status. */
static void step(long long base, const char *line, char *changes, size_t clen, char *code, size_t codelen,
                 long long *gst)
{
    char buf[512], *tok[32] = { 0 };
    int nt = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && nt < 32; t = strtok_r(NULL, " ", &save))
        tok[nt++] = t;
    char inst[64], inc[32], at[32], ts[32], rid[32], ttl[16], tmp[8][64];
    const char *a[48];
    int n = 0;
    const char *body = NULL;
    snprintf(ttl, sizeof(ttl), "%d", TTL_MS);
    if (nt == 0)
        fail_msg("empty step");
    const char *op = tok[0];
    static const struct {
        const char *op;
        int min;
    } need[] = { { "open", 6 }, { "close", 4 }, { "bye", 4 }, { "join", 5 }, { "leave", 5 }, { "hb", 2 },
                 { "presence", 2 }, { "snap", 4 }, { "fin", 5 }, { "kill", 2 }, { "del", 2 }, { "live", 2 } };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (!strcmp(op, need[i].op) && nt < need[i].min)
            fail_msg("step '%s': too few fields", line);
    if (!strcmp(op, "open")) { /* open S U C G AT [grace] */
        gw_of(tok[4], inst, sizeof(inst), inc, sizeof(inc));
        snprintf(at, sizeof(at), "%lld", base + atoll(tok[5]));
        const char *v[] = { tok[1], tok[2], tok[3], "c", at, inst, inc, ttl, "2500", nt > 6 ? tok[6] : "10000" };
        memcpy(a, v, sizeof(v));
        n = 10;
        body = ss_lua_open;
    } else if (!strcmp(op, "close") || !strcmp(op, "bye")) { /* close S C G AT | bye S C G */
        gw_of(tok[3], inst, sizeof(inst), inc, sizeof(inc));
        snprintf(at, sizeof(at), "%lld", base + (nt > 4 ? atoll(tok[4]) : 0));
        const char *v[] = { tok[1], tok[2], op[0] == 'b' ? "1" : "0", at, inst, inc, ttl, "2500", "0" };
        memcpy(a, v, sizeof(v));
        n = 9;
        body = ss_lua_close;
    } else if (!strcmp(op, "join") || !strcmp(op, "leave")) { /* join S C G R [ts] */
        gw_of(tok[3], inst, sizeof(inst), inc, sizeof(inc));
        snprintf(ts, sizeof(ts), "%lld", base + (nt > 5 ? atoll(tok[5]) : 0));
        snprintf(rid, sizeof(rid), "%llu", (unsigned long long)++g_rid);
        const char *v[] = { tok[1], tok[2], tok[4], op[0] == 'j' ? "1" : "0", ts, rid, inst, inc, "2500" };
        memcpy(a, v, sizeof(v));
        n = 9;
        body = ss_lua_room;
    } else if (!strcmp(op, "hb")) { /* hb G [dead_after] */
        gw_of(tok[1], inst, sizeof(inst), inc, sizeof(inc));
        const char *v[] = { inst, inc, nt > 2 ? tok[2] : "2500" };
        memcpy(a, v, sizeof(v));
        n = 3;
        body = ss_lua_heartbeat;
    } else if (!strcmp(op, "sweep")) {
        const char *v[] = { "1", "500", ttl };
        memcpy(a, v, sizeof(v));
        n = 3;
        body = ss_lua_sweep;
    } else if (!strcmp(op, "presence")) {
        a[0] = tok[1];
        n = 1;
        body = ss_lua_presence;
    } else if (!strcmp(op, "snap")) { /* snap G TS KEY conn:sid:user:r1+r2 ... */
        gw_of(tok[1], inst, sizeof(inst), inc, sizeof(inc));
        snprintf(ts, sizeof(ts), "%lld", base + atoll(tok[2]));
        a[n++] = inst;
        a[n++] = inc;
        a[n++] = ts;
        a[n++] = tok[3];
        a[n++] = inst; /* the claim token: one replica per gateway name here */
        a[n++] = "2500";
        a[n++] = ttl;
        snprintf(tmp[0], sizeof(tmp[0]), "%d", nt - 4);
        a[n++] = tmp[0];
        for (int i = 4; i < nt; i++) {
            char *f[4] = { 0 }, *save = NULL;
            int nf = 0;
            for (char *t = strtok_r(tok[i], ":", &save); t && nf < 4; t = strtok_r(NULL, ":", &save))
                f[nf++] = t;
            a[n++] = f[0];
            a[n++] = f[1];
            a[n++] = f[2];
            a[n++] = "c";
            int nr = 0;
            char *rooms[8];
            for (char *t = f[3] ? strtok_r(f[3], "+", &save) : NULL; t && nr < 8; t = strtok_r(NULL, "+", &save))
                rooms[nr++] = t;
            snprintf(tmp[i - 3], sizeof(tmp[0]), "%d", nr);
            a[n++] = tmp[i - 3];
            for (int k = 0; k < nr; k++)
                a[n++] = rooms[k];
        }
        body = ss_lua_snap_part;
    } else if (!strcmp(op, "fin")) { /* fin G TS KEY calls */
        gw_of(tok[1], inst, sizeof(inst), inc, sizeof(inc));
        snprintf(ts, sizeof(ts), "%lld", base + atoll(tok[2]));
        const char *v[] = { inst, inc, ts, tok[3], inst, ttl, tok[4] };
        memcpy(a, v, sizeof(v));
        n = 7;
        body = ss_lua_snap_finish;
    } else if (!strcmp(op, "live")) { /* live S: code "<live>:<conn>" or "none" */
        redisReply *h = redisCommand(R, "HMGET tether:{sess}:s:%s live conn", tok[1]);
        if (h->element[0]->type == REDIS_REPLY_STRING)
            snprintf(code, codelen, "%s:%s", h->element[0]->str, h->element[1]->str);
        else
            snprintf(code, codelen, "none");
        freeReplyObject(h);
        snprintf(changes, clen, "-");
        *gst = 0;
        return;
    } else if (!strcmp(op, "kill")) { /* kill G: its deadline passes now (a SIGKILL) */
        gw_of(tok[1], inst, sizeof(inst), inc, sizeof(inc));
        freeReplyObject(redisCommand(R, "ZADD tether:{sess}:gwdl 0 %s|%s", inst, inc));
        snprintf(changes, clen, "-");
        snprintf(code, codelen, "ok");
        *gst = 0;
        return;
    } else if (!strcmp(op, "del")) { /* del S: the session key vanishes (a backstop TTL) */
        freeReplyObject(redisCommand(R, "DEL tether:{sess}:s:%s", tok[1]));
        snprintf(changes, clen, "-");
        snprintf(code, codelen, "ok");
        *gst = 0;
        return;
    } else {
        fail_msg("bad step: %s", line);
    }
    redisReply *r = eval(body, n, a);
    snprintf(code, codelen, "%s", r->element[0]->str);
    *gst = r->element[1]->integer;
    const redisReply *ch = r->element[3];
    size_t used = 0;
    changes[0] = '\0';
    for (size_t i = 0; i + 2 < ch->elements; i += 3)
        used += (size_t)snprintf(changes + used, clen - used, "%s%s/%s/%s", used ? " " : "", ch->element[i]->str,
                                 ch->element[i + 1]->str, ch->element[i + 2]->str);
    if (!used)
        snprintf(changes, clen, "-");
    freeReplyObject(r);
}

typedef struct tstep {
    const char *cmd;
    const char *want;   /* changes, "-" for none */
    const char *code;   /* NULL: "ok" */
    int gst;            /* -1: any */
} tstep;

typedef struct scenario {
    const char *name;
    tstep steps[24];
} scenario;

#define ANY (-1)

static const scenario SCENARIOS[] = {
    { "one session: online, reconnecting, online again, offline after bye",
      { { "open s1 alice 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/alice/online", NULL, ANY },
        { "join s1 1 g1 r", "-", NULL, ANY },
        { "close s1 1 g1 0", "r/alice/reconnecting", NULL, ANY },
        { "close s1 1 g1 0", "-", NULL, ANY },
        { "open s1 alice 2 g2 10", "-", NULL, ANY },
        { "join s1 2 g2 r", "r/alice/online", NULL, ANY },
        { "bye s1 2 g2", "r/alice/offline", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "two tabs: online while either is connected",
      { { "open s1 bob 1 g1 0", "-", NULL, ANY },
        { "open s2 bob 2 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/bob/online", NULL, ANY },
        { "join s2 2 g1 r", "-", NULL, ANY },
        { "close s1 1 g1 0", "-", NULL, ANY },
        { "close s2 2 g1 0", "r/bob/reconnecting", NULL, ANY },
        { "open s2 bob 3 g1 0", "-", NULL, ANY },
        { "join s2 3 g1 r", "r/bob/online", NULL, ANY },
        { "bye s2 3 g1", "r/bob/reconnecting", NULL, ANY },
        { "bye s1 1 g1", "r/bob/offline", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "expiry: a disconnected session past its TTL ends, offline; resumes inside it never do",
      { { "open s1 carol 1 g1 0", "-", NULL, ANY },
        { "open s2 dan 2 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/carol/online", NULL, ANY },
        { "join s2 2 g1 r", "r/dan/online", NULL, ANY },
        { "close s1 1 g1 -5000", "r/carol/reconnecting", NULL, ANY },
        { "close s2 2 g1 0", "r/dan/reconnecting", NULL, ANY },
        { "sweep", "r/carol/offline", NULL, ANY },
        { "sweep", "-", NULL, ANY },
        { "open s1 carol 3 g1 0", "-", NULL, ANY },
        { "open s2 dan 4 g1 0", "-", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "takeover: the newer connection holds the session, the old one's news is ignored",
      { { "open s1 erin 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/erin/online", NULL, ANY },
        { "open s1 erin 2 g2 0", "-", NULL, ANY },
        { "join s1 2 g2 r", "-", NULL, ANY },
        { "close s1 1 g1 0", "-", NULL, ANY },
        { "leave s1 1 g1 r", "-", NULL, ANY },
        { "close s1 2 g2 0", "r/erin/reconnecting", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "another user's session id is refused and left alone",
      { { "open s1 frank 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/frank/online", NULL, ANY },
        { "open s1 mallory 2 g1 0", "-", "forbidden", ANY },
        { "close s1 2 g1 0", "-", NULL, ANY },
        { "presence r", "-", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "rejoin grace: rooms a resumed session does not re-join are left",
      { { "open s1 gina 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 a", "a/gina/online", NULL, ANY },
        { "join s1 1 g1 b", "b/gina/online", NULL, ANY },
        { "close s1 1 g1 0", "a/gina/reconnecting b/gina/reconnecting", NULL, ANY },
        { "open s1 gina 2 g1 0 0", "-", NULL, ANY },
        { "join s1 2 g1 a", "a/gina/online", NULL, ANY },
        { "sweep", "b/gina/offline", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "leave and late join: the later request wins",
      { { "open s1 hal 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/hal/online", NULL, ANY },
        { "leave s1 1 g1 r", "r/hal/offline", NULL, ANY },
        { "join s1 1 g1 r", "r/hal/online", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "gateway death: silent past its deadline, every session reconnecting; heard again: resurrected",
      { { "hb g1", "-", NULL, 1 },
        { "open s1 ivy 1 g1 0", "-", NULL, 0 },
        { "open s2 jay 2 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/ivy/online", NULL, ANY },
        { "join s2 2 g1 r", "r/jay/online", NULL, ANY },
        { "kill g1", "-", NULL, ANY },
        { "sweep", "r/ivy/reconnecting r/jay/reconnecting|r/jay/reconnecting r/ivy/reconnecting", NULL, ANY },
        { "hb g1", "-", NULL, 2 },
        { "open s1 ivy 3 g2 0", "-", NULL, ANY },
        { "join s1 3 g2 r", "r/ivy/online", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "a new incarnation of a gateway kills the old one at once",
      { { "open s1 kim 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/kim/online", NULL, ANY },
        { "hb g1#2", "-", NULL, 1 },
        { "sweep", "r/kim/reconnecting", NULL, ANY },
        { "open s2 lee 1 g1 0", "-", "stale", 3 },
        { NULL, NULL, NULL, 0 } } },
    { "snapshot: listed connections live with exactly their rooms, absent ones disconnected",
      { { "open s1 mia 1 g1 0", "-", NULL, ANY },
        { "open s2 ned 2 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/mia/online", NULL, ANY },
        { "join s1 1 g1 old", "old/mia/online", NULL, ANY },
        { "join s2 2 g1 r", "r/ned/online", NULL, ANY },
        { "snap g1 100 k1 1:s1:mia:r 3:s3:oz:r+q", "old/mia/offline r/oz/online q/oz/online|old/mia/offline q/oz/online r/oz/online", NULL, ANY },
        { "fin g1 100 k1 1", "r/ned/reconnecting", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "snapshot: a connection its gateway closed stays closed; newer joins and leaves win",
      { { "open s1 pat 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/pat/online", NULL, ANY },
        { "close s1 1 g1 0", "r/pat/reconnecting", NULL, ANY },
        { "open s2 quin 2 g1 0", "-", NULL, ANY },
        { "join s2 2 g1 a 200", "a/quin/online", NULL, ANY },
        { "join s2 2 g1 b 50", "b/quin/online", NULL, ANY },
        { "leave s2 2 g1 b 150", "b/quin/offline", NULL, ANY },
        { "snap g1 100 k2 1:s1:pat:r 2:s2:quin:b", "-", NULL, ANY },
        { "fin g1 100 k2 1", "-", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "snapshot: a session held by a dead gateway moves to the one that lists it",
      { { "open s1 rae 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/rae/online", NULL, ANY },
        { "kill g1", "-", NULL, ANY },
        { "snap g2 100 k3 7:s1:rae:r", "-", NULL, ANY },
        { "fin g2 100 k3 1", "-", NULL, ANY },
        { "sweep", "-", NULL, ANY },
        { "close s1 7 g2 0", "r/rae/reconnecting", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
    { "snapshot: a missing part makes the finish do nothing",
      { { "open s1 sam 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/sam/online", NULL, ANY },
        { "snap g1 100 k4", "-", NULL, ANY },
        { "fin g1 100 k4 2", "-", "incomplete", ANY },
        { "snap g9 100 k4", "-", "claimed", ANY },
        { NULL, NULL, NULL, 0 } } },
    { "reordered retries: a close that overtook its open is applied by the open",
      { { "open s1 ann 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/ann/online", NULL, ANY },
        { "close s1 1 g1 0", "r/ann/reconnecting", NULL, ANY },
        { "close s1 2 g1 5", "-", NULL, ANY },
        { "open s1 ann 2 g1 3", "-", NULL, ANY },
        { "live s1", "-", "0:2", ANY },
        { NULL, NULL, NULL, 0 } } },
    { "reordered retries: a join that overtook its open is applied by the open",
      { { "open s1 bea 1 g1 0", "-", NULL, ANY },
        { "close s1 1 g1 0", "-", NULL, ANY },
        { "join s1 2 g1 r2", "-", NULL, ANY },
        { "open s1 bea 2 g1 0", "r2/bea/online", NULL, ANY },
        { "live s1", "-", "1:2", ANY },
        { NULL, NULL, NULL, 0 } } },
    { "a late retry of an older open does not take the session back",
      { { "open s1 cy 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/cy/online", NULL, ANY },
        { "open s1 cy 5 g1 0", "-", NULL, ANY },
        { "join s1 5 g1 r", "-", NULL, ANY },
        { "open s1 cy 3 g1 0", "-", NULL, ANY },
        { "live s1", "-", "1:5", ANY },
        { "open s1 cy 9 g2 -1000", "-", NULL, ANY },
        { "live s1", "-", "1:5", ANY },
        { NULL, NULL, NULL, 0 } } },
    { "snapshot: the gateway's newer connection takes the session; its parked close then applies",
      { { "open s1 dee 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/dee/online", NULL, ANY },
        { "close s1 2 g1 150", "-", NULL, ANY },
        { "snap g1 100 k5 2:s1:dee:r", "r/dee/reconnecting", NULL, ANY },
        { "fin g1 100 k5 1", "-", NULL, ANY },
        { "live s1", "-", "0:2", ANY },
        { NULL, NULL, NULL, 0 } } },
    { "ghost: a member whose session key vanished is cleaned up on read",
      { { "open s1 tia 1 g1 0", "-", NULL, ANY },
        { "join s1 1 g1 r", "r/tia/online", NULL, ANY },
        { "del s1", "-", NULL, ANY },
        { "presence r", "r/tia/offline", NULL, ANY },
        { NULL, NULL, NULL, 0 } } },
};

static void test_presence_scenarios(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t s = 0; s < sizeof(SCENARIOS) / sizeof(SCENARIOS[0]); s++) {
        const scenario *sc = &SCENARIOS[s];
        freeReplyObject(redisCommand(R, "FLUSHDB"));
        long long base = redis_now();
        for (size_t i = 0; sc->steps[i].cmd; i++) {
            const tstep *t = &sc->steps[i];
            char changes[1024], code[32];
            long long gst;
            step(base, t->cmd, changes, sizeof(changes), code, sizeof(code), &gst);
            /* "a|b": either order (a script's changes follow hash order). */
            int ok = 0;
            char alts[512];
            snprintf(alts, sizeof(alts), "%s", t->want);
            for (char *save = NULL, *w = strtok_r(alts, "|", &save); w; w = strtok_r(NULL, "|", &save))
                ok |= !strcmp(w, changes);
            ok = ok && !strcmp(code, t->code ? t->code : "ok") && (t->gst == ANY || t->gst == gst);
            if (!ok) {
                fprintf(stderr, "# %s\n#   step %zu '%s': changes [%s] code %s gw %lld; want [%s] code %s gw %d\n",
                        sc->name, i + 1, t->cmd, changes, code, gst, t->want, t->code ? t->code : "ok", t->gst);
                failures++;
                break;
            }
        }
    }
    fprintf(stderr, "# %zu presence scenarios\n", sizeof(SCENARIOS) / sizeof(SCENARIOS[0]));
    assert_int_equal(failures, 0);
}

static void test_open_results(void **state)
{
    (void)state;
    freeReplyObject(redisCommand(R, "FLUSHDB"));
    long long base = redis_now();
    char at[32];
    const char *inst = "g1", *inc = "100", *ttl = "120000";
    /* New: resumed 0. */
    snprintf(at, sizeof(at), "%lld", base);
    const char *o1[] = { "s1", "uma", "1", "c", at, inst, inc, ttl, "2500", "10000" };
    redisReply *r = eval(ss_lua_open, 10, o1);
    assert_int_equal(r->element[2]->element[0]->integer, 0);
    freeReplyObject(r);
    /* Closed at base + 100, back at base + 1337: resumed, 1237 ms. */
    snprintf(at, sizeof(at), "%lld", base + 100);
    const char *c1[] = { "s1", "1", "0", at, inst, inc, ttl, "2500", "0" };
    freeReplyObject(eval(ss_lua_close, 9, c1));
    snprintf(at, sizeof(at), "%lld", base + 1337);
    const char *o2[] = { "s1", "uma", "2", "c", at, inst, inc, ttl, "2500", "10000" };
    r = eval(ss_lua_open, 10, o2);
    assert_int_equal(r->element[2]->element[0]->integer, 1);
    assert_int_equal(r->element[2]->element[1]->integer, 1237);
    freeReplyObject(r);
    /* The same open again (a retry): the same answer. */
    r = eval(ss_lua_open, 10, o2);
    assert_int_equal(r->element[2]->element[0]->integer, 1);
    assert_int_equal(r->element[2]->element[1]->integer, 1237);
    freeReplyObject(r);
    /* Bye, then a late retry of that open: nothing comes back. */
    const char *b1[] = { "s1", "2", "1", at, inst, inc, ttl, "2500", "0" };
    freeReplyObject(eval(ss_lua_close, 9, b1));
    r = eval(ss_lua_open, 10, o2);
    assert_int_equal(r->element[2]->element[0]->integer, 0);
    freeReplyObject(r);
    redisReply *e = redisCommand(R, "EXISTS tether:{sess}:s:s1");
    assert_int_equal(e->integer, 0);
    freeReplyObject(e);
}

/* ---- snapshot assembly --------------------------------------------------------------------- */

static Tether__Bus__GwSnapshot *part(uint64_t id, uint32_t p, uint32_t parts, size_t nconns)
{
    static Tether__Bus__GwSnapshot s;
    static Tether__Bus__GwConn c[4], *cp[4];
    tether__bus__gw_snapshot__init(&s);
    s.snapshot_id = id;
    s.part = p;
    s.parts = parts;
    for (size_t i = 0; i < nconns && i < 4; i++) {
        tether__bus__gw_conn__init(&c[i]);
        c[i].conn = p * 10 + i;
        c[i].session = (char *)"s";
        c[i].user = (char *)"u";
        cp[i] = &c[i];
    }
    s.n_conns = nconns;
    s.conns = cp;
    return &s;
}

static void test_snapshot_assembly(void **state)
{
    (void)state;
    ss_snaps *s = ss_snaps_new();
    ss_snap *out = NULL;
    /* One part, parts 0 (a gateway that does not split): complete at once. */
    assert_int_equal(ss_snaps_add(s, "g", 1, 1000, part(5, 0, 0, 2), 0, &out), 1);
    assert_int_equal(ss_snap_conns(out), 2);
    ss_snap_free(out);
    out = NULL;
    /* Three parts out of order, one duplicate: complete on the last new one;
     * ts is the earliest part's. */
    assert_int_equal(ss_snaps_add(s, "g", 1, 1002, part(6, 2, 3, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1001, part(6, 1, 3, 2), 0, &out), 0);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1005, part(6, 2, 3, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_pending(s), 1);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1003, part(6, 3, 3, 3), 0, &out), 1);
    assert_non_null(out);
    assert_int_equal(out->ts, 1001);
    assert_int_equal(out->nparts, 3);
    assert_int_equal(ss_snap_conns(out), 6);
    assert_int_equal(out->parts[2]->conns[0]->conn, 30);
    assert_int_equal(ss_snaps_pending(s), 0);
    ss_snap_free(out);
    out = NULL;
    /* Same id from two incarnations: separate. */
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 1, 2, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_add(s, "g", 2, 1, part(7, 1, 2, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_pending(s), 2);
    /* Nonsense parts are refused. */
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 3, 2, 1), 0, &out), -EINVAL);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 2, 5, 1), 0, &out), -EINVAL);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(8, 1, SS_SNAP_MAX_PARTS + 1, 1), 0, &out), -EINVAL);
    /* A part 1 again starts the answer over. */
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 1, 3, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 2, 3, 1), 0, &out), 0);
    assert_int_equal(ss_snaps_add(s, "g", 1, 1, part(7, 3, 3, 1), 0, &out), 1);
    ss_snap_free(out);
    /* Incomplete ones expire. */
    assert_int_equal(ss_snaps_expire(s, 5000, 10000), 0);
    assert_int_equal(ss_snaps_expire(s, 20000, 10000), 1);
    assert_int_equal(ss_snaps_pending(s), 0);
    ss_snaps_free(s);
}

/* ---- validation ---------------------------------------------------------------------------- */

static void test_validation(void **state)
{
    (void)state;
    assert_true(ss_valid_session("abc_DEF-123"));
    assert_false(ss_valid_session(""));
    assert_false(ss_valid_session(NULL));
    assert_false(ss_valid_session("a b"));
    assert_false(ss_valid_session("a:b"));
    char long_id[80];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    assert_false(ss_valid_session(long_id));
    long_id[64] = '\0';
    assert_true(ss_valid_session(long_id));
    assert_true(ss_valid_room("team/general:2024@x.y-z"));
    assert_false(ss_valid_room("room with space"));
    assert_false(ss_valid_room(""));
    assert_true(ss_valid_user("alice@example.com"));
    assert_true(ss_valid_user("user:with,commas"));
    assert_false(ss_valid_user(""));
    assert_false(ss_valid_user("tab\there"));
    assert_true(ss_valid_epoch(""));
    assert_true(ss_valid_epoch("0190abcdef"));
    assert_false(ss_valid_epoch("01 90"));
    assert_true(ss_valid_quality(""));
    assert_true(ss_valid_quality("poor"));
    assert_false(ss_valid_quality("bad"));
}

/* ---- quality thresholds (docs/protocol.md) ------------------------------------------------- */

static void test_quality_table(void **state)
{
    (void)state;
    static const struct {
        double rtt, loss, jitter, bw;
        const char *want;
        size_t nrecs;
    } T[] = {
        { 0, 0, 0, 0, "good", 0 },          /* nothing known */
        { 149.9, 0.99, 29.9, 128, "good", 0 },
        { 150, 0, 0, 0, "fair", 1 },        /* each threshold on its own */
        { 399.9, 0, 0, 0, "fair", 1 },
        { 400, 0, 0, 0, "poor", 1 },
        { 0, 1, 0, 0, "fair", 1 },
        { 0, 4.99, 0, 0, "fair", 1 },
        { 0, 5, 0, 0, "poor", 1 },
        { 0, 0, 30, 0, "fair", 1 },
        { 0, 0, 80, 0, "poor", 1 },
        { 0, 0, 0, 127.9, "fair", 1 },
        { 0, 0, 0, 31.9, "poor", 1 },
        { 0, 0, 0, 32, "fair", 1 },
        { 200, 2, 40, 64, "fair", 4 },      /* the worst metric decides */
        { 200, 6, 10, 1000, "poor", 2 },
        { 500, 10, 100, 10, "poor", 4 },
    };
    for (size_t i = 0; i < sizeof(T) / sizeof(T[0]); i++) {
        quality_in in = { T[i].rtt, T[i].loss, T[i].jitter, T[i].bw };
        quality_out out;
        quality_classify(&in, &out);
        if (strcmp(quality_name(out.level), T[i].want) != 0 || out.nrecs != T[i].nrecs)
            fail_msg("row %zu (rtt %g loss %g jitter %g bw %g): %s with %zu recommendations, want %s with %zu", i,
                     T[i].rtt, T[i].loss, T[i].jitter, T[i].bw, quality_name(out.level), out.nrecs, T[i].want,
                     T[i].nrecs);
        for (size_t k = 0; k < out.nrecs; k++)
            assert_true(out.recs[k] && *out.recs[k]);
    }
}

static int setup(void **state)
{
    (void)state;
    g_port = tu_free_port();
    g_redis = tu_redis_start(g_port);
    if (g_redis <= 0)
        return -1;
    struct timeval tv = { 2, 0 };
    R = redisConnectWithTimeout("127.0.0.1", g_port, tv);
    return R && !R->err ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(R);
    tu_stop(g_redis, SIGKILL, 2000);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presence_scenarios),
        cmocka_unit_test(test_open_results),
        cmocka_unit_test(test_snapshot_assembly),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_quality_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
