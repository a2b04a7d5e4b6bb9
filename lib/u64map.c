/* u64map.c -- integer-keyed hash map (see u64map.h): separate chaining over
 * power-of-two buckets, the key mixed with the process's hash key
 * (lib/hmap.h) and the splitmix64 finalizer, so sequential ids spread over
 * all buckets and ids read off the wire cannot be aimed at one. */
#include "u64map.h"

#include <errno.h>
#include <stdlib.h>

#include "hmap.h"

typedef struct entry {
    struct entry *next;
    uint64_t key;
    void *val;
} entry;

struct u64map {
    entry **b;
    size_t nb;
    size_t n;
    uint64_t k0, k1;
};

static inline size_t slot(const u64map *m, uint64_t x)
{
    x ^= m->k0;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)((x + m->k1) & (m->nb - 1));
}

u64map *u64map_new(void)
{
    u64map *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    uint64_t k[2];
    hmap_seed(k);
    m->k0 = k[0];
    m->k1 = k[1];
    m->nb = 16;
    m->b = calloc(m->nb, sizeof(*m->b));
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

void u64map_free(u64map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        entry *e = m->b[i];
        while (e) {
            entry *nx = e->next;
            free(e);
            e = nx;
        }
    }
    free(m->b);
    free(m);
}

size_t u64map_count(const u64map *m) { return m->n; }

static entry **find(const u64map *m, uint64_t key)
{
    entry **pp = &m->b[slot(m, key)];
    while (*pp && (*pp)->key != key)
        pp = &(*pp)->next;
    return pp;
}

void *u64map_get(const u64map *m, uint64_t key)
{
    entry *e = *find(m, key);
    return e ? e->val : NULL;
}

static void grow(u64map *m)
{
    size_t onb = m->nb;
    entry **ob = m->b;
    entry **b = calloc(onb * 2, sizeof(*b));
    if (!b)
        return; /* stay at the current size: slower, still correct */
    m->b = b;
    m->nb = onb * 2;
    for (size_t i = 0; i < onb; i++) {
        entry *e = ob[i];
        while (e) {
            entry *nx = e->next;
            size_t j = slot(m, e->key);
            e->next = b[j];
            b[j] = e;
            e = nx;
        }
    }
    free(ob);
}

int u64map_put(u64map *m, uint64_t key, void *val)
{
    entry **pp = find(m, key);
    if (*pp) {
        (*pp)->val = val;
        return 0;
    }
    entry *e = malloc(sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->next = NULL;
    e->key = key;
    e->val = val;
    *pp = e;
    if (++m->n > m->nb)
        grow(m);
    return 0;
}

void *u64map_del(u64map *m, uint64_t key)
{
    entry **pp = find(m, key);
    entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->next;
    void *v = e->val;
    free(e);
    m->n--;
    return v;
}

int u64map_next(const u64map *m, u64map_iter *it, uint64_t *key, void **val)
{
    entry *e = it->next;
    while (!e) {
        if (it->bucket >= m->nb)
            return 0;
        e = m->b[it->bucket++];
    }
    it->next = e->next;
    *key = e->key;
    *val = e->val;
    return 1;
}
