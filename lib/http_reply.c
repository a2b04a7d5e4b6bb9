/* http_reply.c -- answers (see http.h): status texts, building MHD
 * responses, the http_reply* family, and the standard routes (/healthz,
 * /readyz, /metrics).
 */

#include "http_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/tcp.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* ---- small helpers ---------------------------------------------------------------- */

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Builds a response; NULL when out of memory. */
struct MHD_Response *http_resp_new(int status, const char *ctype, const char *headers, const void *body,
                                     size_t len, int close)
{
    if (status == 204 || status == 304 || status < 200)
        len = 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)(len ? body : ""),
                                                                MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    int ok = 1;
    if (ctype)
        ok = MHD_add_response_header(resp, "Content-Type", ctype) == MHD_YES;
    if (close)
        ok = ok && MHD_add_response_header(resp, "Connection", "close") == MHD_YES;
    else
        MHD_set_response_options(resp, MHD_RF_SEND_KEEP_ALIVE_HEADER, MHD_RO_END);
    /* Extra header lines, "Name: value\r\n" each. */
    for (const char *p = headers; ok && p && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        if (colon && colon > p && n < 1024) {
            char name[256], value[1024];
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + n && (*v == ' ' || *v == '\t'))
                v++;
            if (nl < sizeof(name)) {
                memcpy(name, p, nl);
                name[nl] = 0;
                memcpy(value, v, (size_t)(p + n - v));
                value[p + n - v] = 0;
                ok = MHD_add_response_header(resp, name, value) == MHD_YES;
            }
        }
        p = eol ? eol + 2 : p + n;
    }
    if (!ok) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* ---- replies --------------------------------------------------------------------- */

void http_reply_ex(http_req *req, int status, const char *content_type, const char *headers,
                   const void *body, size_t len)
{
    if (!req)
        return;
    if (!req->mc) {
        http_req_free(req); /* detached: the client or the server went away */
        return;
    }
    if (req->stage != REQ_HANDLER)
        return; /* replied twice: the first reply stands */
    if (status < 100 || status > 599)
        status = 500;
    LOG_DEBUG("http", "{s:s,s:s,s:i,s:I}", "method", req->method, "path", req->path, "status", status,
              "ms", (json_int_t)(loop_mono_ms() - req->t0));
    req->status = (unsigned)status;
    req->resp = http_resp_new(status, content_type, headers, body, len, 0);
    req->stage = REQ_REPLIED;
    if (!req->in_handler)
        http_req_resume(req);
}

void http_reply(http_req *req, int status, const char *content_type, const void *body, size_t len)
{
    http_reply_ex(req, status, content_type, NULL, body, len);
}

void http_reply_text(http_req *req, int status, const char *text)
{
    http_reply(req, status, "text/plain; charset=utf-8", text, text ? strlen(text) : 0);
}

void http_reply_json(http_req *req, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) {
        http_reply_status(req, 500);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL; the length below bounds the copy */
    http_reply(req, status, "application/json", s, n + 1);
    free(s);
}

void http_reply_status(http_req *req, int status)
{
    char body[64];
    snprintf(body, sizeof(body), "%s\n", http_status_text(status));
    http_reply_text(req, status, body);
}

/* ---- the standard routes -------------------------------------------------------------- */

int http_std_route(http_req *req, http_ready_fn *ready, void *ready_arg)
{
    const char *p = req->path;
    int health = strcmp(p, "/healthz") == 0, readyz = strcmp(p, "/readyz") == 0,
        metrics = strcmp(p, "/metrics") == 0;
    if (!health && !readyz && !metrics)
        return 0;
    if (strcmp(req->method, "GET") != 0 && !req->is_head) {
        char body[64];
        int n = snprintf(body, sizeof(body), "%s\n", http_status_text(405));
        http_reply_ex(req, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", body, (size_t)n);
        return 1;
    }
    if (metrics) {
        size_t len;
        char *text = metrics_render_len(&len);
        if (text)
            http_reply(req, 200, METRICS_CONTENT_TYPE, text, len);
        else
            http_reply_status(req, 500);
        free(text);
    } else if (readyz && ready) {
        ready(req, ready_arg);
    } else {
        http_reply_text(req, 200, "ok\n"); /* /healthz, or /readyz with no check */
    }
    return 1;
}

void http_std_handler(http_req *req, void *arg)
{
    const http_std *std = arg;
    if (!http_std_route(req, std ? std->ready : NULL, std ? std->ready_arg : NULL))
        http_reply_status(req, 404);
}
