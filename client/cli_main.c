/* cli_main.c -- `tether`: the command-line client of Tether.
 *
 * One binary, subcommands dispatched from a table; each subcommand parses
 * its own options and prints its own --help. Exit codes are shared (cli.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_cmd g_cmds[] = {
    { "token", cli_token, "mint a development token with the local HS256 secret" },
    { "sub", cli_sub, "subscribe to rooms and print messages as JSON lines" },
    { "pub", cli_pub, "publish to a room and print the acks" },
    { "ptt", cli_ptt, "take a room's push-to-talk floor, optionally talk, release it" },
    { "bench", cli_bench, "load generator: publish, fanout, idle and reconnect workloads" },
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether <command> [options]\n"
            "\n"
            "Command-line client of a Tether gateway (WebSocket sub-protocol tether.v1.json).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof(g_cmds) / sizeof(g_cmds[0]); i++)
        fprintf(f, "  %-7s %s\n", g_cmds[i].name, g_cmds[i].summary);
    fprintf(f,
            "\n"
            "Run 'tether <command> --help' for its options. Connecting commands take\n"
            "--url (default %s) and --token (or TETHER_TOKEN).\n"
            "\n"
            "exit codes (every command):\n"
            "  0  done (--count reached, every publish acknowledged, or Ctrl-C)\n"
            "  1  runtime failure: a publish refused by the server (other than 4503), a\n"
            "     stdin line that is not JSON, out of memory\n"
            "  2  bad command line (unknown flag, bad value, <json> that does not parse, no\n"
            "     token): nothing was sent\n"
            "  3  refused by the server for good, never retried: close code 4501 (bad\n"
            "     token), 4502 (token expired and no fresh one: no --token-file/--token-cmd,\n"
            "     or the refreshed token had expired too), 4503 (room not allowed by the\n"
            "     token, as a close or an error), 4504 (too many connections), any other\n"
            "     45xx, 4006 (session taken over), 1008 (policy), 1000 from the server\n"
            "  4  gave up after --max-attempts reconnection attempts (default %d): nothing\n"
            "     listening, DNS failure, TLS mismatch, or the link keeps dropping (1006,\n"
            "     1001, 1011-1013, 4000-4003 are retried)\n"
            "  5  --timeout passed before the work was done\n",
            CLI_DEFAULT_URL, CLI_DEFAULT_ATTEMPTS);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tether 1 (protocol tether.v1.json)\n");
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof(g_cmds) / sizeof(g_cmds[0]); i++)
        if (!strcmp(argv[1], g_cmds[i].name))
            return g_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tether: unknown command '%s'; run 'tether --help' for the list\n", argv[1]);
    return CLI_USAGE;
}
