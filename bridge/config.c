/*
 * bridge/config.c - the daemon's configuration: YAML file + environment -> br_config.
 *
 * libyaml's event API builds a small tree (scalars, mappings, lists with their lines); aliases
 * are refused (no cycles, no exponential expansion) and nesting is bounded. The tree is walked
 * against one table of options (dotted path, kind, field, default, limits, check): the table
 * gives the env names ("WABRIDGE_" + path uppercased, '.' -> '_'), the sections, the unknown-key
 * suggestions and the required list, so the YAML and the environment are checked the same way.
 * Order: defaults, then the file, then the environment, then the checks that span options.
 *
 * `-g` rewrites the two token values in place: libyaml gives each scalar's character range, the
 * range is turned into bytes and checked to hold exactly `generate` before it is replaced.
 */
#include "bridge/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "matrix/err.h"
#include "matrix/registration.h"
#include "util/base64.h"
#include "util/bytes.h"

/* Generated at build time from config.sample.yaml (bridge/config.cmake). */
extern const char br_config_example_text[];

#define CFG_MAX_FILE    (1024 * 1024) /* bytes of a config file */
#define CFG_MAX_DEPTH   32            /* nesting of mappings / lists */
#define CFG_MAX_PERMS   1000          /* entries of bridge.permissions */
#define CFG_MAX_KEY     128           /* bytes of one key */
#define CFG_TOKEN_MAX   1024          /* bytes of a token */
#define CFG_GENERATE    "generate"    /* token placeholder that -g replaces */
#define CFG_PLACEHOLDER "{{.}}"       /* the id in username_template */

/* ---- messages ---- */

/* Where a value came from: the option's dotted path with its YAML line, or an env variable. */
typedef struct val_src {
    const char *name; /* dotted path or environment variable name */
    size_t line;      /* 1-based YAML line; 0 = environment, or not set at all */
} val_src;

typedef struct tok_pos {
    bool in_yaml;    /* the value came from the file (and not from the environment) */
    bool rewritable; /* plain or quoted (not a block scalar) */
    size_t start;    /* libyaml character index of the scalar (quotes included) */
    size_t end;      /* one past its end */
} tok_pos;

/* Copies v (len bytes) into out as a double-quoted string for a message: escapes, cut at 60. */
static void quote_value(char *out, size_t cap, const char *v, size_t len)
{
    size_t o = 0;
    if (cap < 8) {
        if (cap) out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (i == 60 || o + 8 >= cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* ---- the YAML tree ---- */

enum { NODE_SCALAR, NODE_MAP, NODE_SEQ };

typedef struct cfg_node {
    int kind;                /* NODE_SCALAR, NODE_MAP or NODE_SEQ */
    char *text;              /* scalar: the value, NUL-terminated (may hold NULs: see len) */
    size_t len;              /* scalar: bytes of text */
    bool plain;              /* scalar: plain style (so "null", "~" and "" mean no value) */
    bool block;              /* scalar: literal or folded block style */
    size_t line;             /* 1-based line of the node's start */
    size_t column;           /* 1-based column */
    size_t start;            /* libyaml character index of the start */
    size_t end;              /* character index one past the end */
    struct cfg_node **items; /* map: key, value, key, value...; list: the items */
    size_t n;                /* entries used in items */
    size_t cap;              /* entries allocated */
} cfg_node;

static void node_free(cfg_node *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->items[i]);
    free(n->items);
    free(n->text);
    free(n);
}

static bool node_append(cfg_node *parent, cfg_node *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        cfg_node **items = realloc(parent->items, cap * sizeof *items);
        if (!items) return false;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return true;
}

static bool node_is_null(const cfg_node *n)
{
    if (!n) return true;
    if (n->kind != NODE_SCALAR || !n->plain) return false;
    return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

/* What a node is, for "got ..." in messages. */
static void node_describe(const cfg_node *n, char *out, size_t cap)
{
    if (n->kind == NODE_MAP)
        snprintf(out, cap, "a mapping");
    else if (n->kind == NODE_SEQ)
        snprintf(out, cap, "a list");
    else
        quote_value(out, cap, n->text, n->len);
}

typedef struct parse_state parse_state;
static int fail(parse_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int yaml_syntax_error(parse_state *st, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_MEMORY_ERROR) return fail(st, "out of memory reading the YAML");
    if (p->error == YAML_READER_ERROR)
        return fail(st, "YAML syntax error at byte %zu: %s", p->problem_offset, problem);
    if (p->context)
        return fail(st, "YAML syntax error at line %zu, column %zu: %s (%s at line %zu)",
                    p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                    p->context_mark.line + 1);
    return fail(st, "YAML syntax error at line %zu, column %zu: %s", p->problem_mark.line + 1,
                p->problem_mark.column + 1, problem);
}

static cfg_node *node_new(int kind, const yaml_event_t *ev)
{
    cfg_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = ev->start_mark.line + 1;
    n->column = ev->start_mark.column + 1;
    n->start = ev->start_mark.index;
    n->end = ev->end_mark.index;
    if (kind == NODE_SCALAR) {
        n->len = ev->data.scalar.length;
        n->text = malloc(n->len + 1);
        if (!n->text) {
            free(n);
            return NULL;
        }
        if (n->len) memcpy(n->text, ev->data.scalar.value, n->len);
        n->text[n->len] = '\0';
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->block = ev->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                   ev->data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
    }
    return n;
}

/* Reads one YAML document into a tree; *root is NULL for an empty stream. */
static int load_tree(parse_state *st, const char *yaml, size_t len, cfg_node **root)
{
    *root = NULL;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return fail(st, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    cfg_node *stack[CFG_MAX_DEPTH];
    size_t depth = 0;
    int docs = 0, rc = -1;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_syntax_error(st, &p);
            goto out;
        }
        int kind = -1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: rc = 0; break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs > 0) {
                fail(st, "only one YAML document is allowed, found another at line %zu",
                     ev.start_mark.line + 1);
                yaml_event_delete(&ev);
                goto out;
            }
            break;
        case YAML_DOCUMENT_END_EVENT: docs++; break;
        case YAML_ALIAS_EVENT:
            fail(st, "YAML aliases (*%s) are not supported (line %zu)",
                 ev.data.alias.anchor ? (const char *)ev.data.alias.anchor : "",
                 ev.start_mark.line + 1);
            yaml_event_delete(&ev);
            goto out;
        case YAML_SCALAR_EVENT: kind = NODE_SCALAR; break;
        case YAML_SEQUENCE_START_EVENT: kind = NODE_SEQ; break;
        case YAML_MAPPING_START_EVENT: kind = NODE_MAP; break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth) depth--;
            break;
        default: break;
        }
        if (kind >= 0) {
            cfg_node *n = node_new(kind, &ev);
            bool ok = n != NULL;
            if (ok && depth == 0) {
                if (*root) {
                    node_free(n);
                    ok = false;
                } else {
                    *root = n;
                }
            } else if (ok && !node_append(stack[depth - 1], n)) {
                node_free(n);
                ok = false;
            }
            if (!ok) {
                fail(st, "out of memory reading the YAML");
                yaml_event_delete(&ev);
                goto out;
            }
            if (kind != NODE_SCALAR) {
                if (depth == CFG_MAX_DEPTH) {
                    fail(st, "YAML nested more than %d levels deep (line %zu)", CFG_MAX_DEPTH,
                         n->line);
                    yaml_event_delete(&ev);
                    goto out;
                }
                stack[depth++] = n;
            }
        }
        yaml_event_delete(&ev);
        if (rc == 0) break;
    }
out:
    yaml_parser_delete(&p);
    if (rc != 0) {
        node_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---- value checks ---- */

/* A check returns true, or false with the reason in why ("expected ..."). */
typedef bool (*str_check)(const char *v, char *why, size_t whycap);

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_lower_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Matrix user id localpart characters (spec v1.8 grammar). */
static bool is_localpart_char(char c)
{
    return is_lower_alnum(c) || (c != '\0' && strchr("-._=/+", c) != NULL);
}

/* WhatsApp user id characters as bridged: "15551234567", "lid-123". */
static bool is_wa_id_char(char c)
{
    return is_lower_alnum(c) || c == '-' || c == '.' || c == '_';
}

static bool valid_wa_id(const char *id, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_wa_id_char(id[i])) return false;
    return true;
}

