/* jwtcheck_keys.c -- the TETHER_JWT_KEYS file (see jwtcheck.h): one key per
 * line, `kid alg secret-or-PEM-path`, each public key checked against its
 * algorithm (RSA size, EC curve) and re-encoded for libjwt.
 */
#include "jwtcheck_int.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "names.h"

/* ---- key file ---------------------------------------------------------------- */

/* Reads at most JWTV_MAX_PEM bytes of path into a new NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;

    if (!f)
        return NULL;
    buf = malloc(JWTV_MAX_PEM + 1);
    if (!buf)
        goto out;
    n = fread(buf, 1, JWTV_MAX_PEM + 1, f);
    if (ferror(f) || n > JWTV_MAX_PEM) {
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
    *len = n;
out:
    fclose(f);
    return buf;
}

/* Why pkey cannot serve alg, or NULL if it can. */
static const char *key_unfit(const jwtv_alg *alg, const EVP_PKEY *pkey)
{
    char group[80];
    size_t glen = 0;
    int nid = NID_undef;

    if (alg->kind == KIND_RS) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA)
            return "needs an RSA key";
        return EVP_PKEY_get_bits(pkey) < JWTV_MIN_RSA_BITS ? "needs an RSA key of at least 2048 bits" : NULL;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return "needs an EC key";
    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) == 1 &&
        (nid = OBJ_sn2nid(group)) == NID_undef)
        nid = EC_curve_nist2nid(group);
    return nid == alg->curve ? NULL : "needs its own curve (ES256 P-256, ES384 P-384, ES512 P-521)";
}

/* Loads the public key for an RS/ES alg from a PEM public key or certificate,
 * checks that it fits the alg and stores it in k as SubjectPublicKeyInfo PEM.
 * Returns 0, or -1 with err set (prefixed with where). */
static int load_public_key(jwtv_key *k, const char *path, const char *where, char *err, size_t errlen)
{
    size_t len = 0;
    char *pem = slurp(path, &len);
    BIO *in = NULL, *mem = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    const char *unfit;
    char *data;
    long dlen;
    int rc = -1;

    /* The message for allocation failures; anything more specific replaces it. */
    jwtv_seterr(err, errlen, "%s: out of memory loading '%s'", where, path);
    if (!pem) {
        jwtv_seterr(err, errlen, "%s: cannot read PEM file '%s' (missing, unreadable or over 64 KiB)", where, path);
        goto out;
    }
    if (!(in = BIO_new_mem_buf(pem, (int)len)))
        goto out;
    if (!(pkey = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL))) {
        BIO_free(in);
        if (!(in = BIO_new_mem_buf(pem, (int)len)))
            goto out;
        if ((cert = PEM_read_bio_X509(in, NULL, NULL, NULL)))
            pkey = X509_get_pubkey(cert);
    }
    if (!pkey) {
        jwtv_seterr(err, errlen, "%s: '%s' holds no PEM public key (BEGIN PUBLIC KEY) or certificate", where, path);
        goto out;
    }
    if ((unfit = key_unfit(k->alg, pkey))) {
        jwtv_seterr(err, errlen, "%s: %s %s; '%s' does not fit", where, k->alg->name, unfit, path);
        goto out;
    }
    mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_PUBKEY(mem, pkey) != 1)
        goto out;
    dlen = BIO_get_mem_data(mem, &data);
    if (dlen <= 0 || !(k->key = malloc((size_t)dlen + 1)))
        goto out;
    memcpy(k->key, data, (size_t)dlen);
    k->key[dlen] = '\0';
    k->keylen = (size_t)dlen;
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(mem);
    BIO_free(in);
    EVP_PKEY_free(pkey);
    X509_free(cert);
    free(pem);
    return rc;
}

