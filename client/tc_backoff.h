/* tc_backoff.h -- the reconnection schedule (pure logic, no I/O).
 *
 * Exponential backoff with jitter, an attempt counter that resets only after
 * a stable connection, and an optional attempt limit. Randomness comes in as
 * an argument so that tests can pin it; tc_rng is the generator the client
 * uses (xorshift64*, seeded from getrandom).
 */
#ifndef TETHER_TC_BACKOFF_H
#define TETHER_TC_BACKOFF_H

#include <stdint.h>

#include "tether_client.h"

/* Fills cfg with the defaults: 1 s doubling to 30 s, full jitter, +500 ms
 * for additive jitter, unlimited attempts, reset after 10 s up. */
void tc_backoff_defaults(tc_backoff_cfg *cfg);

/* The un-jittered delay of attempt n (n >= 1; 0 is treated as 1):
 * min(max_ms, initial_ms * 2^(n-1)), without overflow for any n. */
uint32_t tc_backoff_ceiling(const tc_backoff_cfg *cfg, unsigned attempt);

/* The delay of attempt n given a random 64-bit value rnd:
 * FULL: rnd mod (ceiling + 1), i.e. uniform in [0, ceiling];
 * ADD: ceiling + rnd mod (jitter_ms + 1) (may exceed max_ms by jitter_ms);
 * NONE: the ceiling. */
uint32_t tc_backoff_delay(const tc_backoff_cfg *cfg, unsigned attempt, uint64_t rnd);

/* The per-client state. */
typedef struct tc_backoff {
    tc_backoff_cfg cfg;
    unsigned attempt;      /* attempts made since the last stable connection */
    uint64_t up_since_ms;  /* when the current link became usable; 0 when down */
} tc_backoff;

void tc_backoff_init(tc_backoff *b, const tc_backoff_cfg *cfg);
/* The link is usable (welcome) at now_ms. */
void tc_backoff_up(tc_backoff *b, uint64_t now_ms);
/* The link went down at now_ms: if it had been up for stable_ms, the attempt
 * count starts over. */
void tc_backoff_down(tc_backoff *b, uint64_t now_ms);
/* Counts one more attempt and gives its delay in *delay_ms. Returns 0, or
 * -ETIMEDOUT when max_attempts is set and already used up (nothing counted). */
int tc_backoff_next(tc_backoff *b, uint64_t rnd, uint32_t *delay_ms);
/* Forgets the attempts (tc_connect from FAILED/DISCONNECTED). */
void tc_backoff_reset(tc_backoff *b);

/* xorshift64* state; never 0. */
typedef struct tc_rng {
    uint64_t s;
} tc_rng;

/* Seeds from getrandom, or from the clock and pid if that fails. */
void tc_rng_seed(tc_rng *r);
uint64_t tc_rng_next(tc_rng *r);

#endif