/* host[:port] in h[0..n): a DNS name (underscore allowed when loose), IPv4, or [IPv6]. */
static bool valid_hostport(const char *h, size_t n, bool loose)
{
    size_t i = 0;
    if (n == 0) return false;
    if (h[0] == '[') {
        for (i = 1; i < n && h[i] != ']'; i++)
            if (!is_hex(h[i]) && h[i] != ':' && h[i] != '.') return false;
        if (i >= n || i < 3) return false;
        i++;
    } else {
        for (; i < n && h[i] != ':'; i++)
            if (!is_alnum(h[i]) && h[i] != '.' && h[i] != '-' && !(loose && h[i] == '_'))
                return false;
        if (i == 0 || i > 253) return false;
    }
    if (i == n) return true;
    if (h[i] != ':' || i + 1 == n || n - i - 1 > 5) return false;
    long port = 0;
    for (size_t k = i + 1; k < n; k++) {
        if (!is_digit(h[k])) return false;
        port = port * 10 + (h[k] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* scheme://host[:port][/path...] with one of the schemes (case-insensitive); no spaces. */
static bool valid_url(const char *v, const char *s1, const char *s2)
{
    size_t sl = 0;
    if (strncasecmp(v, s1, strlen(s1)) == 0)
        sl = strlen(s1);
    else if (strncasecmp(v, s2, strlen(s2)) == 0)
        sl = strlen(s2);
    else
        return false;
    const char *h = v + sl;
    size_t alen = strcspn(h, "/?#");
    if (!valid_hostport(h, alen, true)) return false;
    for (const char *p = h + alen; *p; p++)
        if (*p == ' ') return false;
    return true;
}

static bool check_http_url(const char *v, char *why, size_t cap)
{
    if (valid_url(v, "http://", "https://")) return true;
    snprintf(why, cap, "expected an http:// or https:// URL (http://host:port)");
    return false;
}

static bool check_ws_url(const char *v, char *why, size_t cap)
{
    if (valid_url(v, "ws://", "wss://")) return true;
    snprintf(why, cap, "expected a ws:// or wss:// URL");
    return false;
}

static bool check_server_name(const char *v, char *why, size_t cap)
{
    if (valid_hostport(v, strlen(v), false)) return true;
    snprintf(why, cap, "expected the homeserver's server name (example.org, or host:port)");
    return false;
}

static bool check_ipv4(const char *v, char *why, size_t cap)
{
    struct in_addr a;
    if (inet_pton(AF_INET, v, &a) == 1) return true;
    snprintf(why, cap, "expected an IPv4 address to listen on (127.0.0.1, 0.0.0.0)");
    return false;
}

static bool check_as_id(const char *v, char *why, size_t cap)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = is_alnum(v[i]) || v[i] == '.' || v[i] == '_' || v[i] == '-';
    if (!ok) snprintf(why, cap, "expected 1-64 letters, digits, '.', '_' or '-'");
    return ok;
}

static bool check_token(const char *v, char *why, size_t cap)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= CFG_TOKEN_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i] > ' ' && v[i] < 0x7f;
    if (!ok)
        snprintf(why, cap, "expected a token of printable ASCII without spaces, or \"generate\"");
    return ok;
}

static bool check_localpart(const char *v, char *why, size_t cap)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 200;
    for (size_t i = 0; ok && i < n; i++)
        ok = is_localpart_char(v[i]);
    if (!ok) snprintf(why, cap, "expected a Matrix localpart (a-z, 0-9, - . _ = / +)");
    return ok;
}

static bool check_text(const char *v, char *why, size_t cap)
{
    if (strlen(v) <= 256) return true;
    snprintf(why, cap, "expected at most 256 bytes");
    return false;
}

static bool check_nonempty_text(const char *v, char *why, size_t cap)
{
    if (*v && strlen(v) <= 64) return true;
    snprintf(why, cap, "expected 1-64 bytes of text");
    return false;
}

static bool check_avatar(const char *v, char *why, size_t cap)
{
    if (*v == '\0') return true;
    bool ok = strncmp(v, "mxc://", 6) == 0;
    if (ok) {
        const char *s = v + 6, *slash = strchr(s, '/');
        ok = slash && valid_hostport(s, (size_t)(slash - s), false) && slash[1];
        for (const char *p = slash ? slash + 1 : ""; ok && *p; p++)
            ok = is_alnum(*p) || *p == '_' || *p == '-';
    }
    if (!ok) snprintf(why, cap, "expected an mxc://server/media-id URI or \"\"");
    return ok;
}

static bool check_username_template(const char *v, char *why, size_t cap)
{
    const char *ph = strstr(v, CFG_PLACEHOLDER);
    if (!ph || strstr(ph + 1, CFG_PLACEHOLDER)) {
        snprintf(why, cap, "must contain {{.}} (the WhatsApp id) exactly once");
        return false;
    }
    if (ph == v) {
        snprintf(why, cap,
                 "needs a prefix before {{.}} (the registration claims "
                 "@<prefix>.* exclusively)");
        return false;
    }
    for (const char *p = v; *p; p++) {
        if (p == ph) {
            p += strlen(CFG_PLACEHOLDER) - 1;
            continue;
        }
        if (!is_localpart_char(*p)) {
            snprintf(why, cap, "around {{.}} only a-z, 0-9 and - . _ = / + may appear");
            return false;
        }
    }
    return true;
}

static const char *const dn_placeholders[] = {"{{.PushName}}", "{{.ContactName}}", "{{.Phone}}",
                                              "{{.JID}}"};
#define N_DN_PLACEHOLDERS (sizeof dn_placeholders / sizeof dn_placeholders[0])

/* Index of the display name placeholder at p, or -1. */
static int dn_placeholder_at(const char *p)
{
    for (size_t i = 0; i < N_DN_PLACEHOLDERS; i++)
        if (strncmp(p, dn_placeholders[i], strlen(dn_placeholders[i])) == 0) return (int)i;
    return -1;
}

static bool check_displayname_template(const char *v, char *why, size_t cap)
{
    int used = 0;
    for (const char *p = v; *p; p++) {
        if (p[0] != '{' || p[1] != '{') continue;
        int i = dn_placeholder_at(p);
        if (i < 0) {
            size_t n = strcspn(p, "}");
            snprintf(why, cap,
                     "unknown placeholder \"%.*s}}\" (known: {{.PushName}} {{.ContactName}} "
                     "{{.Phone}} {{.JID}})",
                     (int)(n > 40 ? 40 : n), p);
            return false;
        }
        used++;
        p += strlen(dn_placeholders[i]) - 1;
    }
    if (!used) {
        snprintf(why, cap,
                 "needs at least one of {{.PushName}} {{.ContactName}} {{.Phone}} "
                 "{{.JID}}");
        return false;
    }
    return check_text(v, why, cap);
}

static bool check_db_uri(const char *v, char *why, size_t cap)
{
    /* The messages never quote the value: it may hold a password. */
    char *pqerr = NULL;
    PQconninfoOption *opts = *v ? PQconninfoParse(v, &pqerr) : NULL;
    bool ok = opts != NULL;
    if (opts) PQconninfoFree(opts);
    if (pqerr) PQfreemem(pqerr);
    if (!ok)
        snprintf(why, cap,
                 "expected a postgres:// URI or a libpq key=value connection string "
                 "that libpq can parse");
    return ok;
}

static bool check_ca_file(const char *v, char *why, size_t cap)
{
    if (*v == '\0' || access(v, R_OK) == 0) return true;
    snprintf(why, cap, "cannot read the CA bundle (%s)", strerror(errno));
    return false;
}

static bool check_command_prefix(const char *v, char *why, size_t cap)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 32 && !strchr(v, ' ');
    if (!ok) snprintf(why, cap, "expected 1-32 bytes without spaces");
    return ok;
}

