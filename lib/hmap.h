/* hmap.h -- string-keyed hash map (separate chaining, power-of-two buckets).
 *
 * Keys are copied in; values are borrowed pointers the map never frees.
 * Iteration order is unspecified; deleting the entry just returned by
 * hmap_next() is allowed during iteration, other mutations are not.
 */
#ifndef TETHER_HMAP_H
#define TETHER_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap hmap;
typedef struct hmap_iter {
    size_t bucket;
    void *next;
} hmap_iter;

/* Returns a new empty map or NULL. */
hmap *hmap_new(void);
/* Frees the map and its key copies (not the values). NULL is a no-op. */
void hmap_free(hmap *m);
size_t hmap_count(const hmap *m);
/* Returns the value for key, or NULL. */
void *hmap_get(const hmap *m, const char *key);
/* Sets key to val (replacing any previous value). Returns 0 or -ENOMEM. */
int hmap_put(hmap *m, const char *key, void *val);
/* Removes key; returns its value or NULL if absent. */
void *hmap_del(hmap *m, const char *key);

/* Iteration: hmap_iter it = {0}; const char *k; void *v;
 * while (hmap_next(m, &it, &k, &v)) ...  */
int hmap_next(const hmap *m, hmap_iter *it, const char **key, void **val);

/* FNV-1a, exposed for consistent hashing elsewhere. */
uint64_t hmap_hash(const char *s, size_t len);

#endif
