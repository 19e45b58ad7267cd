/*
 * matrix/event.c - transaction body → mx_event_batch (see event.h).
 *
 * A small strict JSON reader (RFC 8259) that builds no tree: one pass validates the body and
 * finds the top-level keys; the events arrays are then walked again to take each element's raw
 * bytes and its few routing fields (decoded into the batch's arena). Nesting is bounded
 * (MX_JSON_MAX_DEPTH), so the recursion is too. The fuzz target checks it against cJSON.
 */
#include "matrix/event.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "matrix/err.h"

#define MX_JSON_MAX_DEPTH 256 /* nesting of arrays/objects accepted in a body */

bool mx_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < need) return false;
        for (size_t k = 1; k <= need; k++) {
            unsigned cc = p[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000)) return false; /* overlong */
        if (cp >= 0xd800 && cp <= 0xdfff) return false;                             /* surrogate */
        if (cp > 0x10ffff) return false;
        i += need + 1;
    }
    return true;
}

static int fail(mx_parse_error *err, int code, const char *msg)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

/* ---- the reader ---- */

typedef struct jr {
    const char *p;   /* next byte */
    const char *end; /* end of the body */
    int depth;       /* current nesting */
    bool too_deep;   /* failed because of MX_JSON_MAX_DEPTH */
} jr;

static void ws(jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A string at j->p (which is '"'); on success j->p is past the closing quote. Escapes are
 * checked, surrogate escapes must pair up, raw control characters are refused. */
static bool read_string(jr *j)
{
    const char *p = j->p + 1, *end = j->end;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            j->p = p + 1;
            return true;
        }
        if (c < 0x20) return false;
        if (c != '\\') {
            p++;
            continue;
        }
        if (end - p < 2) return false;
        char e = p[1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
            e == 't') {
            p += 2;
            continue;
        }
        if (e != 'u' || end - p < 6) return false;
        int u = hex4(p + 2);
        if (u < 0) return false;
        p += 6;
        if (u >= 0xdc00 && u <= 0xdfff) return false; /* lone low surrogate */
        if (u >= 0xd800 && u <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return false;
            int lo = hex4(p + 2);
            if (lo < 0xdc00 || lo > 0xdfff) return false;
            p += 6;
        }
    }
    return false;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool read_number(jr *j)
{
    const char *p = j->p, *end = j->end;
    if (p < end && *p == '-') p++;
    if (p >= end) return false;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return false;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return false;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return false;
        while (p < end && is_digit(*p))
            p++;
    }
    j->p = p;
    return true;
}

static bool read_word(jr *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0) return false;
    j->p += n;
    return true;
}

static bool read_value(jr *j);

/* '[' or '{' at j->p; reads the whole container. */
static bool read_container(jr *j)
{
    char close = *j->p == '[' ? ']' : '}';
    bool object = close == '}';
    if (++j->depth > MX_JSON_MAX_DEPTH) {
        j->too_deep = true;
        return false;
    }
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            if (j->p >= j->end || *j->p != '"' || !read_string(j)) return false;
            ws(j);
            if (j->p >= j->end || *j->p != ':') return false;
            j->p++;
            ws(j);
        }
        if (!read_value(j)) return false;
        ws(j);
        if (j->p >= j->end) return false;
        if (*j->p == ',') {
            j->p++;
            ws(j);
            continue;
        }
        if (*j->p != close) return false;
        j->p++;
        j->depth--;
        return true;
    }
}

static bool read_value(jr *j)
{
    if (j->p >= j->end) return false;
    switch (*j->p) {
    case '"': return read_string(j);
    case '{':
    case '[': return read_container(j);
    case 't': return read_word(j, "true");
    case 'f': return read_word(j, "false");
    case 'n': return read_word(j, "null");
    default: return read_number(j);
    }
}

/* Decodes the (already validated) string token [p, end) including its quotes into out, which
 * has room for end - p bytes. Returns false when it holds U+0000 (unusable as a C string). */