static bool check_log_level(const char *v, char *why, size_t cap)
{
    if (!strcmp(v, "debug") || !strcmp(v, "info") || !strcmp(v, "warn") || !strcmp(v, "error"))
        return true;
    snprintf(why, cap, "expected debug, info, warn or error");
    return false;
}

/* ---- the table of options ---- */

typedef enum opt_kind {
    OPT_STR,        /* char *, checked by check */
    OPT_PORT,       /* uint16_t in [min, max] */
    OPT_INT,        /* int in [min, max] */
    OPT_INT64,      /* int64_t in [min, max] */
    OPT_BOOL,       /* bool */
    OPT_TRUST_ROOT, /* the 32 bytes and wa_trust_root_set */
    OPT_PERMS,      /* perms / n_perms */
    OPT_DP_SECRETS, /* dp_secrets / n_dp_secrets */
} opt_kind;

#define OPT_REQUIRED    1u /* no default: must be given */
#define OPT_SECRET      2u /* never quoted in messages */
#define OPT_STRIP_SLASH 4u /* trailing '/' removed (URLs the code appends paths to) */

typedef struct opt_def {
    const char *path; /* dotted YAML path */
    opt_kind kind;
    size_t off;      /* offsetof the field in br_config */
    const char *def; /* OPT_STR default; NULL = none (required) */
    long long idef;  /* numeric / bool default */
    long long min;   /* numeric range */
    long long max;
    unsigned flags;  /* OPT_REQUIRED, OPT_SECRET, OPT_STRIP_SLASH */
    str_check check; /* OPT_STR only */
} opt_def;

#define F(field) offsetof(br_config, field)
static const opt_def opts[] = {
    {"homeserver.address", OPT_STR, F(hs_address), NULL, 0, 0, 0, OPT_REQUIRED | OPT_STRIP_SLASH,
     check_http_url},
    {"homeserver.domain", OPT_STR, F(hs_domain), NULL, 0, 0, 0, OPT_REQUIRED, check_server_name},
    {"appservice.address", OPT_STR, F(as_address), "http://127.0.0.1:29318", 0, 0, 0,
     OPT_STRIP_SLASH, check_http_url},
    {"appservice.hostname", OPT_STR, F(as_hostname), "127.0.0.1", 0, 0, 0, 0, check_ipv4},
    {"appservice.port", OPT_PORT, F(as_port), NULL, 29318, 1, 65535, 0, NULL},
    {"appservice.id", OPT_STR, F(as_id), "whatsapp", 0, 0, 0, 0, check_as_id},
    {"appservice.as_token", OPT_STR, F(as_token), NULL, 0, 0, 0, OPT_REQUIRED | OPT_SECRET,
     check_token},
    {"appservice.hs_token", OPT_STR, F(hs_token), NULL, 0, 0, 0, OPT_REQUIRED | OPT_SECRET,
     check_token},
    {"appservice.bot.username", OPT_STR, F(bot_username), "whatsappbot", 0, 0, 0, 0,
     check_localpart},
    {"appservice.bot.displayname", OPT_STR, F(bot_displayname), "WhatsApp bridge bot", 0, 0, 0, 0,
     check_text},
    {"appservice.bot.avatar", OPT_STR, F(bot_avatar), "", 0, 0, 0, 0, check_avatar},
    {"appservice.username_template", OPT_STR, F(username_template), "whatsapp_{{.}}", 0, 0, 0, 0,
     check_username_template},
    {"database.uri", OPT_STR, F(db_uri), NULL, 0, 0, 0, OPT_REQUIRED | OPT_SECRET, check_db_uri},
    {"database.max_open_conns", OPT_INT, F(db_max_conns), NULL, 8, 1, 1000, 0, NULL},
    {"workers.engine", OPT_INT, F(engine_workers), NULL, 0, 0, 1024, 0, NULL},
    {"workers.portal", OPT_INT, F(portal_workers), NULL, 0, 0, 4096, 0, NULL},
    {"whatsapp.url", OPT_STR, F(wa_url), "wss://web.whatsapp.com/ws/chat", 0, 0, 0, 0,
     check_ws_url},
    {"whatsapp.trust_root", OPT_TRUST_ROOT, F(wa_trust_root), NULL, 0, 0, 0, 0, NULL},
    {"whatsapp.ca_file", OPT_STR, F(wa_ca_file), "", 0, 0, 0, 0, check_ca_file},
    {"whatsapp.os_name", OPT_STR, F(wa_os_name), "wabridge", 0, 0, 0, 0, check_nonempty_text},
    {"bridge.displayname_template", OPT_STR, F(displayname_template), "{{.PushName}} (WA)", 0, 0, 0,
     0, check_displayname_template},
    {"bridge.command_prefix", OPT_STR, F(command_prefix), "!wa", 0, 0, 0, 0, check_command_prefix},
    {"bridge.relay.enabled", OPT_BOOL, F(relay_enabled), NULL, 0, 0, 0, 0, NULL},
    {"bridge.login_timeout_s", OPT_INT64, F(qr_timeout_s), NULL, 180, 10, 3600, 0, NULL},
    {"bridge.permissions", OPT_PERMS, F(perms), NULL, 0, 0, 0, 0, NULL},
    {"double_puppet.secrets", OPT_DP_SECRETS, F(dp_secrets), NULL, 0, 0, 0, OPT_SECRET, NULL},
    {"double_puppet.allow_manual", OPT_BOOL, F(dp_allow_manual), NULL, 0, 0, 0, 0, NULL},
    {"logging.level", OPT_STR, F(log_level), "info", 0, 0, 0, 0, check_log_level},
    {"logging.json", OPT_BOOL, F(log_json), NULL, 0, 0, 0, 0, NULL},
};
#undef F
#define N_OPTS (sizeof opts / sizeof opts[0])

/* Indexes in opts of the options the cross checks name (asserted in parse_internal). */
enum { OPT_AS_TOKEN = 6, OPT_HS_TOKEN = 7, OPT_BOT_USERNAME = 8 };

struct parse_state {
    br_config *c;
    char *err;
    size_t errcap;
    unsigned flags;
    val_src src[N_OPTS];  /* where each option's value came from */
    char env[N_OPTS][64]; /* each option's environment variable */
    tok_pos tok[2];       /* as_token, hs_token in the YAML text */
};

static int fail(parse_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, st->errcap, fmt, ap);
    va_end(ap);
    return -1;
}

