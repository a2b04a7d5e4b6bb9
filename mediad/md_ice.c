/* md_ice.c -- ICE transports on libnice (see md_ice.h). */
#include "md_ice.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <glib.h>
#include <nice/agent.h>

#define MAX_ADDRS 32

static NiceAddress g_addrs[MAX_ADDRS];
static size_t g_naddrs;
static char g_addr_text[MAX_ADDRS * 48];

struct md_ice {
    NiceAgent *agent;
    guint stream;
    int state;
    int lite;
    md_ice_recv_cb *recv;
    md_ice_state_cb *state_cb;
    void *arg;
    gulong sig_state;
    char ufrag[257], pwd[257];
};

/* ---- local addresses ------------------------------------------------------------------ */

static int wanted(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && (*p == ' ')) {
            p++;
            l--;
        }
        while (l && p[l - 1] == ' ')
            l--;
        if (l == n && !memcmp(p, name, n))
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int known_iface(struct ifaddrs *ifs, const char *name, size_t n)
{
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (strlen(i->ifa_name) == n && !memcmp(i->ifa_name, name, n))
            return 1;
    return 0;
}

int md_ice_init(const char *ifaces, char *err, size_t errlen)
{
    struct ifaddrs *ifs = NULL;
    int all = !ifaces || !*ifaces || !strcmp(ifaces, "all");
    if (getifaddrs(&ifs) < 0) {
        snprintf(err, errlen, "getifaddrs: %s", strerror(errno));
        return -1;
    }
    if (!all) {
        for (const char *p = ifaces; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            while (l && *p == ' ') {
                p++;
                l--;
            }
            while (l && p[l - 1] == ' ')
                l--;
            if (l && !known_iface(ifs, p, l)) {
                snprintf(err, errlen, "no interface named '%.*s'", (int)l, p);
                freeifaddrs(ifs);
                return -1;
            }
            if (!e)
                break;
            p = e + 1;
        }
    }
    g_naddrs = 0;
    g_addr_text[0] = 0;
    /* Two passes for "all": loopback addresses only if nothing else is up. */
    for (int pass = 0; pass < 2 && g_naddrs == 0; pass++) {
        for (struct ifaddrs *i = ifs; i && g_naddrs < MAX_ADDRS; i = i->ifa_next) {
            if (!i->ifa_addr || !(i->ifa_flags & IFF_UP))
                continue;
            int fam = i->ifa_addr->sa_family;
            if (fam != AF_INET && fam != AF_INET6)
                continue;
            if (all) {
                if ((i->ifa_flags & IFF_LOOPBACK) && pass == 0)
                    continue;
            } else if (!wanted(ifaces, i->ifa_name)) {
                continue;
            }
            if (fam == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)i->ifa_addr;
                if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
                    continue;   /* needs a scope id no peer can use from its SDP */
            }
            NiceAddress *a = &g_addrs[g_naddrs];
            nice_address_init(a);
            nice_address_set_from_sockaddr(a, i->ifa_addr);
            nice_address_set_port(a, 0);
            char txt[INET6_ADDRSTRLEN];
            nice_address_to_string(a, txt);
            size_t tl = strlen(g_addr_text);
            snprintf(g_addr_text + tl, sizeof(g_addr_text) - tl, "%s%s", tl ? "," : "", txt);
            g_naddrs++;
        }
        if (!all)
            break;
    }
    freeifaddrs(ifs);
    if (g_naddrs == 0) {
        snprintf(err, errlen, "no usable address on '%s'", all ? "any interface" : ifaces);
        return -1;
    }
    return (int)g_naddrs;
}

const char *md_ice_addresses(void) { return g_addr_text; }

/* ---- agents ---------------------------------------------------------------------------- */

static void on_recv(NiceAgent *agent, guint stream, guint comp, guint len, gchar *buf, gpointer arg)
{
    (void)agent;
    (void)stream;
    (void)comp;
    md_ice *t = arg;
    t->recv((const uint8_t *)buf, len, t->arg);
}

static void on_state(NiceAgent *agent, guint stream, guint comp, guint state, gpointer arg)
{
    (void)agent;
    (void)comp;
    md_ice *t = arg;
    if (stream != t->stream)
        return;
    int s;
    switch (state) {
    case NICE_COMPONENT_STATE_CONNECTED:
        s = MD_ICE_CONNECTED;
        break;
    case NICE_COMPONENT_STATE_READY:
        s = MD_ICE_READY;
        break;
    case NICE_COMPONENT_STATE_FAILED:
        s = MD_ICE_FAILED;
        break;
    default:
        s = MD_ICE_GATHERING;
        break;
    }
    if (s == t->state)
        return;
    t->state = s;
    if (t->state_cb)
        t->state_cb(s, t->arg);
}

static void fetch_creds(md_ice *t)
{
    gchar *u = NULL, *p = NULL;
    t->ufrag[0] = t->pwd[0] = 0;
    if (nice_agent_get_local_credentials(t->agent, t->stream, &u, &p)) {
        snprintf(t->ufrag, sizeof(t->ufrag), "%s", u);
        snprintf(t->pwd, sizeof(t->pwd), "%s", p);
    }
    g_free(u);
    g_free(p);
}

