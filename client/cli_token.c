/* cli_token.c -- `tether token <user>`: a development token signed with the
 * gateway's HS256 secret (TETHER_JWT_SECRET), for local suites and tests.
 * Production tokens come from the application's own auth service.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "jwtcheck.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether token <user> [--rooms a,b,prefix*] [--ttl SECONDS] [--secret S]\n"
            "                           [--iss ISS] [--aud AUD] [--kid KID]\n"
            "\n"
            "Prints an HS256 JWT for <user> (claim sub) signed with the gateway's secret.\n"
            "\n"
            "  --secret S     the gateway's TETHER_JWT_SECRET (default: $TETHER_JWT_SECRET,\n"
            "                 else the first line of ./run/dev-secret, written by `make run`)\n"
            "  --ttl SECONDS  lifetime, 1..31536000 (default 3600): exp = now + ttl\n"
            "  --rooms LIST   comma-separated allowed rooms; 'prefix*' allows a prefix\n"
            "                 (default: no rooms claim, every room allowed)\n"
            "  --iss, --aud   issuer / audience claims, when the gateway requires them\n"
            "  --kid KID      key id header, for a gateway with TETHER_JWT_KEYS\n"
            "\n"
            "example: export TETHER_TOKEN=$(tether token alice --rooms 'chat/*' --secret dev)\n");
}

/* The secret `make run` gave the local gateway: the first line of
 * ./run/dev-secret, copied into buf. NULL when there is none. */
static const char *dev_secret(char *buf, size_t len)
{
    FILE *f = fopen("./run/dev-secret", "r");
    const char *s = NULL;

    if (!f)
        return NULL;
    if (fgets(buf, (int)len, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        s = *buf ? buf : NULL;
    }
    fclose(f);
    return s;
}

int cli_token(int argc, char **argv)
{
    static const struct option opts[] = {
        { "rooms", required_argument, NULL, 'r' }, { "ttl", required_argument, NULL, 't' },
        { "secret", required_argument, NULL, 's' }, { "iss", required_argument, NULL, 'i' },
        { "aud", required_argument, NULL, 'a' },    { "kid", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    const char *rooms_arg = NULL, *secret = getenv("TETHER_JWT_SECRET"), *iss = NULL, *aud = NULL, *kid = NULL;
    uint64_t ttl = 3600;
    char *rooms_buf = NULL, *tok = NULL;
    char devbuf[4096] = "";
    const char **rooms = NULL;
    size_t nrooms = 0;
    int rc = CLI_USAGE, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r': rooms_arg = optarg; break;
        case 's': secret = optarg; break;
        case 'i': iss = optarg; break;
        case 'a': aud = optarg; break;
        case 'k': kid = optarg; break;
        case 't':
            if (cli_parse_u64(optarg, 1, 31536000, &ttl) < 0) {
                fprintf(stderr, "tether token: --ttl wants seconds in 1..31536000, got '%s'\n", optarg);
                goto out;
            }
            break;
        case 'h':
            usage(stdout);
            rc = CLI_OK;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "tether token: give exactly one user name (the token's sub)\n");
        usage(stderr);
        goto out;
    }
    if (!secret || !*secret)
        secret = dev_secret(devbuf, sizeof devbuf);
    if (!secret) {
        fprintf(stderr, "tether token: no secret: run `make run` (it writes ./run/dev-secret), "
                        "set TETHER_JWT_SECRET, or pass --secret\n");
        goto out;
    }
    if (rooms_arg) {
        rooms_buf = strdup(rooms_arg);
        rooms = calloc(strlen(rooms_arg) / 2 + 2, sizeof(*rooms));
        if (!rooms_buf || !rooms) {
            rc = CLI_ERR;
            goto out;
        }
        for (char *save = NULL, *p = strtok_r(rooms_buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            if (!jwt_claims_pattern_valid(p)) {
                fprintf(stderr, "tether token: '%s' is not a room name or 'prefix*' (chars A-Za-z0-9._:@/-)\n", p);
                goto out;
            }
            rooms[nrooms++] = p;
        }
        if (!nrooms) {
            fprintf(stderr, "tether token: --rooms is empty\n");
            goto out;
        }
    }
    tok = jwt_mint_hs256(secret, argv[optind], rooms, nrooms, (int64_t)time(NULL) + (int64_t)ttl, iss, aud, kid);
    if (!tok) {
        fprintf(stderr, "tether token: cannot mint: the user must be 1..128 bytes\n");
        goto out;
    }
    printf("%s\n", tok);
    rc = CLI_OK;
out:
    explicit_bzero(devbuf, sizeof devbuf);
    free(tok);
    free(rooms);
    free(rooms_buf);
    return rc;
}