/* "<name>: <message> (line N)", the line only when known. */
static int fail_at(parse_state *st, val_src src, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(parse_state *st, val_src src, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (src.line) return fail(st, "%s: %s (line %zu)", src.name, msg, src.line);
    return fail(st, "%s: %s", src.name, msg);
}

static void *field(br_config *c, const opt_def *o)
{
    return (char *)c + o->off;
}

static void free_secret(char *s)
{
    if (!s) return;
    memset(s, 0, strlen(s));
    free(s);
}

static void perms_free(br_config *c)
{
    for (size_t i = 0; i < c->n_perms; i++)
        free(c->perms[i].who);
    free(c->perms);
    c->perms = NULL;
    c->n_perms = 0;
}

static void dp_secrets_free(br_config *c)
{
    for (size_t i = 0; i < c->n_dp_secrets; i++) {
        free(c->dp_secrets[i].server);
        free_secret(c->dp_secrets[i].as_token);
    }
    free(c->dp_secrets);
    c->dp_secrets = NULL;
    c->n_dp_secrets = 0;
}

/* ---- setting values ---- */

static bool parse_int(const char *v, long long *out)
{
    const char *p = v;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    if (!*p) return false;
    long long n = 0;
    for (; *p; p++) {
        if (!is_digit(*p)) return false;
        int d = *p - '0';
        if (n > (LLONG_MAX - d) / 10) return false;
        n = n * 10 + d;
    }
    *out = neg ? -n : n;
    return true;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

static bool parse_trust_root(const char *v, uint8_t out[32])
{
    size_t n = strlen(v), got = 0;
    if (n == 64) return wb_hex_decode(v, n, out, 32, &got) && got == 32;
    return (n == 43 || n == 44) && wb_base64_decode(v, n, out, 32, &got) && got == 32;
}

static br_perm perm_level(const char *v, bool *ok)
{
    static const char *const names[] = {"none", "relay", "commands", "user", "admin"};
    *ok = true;
    for (int i = 0; i < 5; i++)
        if (strcmp(v, names[i]) == 0) return (br_perm)i;
    *ok = false;
    return BR_PERM_NONE;
}

static bool valid_who(const char *who)
{
    if (strcmp(who, "*") == 0) return true;
    if (who[0] == '@') {
        const char *colon = strchr(who + 1, ':');
        if (!colon || colon == who + 1 || colon - who > 255) return false;
        for (const char *p = who + 1; p < colon; p++)
            if (*p <= ' ' || *p == 0x7f) return false;
        return valid_hostport(colon + 1, strlen(colon + 1), false);
    }
    return valid_hostport(who, strlen(who), false);
}

/* Same rule twice? MXIDs compare exactly, domains case-insensitively. */
static bool same_who(const char *a, const char *b)
{
    return a[0] == '@' ? strcmp(a, b) == 0 : strcasecmp(a, b) == 0;
}

static int add_perm(parse_state *st, val_src src, const char *who, size_t who_len,
                    const char *level)
{
    br_config *c = st->c;
    char q[256];
    quote_value(q, sizeof q, who, who_len);
    if (strlen(who) != who_len || !valid_who(who))
        return fail_at(st, src,
                       "entry %s: expected \"*\", a domain (example.org) or an MXID "
                       "(@user:example.org)",
                       q);
    bool ok;
    br_perm p = perm_level(level, &ok);
    if (!ok) {
        char ql[256];
        quote_value(ql, sizeof ql, level, strlen(level));
        return fail_at(st, src, "entry %s: expected relay, commands, user, admin or none, got %s",
                       q, ql);
    }
    for (size_t i = 0; i < c->n_perms; i++)
        if (same_who(c->perms[i].who, who)) return fail_at(st, src, "entry %s appears twice", q);
    if (c->n_perms == CFG_MAX_PERMS) return fail_at(st, src, "more than %d entries", CFG_MAX_PERMS);
    br_perm_rule *r = realloc(c->perms, (c->n_perms + 1) * sizeof *r);
    if (!r) return fail(st, "out of memory");
    c->perms = r;
    char *w = strdup(who);
    if (!w) return fail(st, "out of memory");
    r[c->n_perms].who = w;
    r[c->n_perms].level = p;
    c->n_perms++;
    return 0;
}

/* What one key=value entry of an environment list adds (perms, double puppet secrets). */
typedef int (*pair_fn)(parse_state *st, val_src src, const char *key, size_t key_len,
                       const char *value);

/* The environment's "key=value,key=value" form: add() for each non-empty entry, spaces around it
 * and around the '=' trimmed. last_eq: the last '=' splits (an MXID may hold one), else the first
 * (a token may). An entry without '=' fails with "entry <it>: <expected>", or with just
 * <expected> when secret (the entry is not shown; and it is wiped after use). */
static int set_pairs(parse_state *st, val_src src, const char *v, bool last_eq, bool secret,
                     const char *expected, pair_fn add)
{
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ",");
        char *entry = strndup(p, n);
        if (!entry) return fail(st, "out of memory");
        char *s = entry, *e = entry + n;
        while (*s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            *--e = '\0';
        int rc = 0;
        if (*s) {
            char *eq = last_eq ? strrchr(s, '=') : strchr(s, '=');
            if (!eq && secret) {
                rc = fail_at(st, src, "%s", expected);
            } else if (!eq) {
                char q[256];
                quote_value(q, sizeof q, s, strlen(s));
                rc = fail_at(st, src, "entry %s: %s", q, expected);
            } else {
                char *we = eq;
                while (we > s && we[-1] == ' ')
                    we--;
                char *lv = eq + 1;
                while (*lv == ' ')
                    lv++;
                *we = '\0';
                rc = add(st, src, s, (size_t)(we - s), lv);
            }
        }
        if (secret) memset(entry, 0, n);
        free(entry);
        if (rc) return rc;
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

/* "who=level,who=level" */
static int set_perms_list(parse_state *st, val_src src, const char *v)
{
    perms_free(st->c);
    return set_pairs(st, src, v, true, false, "expected who=level (e.g. example.org=user)",
                     add_perm);
}

/* double_puppet.secrets: one server name -> "as_token:<token>". The value is never quoted. */
static int add_dp_secret(parse_state *st, val_src src, const char *server, size_t server_len,
                         const char *value)
{
    br_config *c = st->c;
    char q[256];
    quote_value(q, sizeof q, server, server_len);
    if (strlen(server) != server_len || !valid_hostport(server, server_len, false))
        return fail_at(st, src, "entry %s: expected a homeserver's server name (example.org)", q);
    static const char prefix[] = "as_token:";
    const char *tok = value + sizeof prefix - 1;
    char why[256];
    if (strncmp(value, prefix, sizeof prefix - 1) != 0 || !check_token(tok, why, sizeof why) ||
        strcmp(tok, CFG_GENERATE) == 0)
        return fail_at(st, src,
                       "entry %s: expected \"as_token:<token>\" (the as_token of a second "
                       "appservice registration whose user namespace covers the real users), got "
                       "a value (not shown: it is secret)",
                       q);
    for (size_t i = 0; i < c->n_dp_secrets; i++)
        if (strcasecmp(c->dp_secrets[i].server, server) == 0)
            return fail_at(st, src, "entry %s appears twice", q);
    if (c->n_dp_secrets == CFG_MAX_PERMS)
        return fail_at(st, src, "more than %d entries", CFG_MAX_PERMS);
    br_dp_secret *r = realloc(c->dp_secrets, (c->n_dp_secrets + 1) * sizeof *r);
    if (!r) return fail(st, "out of memory");
    c->dp_secrets = r;
    r[c->n_dp_secrets].server = strdup(server);
    r[c->n_dp_secrets].as_token = strdup(tok);
    c->n_dp_secrets++;
    if (!r[c->n_dp_secrets - 1].server || !r[c->n_dp_secrets - 1].as_token)
        return fail(st, "out of memory");
    return 0;
}

/* "server=as_token:TOKEN,server=as_token:TOKEN" (the environment's form). */
static int set_dp_list(parse_state *st, val_src src, const char *v)
{
    dp_secrets_free(st->c);
    return set_pairs(st, src, v, false, true,
                     "expected server=as_token:TOKEN entries, comma-separated", add_dp_secret);
}

/* Checks v (len bytes; from the YAML or the environment) for option i and stores it. */
static int set_value(parse_state *st, size_t i, const char *v, size_t len, val_src src)
{
    const opt_def *o = &opts[i];
    bool secret = o->flags & OPT_SECRET;
    char q[256], why[512];
    if (secret)
        snprintf(q, sizeof q, "a value (not shown: it is secret)");
    else
        quote_value(q, sizeof q, v, len);
    if (strlen(v) != len) return fail_at(st, src, "contains a NUL character");
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)v[k];
        if (ch < 0x20 || ch == 0x7f)
            return fail_at(st, src, "contains a control character, got %s", q);
    }
    void *f = field(st->c, o);
    long long n = 0;
    switch (o->kind) {
    case OPT_STR: {
        why[0] = '\0';
        if (!o->check(v, why, sizeof why)) return fail_at(st, src, "%s, got %s", why, q);
        char *s = strdup(v);
        if (!s) return fail(st, "out of memory");
        if (o->flags & OPT_STRIP_SLASH) {
            size_t sl = strlen(s);
            while (sl > 0 && s[sl - 1] == '/' && !(sl >= 3 && s[sl - 2] == '/' && s[sl - 3] == ':'))
                s[--sl] = '\0';
        }
        char **slot = f;
        if (secret)
            free_secret(*slot);
        else
            free(*slot);
        *slot = s;
        break;
    }
    case OPT_PORT:
    case OPT_INT:
    case OPT_INT64:
        if (!parse_int(v, &n) || n < o->min || n > o->max)
            return fail_at(st, src, "expected an integer %lld-%lld, got %s", o->min, o->max, q);
        if (o->kind == OPT_PORT)
            *(uint16_t *)f = (uint16_t)n;
        else if (o->kind == OPT_INT)
            *(int *)f = (int)n;
        else
            *(int64_t *)f = n;
        break;
    case OPT_BOOL:
        if (!parse_bool(v, (bool *)f)) return fail_at(st, src, "expected true or false, got %s", q);
        break;
    case OPT_TRUST_ROOT:
        if (len == 0) {
            st->c->wa_trust_root_set = false;
            memset(st->c->wa_trust_root, 0, sizeof st->c->wa_trust_root);
        } else if (parse_trust_root(v, st->c->wa_trust_root)) {
            st->c->wa_trust_root_set = true;
        } else {
            return fail_at(st, src,
                           "expected 32 bytes as base64 (44 characters) or hex (64 digits), or "
                           "\"\" for WhatsApp's own root, got %s",
                           q);
        }
        break;
    case OPT_PERMS:
        if (set_perms_list(st, src, v)) return -1;
        break;
    case OPT_DP_SECRETS:
        if (set_dp_list(st, src, v)) return -1;
        break;
    }
    st->src[i] = src;
    return 0;
}

static int set_defaults(parse_state *st)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        void *f = field(st->c, o);
        st->src[i] = (val_src){o->path, 0};
        switch (o->kind) {
        case OPT_STR:
            if (o->def && !(*(char **)f = strdup(o->def))) return fail(st, "out of memory");
            break;
        case OPT_PORT: *(uint16_t *)f = (uint16_t)o->idef; break;
        case OPT_INT: *(int *)f = (int)o->idef; break;
        case OPT_INT64: *(int64_t *)f = o->idef; break;
        case OPT_BOOL: *(bool *)f = o->idef != 0; break;
        case OPT_TRUST_ROOT:
        case OPT_PERMS:
        case OPT_DP_SECRETS: break;
        }
    }
    return 0;
}

