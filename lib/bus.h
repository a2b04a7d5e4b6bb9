/* bus.h -- Tether's event bus: one protobuf Envelope per message, PUB/SUB
 * through busd.
 *
 * Wire format: a two-frame ZeroMQ message [topic][packed Envelope]. Topics are
 * dotted prefixes (room.<room>, presence.<room>, ptt.<room>, gw.conn,
 * gw.heartbeat, media.*); SUB filtering is a prefix match on the first frame,
 * so "room.a" also receives "room.ab": receivers compare exact names.
 *
 * Loss detection: every event carries source {service, instance, incarnation}
 * and source_seq, counted per (source, topic) from 1. A subscriber of a topic
 * can therefore tell that it missed events of that topic from that source,
 * whatever else it subscribes to; bus_on_gap reports it. A new incarnation
 * starts again at 1 and is not a gap.
 */
#ifndef TETHER_BUS_H
#define TETHER_BUS_H

#include <stdint.h>

#include "bus.pb-c.h"
#include "loop.h"

typedef Tether__Bus__Envelope bus_env;
typedef struct bus bus;

/* env is borrowed for the duration of the call. */
typedef void bus_event_cb(bus *b, const bus_env *env, void *arg);
/* Events of topic from src were lost: expected source_seq 'expected', got 'got'. */
typedef void bus_gap_cb(bus *b, const char *topic, const Tether__Bus__Source *src, uint64_t expected,
                        uint64_t got, void *arg);

/* pub_endpoint: busd's XSUB side to publish to (TETHER_BUS_IN) or NULL;
 * sub_endpoint: busd's XPUB side to subscribe from (TETHER_BUS_OUT) or NULL.
 * service is borrowed (a literal). Returns NULL on failure (errno set). */
bus *bus_new(loop *l, const char *service, const char *pub_endpoint, const char *sub_endpoint);
void bus_free(bus *b);

/* Sets the receive callbacks (gap may be NULL). */
void bus_on_event(bus *b, bus_event_cb *ev, bus_gap_cb *gap, void *arg);

/* Publishes env on topic. Fills topic, source, source_seq, ts; the caller sets
 * the payload. env is borrowed. Returns 0 or -errno (-EAGAIN: high-water mark). */
int bus_publish(bus *b, const char *topic, bus_env *env);

/* Adds/removes a prefix subscription (reference counted per prefix, so two
 * users of "room.a" need two unsubscribes). Returns 0 or -errno. */
int bus_subscribe(bus *b, const char *prefix);
int bus_unsubscribe(bus *b, const char *prefix);

/* This process's source (borrowed, valid for the bus's lifetime). */
const Tether__Bus__Source *bus_source(const bus *b);

/* Counters for /metrics. */
typedef struct bus_stats {
    unsigned long long published, publish_fail, received, malformed, gaps;
} bus_stats;
bus_stats bus_get_stats(const bus *b);

/* Decodes a [topic][envelope] message; returns a new envelope (free with
 * bus_env_free) or NULL when malformed (bad protobuf, topic mismatch,
 * missing source). Exposed for the fuzzer. */
bus_env *bus_decode(const void *topic, size_t topic_len, const void *data, size_t len);
void bus_env_free(bus_env *env);

#endif
