/* config.h -- environment configuration with defaults, validated at start.
 *
 * Each getter reads one TETHER_* variable; a value that does not parse or is
 * out of range ends the process with a message naming the variable (fail fast).
 * Every value read is recorded so cfg_print() can log the effective config
 * once, masking secrets.
 */
#ifndef TETHER_CONFIG_H
#define TETHER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Returns the variable's value or def (borrowed; valid for the process life). */
const char *cfg_str(const char *name, const char *def);
/* Like cfg_str, but the value is masked in cfg_print. When the variable is
 * unset or empty and <name>_FILE names a file, the value is that file's
 * contents without trailing line ends and blanks. A <name>_FILE that cannot
 * be read, is empty or is over 64 KiB ends the process, even when <name> is
 * set. */
const char *cfg_secret(const char *name, const char *def);
/* A secret given either as NAME or as the contents of the file NAME_FILE
 * (at most 4 KiB; trailing whitespace removed). Both set, an unreadable or
 * empty file end the process like a bad value. Returns "" when neither is
 * set. Masked in cfg_print (the file's path is shown). */
const char *cfg_secret_file(const char *name);
/* Integer in [min, max]. */
long long cfg_int(const char *name, long long def, long long min, long long max);
/* "1/0/true/false/yes/no/on/off". */
int cfg_bool(const char *name, int def);

/* Writes url into out (outlen bytes, always NUL-terminated when outlen > 0)
 * with the password of its userinfo (scheme://user:password@...) replaced by
 * "***", for logs and error messages. A value without one is copied as is.
 * Returns out. */
char *cfg_redact_url(const char *url, char *out, size_t outlen);

/* Logs {"msg":"config", name: value...} once, secrets masked and URL
 * passwords redacted. */
void cfg_print(void);

/* Parses "host:port" or ":port" (host defaults to 127.0.0.1) into host (size
 * hostlen) and port. Returns 0 or -EINVAL. */
int cfg_parse_hostport(const char *s, char *host, unsigned hostlen, int *port);

/* The instance id of this process: $HOSTNAME or the host name, plus the pid,
 * and its incarnation (microseconds at start). */
const char *cfg_instance(void);
uint64_t cfg_incarnation(void);

#endif