/* ---- walking the YAML ---- */

static int find_opt(const char *path)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].path, path) == 0) return (int)i;
    return -1;
}

/* Is path a section (a proper prefix of some option, at a '.')? "" is the root. */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < N_OPTS; i++)
        if (strncmp(opts[i].path, path, n) == 0 && opts[i].path[n] == '.') return true;
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The name nearest to `name` (within 2 edits) among the option paths and their sections (or the
 * env names); failing that (YAML), an option with the same last key ("homeserver.port" ->
 * "appservice.port"). Written to out; false when there is none. */
static bool suggest(const parse_state *st, const char *name, bool env, char *out, size_t cap)
{
    size_t best_d = 3;
    char cand[128];
    out[0] = '\0';
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *full = env ? st->env[i] : opts[i].path;
        size_t len = strlen(full);
        for (size_t n = len; n > 0; n--) {
            if (n != len && (env || full[n] != '.')) continue;
            snprintf(cand, sizeof cand, "%.*s", (int)n, full);
            size_t d = edit_distance(name, cand);
            if (d < best_d) {
                best_d = d;
                snprintf(out, cap, "%s", cand);
            }
        }
    }
    if (out[0] || env) return out[0] != '\0';
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *l = strrchr(opts[i].path, '.');
        if (l && strcmp(l + 1, leaf) == 0) {
            snprintf(out, cap, "%s", opts[i].path);
            return true;
        }
    }
    return false;
}

/* How a YAML mapping option reads (bridge.permissions, double_puppet.secrets). */
typedef struct map_opt {
    const char *want_map;   /* what the mapping should look like, for "expected %s, got ..." */
    const char *want_key;   /* what a key must be, for "keys must be %s, got a ..." */
    const char *want_value; /* what a value must be */
    bool secret;            /* values are not quoted back */
    void (*reset)(br_config *c);
    pair_fn add;
} map_opt;

/* A mapping of key: value, each pair checked and added (the option's earlier entries dropped). */
static int walk_map(parse_state *st, size_t i, const cfg_node *map, const map_opt *m)
{
    val_src src = {opts[i].path, map->line};
    char got[256];
    if (map->kind != NODE_MAP) {
        node_describe(map, got, sizeof got);
        return fail_at(st, src, "expected %s, got %s", m->want_map, got);
    }
    m->reset(st->c);
    for (size_t k = 0; k + 1 < map->n; k += 2) {
        const cfg_node *key = map->items[k], *v = map->items[k + 1];
        src.line = key->line;
        if (key->kind != NODE_SCALAR)
            return fail_at(st, src, "keys must be %s, got a %s", m->want_key,
                           key->kind == NODE_MAP ? "mapping" : "list");
        if (v->kind != NODE_SCALAR || node_is_null(v)) {
            if (m->secret) return fail_at(st, src, "expected %s as the value", m->want_value);
            node_describe(v, got, sizeof got);
            return fail_at(st, src, "expected %s, got %s", m->want_value, got);
        }
        if (strlen(v->text) != v->len) return fail_at(st, src, "contains a NUL character");
        if (m->add(st, src, key->text, key->len, v->text)) return -1;
    }
    st->src[i] = (val_src){opts[i].path, map->line};
    return 0;
}

static const map_opt perms_map = {"a mapping of who: level (\"example.org\": user)",
                                  "\"*\", a domain or an MXID",
                                  "relay, commands, user, admin or none",
                                  false,
                                  perms_free,
                                  add_perm};
static const map_opt dp_secrets_map = {"a mapping of server name: \"as_token:<token>\"",
                                       "server names",
                                       "\"as_token:<token>\"",
                                       true,
                                       dp_secrets_free,
                                       add_dp_secret};

static int apply_yaml(parse_state *st, size_t i, const cfg_node *v)
{
    const opt_def *o = &opts[i];
    val_src src = {o->path, v->line};
    if (o->kind == OPT_DP_SECRETS) {
        if (node_is_null(v)) {
            dp_secrets_free(st->c);
            st->src[i] = src;
            return 0;
        }
        return walk_map(st, i, v, &dp_secrets_map);
    }
    if (o->kind == OPT_PERMS) {
        if (node_is_null(v)) {
            perms_free(st->c);
            st->src[i] = src;
            return 0;
        }
        return walk_map(st, i, v, &perms_map);
    }
    if (node_is_null(v)) {
        st->src[i] = src; /* "no value": the default stays (required: reported later) */
        return 0;
    }
    if (v->kind != NODE_SCALAR) {
        char got[64];
        node_describe(v, got, sizeof got);
        return fail_at(st, src, "expected a single value, got %s", got);
    }
    if (set_value(st, i, v->text, v->len, src)) return -1;
    if (i == OPT_AS_TOKEN || i == OPT_HS_TOKEN)
        st->tok[i - OPT_AS_TOKEN] = (tok_pos){true, !v->block, v->start, v->end};
    return 0;
}

