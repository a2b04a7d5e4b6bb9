/* tc_audio.h -- the audio chunk buffer (pure logic, no I/O).
 *
 * Voice that must not be lost while the link is down: a FIFO of at most max
 * chunks (100 = 20 s of 200 ms chunks). Each chunk is deep-copied with its
 * room and numbered in push order; when the FIFO is full the oldest chunk is
 * dropped and counted, because the newest audio is the most useful when the
 * talker comes back. The client drains it with pacing (tc_client.c).
 */
#ifndef TETHER_TC_AUDIO_H
#define TETHER_TC_AUDIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct tc_audio tc_audio;

typedef struct tc_audio_chunk {
    char *room;
    unsigned char *data;
    size_t len;
    uint64_t n;          /* 1, 2, ... in push order (dropped ones leave holes) */
} tc_audio_chunk;

/* Returns a new buffer or NULL. max 0 means 100. */
tc_audio *tc_audio_new(uint32_t max);
/* Frees every chunk. NULL is a no-op. */
void tc_audio_free(tc_audio *a);

/* Copies len bytes of data (len 1..max_len) for room. Returns 1 when the
 * oldest chunk was dropped to make room, 0 otherwise, -EINVAL, -ENOMEM. */
int tc_audio_push(tc_audio *a, const char *room, const void *data, size_t len);
/* The oldest chunk (owned by the buffer, valid until the next pop/push/free)
 * or NULL when empty. */
const tc_audio_chunk *tc_audio_peek(const tc_audio *a);
/* Frees the oldest chunk. Returns 0 or -ENOENT when empty. */
int tc_audio_pop(tc_audio *a);

uint32_t tc_audio_len(const tc_audio *a);
uint64_t tc_audio_dropped(const tc_audio *a);
uint64_t tc_audio_pushed(const tc_audio *a);

/* Largest chunk accepted: 48 KiB, so that base64 in a publish stays under
 * the gateway's 64 KiB frame limit. */
#define TC_AUDIO_MAX_CHUNK (48u * 1024u)

#endif
