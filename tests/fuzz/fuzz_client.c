/* fuzz_client.c -- libFuzzer target for the client SDK's server-frame decoder
 * (client/tc_frame.c), which reads whatever the server, or anything between
 * it and the client, sends.
 *
 * An input is one text WebSocket message. tc_sframe_parse takes `message`
 * frames through a hand-written scanner (they come by the hundred thousand)
 * and everything else, or whatever the scanner declines, through jansson.
 * Beyond "no crash, no leak", it abort()s unless:
 *   - an accepted frame has what its type promises (a message: a room, a
 *     seq > 0 and data that is one JSON value; subscribed: room and epoch;
 *     gap: to >= from; welcome: a session);
 *   - whenever the fast path accepts a frame, jansson's path accepts it too
 *     with the same room, epoch, id, from, seq, ts and (as JSON) the same
 *     data: the two paths must not tell an application different things.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/tc_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_client: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static void check_frame(const tc_sframe *f)
{
    switch (f->type) {
    case TC_S_MESSAGE: {
        CHECK(f->room && f->seq > 0 && f->data && f->data_len == strlen(f->data));
        json_t *d = json_loadb(f->data, f->data_len, JSON_DECODE_ANY, NULL);
        CHECK(d);
        json_decref(d);
        break;
    }
    case TC_S_SUBSCRIBED:
        CHECK(f->room && f->epoch);
        break;
    case TC_S_GAP:
        CHECK(f->room && f->gap_to >= f->gap_from);
        break;
    case TC_S_WELCOME:
        CHECK(f->session && *f->session);
        break;
    case TC_S_UNKNOWN:
        CHECK(0);
        break;
    default:
        break;
    }
    CHECK(f->type_name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    tc_sframe f, fast, slow;

    if (tc_sframe_parse(buf, size, &f) == 0) {
        check_frame(&f);
        tc_sframe_clear(&f);
    } else {
        CHECK(f.root == NULL && f.own == NULL);
    }
    if (tc_sframe_parse_message_fast(buf, size, &fast) < 0)
        return 0;
    check_frame(&fast);
    /* A leading blank keeps the frame off the fast path: jansson's verdict. */
    char *sp = malloc(size + 1);
    CHECK(sp);
    sp[0] = ' ';
    memcpy(sp + 1, buf, size);
    CHECK(tc_sframe_parse(sp, size + 1, &slow) == 0);
    CHECK(slow.type == TC_S_MESSAGE && slow.root != NULL);
    CHECK(same_str(fast.room, slow.room) && same_str(fast.epoch, slow.epoch));
    CHECK(same_str(fast.id, slow.id) && same_str(fast.from, slow.from));
    CHECK(fast.seq == slow.seq && fast.ts == slow.ts);
    json_t *a = json_loadb(fast.data, fast.data_len, JSON_DECODE_ANY, NULL);
    json_t *b = json_loadb(slow.data, slow.data_len, JSON_DECODE_ANY, NULL);
    CHECK(a && b && json_equal(a, b));
    json_decref(a);
    json_decref(b);
    tc_sframe_clear(&slow);
    tc_sframe_clear(&fast);
    free(sp);
    return 0;
}