/* A key as a printable path component (control characters become '?', cut at CFG_MAX_KEY). */
static void key_text(const cfg_node *k, char *out, size_t cap)
{
    size_t n = k->len < CFG_MAX_KEY ? k->len : CFG_MAX_KEY;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k->text[i];
        out[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
}

static int walk_section(parse_state *st, const cfg_node *map, const char *prefix)
{
    char got[256];
    for (size_t k = 0; k + 1 < map->n; k += 2) {
        const cfg_node *key = map->items[k], *v = map->items[k + 1];
        val_src src = {prefix[0] ? prefix : "configuration", key->line};
        if (key->kind != NODE_SCALAR)
            return fail_at(st, src, "keys must be plain names, got a %s",
                           key->kind == NODE_MAP ? "mapping" : "list");
        char name[CFG_MAX_KEY + 1], path[2 * CFG_MAX_KEY + 64];
        key_text(key, name, sizeof name);
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", name);
        src.name = path;
        for (size_t j = 0; j < k; j += 2) {
            const cfg_node *prev = map->items[j];
            if (prev->kind == NODE_SCALAR && prev->len == key->len &&
                memcmp(prev->text, key->text, key->len) == 0)
                return fail_at(st, src, "duplicate key (first at line %zu)", prev->line);
        }
        if (memchr(key->text, '.', key->len))
            return fail_at(st, src,
                           "unknown option: write options nested, one key per level, "
                           "not as dotted keys");
        int oi = key->len == strlen(key->text) ? find_opt(path) : -1;
        if (oi >= 0) {
            if (apply_yaml(st, (size_t)oi, v)) return -1;
            continue;
        }
        if (key->len == strlen(key->text) && is_section(path)) {
            if (node_is_null(v)) continue;
            if (v->kind != NODE_MAP) {
                node_describe(v, got, sizeof got);
                return fail_at(st, src, "expected a mapping of options, got %s", got);
            }
            if (walk_section(st, v, path)) return -1;
            continue;
        }
        char hint[128];
        if (suggest(st, path, false, hint, sizeof hint))
            return fail_at(st, src, "unknown option; did you mean %s?", hint);
        return fail_at(st, src, "unknown option (config.sample.yaml lists them all)");
    }
    return 0;
}

/* ---- the environment ---- */

static const char *env_lookup(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (; *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=') return *env + n + 1;
    return NULL;
}

static int apply_env(parse_state *st, char *const *env)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *v = env_lookup(env, st->env[i]);
        if (!v || !*v) continue;
        if (set_value(st, i, v, strlen(v), (val_src){st->env[i], 0})) return -1;
        if (i == OPT_AS_TOKEN || i == OPT_HS_TOKEN) st->tok[i - OPT_AS_TOKEN].in_yaml = false;
    }
    /* A misspelt variable of a known section is an error too; other WABRIDGE_* are not ours. */
    for (; *env; env++) {
        const char *e = *env, *eq = strchr(e, '=');
        if (strncmp(e, "WABRIDGE_", 9) != 0 || !eq || eq[1] == '\0') continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - e > 120 ? 120 : eq - e), e);
        bool known = false, in_section = false;
        for (size_t i = 0; i < N_OPTS && !known; i++) {
            known = strcmp(name, st->env[i]) == 0;
            size_t sec = strcspn(opts[i].path, ".");
            in_section = in_section ||
                         (strncasecmp(name + 9, opts[i].path, sec) == 0 && name[9 + sec] == '_');
        }
        if (known || !in_section) continue;
        char hint[128];
        val_src src = {name, 0};
        if (suggest(st, name, true, hint, sizeof hint))
            return fail_at(st, src, "unknown environment variable; did you mean %s?", hint);
        return fail_at(st, src, "unknown environment variable (no such option)");
    }
    return 0;
}

/* ---- checks across options ---- */

static int final_checks(parse_state *st)
{
    br_config *c = st->c;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (!(opts[i].flags & OPT_REQUIRED) || *(char **)field(c, &opts[i])) continue;
        if (st->src[i].line) return fail_at(st, st->src[i], "required option has no value");
        return fail(st, "%s: required option is missing (set it in the file or in %s)",
                    opts[i].path, st->env[i]);
    }
    bool gen_as = strcmp(c->as_token, CFG_GENERATE) == 0;
    bool gen_hs = strcmp(c->hs_token, CFG_GENERATE) == 0;
    if (!(st->flags & BR_CONFIG_ALLOW_GENERATE) && (gen_as || gen_hs))
        return fail_at(st, st->src[gen_as ? OPT_AS_TOKEN : OPT_HS_TOKEN],
                       "is still \"generate\": run `wabridge -g` to generate the tokens and the "
                       "registration file");
    if (!gen_as && strcmp(c->as_token, c->hs_token) == 0)
        return fail_at(st, st->src[OPT_HS_TOKEN], "must differ from appservice.as_token");
    /* double puppeting: the bridge talks to one homeserver, so only its users can be puppeted */
    for (size_t i = 0; i < c->n_dp_secrets; i++) {
        if (strcasecmp(c->dp_secrets[i].server, c->hs_domain) == 0) continue;
        char q[256];
        quote_value(q, sizeof q, c->dp_secrets[i].server, strlen(c->dp_secrets[i].server));
        return fail_at(st, st->src[find_opt("double_puppet.secrets")],
                       "entry %s: only the bridge's own homeserver (homeserver.domain \"%s\") "
                       "can be double puppeted: the bridge talks to no other homeserver",
                       q, c->hs_domain);
    }
    /* the bot must not be one of the ghosts */
    const char *t = c->username_template, *ph = strstr(t, CFG_PLACEHOLDER);
    size_t pre = (size_t)(ph - t), suf = strlen(ph + strlen(CFG_PLACEHOLDER));
    size_t bl = strlen(c->bot_username);
    if (bl > pre + suf && strncmp(c->bot_username, t, pre) == 0 &&
        strcmp(c->bot_username + bl - suf, ph + strlen(CFG_PLACEHOLDER)) == 0) {
        char q[256];
        quote_value(q, sizeof q, c->bot_username, bl);
        return fail_at(st, st->src[OPT_BOT_USERNAME],
                       "%s falls inside the ghost namespace of appservice.username_template "
                       "(\"%s\"); choose a name that does not match it",
                       q, t);
    }
    return 0;
}

/* ---- parsing ---- */

static int parse_internal(const char *yaml, size_t len, char *const *env, unsigned flags,
                          br_config *out, char *err, size_t errcap, tok_pos tok[2])
{
    char dummy[8];
    if (!err || !errcap) {
        err = dummy;
        errcap = sizeof dummy;
    }
    err[0] = '\0';
    parse_state *st = calloc(1, sizeof *st);
    if (!out) {
        free(st);
        snprintf(err, errcap, "no config to fill");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!st) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    assert(strcmp(opts[OPT_AS_TOKEN].path, "appservice.as_token") == 0);
    assert(strcmp(opts[OPT_HS_TOKEN].path, "appservice.hs_token") == 0);
    assert(strcmp(opts[OPT_BOT_USERNAME].path, "appservice.bot.username") == 0);
    st->c = out;
    st->err = err;
    st->errcap = errcap;
    st->flags = flags;
    for (size_t i = 0; i < N_OPTS; i++) {
        size_t k = 0;
        memcpy(st->env[i], "WABRIDGE_", 9);
        for (const char *p = opts[i].path; *p && 9 + k + 1 < sizeof st->env[i]; p++, k++) {
            char ch = *p == '.' ? '_' : *p;
            st->env[i][9 + k] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
        }
        st->env[i][9 + k] = '\0';
    }
    cfg_node *root = NULL;
    int rc = -1;
    if (!yaml && len) {
        fail(st, "no configuration text");
        goto out;
    }
    if (set_defaults(st)) goto out;
    if (load_tree(st, yaml ? yaml : "", yaml ? len : 0, &root)) goto out;
    if (root && !node_is_null(root)) {
        if (root->kind != NODE_MAP) {
            char got[256];
            node_describe(root, got, sizeof got);
            fail(st,
                 "the configuration must be a mapping of sections (homeserver:, appservice:, "
                 "...), got %s (line %zu)",
                 got, root->line);
            goto out;
        }
        if (walk_section(st, root, "")) goto out;
    }
    if (env && apply_env(st, env)) goto out;
    if (final_checks(st)) goto out;
    if (tok) memcpy(tok, st->tok, sizeof st->tok);
    rc = 0;
out:
    node_free(root);
    free(st);
    if (rc) br_config_free(out);
    return rc;
}

int br_config_parse_ex(const char *yaml, size_t len, char *const *env, unsigned flags,
                       br_config *out, char *err, size_t errcap)
{
    return parse_internal(yaml, len, env, flags, out, err, errcap, NULL);
}

int br_config_parse(const char *yaml, size_t len, char *const *env, br_config *out, char *err,
                    size_t errcap)
{
    return parse_internal(yaml, len, env, 0, out, err, errcap, NULL);
}

