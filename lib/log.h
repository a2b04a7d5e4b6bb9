/* log.h -- JSON-lines logging on stdout.
 *
 * One object per line: {"ts":"2026-11-22T10:00:00.123Z","level":"info",
 * "svc":"gateway","msg":"...", <fields>}. Fields are given jansson json_pack
 * style, so values are escaped correctly:
 *
 *     LOG_INFO("ws open", "{s:I,s:s}", "conn", (json_int_t)id, "room", room);
 *
 * The level is checked before anything is formatted.
 */
#ifndef TETHER_LOG_H
#define TETHER_LOG_H

#include <jansson.h>

enum { LOG_LVL_DEBUG = 0, LOG_LVL_INFO = 1, LOG_LVL_WARN = 2, LOG_LVL_ERROR = 3 };

extern int log_level;

/* Sets the service name and the level from TETHER_LOG_LEVEL (fails fast on a
 * bad value). Borrows svc (must outlive the process, e.g. a literal). */
void log_init(const char *svc);
/* Parses "debug"/"info"/"warn"/"error"; returns the level or -1. */
int log_parse_level(const char *s);

/* Writes one line. fields: a json_pack format producing an object, or NULL. */
void log_write(int level, const char *msg, const char *fields, ...);
/* Writes one line with a ready object; takes over 'fields' (may be NULL). */
void log_write_obj(int level, const char *msg, json_t *fields);

#define LOG_AT(lvl, msg, ...) \
    do { if ((lvl) >= log_level) log_write((lvl), (msg), __VA_ARGS__); } while (0)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LVL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...) LOG_AT(LOG_LVL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...) LOG_AT(LOG_LVL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LVL_ERROR, msg, __VA_ARGS__)

#endif
