/* config.c -- TETHER_* environment variables (see config.h). */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#define CFG_MAX 64

typedef struct {
    const char *name;
    const char *value;
    int secret;
} cfg_seen;
static cfg_seen seen[CFG_MAX];
static int nseen;

static void record(const char *name, const char *value, int secret)
{
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i].name, name) == 0)
            return;
    if (nseen < CFG_MAX)
        seen[nseen++] = (cfg_seen){ name, value, secret };
}

static void die(const char *name, const char *value, const char *why)
{
    fprintf(stderr, "%s: '%s' %s\n", name, value, why);
    LOG_ERROR("bad configuration", "{s:s,s:s,s:s}", "variable", name, "value", value, "why", why);
    exit(2);
}

const char *cfg_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        v = def;
    record(name, v, 0);
    return v;
}

#define CFG_MAX_SECRET_FILE 65536

/* The contents of the file named by NAME_FILE without its trailing line
 * ends and blanks (malloc'd, kept for the process life), or NULL when
 * NAME_FILE is not set. Read even when NAME is set (NAME wins), so that a
 * bad file is never silently ignored: an unreadable, empty or oversized one
 * ends the process like any bad value. */
static const char *secret_file(const char *name)
{
    /* Kept for the process life: the effective config names it. */
    char *var = NULL;
    if (asprintf(&var, "%s_FILE", name) < 0)
        die(name, "", "cannot be read: out of memory");
    const char *path = getenv(var);
    if (!path || !*path) {
        record(var, NULL, 0);
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        die(var, path, strerror(errno));
    char *buf = malloc(CFG_MAX_SECRET_FILE + 1);
    if (!buf)
        die(var, path, "cannot be read: out of memory");
    size_t n = fread(buf, 1, CFG_MAX_SECRET_FILE + 1, f);
    int err = ferror(f);
    fclose(f);
    if (!err && n <= CFG_MAX_SECRET_FILE)
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
            n--;
    const char *why = err                       ? "cannot be read"
                      : n > CFG_MAX_SECRET_FILE ? "is larger than 64 KiB"
                      : !n || memchr(buf, 0, n) ? "is empty or holds a NUL byte"
                                                : NULL;
    if (why) {
        free(buf); /* the process ends: nothing of it is kept */
        die(var, path, why);
    }
    buf[n] = 0;
    char *kept = realloc(buf, n + 1); /* kept for the process life: its size, not 64 KiB */
    if (kept)
        buf = kept;
    record(var, path, 0);
    return buf;
}

const char *cfg_secret(const char *name, const char *def)
{
    const char *v = getenv(name);
    char *f = (char *)secret_file(name);
    if (v && *v)
        free(f); /* read only to be checked: the variable wins */
    else
        v = f ? f : def; /* a file's secret is never empty */
    record(name, v, 1);
    return v;
}

const char *cfg_secret_file(const char *name)
{
    char var[128];
    snprintf(var, sizeof(var), "%s_FILE", name);
    const char *v = getenv(name), *path = getenv(var);
    if (v && *v && path && *path)
        die(var, path, "is set together with the variable it replaces; set one of them");
    return cfg_secret(name, "");
}

long long cfg_int(const char *name, long long def, long long min, long long max)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        static char buf[CFG_MAX][24];
        int i = nseen < CFG_MAX ? nseen : CFG_MAX - 1;
        snprintf(buf[i], sizeof(buf[i]), "%lld", def);
        record(name, buf[i], 0);
        return def;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        die(name, v, "is not an integer");
    if (x < min || x > max) {
        char why[96];
        snprintf(why, sizeof(why), "is out of range [%lld, %lld]", min, max);
        die(name, v, why);
    }
    record(name, v, 0);
    return x;
}

int cfg_bool(const char *name, int def)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        record(name, def ? "true" : "false", 0);
        return def;
    }
    record(name, v, 0);
    if (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        return 1;
    if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        return 0;
    die(name, v, "is not a boolean (true/false)");
    return def;
}

char *cfg_redact_url(const char *url, char *out, size_t outlen)
{
    if (!outlen)
        return out;
    /* The userinfo ends at the last '@' (a password may hold '@' or '/'). */
    const char *sep = url ? strstr(url, "://") : NULL;
    const char *at = sep ? strrchr(sep + 3, '@') : NULL;
    const char *colon = at ? memchr(sep + 3, ':', (size_t)(at - sep - 3)) : NULL;
    if (colon)
        snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
    else
        snprintf(out, outlen, "%s", url ? url : "");
    return out;
}

void cfg_print(void)
{
    json_t *o = json_object();
    for (int i = 0; i < nseen; i++) {
        const char *v = seen[i].value;
        char red[512];
        if (seen[i].secret)
            v = (v && *v) ? "***" : "";
        else if (v && strstr(v, "://"))
            v = cfg_redact_url(v, red, sizeof(red));
        json_object_set_new(o, seen[i].name, v ? json_string(v) : json_null());
    }
    json_t *f = json_pack("{s:o,s:s,s:I}", "config", o, "instance", cfg_instance(), "incarnation",
                          (json_int_t)cfg_incarnation());
    log_write_obj(LOG_LVL_INFO, "effective config", f);
}

int cfg_parse_hostport(const char *s, char *host, unsigned hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon[1] == 0)
        return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0) {
        h = "127.0.0.1";
        hl = strlen(h);
    }
    if (hl + 1 > hostlen)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}

const char *cfg_instance(void)
{
    static char inst[160];
    if (!inst[0]) {
        char host[128] = "local";
        const char *h = getenv("HOSTNAME");
        if (h && *h)
            snprintf(host, sizeof(host), "%s", h);
        else
            gethostname(host, sizeof(host) - 1);
        snprintf(inst, sizeof(inst), "%s-%d", host, (int)getpid());
    }
    return inst;
}

uint64_t cfg_incarnation(void)
{
    static uint64_t inc;
    if (!inc) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        inc = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    }
    return inc;
}
