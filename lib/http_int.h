/* http_int.h -- what the parts of lib/http share: http.c (libmicrohttpd
 * glue: driving MHD from the loop, suspension, deadlines, the access
 * handler, server life cycle), http_head.c (the request and the strict
 * checks of its head), http_reply.c (responses, replies, status texts, the
 * standard routes) and http_sock.c (listener, accepting, the global and
 * per-address limits). Not a public interface: http.h is.
 */
#ifndef TETHER_HTTP_INT_H
#define TETHER_HTTP_INT_H

#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "metrics.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 64 /* query parameters (MHD indexes each in the connection's memory) */
#define HTTP_PER_IP_CONNS 32
#define HTTP_POOL_SIZE (HTTP_MAX_HEAD + 8 * 1024) /* an 8 KiB head, its index, the reply's head */
#define HTTP_ACCEPT_PAUSE_MS 100
#define HTTP_ACCEPT_BATCH 64

/* The request's life, as far as this file is concerned. */
enum {
    REQ_HEAD,    /* the request line is known, the head not checked yet */
    REQ_BODY,    /* the head is accepted; the body (if any) is arriving */
    REQ_HANDLER, /* with the handler, not replied yet */
    REQ_REPLIED, /* replied; the reply waits to be queued on resumption */
    REQ_DONE,    /* a reply is queued (or the request was refused) */
    REQ_DROPPED, /* answered behind MHD's back and the socket shut down */
};

typedef struct http_hdr {
    const char *name, *value;
} http_hdr;

/* What we keep per MHD connection (its socket context). */
typedef struct http_conn {
    http_server *srv;
    int fd;
    http_req *req;             /* the request being read or answered */
    loop_timer deadline;       /* a request must be read and answered within the timeout */
    int shut;                  /* we shut the socket down (deadline, 414) */
    int ended;                 /* a request ended in error, or its reply closes the connection */
    int marked;                /* sent holds what the socket had been given at the last reply */
    uint64_t sent;
} http_conn;

struct http_req {
    http_server *srv;
    struct MHD_Connection *mc; /* NULL once detached */
    http_conn *conn;           /* NULL once detached (or out of memory) */
    int stage;
    int in_handler;            /* the handler is running: replies are queued on return */
    int seen;                  /* MHD called the access handler for it, so it reports its end (on_completed) */
    int susp;                  /* the connection is suspended: r is on srv->susp */
    int watched;               /* fd is in srv->wep */
    int left;                  /* the client went away while suspended */
    int fd;
    int is_head;
    int http10;
    int refused;               /* answered by refuse(), which closes */
    unsigned status;
    struct MHD_Response *resp; /* built by http_reply, queued by the access handler */
    uint64_t t0;
    const char *method, *path, *query;
    http_hdr *hdr;
    int nhdr;
    char *body;
    size_t bodylen, bodyneed;
    char peer[INET6_ADDRSTRLEN];
    char *strs;                /* method, target and headers, NUL-separated */
    http_req *prev, *next;     /* on srv->susp */
};

/* One source address and its admitted connections (open addressing). */
typedef struct ip_slot {
    unsigned char key[17];     /* family byte + address; key[0] == 0: empty */
    unsigned n;
} ip_slot;

struct http_server {
    loop *l;
    struct MHD_Daemon *d;
    int mfd;                   /* MHD's epoll fd */
    int wep;                   /* epoll set of suspended connections' sockets */
    int lfd;                   /* our listener, -1 for an adopt-only server */
    int port;
    int stopping;
    http_handler *h;
    void *arg;
    loop_timer timer;          /* MHD's next timeout, or 0 ms after a resume */
    loop_timer accept_timer;
    http_req *susp;            /* requests whose connections are suspended */
    size_t nconns;
    unsigned max_conns, per_ip, timeout_ms, timeout_s;
    size_t max_body;
    ip_slot *ips;
    size_t ipcap;              /* a power of two, at least 2 * max_conns */
};

/* http.c */
/* tether_http_refused_total{reason}, indexed by REF_*. */
enum { REF_CONNECTIONS, REF_PER_ADDRESS, REF_DEADLINE, REF_REQUEST, REF_N };
extern metrics_series *http_m_refused[REF_N];
/* Runs MHD soon (after adding a connection or resuming one). */
void http_srv_kick(http_server *s);
/* Resumes r's suspended connection so that its reply is queued. */
void http_req_resume(http_req *r);
/* An error found by the server itself: answer and close. */
enum MHD_Result http_refuse(http_req *r, struct MHD_Connection *mc, int status);

/* http_head.c */
void http_req_free(http_req *r);
/* MHD_OPTION_URI_LOG_CALLBACK: the request starts with the raw target. */
void *http_on_uri(void *cls, const char *uri, struct MHD_Connection *mc);
/* Checks and copies the head: 0, or the status to refuse the request with. */
int http_req_take_head(http_req *r, struct MHD_Connection *mc, const char *method, const char *version);

/* http_reply.c */
/* Builds a response; NULL when out of memory. */
struct MHD_Response *http_resp_new(int status, const char *ctype, const char *headers, const void *body,
                                   size_t len, int close);

/* http_sock.c */
/* The per-address key of sa (family byte + address). */
void http_ip_key(const struct sockaddr *sa, unsigned char key[17]);
void http_ip_add(http_server *s, const unsigned char key[17]);
void http_ip_del(http_server *s, const unsigned char key[17]);
/* The listener's readiness: accepts what is pending. */
void http_on_accept(loop *l, int fd, unsigned events, void *arg);
/* Binds hostport. Returns the listening fd and the port, or -errno. */
int http_listen_on(const char *hostport, int *portp, char *host, size_t hostlen);

#endif
