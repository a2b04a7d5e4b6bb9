/* ss_valid.h -- validation of what gateways send sessiond (untrusted input,
 * like everything from the bus): the same rules as the client protocol. */
#ifndef TETHER_SS_VALID_H
#define TETHER_SS_VALID_H

#include <stddef.h>

#define SS_MAX_SESSION 64
#define SS_MAX_ROOM 128
#define SS_MAX_USER 128 /* NAMES_MAX_USER (lib/names.h) */
#define SS_MAX_EPOCH 64
#define SS_MAX_CLIENT 256
#define SS_MAX_ROOMS 256   /* rooms per connection (docs/protocol.md) */
#define SS_MAX_POSITIONS 300 /* positions kept from one close (a script takes ~1000 arguments) */
#define SS_MAX_RECS 8
#define SS_MAX_REC_LEN 256

/* Each returns 1 when s (NULL counts as "") is valid. */
/* 1..64 of [A-Za-z0-9_-] (the gateway's session ids). */
int ss_valid_session(const char *s);
/* 1..128 of [A-Za-z0-9._:@/-]. */
int ss_valid_room(const char *s);
/* A JWT sub: a user id by lib/names.h (1..128 bytes of UTF-8, no controls). */
int ss_valid_user(const char *s);
/* 0..64 of [A-Za-z0-9] (replayd's epochs are hex). */
int ss_valid_epoch(const char *s);
/* "", "good", "fair" or "poor". */
int ss_valid_quality(const char *s);
/* 0..256 bytes, none below 0x20. */
int ss_valid_text(const char *s, size_t max);

#endif
