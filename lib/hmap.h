/* hmap.h -- string-keyed hash map (separate chaining, power-of-two buckets).
 *
 * Keys are copied in; values are borrowed pointers the map never frees.
 * Iteration order is unspecified; deleting the entry just returned by
 * hmap_next() is allowed during iteration, other mutations are not.
 * Integer keys go in lib/u64map.h instead of through a printed string.
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

/* The map's hash: SipHash-2-4 under a 128-bit key drawn from getrandom()
 * once per process (the process aborts if it cannot get one), so a client
 * that picks names cannot aim them at one bucket. Not stable across
 * processes: never store it or send it. */
uint64_t hmap_hash(const char *s, size_t len);
/* SipHash-2-4 of data under an explicit key (key bytes as in the paper). */
uint64_t hmap_siphash24(const unsigned char key[16], const void *data, size_t len);
/* The process's key, for tests that compare two processes. */
void hmap_seed(uint64_t out[2]);

#endif
