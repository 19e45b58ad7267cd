/*
 * matrix/registration.c - registration YAML: generation with getrandom, writing by hand (a fixed
 * shape, every string single-quoted), reading with libyaml's document API.
 */
#include "matrix/registration.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <yaml.h>

#include "matrix/err.h"
#include "util/bytes.h"

char *mx_regex_escape(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1);
    if (!out) return NULL;
    char *o = out;
    for (; *s; s++) {
        if (strchr("\\.^$|?*+()[]{}-", *s)) *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static int random_token(char **out)
{
    uint8_t raw[32];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return MX_ERR_IO;
        }
        got += (size_t)r;
    }
    *out = malloc(2 * sizeof raw + 1);
    if (!*out) return MX_ERR_NOMEM;
    wb_hex_encode(raw, sizeof raw, *out);
    memset(raw, 0, sizeof raw);
    return MX_OK;
}

static char *fmt(const char *f, const char *a, const char *b)
{
    int n = snprintf(NULL, 0, f, a, b);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) snprintf(s, (size_t)n + 1, f, a, b);
    return s;
}

int mx_registration_generate(const mx_registration_params *p, mx_registration *out)
{
    memset(out, 0, sizeof *out);
    if (!p || !p->url || !p->domain || !*p->domain) return MX_ERR_INVALID;
    const char *bot = p->bot_localpart ? p->bot_localpart : "whatsappbot";
    const char *prefix = p->ghost_prefix ? p->ghost_prefix : "whatsapp_";
    char *dom = mx_regex_escape(p->domain);
    char *pre = mx_regex_escape(prefix);
    char *botq = mx_regex_escape(bot);
    int rc = MX_ERR_NOMEM;
    if (!dom || !pre || !botq) goto out;
    out->id = strdup(p->id ? p->id : "whatsapp");
    out->url = strdup(p->url);
    out->sender_localpart = strdup(bot);
    out->users[0].regex = fmt("^@%s:%s$", botq, dom);
    out->users[0].exclusive = true;
    out->users[1].regex = fmt("^@%s.+:%s$", pre, dom);
    out->users[1].exclusive = true;
    out->n_users = 2;
    out->rate_limited = false;
    out->receive_ephemeral = true;
    if (!out->id || !out->url || !out->sender_localpart || !out->users[0].regex ||
        !out->users[1].regex)
        goto out;
    if ((rc = random_token(&out->as_token)) != MX_OK) goto out;
    if ((rc = random_token(&out->hs_token)) != MX_OK) goto out;
    rc = MX_OK;
out:
    free(dom);
    free(pre);
    free(botq);
    if (rc != MX_OK) mx_registration_free(out);
    return rc;
}

/* Writes s single-quoted ('' stands for a quote inside). */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void put_namespaces(FILE *f, const char *name, const mx_reg_namespace *ns, size_t n)
{
    fprintf(f, "  %s:", name);
    if (!n) {
        fputs(" []\n", f);
        return;
    }
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "    - exclusive: %s\n      regex: ", ns[i].exclusive ? "true" : "false");
        put_quoted(f, ns[i].regex);
        fputc('\n', f);
    }
}

int mx_registration_write(const mx_registration *r, const char *path)
{
    if (!r || !path || !r->id || !r->as_token || !r->hs_token || !r->sender_localpart)
        return MX_ERR_INVALID;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    if (!tmp) return MX_ERR_NOMEM;
    snprintf(tmp, plen + 8, "%s.tmpXX", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        free(tmp);
        return MX_ERR_IO;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return MX_ERR_IO;
    }
    fputs("# wabridge appservice registration: give this file to the homeserver.\n", f);
    fputs("# It holds secrets (as_token, hs_token): keep it private.\n", f);
    fputs("id: ", f);
    put_quoted(f, r->id);
    fputs("\nurl: ", f);
    if (r->url)
        put_quoted(f, r->url);
    else
        fputs("null", f);
    fputs("\nas_token: ", f);
    put_quoted(f, r->as_token);
    fputs("\nhs_token: ", f);
    put_quoted(f, r->hs_token);
    fputs("\nsender_localpart: ", f);
    put_quoted(f, r->sender_localpart);
    fprintf(f, "\nrate_limited: %s\n", r->rate_limited ? "true" : "false");
    fprintf(f, "receive_ephemeral: %s\n", r->receive_ephemeral ? "true" : "false");
    fprintf(f, "de.sorunome.msc2409.push_ephemeral: %s\n", r->receive_ephemeral ? "true" : "false");
    fputs("namespaces:\n", f);
    put_namespaces(f, "users", r->users, r->n_users);
    put_namespaces(f, "aliases", r->aliases, r->n_aliases);
    put_namespaces(f, "rooms", NULL, 0);
    bool ok = !ferror(f);
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) unlink(tmp);
    free(tmp);
    return ok ? MX_OK : MX_ERR_IO;
}