md_ice *md_ice_new(void *gctx, unsigned port_min, unsigned port_max, int lite, md_ice_recv_cb *recv,
                   md_ice_state_cb *state, void *arg, char *err, size_t errlen)
{
    md_ice *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->lite = lite;
    t->recv = recv;
    t->state_cb = state;
    t->arg = arg;
    t->agent = nice_agent_new_full(gctx, NICE_COMPATIBILITY_RFC5245,
                                   lite ? NICE_AGENT_OPTION_LITE_MODE : NICE_AGENT_OPTION_NONE);
    if (!t->agent) {
        snprintf(err, errlen, "cannot create an ICE agent");
        free(t);
        return NULL;
    }
    g_object_set(t->agent, "controlling-mode", lite ? FALSE : TRUE, "ice-tcp", FALSE, NULL);
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(t->agent), "upnp"))
        g_object_set(t->agent, "upnp", FALSE, NULL);
    for (size_t i = 0; i < g_naddrs; i++)
        nice_agent_add_local_address(t->agent, &g_addrs[i]);
    t->stream = nice_agent_add_stream(t->agent, 1);
    if (!t->stream) {
        snprintf(err, errlen, "cannot add an ICE stream");
        goto fail;
    }
    nice_agent_set_port_range(t->agent, t->stream, 1, port_min, port_max);
    t->sig_state = g_signal_connect(t->agent, "component-state-changed", G_CALLBACK(on_state), t);
    nice_agent_attach_recv(t->agent, t->stream, 1, gctx, on_recv, t);
    if (!nice_agent_gather_candidates(t->agent, t->stream)) {
        snprintf(err, errlen, "no free UDP port in %u-%u on the media interfaces", port_min, port_max);
        goto fail;
    }
    fetch_creds(t);
    return t;
fail:
    md_ice_free(t);
    return NULL;
}

void md_ice_free(md_ice *t)
{
    if (!t)
        return;
    if (t->agent) {
        if (t->stream) {
            nice_agent_attach_recv(t->agent, t->stream, 1, NULL, NULL, NULL);
            nice_agent_remove_stream(t->agent, t->stream);
        }
        if (t->sig_state)
            g_signal_handler_disconnect(t->agent, t->sig_state);
        g_object_unref(t->agent);
    }
    free(t);
}

const char *md_ice_ufrag(const md_ice *t) { return t->ufrag; }
const char *md_ice_pwd(const md_ice *t) { return t->pwd; }
int md_ice_state(const md_ice *t) { return t->state; }

size_t md_ice_candidates(md_ice *t, char (*out)[MD_ICE_CAND_LEN], size_t max)
{
    size_t n = 0;
    GSList *cands = nice_agent_get_local_candidates(t->agent, t->stream, 1);
    for (GSList *i = cands; i && n < max; i = i->next) {
        gchar *s = nice_agent_generate_local_candidate_sdp(t->agent, i->data);
        if (s && !strncmp(s, "a=", 2) && strlen(s + 2) < MD_ICE_CAND_LEN)
            snprintf(out[n++], MD_ICE_CAND_LEN, "%s", s + 2);
        g_free(s);
    }
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    return n;
}

unsigned md_ice_local_port(md_ice *t)
{
    unsigned port = 0;
    GSList *cands = nice_agent_get_local_candidates(t->agent, t->stream, 1);
    if (cands)
        port = nice_address_get_port(&((NiceCandidate *)cands->data)->addr);
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    return port;
}

int md_ice_set_remote(md_ice *t, const char *ufrag, const char *pwd)
{
    return nice_agent_set_remote_credentials(t->agent, t->stream, ufrag, pwd) ? 0 : -EINVAL;
}

int md_ice_add_candidate(md_ice *t, const char *cand)
{
    char line[MD_ICE_CAND_LEN + 8];
    if (strlen(cand) >= MD_ICE_CAND_LEN)
        return -EINVAL;
    snprintf(line, sizeof(line), "a=%s", cand);
    NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(t->agent, t->stream, line);
    if (!c)
        return -EINVAL;
    /* One component: RTP, RTCP and DTLS share it (rtcp-mux, BUNDLE). */
    if (c->component_id != 1 || c->transport != NICE_CANDIDATE_TRANSPORT_UDP) {
        nice_candidate_free(c);
        return -EINVAL;
    }
    GSList *l = g_slist_append(NULL, c);
    int added = nice_agent_set_remote_candidates(t->agent, t->stream, 1, l);
    g_slist_free_full(l, (GDestroyNotify)nice_candidate_free);
    return added > 0 ? 0 : -EINVAL;
}

void md_ice_remote_done(md_ice *t) { nice_agent_peer_candidate_gathering_done(t->agent, t->stream); }

int md_ice_restart(md_ice *t)
{
    /* libnice forgets the remote credentials on restart: the caller sets
     * the new ones afterwards, never before. */
    if (!nice_agent_restart_stream(t->agent, t->stream))
        return -EIO;
    fetch_creds(t);
    return 0;
}

int md_ice_send(md_ice *t, const uint8_t *buf, size_t len)
{
    if (t->state != MD_ICE_CONNECTED && t->state != MD_ICE_READY)
        return -ENOTCONN;
    gint n = nice_agent_send(t->agent, t->stream, 1, (guint)len, (const gchar *)buf);
    return n == (gint)len ? 0 : -EIO;
}
