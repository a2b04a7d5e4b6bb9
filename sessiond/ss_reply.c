/* ss_reply.c -- the shape of sessiond's script replies, {code, gw_status,
 * data, changes}, and the accessors of a parsed one (see ss_store.h). Pure
 * functions on hiredis reply trees, apart from the connection, so that they
 * can be fuzzed (tests/fuzz/fuzz_sessiond.c). */
#include "ss_store.h"

#include <errno.h>
#include <stdlib.h>

int ss_reply_parse(const redisReply *rep, ss_res *res)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_INTEGER || rep->element[2]->type != REDIS_REPLY_ARRAY ||
        rep->element[3]->type != REDIS_REPLY_ARRAY || rep->element[3]->elements % 3 != 0)
        return -EPROTO;
    const redisReply *ch = rep->element[3];
    for (size_t i = 0; i < ch->elements; i++)
        if (ch->element[i]->type != REDIS_REPLY_STRING)
            return -EPROTO;
    res->code = rep->element[0]->str;
    res->gw_status = rep->element[1]->integer;
    res->data = rep->element[2];
    res->changes = ch;
    return 0;
}

long long ss_res_int(const ss_res *r, size_t i)
{
    if (!r || !r->data || i >= r->data->elements)
        return 0;
    const redisReply *e = r->data->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return 0;
}

const char *ss_res_str(const ss_res *r, size_t i)
{
    if (!r || !r->data || i >= r->data->elements || r->data->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->data->element[i]->str;
}

size_t ss_res_nchanges(const ss_res *r) { return r && r->changes ? r->changes->elements / 3 : 0; }

void ss_res_change(const ss_res *r, size_t i, const char **room, const char **user, const char **state)
{
    *room = r->changes->element[i * 3]->str;
    *user = r->changes->element[i * 3 + 1]->str;
    *state = r->changes->element[i * 3 + 2]->str;
}
