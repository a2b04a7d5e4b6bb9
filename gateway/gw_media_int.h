/* gw_media_int.h -- what the parts of the gateway's media relay share.
 *
 * gw_media.c is the signaling relay (audio sessions, offers with redirects,
 * candidates, mediad's notices) and the life cycle; gw_media_ptt.c relays
 * push-to-talk requests and floor events; gw_media_pool.c keeps the pool of
 * mediad endpoints and watches them. Not a public interface: gw_media.h is.
 */
#ifndef TETHER_GW_MEDIA_INT_H
#define TETHER_GW_MEDIA_INT_H

#include "gw_media.h"

#include "metrics.h"

/* Tuning, in one place. Timeouts are per attempt. */
#define PTT_TIMEOUT_MS 500      /* a floor request to mediad (any replica) */
#define PTT_ATTEMPTS 4
#define OFFER_TIMEOUT_MS 1000   /* an offer to one mediad replica */
#define OFFER_ATTEMPTS 8        /* ... when it is the only choice (one replica, a redirect) */
#define OFFER_ATTEMPTS_MANY 2   /* ... a first offer when another replica can be tried next */
#define SMALL_TIMEOUT_MS 1000   /* leave and candidate requests (nobody waits for them) */
#define SMALL_ATTEMPTS 3
#define PING_MS 300             /* liveness tick: hosts of our sessions are pinged every tick */
#define PING_FAILS 3            /* missed pings before a host counts as lost */
#define READY_MS 3000           /* a mediad that answered within this is up (readiness) */
#define MAX_ENDPOINTS 32        /* mediad endpoints, configured plus learned from redirects */
#define MAX_PENDING_CANDS 32    /* candidates held per session while its offer is in flight */
#define MAX_REDIRECTS 2         /* redirects followed for one offer */
#define SHUN_MS 5000            /* a replica that refused an offer is not picked for this long */

/* One mediad endpoint (configured, or learned from a redirect). */
typedef struct mdc {
    char ep[256];
    rpc_client *rpc;
    uint64_t incarnation;   /* of the process that answered last (0: none yet) */
    uint64_t last_ok_ms;
    uint64_t shun_until_ms; /* refused an offer (draining): not chosen until then */
    unsigned fails;
    int pinging;
    unsigned nsess;         /* sessions of ours it hosts */
} mdc;

/* A client's audio session in one room. */
typedef struct msess {
    uint64_t conn;
    char room[GW_MAX_ROOM + 1];
    mdc *host;              /* NULL until an answer came */
    uint64_t incarnation;   /* the host's incarnation when it answered */
    unsigned offering;      /* offers in flight */
    char *cands[MAX_PENDING_CANDS];
    char *mids[MAX_PENDING_CANDS];
    unsigned ncands;
    gw_buf *scands[MAX_PENDING_CANDS]; /* mediad's candidates that overtook the answer */
    unsigned nscands;
} msess;

/* What this gateway knows of a room's floor. */
typedef struct floor_st {
    uint64_t seq;
    int taken;
    char holder[GW_MAX_USER + 1];
    char gw[160];
    uint64_t conn;
} floor_st;

typedef struct gwm_state {
    int enabled;
    rpc_client *pool;       /* every configured endpoint: floor requests */
    mdc *eps[MAX_ENDPOINTS];
    unsigned neps, nconfigured, rr;
    hmap *sess;             /* "<conn>/<room>" -> msess */
    hmap *floors;           /* room -> floor_st */
    char notice_topic[200];
    loop_timer tick;
    uint64_t last_ok_ms;
    unsigned ticks;
    metrics_series *m_ptt, *m_ptt_fail, *m_offers, *m_redirects, *m_takeovers, *m_restarts, *m_fail, *m_up;
} gwm_state;

extern gwm_state gwm;

/* gw_media_pool.c */
/* The endpoint ep, added to the pool if new; NULL when the pool is full. */
mdc *gwm_ep_add(const char *ep);
/* A configured endpoint for a first offer. */
mdc *gwm_ep_pick(void);
/* The liveness tick (every PING_MS). */
void gwm_tick(loop *l, loop_timer *t, void *arg);

/* gw_media.c */
msess *gwm_sess_get(uint64_t conn, const char *room, int create);
void gwm_sess_del(msess *s);
void gwm_sess_clear_cands(msess *s);
void gwm_ignore_reply(rpc_client *rc, int status, const bus_env *rep, void *arg);
/* Checks what every ptt/media frame needs; sends the error and returns -1. */
int gwm_check_room(gw_conn *c, const char *room);

/* gw_media_ptt.c */
void gwm_do_ptt(gw_conn *c, const gw_cframe *f);
floor_st *gwm_floor_get(const char *room, int create);
void gwm_on_ptt_event(const Tether__Bus__PttEvent *e);
void gwm_ptt_conn_closed(gw_conn *c);

#endif