static bool decode_string(const char *p, const char *end, char *out)
{
    char *o = out;
    for (p++, end--; p < end;) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        unsigned cp;
        switch (e) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            cp = (unsigned)hex4(p + 2);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)hex4(p + 8) - 0xdc00);
                p += 6;
            }
            p += 4;
            break;
        default: cp = (unsigned char)e; break; /* " \ / */
        }
        p += 2;
        if (cp == 0) return false;
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xc0 | (cp >> 6));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | (cp >> 12));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *o++ = (char)(0xf0 | (cp >> 18));
            *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *o = '\0';
    return true;
}

/* True when the string token [p, end) decodes to exactly `want`. */
static bool key_is(const char *p, const char *end, const char *want)
{
    size_t n = (size_t)(end - p);
    char buf[64];
    if (n > sizeof buf) return false; /* decoded <= raw; our keys are short */
    return decode_string(p, end, buf) && strcmp(buf, want) == 0;
}

/* A value's span inside the body. */
typedef struct span {
    const char *p;   /* first byte, NULL when absent */
    const char *end; /* one past the last byte */
} span;

/* Walks the elements of the (validated) array `arr`; calls fn for each element's span. */
static int each_element(span arr, int (*fn)(void *ctx, span el), void *ctx)
{
    jr j = {.p = arr.p, .end = arr.end};
    j.p++; /* '[' */
    ws(&j);
    if (*j.p == ']') return MX_OK;
    for (;;) {
        span el = {j.p, NULL};
        read_value(&j);
        el.end = j.p;
        int rc = fn(ctx, el);
        if (rc != MX_OK) return rc;
        ws(&j);
        if (*j.p == ']') return MX_OK;
        j.p++; /* ',' */
        ws(&j);
    }
}

static int count_one(void *ctx, span el)
{
    (*(size_t *)ctx)++;
    return MX_OK;
}

typedef struct fill_ctx {
    mx_event_batch *b;
    mx_event_kind kind;
} fill_ctx;

/* Copies the string value [p, end) decoded into the arena; NULL when it cannot be a C string. */
static const char *dup_decoded(wb_arena *a, const char *p, const char *end, bool *nomem)
{
    char *s = wb_arena_alloc(a, (size_t)(end - p));
    if (!s) {
        *nomem = true;
        return NULL;
    }
    return decode_string(p, end, s) ? s : NULL;
}

static int fill_one(void *ctx, span el)
{
    fill_ctx *f = ctx;
    mx_event_batch *b = f->b;
    if (*el.p != '{') {
        b->skipped++;
        return MX_OK;
    }
    static const char *const names[5] = {"type", "event_id", "room_id", "sender", "state_key"};
    span field[5] = {{NULL, NULL}, {NULL, NULL}, {NULL, NULL}, {NULL, NULL}, {NULL, NULL}};
    jr j = {.p = el.p + 1, .end = el.end};
    ws(&j);
    while (*j.p == '"') {
        const char *k = j.p;
        read_string(&j);
        const char *kend = j.p;
        ws(&j);
        j.p++; /* ':' */
        ws(&j);
        span v = {j.p, NULL};
        read_value(&j);
        v.end = j.p;
        for (int i = 0; i < 5; i++)
            if (!field[i].p && key_is(k, kend, names[i])) field[i] = v; /* first one wins */
        ws(&j);
        if (*j.p == ',') {
            j.p++;
            ws(&j);
        }
    }
    const char *val[5] = {NULL, NULL, NULL, NULL, NULL};
    bool nomem = false;
    for (int i = 0; i < 5; i++)
        if (field[i].p && *field[i].p == '"')
            val[i] = dup_decoded(&b->arena, field[i].p, field[i].end, &nomem);
    if (nomem) return MX_ERR_NOMEM;
    if (!val[0]) {
        b->skipped++;
        return MX_OK;
    }
    mx_event *e = &b->events[b->count];
    e->kind = f->kind;
    e->type = val[0];
    e->event_id = val[1];
    e->room_id = val[2];
    e->sender = val[3];
    e->state_key = val[4];
    e->json_len = (size_t)(el.end - el.p);
    e->json = wb_arena_strndup(&b->arena, el.p, e->json_len);
    if (!e->json) return MX_ERR_NOMEM;
    b->count++;
    if (f->kind == MX_EVENT_TIMELINE) b->n_timeline++;
    return MX_OK;
}

