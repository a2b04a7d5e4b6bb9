/* u64map.h -- hash map keyed by 64-bit integers (connection ids, request
 * ids), without printing them into strings first.
 *
 * Same contract as lib/hmap.h: values are borrowed pointers the map never
 * frees, iteration order is unspecified, and deleting the entry just
 * returned by u64map_next() is allowed during iteration, other mutations
 * are not.
 */
#ifndef TETHER_U64MAP_H
#define TETHER_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map u64map;
typedef struct u64map_iter {
    size_t bucket;
    void *next;
} u64map_iter;

/* Returns a new empty map or NULL. */
u64map *u64map_new(void);
/* Frees the map (not the values). NULL is a no-op. */
void u64map_free(u64map *m);
size_t u64map_count(const u64map *m);
/* Returns the value for key, or NULL. */
void *u64map_get(const u64map *m, uint64_t key);
/* Sets key to val (replacing any previous value). Returns 0 or -ENOMEM. */
int u64map_put(u64map *m, uint64_t key, void *val);
/* Removes key; returns its value or NULL if absent. */
void *u64map_del(u64map *m, uint64_t key);

/* Iteration: u64map_iter it = {0}; uint64_t k; void *v;
 * while (u64map_next(m, &it, &k, &v)) ...  */
int u64map_next(const u64map *m, u64map_iter *it, uint64_t *key, void **val);

#endif
