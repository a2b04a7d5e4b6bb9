/* md_probe.c -- placeholder while the probe is written. */
#include <stdio.h>

#include "md.h"

int md_probe_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "probe: unavailable\n");
    return 2;
}