int mx_event_batch_parse(const char *body, size_t len, mx_event_batch *out, mx_parse_error *err)
{
    memset(out, 0, sizeof *out);
    if (err) {
        err->code = MX_OK;
        err->message[0] = '\0';
    }
    if (!body && len) return fail(err, MX_ERR_INVALID, "no body");
    if (!body) body = "";
    if (!mx_utf8_valid(body, len)) return fail(err, MX_ERR_NOT_JSON, "body is not valid UTF-8");

    /* one validating pass over the top-level object, remembering three keys' values */
    jr j = {.p = body, .end = body + len};
    span events = {NULL, NULL}, eph = {NULL, NULL}, eph_unstable = {NULL, NULL};
    ws(&j);
    if (j.p >= j.end) return fail(err, MX_ERR_NOT_JSON, "body is empty");
    bool is_object = *j.p == '{';
    if (is_object) {
        j.depth = 1;
        j.p++;
        ws(&j);
        bool ok = true, first = true;
        while (ok) {
            if (j.p < j.end && *j.p == '}' && first) break;
            first = false;
            const char *k = j.p;
            if (j.p >= j.end || *j.p != '"' || !read_string(&j)) {
                ok = false;
                break;
            }
            const char *kend = j.p;
            ws(&j);
            if (j.p >= j.end || *j.p != ':') {
                ok = false;
                break;
            }
            j.p++;
            ws(&j);
            span v = {j.p, NULL};
            if (!read_value(&j)) {
                ok = false;
                break;
            }
            v.end = j.p;
            if (!events.p && key_is(k, kend, "events"))
                events = v;
            else if (!eph.p && key_is(k, kend, "ephemeral"))
                eph = v;
            else if (!eph_unstable.p && key_is(k, kend, "de.sorunome.msc2409.ephemeral"))
                eph_unstable = v;
            ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                ws(&j);
                continue;
            }
            if (j.p >= j.end || *j.p != '}') ok = false;
            break;
        }
        if (!ok) {
            return fail(err, j.too_deep ? MX_ERR_TOO_LARGE : MX_ERR_NOT_JSON,
                        j.too_deep ? "JSON nested too deeply" : "body is not valid JSON");
        }
        j.p++; /* '}' */
    } else if (!read_value(&j)) {
        return fail(err, j.too_deep ? MX_ERR_TOO_LARGE : MX_ERR_NOT_JSON,
                    j.too_deep ? "JSON nested too deeply" : "body is not valid JSON");
    }
    ws(&j);
    if (j.p != j.end) return fail(err, MX_ERR_NOT_JSON, "trailing bytes after the JSON value");
    if (!is_object) return fail(err, MX_ERR_BAD_JSON, "body is not a JSON object");

    if (!events.p || *events.p != '[')
        return fail(err, MX_ERR_BAD_JSON, "`events` is missing or not an array");
    if (!eph.p) eph = eph_unstable;
    bool eph_null = eph.p && *eph.p == 'n';
    if (eph.p && *eph.p != '[' && !eph_null)
        return fail(err, MX_ERR_BAD_JSON, "`ephemeral` is not an array");
    if (eph_null) eph.p = NULL;

    size_t n = 0;
    each_element(events, count_one, &n);
    if (eph.p) each_element(eph, count_one, &n);
    if (n > MX_EVENT_MAX_PER_TXN)
        return fail(err, MX_ERR_TOO_LARGE, "too many events in one transaction");
    wb_arena_init(&out->arena, len + 1024);
    out->events = wb_arena_zalloc(&out->arena, (n ? n : 1) * sizeof(mx_event));
    int rc = out->events ? MX_OK : MX_ERR_NOMEM;
    fill_ctx f = {out, MX_EVENT_TIMELINE};
    if (rc == MX_OK) rc = each_element(events, fill_one, &f);
    f.kind = MX_EVENT_EPHEMERAL;
    if (rc == MX_OK && eph.p) rc = each_element(eph, fill_one, &f);
    if (rc != MX_OK) {
        mx_event_batch_free(out);
        return fail(err, rc, "out of memory");
    }
    return MX_OK;
}

void mx_event_batch_free(mx_event_batch *b)
{
    if (!b) return;
    wb_arena_free(&b->arena);
    memset(b, 0, sizeof *b);
}
