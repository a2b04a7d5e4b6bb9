/* hmap.c -- string-keyed hash map (see hmap.h). */
#include "hmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *val;
    char key[];
} entry;

struct hmap {
    entry **b;
    size_t nb;
    size_t n;
};

uint64_t hmap_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

hmap *hmap_new(void)
{
    hmap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nb = 16;
    m->b = calloc(m->nb, sizeof(*m->b));
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

void hmap_free(hmap *m)
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

size_t hmap_count(const hmap *m) { return m->n; }

static entry **find(const hmap *m, const char *key, uint64_t h)
{
    entry **pp = &m->b[h & (m->nb - 1)];
    while (*pp && !((*pp)->hash == h && strcmp((*pp)->key, key) == 0))
        pp = &(*pp)->next;
    return pp;
}

void *hmap_get(const hmap *m, const char *key)
{
    uint64_t h = hmap_hash(key, strlen(key));
    entry *e = *find(m, key, h);
    return e ? e->val : NULL;
}

static void grow(hmap *m)
{
    size_t nb = m->nb * 2;
    entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* stay at the current size: slower, still correct */
    for (size_t i = 0; i < m->nb; i++) {
        entry *e = m->b[i];
        while (e) {
            entry *nx = e->next;
            size_t j = e->hash & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = nx;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int hmap_put(hmap *m, const char *key, void *val)
{
    size_t len = strlen(key);
    uint64_t h = hmap_hash(key, len);
    entry **pp = find(m, key, h);
    if (*pp) {
        (*pp)->val = val;
        return 0;
    }
    entry *e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return -ENOMEM;
    e->next = NULL;
    e->hash = h;
    e->val = val;
    memcpy(e->key, key, len + 1);
    *pp = e;
    if (++m->n > m->nb)
        grow(m);
    return 0;
}

void *hmap_del(hmap *m, const char *key)
{
    uint64_t h = hmap_hash(key, strlen(key));
    entry **pp = find(m, key, h);
    entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->next;
    void *v = e->val;
    free(e);
    m->n--;
    return v;
}

int hmap_next(const hmap *m, hmap_iter *it, const char **key, void **val)
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
