/* tc_audio.c -- the audio chunk buffer (see tc_audio.h): a ring of chunk
 * structs, each owning its copied bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tc_audio.h"

struct tc_audio {
    tc_audio_chunk *ring;
    uint32_t cap, head, len;
    uint64_t next_n, dropped;
};

tc_audio *tc_audio_new(uint32_t max)
{
    tc_audio *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->cap = max ? max : 100;
    a->ring = calloc(a->cap, sizeof(*a->ring));
    if (!a->ring) {
        free(a);
        return NULL;
    }
    return a;
}

static void chunk_clear(tc_audio_chunk *c)
{
    free(c->room);
    free(c->data);
    memset(c, 0, sizeof(*c));
}

void tc_audio_free(tc_audio *a)
{
    if (!a)
        return;
    while (a->len)
        tc_audio_pop(a);
    free(a->ring);
    free(a);
}

int tc_audio_push(tc_audio *a, const char *room, const void *data, size_t len)
{
    int dropped = 0;
    if (!room || !*room || !data || len == 0 || len > TC_AUDIO_MAX_CHUNK)
        return -EINVAL;
    char *r = strdup(room);
    unsigned char *d = malloc(len);
    if (!r || !d) {
        free(r);
        free(d);
        return -ENOMEM;
    }
    memcpy(d, data, len);
    if (a->len == a->cap) {
        tc_audio_pop(a);
        a->dropped++;
        dropped = 1;
    }
    tc_audio_chunk *c = &a->ring[(a->head + a->len) % a->cap];
    c->room = r;
    c->data = d;
    c->len = len;
    c->n = ++a->next_n;
    a->len++;
    return dropped;
}

const tc_audio_chunk *tc_audio_peek(const tc_audio *a)
{
    return a->len ? &a->ring[a->head] : NULL;
}

int tc_audio_pop(tc_audio *a)
{
    if (!a->len)
        return -ENOENT;
    chunk_clear(&a->ring[a->head]);
    a->head = (a->head + 1) % a->cap;
    a->len--;
    return 0;
}

uint32_t tc_audio_len(const tc_audio *a) { return a->len; }
uint64_t tc_audio_dropped(const tc_audio *a) { return a->dropped; }
uint64_t tc_audio_pushed(const tc_audio *a) { return a->next_n; }
