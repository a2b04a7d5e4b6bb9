/* main.c -- busd, the Tether event bus.
 *
 * Publishers connect to the XSUB side (TETHER_BUS_IN), subscribers to the
 * XPUB side (TETHER_BUS_OUT); a proxy thread forwards between them (see
 * busd_proxy.c). busd keeps no state: after a restart every daemon's ZeroMQ
 * sockets reconnect and resubscribe on their own, and whatever was lost in
 * between is found by the subscribers' sequence checks and repaired from
 * replayd. That is also why drops at the high-water mark are allowed.
 *
 * The main thread runs the loop: the HTTP server (TETHER_HTTP) with
 * /healthz, /readyz (a STATISTICS round trip to the proxy thread) and
 * /metrics, and SIGTERM/SIGINT, which stop the proxy, join it and exit 0.
 *
 * Exit status: 0 after a signal, 1 if a listen address cannot be bound or the
 * proxy stops on its own, 2 for a configuration value that does not parse.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "busd_proxy.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "zauth.h"

static int exit_code;

static void on_signal(loop *l, int signo, void *arg)
{
    (void)arg;
    LOG_INFO("signal received, stopping", "{s:s}", "signal", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    loop_stop(l);
}

static void on_proxy_exit(void *arg)
{
    /* A bus that does not forward must not look healthy: exit and let the
     * supervisor restart us (clients reconnect by themselves). */
    exit_code = 1;
    loop_stop(arg);
}

static void die_bind(const char *var, const char *value, int err)
{
    const char *why = err == EINVAL ? "not a valid address for this variable" : strerror(err);
    fprintf(stderr, "busd: %s: cannot bind '%s': %s\n", var, value, why);
    LOG_ERROR("cannot bind", "{s:s,s:s,s:s}", "variable", var, "value", value, "error", why);
}

int main(void)
{
    log_init("busd");
    const char *in_ep = cfg_str("TETHER_BUS_IN", "tcp://127.0.0.1:5550");
    const char *out_ep = cfg_str("TETHER_BUS_OUT", "tcp://127.0.0.1:5551");
    const char *http_addr = cfg_str("TETHER_HTTP", "127.0.0.1:9100");
    cfg_str("TETHER_LOG_LEVEL", "info");
    zauth_require("TETHER_BUS_IN", in_ep);
    zauth_require("TETHER_BUS_OUT", out_ep);
    cfg_print();

    /* Peers vanish mid-write all the time; that is an error return, not a
     * reason to die. */
    signal(SIGPIPE, SIG_IGN);

    loop *l = loop_new();
    if (!l) {
        LOG_ERROR("cannot create the loop", "{s:s}", "error", strerror(errno));
        return 1;
    }
    /* Before the proxy thread exists, so that it inherits the blocked mask
     * and the signals reach the loop's signalfd, not a random thread. */
    if (loop_signal(l, SIGTERM, on_signal, NULL) < 0 || loop_signal(l, SIGINT, on_signal, NULL) < 0) {
        LOG_ERROR("cannot watch signals", "{s:s}", "error", strerror(errno));
        loop_free(l);
        return 1;
    }

    const char *bad_var = NULL;
    busd_proxy *proxy = busd_proxy_start(l, in_ep, out_ep, &bad_var, on_proxy_exit, l);
    if (!proxy) {
        int err = errno;
        if (bad_var)
            die_bind(bad_var, strcmp(bad_var, "TETHER_BUS_IN") == 0 ? in_ep : out_ep, err);
        else
            LOG_ERROR("cannot start the bus proxy", "{s:s}", "error", strerror(err));
        loop_free(l);
        return 1;
    }

    http_std std = { busd_proxy_readyz, proxy };
    http_server *hs = http_server_new(l, http_addr, http_std_handler, &std);
    if (!hs) {
        die_bind("TETHER_HTTP", http_addr, errno);
        busd_proxy_stop(proxy);
        loop_free(l);
        return 1;
    }

    LOG_INFO("busd running", "{s:s,s:s,s:i}", "bus_in", in_ep, "bus_out", out_ep, "http_port",
             http_server_port(hs));
    loop_run(l);

    busd_proxy_stop(proxy);
    http_server_free(hs);
    loop_free(l);
    LOG_INFO("busd stopped", "{s:i}", "exit_code", exit_code);
    return exit_code;
}