/* Reads a whole regular file (at most CFG_MAX_FILE bytes); NUL-terminated. */
static char *read_file(const char *path, size_t *len, struct stat *st_out, char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, cap, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, cap, "%s is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size > CFG_MAX_FILE) {
        snprintf(err, cap, "%s is larger than %d bytes", path, CFG_MAX_FILE);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        snprintf(err, cap, "cannot read %s: %s", path, buf ? "short read" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    if (st_out) *st_out = st;
    return buf;
}

int br_config_load(const char *path, char *const *env, br_config *out, char *err, size_t errcap)
{
    char dummy[8];
    if (!err || !errcap) {
        err = dummy;
        errcap = sizeof dummy;
    }
    if (out) memset(out, 0, sizeof *out);
    if (!path || !out) {
        snprintf(err, errcap, "no config path");
        return -1;
    }
    size_t len;
    char *text = read_file(path, &len, NULL, err, errcap);
    if (!text) return -1;
    char msg[1024];
    int rc = br_config_parse(text, len, env, out, msg, sizeof msg);
    if (rc) snprintf(err, errcap, "%s: %s", path, msg);
    free(text);
    return rc;
}

void br_config_free(br_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].kind != OPT_STR) continue;
        char **slot = field(c, &opts[i]);
        if (opts[i].flags & OPT_SECRET)
            free_secret(*slot);
        else
            free(*slot);
    }
    perms_free(c);
    dp_secrets_free(c);
    memset(c, 0, sizeof *c);
}

/* ---- double puppeting ---- */

const char *br_config_dp_as_token(const br_config *c, const char *mxid)
{
    const char *colon = mxid && mxid[0] == '@' ? strchr(mxid + 1, ':') : NULL;
    if (!c || !colon || colon == mxid + 1 || colon[1] == '\0') return NULL;
    for (size_t i = 0; i < c->n_dp_secrets; i++)
        if (strcasecmp(c->dp_secrets[i].server, colon + 1) == 0) return c->dp_secrets[i].as_token;
    return NULL;
}

/* ---- permissions ---- */

br_perm br_config_perm(const br_config *c, const char *mxid)
{
    if (!c || !mxid || mxid[0] != '@') return BR_PERM_NONE;
    const char *colon = strchr(mxid + 1, ':');
    if (!colon || colon == mxid + 1 || colon[1] == '\0') return BR_PERM_NONE;
    const char *domain = colon + 1;
    int best = -1;
    br_perm level = BR_PERM_NONE;
    for (size_t i = 0; i < c->n_perms; i++) {
        const char *who = c->perms[i].who;
        int rank = -1;
        if (strcmp(who, "*") == 0)
            rank = 0;
        else if (who[0] == '@')
            rank = strcmp(who, mxid) == 0 ? 2 : -1;
        else
            rank = strcasecmp(who, domain) == 0 ? 1 : -1;
        if (rank > best) {
            best = rank;
            level = c->perms[i].level;
        }
    }
    return level;
}

const char *br_perm_name(br_perm p)
{
    switch (p) {
    case BR_PERM_NONE: return "none";
    case BR_PERM_RELAY: return "relay";
    case BR_PERM_COMMANDS: return "commands";
    case BR_PERM_USER: return "user";
    case BR_PERM_ADMIN: return "admin";
    }
    return "none";
}

/* ---- the sample ---- */

