/* ss_snap.c -- gateway snapshot assembly (see ss_snap.h). */
#include "ss_snap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

struct ss_snaps {
    hmap *pending; /* "instance\n<inc>\n<id>" -> ss_snap */
};

ss_snaps *ss_snaps_new(void)
{
    ss_snaps *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->pending = hmap_new();
    if (!s->pending) {
        free(s);
        return NULL;
    }
    return s;
}

void ss_snap_free(ss_snap *sn)
{
    if (!sn)
        return;
    for (uint32_t i = 0; i < sn->nparts && sn->parts; i++)
        if (sn->parts[i])
            tether__bus__gw_snapshot__free_unpacked(sn->parts[i], NULL);
    free(sn->parts);
    free(sn->instance);
    free(sn);
}

void ss_snaps_free(ss_snaps *s)
{
    if (!s)
        return;
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(s->pending, &it, &k, &v))
        ss_snap_free(v);
    hmap_free(s->pending);
    free(s);
}

size_t ss_snaps_pending(const ss_snaps *s) { return hmap_count(s->pending); }

size_t ss_snap_conns(const ss_snap *sn)
{
    size_t n = 0;
    for (uint32_t i = 0; i < sn->nparts; i++)
        n += sn->parts[i]->n_conns;
    return n;
}

/* A deep copy through the wire format: parts are borrowed from the bus. */
static Tether__Bus__GwSnapshot *copy_part(const Tether__Bus__GwSnapshot *p)
{
    size_t n = tether__bus__gw_snapshot__get_packed_size(p);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    tether__bus__gw_snapshot__pack(p, buf);
    Tether__Bus__GwSnapshot *c = tether__bus__gw_snapshot__unpack(NULL, n, buf);
    free(buf);
    return c;
}

static ss_snap *snap_new(const char *instance, uint64_t inc, uint64_t id, uint32_t nparts, int64_t ts, uint64_t now)
{
    ss_snap *sn = calloc(1, sizeof(*sn));
    if (!sn)
        return NULL;
    sn->instance = strdup(instance);
    sn->parts = calloc(nparts, sizeof(*sn->parts));
    if (!sn->instance || !sn->parts) {
        ss_snap_free(sn);
        return NULL;
    }
    sn->incarnation = inc;
    sn->snapshot_id = id;
    sn->nparts = nparts;
    sn->ts = ts;
    sn->started_ms = now;
    return sn;
}

int ss_snaps_add(ss_snaps *s, const char *instance, uint64_t incarnation, int64_t ts,
                 const Tether__Bus__GwSnapshot *part, uint64_t now_ms, ss_snap **out)
{
    /* parts 0 means a gateway that did not split: one part. */
    uint32_t nparts = part->parts ? part->parts : 1;
    uint32_t idx = part->part ? part->part : 1;
    if (nparts > SS_SNAP_MAX_PARTS || idx > nparts)
        return -EINVAL;
    char key[512];
    snprintf(key, sizeof(key), "%s\n%" PRIu64 "\n%" PRIu64, instance, incarnation, part->snapshot_id);
    ss_snap *sn = hmap_get(s->pending, key);
    if (sn && (idx == 1 || sn->nparts != nparts)) {
        if (idx != 1)
            return -EINVAL;
        /* A new answer to the same request: start over. */
        hmap_del(s->pending, key);
        ss_snap_free(sn);
        sn = NULL;
    }
    if (!sn) {
        if (nparts > 1 && hmap_count(s->pending) >= SS_SNAP_MAX_PENDING)
            return -ENOSPC;
        sn = snap_new(instance, incarnation, part->snapshot_id, nparts, ts, now_ms);
        if (!sn)
            return -ENOMEM;
        if (nparts > 1 && hmap_put(s->pending, key, sn) < 0) {
            ss_snap_free(sn);
            return -ENOMEM;
        }
    }
    if (sn->parts[idx - 1])
        return 0;
    sn->parts[idx - 1] = copy_part(part);
    if (!sn->parts[idx - 1]) {
        if (nparts == 1)
            ss_snap_free(sn);
        return -ENOMEM;
    }
    sn->got++;
    if (ts < sn->ts)
        sn->ts = ts;
    if (sn->got < sn->nparts)
        return 0;
    if (nparts > 1)
        hmap_del(s->pending, key);
    *out = sn;
    return 1;
}

size_t ss_snaps_expire(ss_snaps *s, uint64_t now_ms, uint64_t max_age_ms)
{
    size_t n = 0;
    hmap_iter it = { 0 };
    const char *k;
    void *v;
    while (hmap_next(s->pending, &it, &k, &v)) {
        ss_snap *sn = v;
        if (now_ms - sn->started_ms > max_age_ms) {
            hmap_del(s->pending, k);
            ss_snap_free(sn);
            n++;
        }
    }
    return n;
}
