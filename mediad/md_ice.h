/* md_ice.h -- one ICE transport (libnice agent, one stream, one component).
 *
 * BUNDLE and rtcp-mux put a session's audio, RTCP and DTLS on one
 * component, so one agent with one stream and one component is a whole
 * PeerConnection's transport (as in Janus). mediad runs agents in ICE-lite
 * mode (controlled, answers checks, never sends its own; host candidates
 * only); the test peer runs full ICE as the controlling side.
 *
 * Candidates are gathered only on the addresses of the interfaces named in
 * TETHER_MEDIA_IFACES (md_ice_init) and bound to ports of TETHER_MEDIA_PORTS.
 * Callbacks run on the GMainContext given at creation.
 */
#ifndef TETHER_MD_ICE_H
#define TETHER_MD_ICE_H

#include <stddef.h>
#include <stdint.h>

#define MD_ICE_MAX_CANDS 16
#define MD_ICE_CAND_LEN 256

typedef struct md_ice md_ice;

enum { MD_ICE_GATHERING = 0, MD_ICE_CONNECTED, MD_ICE_READY, MD_ICE_FAILED };

/* A datagram from the peer (borrowed for the call). */
typedef void md_ice_recv_cb(const uint8_t *buf, size_t len, void *arg);
/* The transport's state changed (MD_ICE_*). */
typedef void md_ice_state_cb(int state, void *arg);

/* Resolves the local addresses to gather on: "all" (every interface that is
 * up, loopback only when nothing else is), or a comma list of interface
 * names (e.g. "lo", "eth0,eth1"). Returns the number of addresses, or -1 with
 * a reason in err (an unknown interface, no address). Call once at start. */
int md_ice_init(const char *ifaces, char *err, size_t errlen);
/* The addresses md_ice_init found, as text, for logs ("127.0.0.1,::1"). */
const char *md_ice_addresses(void);

/* Creates an agent on gctx (a GMainContext), binds its candidates within
 * [port_min, port_max] and gathers them. lite: ICE-lite (controlled);
 * otherwise full ICE, controlling. Returns NULL (with a reason in err). */
md_ice *md_ice_new(void *gctx, unsigned port_min, unsigned port_max, int lite, md_ice_recv_cb *recv,
                   md_ice_state_cb *state, void *arg, char *err, size_t errlen);
/* Frees the agent; no callback runs afterwards. Not from inside one of
 * this transport's callbacks (defer it). NULL is a no-op. */
void md_ice_free(md_ice *t);

/* Our credentials (borrowed; change after md_ice_restart). */
const char *md_ice_ufrag(const md_ice *t);
const char *md_ice_pwd(const md_ice *t);
/* Our candidates as "candidate:..." lines into out[max]. Returns the count. */
size_t md_ice_candidates(md_ice *t, char (*out)[MD_ICE_CAND_LEN], size_t max);

/* The peer's credentials. Returns 0 or -EINVAL. */
int md_ice_set_remote(md_ice *t, const char *ufrag, const char *pwd);
/* A peer candidate ("candidate:..."); mDNS (.local) and unparsable ones are
 * ignored. Returns 0 when added, -EINVAL when ignored. */
int md_ice_add_candidate(md_ice *t, const char *cand);
/* The peer sent all its candidates. */
void md_ice_remote_done(md_ice *t);
/* An ICE restart: new local credentials, remote ones forgotten; call before
 * md_ice_set_remote with the peer's new credentials. Returns 0 or -EIO. */
int md_ice_restart(md_ice *t);

/* Sends one datagram on the selected pair. Returns 0, -ENOTCONN (no pair
 * yet) or -EIO. */
int md_ice_send(md_ice *t, const uint8_t *buf, size_t len);
int md_ice_state(const md_ice *t);
/* The local port of our first host candidate (diagnostics and tests). */
unsigned md_ice_local_port(md_ice *t);

#endif
