/* log.c -- JSON-lines logging (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int log_level = LOG_LVL_INFO;
static const char *log_svc = "tether";
static const char *const level_names[] = { "debug", "info", "warn", "error" };

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void log_init(const char *svc)
{
    log_svc = svc;
    const char *v = getenv("TETHER_LOG_LEVEL");
    if (v && *v) {
        int l = log_parse_level(v);
        if (l < 0) {
            fprintf(stderr, "TETHER_LOG_LEVEL: '%s' is not one of debug, info, warn, error\n", v);
            exit(2);
        }
        log_level = l;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

void log_write_obj(int level, const char *msg, json_t *fields)
{
    if (level < log_level) {
        json_decref(fields);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[64];
    snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "ts", tbuf, "level", level_names[level], "svc",
                          log_svc, "msg", msg ? msg : "");
    if (!o) {
        json_decref(fields);
        return;
    }
    if (json_is_object(fields))
        json_object_update_missing(o, fields);
    json_decref(fields);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (line) {
        fputs(line, stdout);
        fputc('\n', stdout);
        free(line);
    }
}

void log_write(int level, const char *msg, const char *fields, ...)
{
    if (level < log_level)
        return;
    json_t *f = NULL;
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        json_error_t err;
        f = json_vpack_ex(&err, 0, fields, ap);
        va_end(ap);
    }
    log_write_obj(level, msg, f);
}
