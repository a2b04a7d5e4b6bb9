/* rd_known.c -- per-room floors from this replayd's own appends (see rd_known.h). */
#include "rd_known.h"

#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "rd_store.h"

typedef struct known {
    uint64_t seq;
    char epoch[RD_MAX_EPOCH + 1];
} known;

struct rd_known {
    hmap *rooms; /* room -> known */
    size_t max;
};

rd_known *rd_known_new(size_t max_rooms)
{
    rd_known *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->rooms = hmap_new();
    if (!k->rooms) {
        free(k);
        return NULL;
    }
    k->max = max_rooms ? max_rooms : 1;
    return k;
}

static void clear(rd_known *k)
{
    hmap_iter it = { 0 };
    const char *key;
    void *v;
    while (hmap_next(k->rooms, &it, &key, &v)) {
        hmap_del(k->rooms, key);
        free(v);
    }
}

void rd_known_free(rd_known *k)
{
    if (!k)
        return;
    clear(k);
    hmap_free(k->rooms);
    free(k);
}

void rd_known_note(rd_known *k, const char *room, const char *epoch, uint64_t seq)
{
    size_t el = strlen(epoch);
    if (!el || el > RD_MAX_EPOCH)
        return;
    known *e = hmap_get(k->rooms, room);
    if (!e) {
        /* Starting over costs only floors (protection against a rollback
         * for a moment), never a wrong answer. */
        if (hmap_count(k->rooms) >= k->max)
            clear(k);
        e = malloc(sizeof(*e));
        if (!e)
            return;
        if (hmap_put(k->rooms, room, e) < 0) {
            free(e);
            return;
        }
        e->seq = 0;
        e->epoch[0] = '\0';
    }
    if (strcmp(e->epoch, epoch) != 0) {
        memcpy(e->epoch, epoch, el + 1);
        e->seq = seq;
    } else if (seq > e->seq) {
        e->seq = seq;
    }
}

void rd_known_raise(rd_known *k, const char *room, const char *epoch, uint64_t seq)
{
    known *e = hmap_get(k->rooms, room);
    if (e && seq > e->seq && strcmp(e->epoch, epoch) == 0)
        e->seq = seq;
}

int rd_known_get(const rd_known *k, const char *room, const char **epoch, uint64_t *seq)
{
    const known *e = hmap_get(k->rooms, room);
    if (!e || !e->epoch[0])
        return 0;
    *epoch = e->epoch;
    *seq = e->seq;
    return 1;
}

size_t rd_known_count(const rd_known *k) { return hmap_count(k->rooms); }