/* Parses one non-comment line "kid alg key" into k. Returns 0 or -1 (err set). */
static int parse_key_line(jwtv *v, jwtv_key *k, char *line, const char *file, const char *where,
                          char *err, size_t errlen)
{
    const char *ws = " \t";
    char *kid, *alg, *rest, *end;
    const char *slash;
    char path[PATH_MAX];

    kid = line;
    alg = kid + strcspn(kid, ws);
    if (*alg)
        *alg++ = '\0';
    alg += strspn(alg, ws);
    rest = alg + strcspn(alg, ws);
    if (*rest)
        *rest++ = '\0';
    rest += strspn(rest, ws);
    end = rest + strlen(rest);
    while (end > rest && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    if (!*alg || !*rest) {
        jwtv_seterr(err, errlen, "%s: expected 'kid alg secret-or-PEM-path'", where);
        return -1;
    }
    if (strlen(kid) > JWTV_MAX_KID) {
        jwtv_seterr(err, errlen, "%s: kid longer than %d bytes", where, JWTV_MAX_KID);
        return -1;
    }
    for (size_t i = 0; i < v->nkeys; i++)
        if (strcmp(v->keys[i].kid, kid) == 0) {
            jwtv_seterr(err, errlen, "%s: duplicate kid '%s'", where, kid);
            return -1;
        }
    k->alg = jwtv_alg_by_name(alg);
    if (!k->alg) {
        jwtv_seterr(err, errlen, "%s: unknown alg '%.16s' (HS256/384/512, RS256/384/512, ES256/384/512)", where, alg);
        return -1;
    }
    strcpy(k->kid, kid);
    if (k->alg->kind == KIND_HS) {
        k->keylen = strlen(rest);
        k->key = (unsigned char *)strdup(rest);
        if (!k->key) {
            jwtv_seterr(err, errlen, "%s: out of memory", where);
            return -1;
        }
        return 0;
    }
    /* A relative PEM path belongs next to the key file, as in a mounted
     * secret directory, not wherever the daemon happens to be started. */
    slash = rest[0] == '/' ? NULL : strrchr(file, '/');
    if (snprintf(path, sizeof path, "%.*s%s", slash ? (int)(slash - file) + 1 : 0, file, rest) >= (int)sizeof path) {
        jwtv_seterr(err, errlen, "%s: PEM path too long", where);
        return -1;
    }
    return load_public_key(k, path, where, err, errlen);
}

int jwtv_load_key_file(jwtv *v, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = -1;
    char where[PATH_MAX + 32];

    if (!f) {
        jwtv_seterr(err, errlen, "TETHER_JWT_KEYS: cannot open '%s': %s", file, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        char *p = line;
        jwtv_key *grown;

        lineno++;
        snprintf(where, sizeof where, "TETHER_JWT_KEYS %s line %d", file, lineno);
        if (n > JWTV_MAX_LINE) {
            jwtv_seterr(err, errlen, "%s: line longer than %d bytes", where, JWTV_MAX_LINE);
            goto out;
        }
        if ((size_t)n != strlen(line)) {
            jwtv_seterr(err, errlen, "%s: NUL byte in line", where);
            goto out;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        p += strspn(p, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        if (v->nkeys >= JWTV_MAX_KEYS) {
            jwtv_seterr(err, errlen, "%s: more than %d keys", where, JWTV_MAX_KEYS);
            goto out;
        }
        grown = realloc(v->keys, (v->nkeys + 1) * sizeof *v->keys);
        if (!grown) {
            jwtv_seterr(err, errlen, "%s: out of memory", where);
            goto out;
        }
        v->keys = grown;
        memset(&v->keys[v->nkeys], 0, sizeof *v->keys);
        if (parse_key_line(v, &v->keys[v->nkeys], p, file, where, err, errlen) < 0) {
            jwtv_key_wipe(&v->keys[v->nkeys]);
            goto out;
        }
        v->nkeys++;
    }
    if (ferror(f)) {
        jwtv_seterr(err, errlen, "TETHER_JWT_KEYS: error reading '%s'", file);
        goto out;
    }
    rc = 0;
out:
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(f);
    return rc;
}