/* ---- reading ---- */

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(d, yaml_document_get_node(d, p->key));
        if (k && strcmp(k, key) == 0) return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static bool is_true(const char *v)
{
    return v && (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "yes") == 0);
}

static char *dup_scalar(yaml_document_t *d, yaml_node_t *map, const char *key, bool *nomem)
{
    yaml_node_t *n = map_get(d, map, key);
    if (!n || n->type != YAML_SCALAR_NODE) return NULL;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp((char *)n->data.scalar.value, "null") == 0 ||
         strcmp((char *)n->data.scalar.value, "~") == 0))
        return NULL;
    char *s = strdup((const char *)n->data.scalar.value);
    if (!s) *nomem = true;
    return s;
}

static void read_namespaces(yaml_document_t *d, yaml_node_t *seq, mx_reg_namespace *ns, size_t *n,
                            bool *nomem)
{
    *n = 0;
    if (!seq || seq->type != YAML_SEQUENCE_NODE) return;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        if (*n == MX_REG_MAX_NAMESPACES) return;
        yaml_node_t *e = yaml_document_get_node(d, *it);
        char *re = dup_scalar(d, e, "regex", nomem);
        if (!re) continue;
        ns[*n].regex = re;
        ns[*n].exclusive = is_true(scalar(d, map_get(d, e, "exclusive")));
        (*n)++;
    }
}

int mx_registration_load(const char *path, mx_registration *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return MX_ERR_IO;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return MX_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    int ok = yaml_parser_load(&parser, &doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!ok) return MX_ERR_IO;
    int rc = MX_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = MX_ERR_BAD_JSON;
        goto out;
    }
    bool nomem = false;
    out->id = dup_scalar(&doc, root, "id", &nomem);
    out->url = dup_scalar(&doc, root, "url", &nomem);
    out->as_token = dup_scalar(&doc, root, "as_token", &nomem);
    out->hs_token = dup_scalar(&doc, root, "hs_token", &nomem);
    out->sender_localpart = dup_scalar(&doc, root, "sender_localpart", &nomem);
    const char *rl = scalar(&doc, map_get(&doc, root, "rate_limited"));
    out->rate_limited = rl ? is_true(rl) : true; /* the spec's default is rate limited */
    out->receive_ephemeral =
        is_true(scalar(&doc, map_get(&doc, root, "receive_ephemeral"))) ||
        is_true(scalar(&doc, map_get(&doc, root, "de.sorunome.msc2409.push_ephemeral")));
    yaml_node_t *ns = map_get(&doc, root, "namespaces");
    read_namespaces(&doc, map_get(&doc, ns, "users"), out->users, &out->n_users, &nomem);
    read_namespaces(&doc, map_get(&doc, ns, "aliases"), out->aliases, &out->n_aliases, &nomem);
    if (nomem)
        rc = MX_ERR_NOMEM;
    else if (!out->id || !out->as_token || !out->hs_token || !out->sender_localpart)
        rc = MX_ERR_BAD_JSON;
out:
    yaml_document_delete(&doc);
    if (rc != MX_OK) mx_registration_free(out);
    return rc;
}

static void free_secret(char *s)
{
    if (!s) return;
    memset(s, 0, strlen(s));
    free(s);
}

void mx_registration_free(mx_registration *r)
{
    if (!r) return;
    free(r->id);
    free(r->url);
    free_secret(r->as_token);
    free_secret(r->hs_token);
    free(r->sender_localpart);
    for (size_t i = 0; i < r->n_users; i++)
        free(r->users[i].regex);
    for (size_t i = 0; i < r->n_aliases; i++)
        free(r->aliases[i].regex);
    memset(r, 0, sizeof *r);
}