const char *br_config_example(void)
{
    return br_config_example_text;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

int br_config_write_example(const char *path, char *err, size_t errcap)
{
    char dummy[8];
    if (!err || !errcap) {
        err = dummy;
        errcap = sizeof dummy;
    }
    if (!path || !*path) {
        snprintf(err, errcap, "no path for the example config");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            snprintf(err, errcap, "%s already exists: refusing to overwrite it", path);
        else
            snprintf(err, errcap, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    const char *t = br_config_example();
    bool ok = write_all(fd, t, strlen(t));
    ok = fsync(fd) == 0 && ok;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

/* ---- ghosts and display names ---- */

int br_config_ghost_localpart(const br_config *c, const char *id, char *out, size_t cap)
{
    if (!c || !c->username_template || !id || !out || !cap) return -1;
    const char *t = c->username_template, *ph = strstr(t, CFG_PLACEHOLDER);
    if (!ph || !valid_wa_id(id, strlen(id))) return -1;
    int n = snprintf(out, cap, "%.*s%s%s", (int)(ph - t), t, id, ph + strlen(CFG_PLACEHOLDER));
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

bool br_config_ghost_id(const br_config *c, const char *localpart, char *id, size_t cap)
{
    if (!c || !c->username_template || !localpart || !id || !cap) return false;
    const char *t = c->username_template, *ph = strstr(t, CFG_PLACEHOLDER);
    if (!ph) return false;
    const char *suffix = ph + strlen(CFG_PLACEHOLDER);
    size_t pre = (size_t)(ph - t), suf = strlen(suffix), n = strlen(localpart);
    if (n <= pre + suf || strncmp(localpart, t, pre) != 0 ||
        strcmp(localpart + n - suf, suffix) != 0)
        return false;
    size_t idlen = n - pre - suf;
    if (!valid_wa_id(localpart + pre, idlen) || idlen >= cap) return false;
    memcpy(id, localpart + pre, idlen);
    id[idlen] = '\0';
    return true;
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

/* Appends s to the growing buffer, control characters as spaces. */
static bool dn_append(wb_buf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!wb_buf_u8(b, (ch < 0x20 || ch == 0x7f) ? ' ' : ch)) return false;
    }
    return true;
}

/* Removes empty "()" / "[]" (spaces inside allowed), collapses spaces, trims; in place. */
static void dn_tidy(char *s)
{
    bool removed = true;
    while (removed) { /* a removal may leave spaces or brackets to tidy: go again */
        removed = false;
        char *w = s;
        for (char *r = s; *r;) {
            if (*r == ' ' && (w == s || w[-1] == ' ')) {
                r++;
                continue;
            }
            if (*r == '(' || *r == '[') {
                char close = *r == '(' ? ')' : ']';
                char *q = r + 1;
                while (*q == ' ')
                    q++;
                if (*q == close) {
                    r = q + 1;
                    removed = true;
                    continue;
                }
            }
            *w++ = *r++;
        }
        while (w > s && w[-1] == ' ')
            w--;
        *w = '\0';
    }
}

int br_config_displayname(const br_config *c, const char *push_name, const char *contact_name,
                          const char *phone, const char *jid, char *out, size_t cap)
{
    if (!out || !cap) return -1;
    out[0] = '\0';
    const char *t = c && c->displayname_template ? c->displayname_template : "{{.PushName}} (WA)";
    char *phone_fmt = NULL;
    if (nonempty(phone)) {
        size_t n = strlen(phone);
        phone_fmt = malloc(n + 2);
        if (!phone_fmt) return -1;
        snprintf(phone_fmt, n + 2, "%s%s", phone[0] == '+' ? "" : "+", phone);
    }
    const char *fallback = phone_fmt ? phone_fmt : nonempty(jid);
    const char *values[N_DN_PLACEHOLDERS] = {
        nonempty(push_name)      ? push_name
        : nonempty(contact_name) ? contact_name
                                 : fallback,
        nonempty(contact_name) ? contact_name
        : nonempty(push_name)  ? push_name
                               : fallback,
        phone_fmt,
        nonempty(jid),
    };
    wb_buf b;
    wb_buf_init(&b);
    for (const char *p = t; *p;) {
        int i = p[0] == '{' ? dn_placeholder_at(p) : -1;
        if (i >= 0) {
            dn_append(&b, values[i]);
            p += strlen(dn_placeholders[i]);
        } else {
            wb_buf_u8(&b, (uint8_t)*p++);
        }
    }
    wb_buf_u8(&b, 0);
    free(phone_fmt);
    if (b.failed) {
        wb_buf_free(&b);
        return -1;
    }
    char *s = (char *)b.data;
    dn_tidy(s);
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] starts a character: cut before it */
        while (n > 0 && s[n - 1] == ' ')
            n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    wb_buf_free(&b);
    return 0;
}

int br_config_engine_workers(const br_config *c)
{
    if (c && c->engine_workers > 0) return c->engine_workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
}

int br_config_portal_workers(const br_config *c)
{
    if (c && c->portal_workers > 0) return c->portal_workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 2048 ? 4096 : 2 * n) : 2;
}

/* ---- wabridge -g ---- */

/* Byte offset of libyaml's character index ci in a UTF-8 text (a leading BOM is not counted). */
static size_t char_to_byte(const char *s, size_t len, size_t ci)
{
    size_t b = (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    for (size_t c = 0; c < ci && b < len; c++) {
        b++;
        while (b < len && ((unsigned char)s[b] & 0xC0) == 0x80)
            b++;
    }
    return b;
}

static bool is_generate_literal(const char *p, size_t n)
{
    return (n == 8 && memcmp(p, CFG_GENERATE, 8) == 0) ||
           (n == 10 && (p[0] == '"' || p[0] == '\'') && p[9] == p[0] &&
            memcmp(p + 1, CFG_GENERATE, 8) == 0);
}

/* Writes text to path through a temporary file in the same folder, with mode/owner of st. */
static int replace_file(const char *path, const char *text, size_t len, const struct stat *st,
                        char *err, size_t cap)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    snprintf(tmp, pl + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, cap, "cannot create a temporary file next to %s: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    bool ok = fchmod(fd, st->st_mode & 07777) == 0;
    if (fchown(fd, st->st_uid, st->st_gid) != 0) { /* best effort: only root may give away */
    }
    ok = ok && write_all(fd, text, len);
    ok = fsync(fd) == 0 && ok;
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        snprintf(err, cap, "cannot rewrite %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    /* make the rename durable */
    char *dirbuf = strdup(path);
    if (dirbuf) {
        int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dirbuf);
    }
    return 0;
}

/* Replaces the "generate" tokens of text (positions in tok) with fresh ones; returns the new text
 * (and sets cfg's tokens) or NULL with err. */
static char *rewrite_tokens(const char *text, size_t len, const tok_pos tok[2], char *gen[2],
                            size_t *new_len, char *err, size_t cap)
{
    size_t b0[2] = {0, 0}, b1[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (!gen[k]) continue;
        const char *name = k == 0 ? "appservice.as_token" : "appservice.hs_token";
        b0[k] = char_to_byte(text, len, tok[k].start);
        b1[k] = char_to_byte(text, len, tok[k].end);
        if (!tok[k].in_yaml || !tok[k].rewritable || b1[k] < b0[k] ||
            !is_generate_literal(text + b0[k], b1[k] - b0[k])) {
            snprintf(err, cap,
                     "%s: cannot find the value \"generate\" to replace; write it as "
                     "`%s: generate` on one line",
                     name, name + strlen("appservice."));
            return NULL;
        }
    }
    wb_buf b;
    wb_buf_init(&b);
    int first = (gen[0] && gen[1]) ? (b0[0] < b0[1] ? 0 : 1) : (gen[0] ? 0 : 1);
    int order[2] = {first, 1 - first};
    size_t at = 0;
    for (int i = 0; i < 2; i++) {
        int k = order[i];
        if (!gen[k]) continue;
        wb_buf_append(&b, text + at, b0[k] - at);
        wb_buf_u8(&b, '"');
        wb_buf_append(&b, gen[k], strlen(gen[k]));
        wb_buf_u8(&b, '"');
        at = b1[k];
    }
    wb_buf_append(&b, text + at, len - at);
    wb_buf_u8(&b, 0);
    if (b.failed) {
        wb_buf_free(&b);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    *new_len = b.len - 1;
    return (char *)wb_buf_steal(&b, &(size_t){0});
}

int br_config_generate_registration_env(const char *config_path, const char *reg_path,
                                        char *const *env, char *err, size_t errcap)
{
    char dummy[8];
    if (!err || !errcap) {
        err = dummy;
        errcap = sizeof dummy;
    }
    if (!config_path || !reg_path) {
        snprintf(err, errcap, "no config or registration path");
        return -1;
    }
    /* a symlinked config is rewritten where it really lives */
    char *real = realpath(config_path, NULL);
    if (!real) {
        snprintf(err, errcap, "cannot open %s: %s", config_path, strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t len = 0, new_len = 0;
    struct stat st;
    char *text = read_file(real, &len, &st, err, errcap), *new_text = NULL;
    br_config cfg, check;
    memset(&cfg, 0, sizeof cfg);
    memset(&check, 0, sizeof check);
    mx_registration reg;
    memset(&reg, 0, sizeof reg);
    char *prefix = NULL, msg[1024];
    tok_pos tok[2];
    if (!text) goto out;
    if (parse_internal(text, len, env, BR_CONFIG_ALLOW_GENERATE, &cfg, msg, sizeof msg, tok)) {
        snprintf(err, errcap, "%s: %s", config_path, msg);
        goto out;
    }
    for (int k = 0; k < 2; k++) {
        const char *v = k == 0 ? cfg.as_token : cfg.hs_token;
        if (strcmp(v, CFG_GENERATE) == 0 && !tok[k].in_yaml) {
            snprintf(err, errcap,
                     "%s is \"generate\": generated tokens can only be written back "
                     "into the config file; put \"generate\" there or give a token",
                     k == 0 ? "WABRIDGE_APPSERVICE_AS_TOKEN" : "WABRIDGE_APPSERVICE_HS_TOKEN");
            goto out;
        }
    }
    const char *t = cfg.username_template, *ph = strstr(t, CFG_PLACEHOLDER);
    prefix = strndup(t, (size_t)(ph - t));
    mx_registration_params params = {
        .id = cfg.as_id,
        .url = cfg.as_address,
        .domain = cfg.hs_domain,
        .bot_localpart = cfg.bot_username,
        .ghost_prefix = prefix,
    };
    int mrc = prefix ? mx_registration_generate(&params, &reg) : MX_ERR_NOMEM;
    if (mrc != MX_OK) {
        snprintf(err, errcap, "cannot generate the registration: %s", mx_strerror(mrc));
        goto out;
    }
    /* reg holds two fresh tokens: they replace "generate"; configured tokens replace them */
    char *gen[2] = {NULL, NULL};
    char **slots[2] = {&reg.as_token, &reg.hs_token};
    const char *conf[2] = {cfg.as_token, cfg.hs_token};
    for (int k = 0; k < 2; k++) {
        if (strcmp(conf[k], CFG_GENERATE) == 0) {
            gen[k] = *slots[k];
            continue;
        }
        char *copy = strdup(conf[k]);
        if (!copy) {
            snprintf(err, errcap, "out of memory");
            goto out;
        }
        free_secret(*slots[k]);
        *slots[k] = copy;
    }
    if (gen[0] || gen[1]) {
        new_text = rewrite_tokens(text, len, tok, gen, &new_len, err, errcap);
        if (!new_text) goto out;
        /* what we write must read back with exactly these tokens */
        if (parse_internal(new_text, new_len, env, 0, &check, msg, sizeof msg, NULL) ||
            strcmp(check.as_token, reg.as_token) != 0 ||
            strcmp(check.hs_token, reg.hs_token) != 0) {
            snprintf(err, errcap,
                     "%s: the rewritten config does not read back (%s); left "
                     "unchanged",
                     config_path, msg);
            goto out;
        }
        if (replace_file(real, new_text, new_len, &st, err, errcap)) goto out;
    }
    mrc = mx_registration_write(&reg, reg_path);
    if (mrc != MX_OK) {
        snprintf(err, errcap, "cannot write the registration file %s: %s (%s)", reg_path,
                 mx_strerror(mrc), strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (new_text) {
        memset(new_text, 0, new_len);
        free(new_text);
    }
    if (text) memset(text, 0, len);
    free(text);
    free(real);
    free(prefix);
    br_config_free(&cfg);
    br_config_free(&check);
    mx_registration_free(&reg);
    return rc;
}

extern char **environ;

int br_config_generate_registration(const char *config_path, const char *reg_path, char *err,
                                    size_t errcap)
{
    return br_config_generate_registration_env(config_path, reg_path, environ, err, errcap);
}
