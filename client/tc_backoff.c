/* tc_backoff.c -- the reconnection schedule (see tc_backoff.h).
 *
 * Why full jitter by default: after a gateway restart every client computes
 * the same ceiling for the same attempt, so only the random part spreads
 * them; uniform in [0, ceiling] spreads them widest (the AWS architecture
 * blog's "full jitter"; Centrifugo does the same). Additive jitter keeps a
 * guaranteed minimum delay, which some deployments prefer.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tc_backoff.h"

void tc_backoff_defaults(tc_backoff_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->initial_ms = 1000;
    cfg->max_ms = 30000;
    cfg->jitter = TC_JITTER_FULL;
    cfg->jitter_ms = 500;
    cfg->max_attempts = 0;
    cfg->stable_ms = 10000;
}

uint32_t tc_backoff_ceiling(const tc_backoff_cfg *cfg, unsigned attempt)
{
    uint64_t d = cfg->initial_ms;
    if (attempt == 0)
        attempt = 1;
    /* Double until the cap; stop early so that no shift overflows. */
    for (unsigned i = 1; i < attempt && d < cfg->max_ms; i++)
        d *= 2;
    if (d > cfg->max_ms)
        d = cfg->max_ms;
    return (uint32_t)d;
}

uint32_t tc_backoff_delay(const tc_backoff_cfg *cfg, unsigned attempt, uint64_t rnd)
{
    uint32_t ceil = tc_backoff_ceiling(cfg, attempt);
    switch (cfg->jitter) {
    case TC_JITTER_FULL:
        return (uint32_t)(rnd % ((uint64_t)ceil + 1));
    case TC_JITTER_ADD: {
        uint64_t d = (uint64_t)ceil + rnd % ((uint64_t)cfg->jitter_ms + 1);
        return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    }
    case TC_JITTER_NONE:
    default:
        return ceil;
    }
}

void tc_backoff_init(tc_backoff *b, const tc_backoff_cfg *cfg)
{
    memset(b, 0, sizeof(*b));
    b->cfg = *cfg;
}

void tc_backoff_up(tc_backoff *b, uint64_t now_ms)
{
    b->up_since_ms = now_ms ? now_ms : 1;
}

void tc_backoff_down(tc_backoff *b, uint64_t now_ms)
{
    if (b->up_since_ms && now_ms >= b->up_since_ms && now_ms - b->up_since_ms >= b->cfg.stable_ms)
        b->attempt = 0;
    b->up_since_ms = 0;
}

int tc_backoff_next(tc_backoff *b, uint64_t rnd, uint32_t *delay_ms)
{
    if (b->cfg.max_attempts && b->attempt >= b->cfg.max_attempts)
        return -ETIMEDOUT;
    b->attempt++;
    *delay_ms = tc_backoff_delay(&b->cfg, b->attempt, rnd);
    return 0;
}

void tc_backoff_reset(tc_backoff *b)
{
    b->attempt = 0;
    b->up_since_ms = 0;
}

void tc_rng_seed(tc_rng *r)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    }
    r->s = s ? s : 0x9E3779B97F4A7C15ull;
}

uint64_t tc_rng_next(tc_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
