/*
 * tests/matrix/test_mx_registration.c - the registration file: generated values, the YAML read
 * back by libyaml independently of mx_registration_load, the namespace regexes (escaped domain,
 * anchored) run through POSIX regexec, file mode, and the load round trip.
 */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "matrix/err.h"
#include "matrix/registration.h"
#include "tests/unit/check.h"

/* Independent YAML lookup: value of a dotted path of mapping keys ("namespaces.users"); for
 * sequences, index i picks the element. Returns the node or NULL. */
static yaml_node_t *ylookup(yaml_document_t *d, yaml_node_t *n, const char *key)
{
    if (!n || n->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *yscalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdef", *s)) return false;
    return true;
}

static bool matches(const char *re, const char *s)
{
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0) return false;
    bool m = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return m;
}

int main(void)
{
    char *esc = mx_regex_escape("my-server.example.org");
    CHECK_STR(esc, "my\\-server\\.example\\.org");
    free(esc);

    mx_registration_params p = {.url = "http://127.0.0.1:29318", .domain = "example.org"};
    mx_registration r, r2;
    CHECK_INT(mx_registration_generate(&p, &r), MX_OK);
    CHECK_INT(mx_registration_generate(&p, &r2), MX_OK);
    CHECK(is_hex64(r.as_token));
    CHECK(is_hex64(r.hs_token));
    CHECK(strcmp(r.as_token, r.hs_token) != 0);
    CHECK(strcmp(r.as_token, r2.as_token) != 0);
    mx_registration_free(&r2);
    mx_registration_params bad = {.url = "http://x", .domain = ""};
    CHECK_INT(mx_registration_generate(&bad, &r2), MX_ERR_INVALID);

    char path[] = "/tmp/mxregXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_INT(mx_registration_write(&r, path), MX_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* read it back with libyaml's document API, independently */
    FILE *f = fopen(path, "rb");
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    CHECK(yaml_parser_load(&parser, &doc) == 1);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    CHECK_STR(yscalar(ylookup(&doc, root, "id")), "whatsapp");
    CHECK_STR(yscalar(ylookup(&doc, root, "url")), "http://127.0.0.1:29318");
    CHECK_STR(yscalar(ylookup(&doc, root, "as_token")), r.as_token);
    CHECK_STR(yscalar(ylookup(&doc, root, "hs_token")), r.hs_token);
    CHECK_STR(yscalar(ylookup(&doc, root, "sender_localpart")), "whatsappbot");
    CHECK_STR(yscalar(ylookup(&doc, root, "rate_limited")), "false");
    CHECK_STR(yscalar(ylookup(&doc, root, "receive_ephemeral")), "true");
    CHECK_STR(yscalar(ylookup(&doc, root, "de.sorunome.msc2409.push_ephemeral")), "true");
    yaml_node_t *users = ylookup(&doc, ylookup(&doc, root, "namespaces"), "users");
    CHECK(users && users->type == YAML_SEQUENCE_NODE);
    const char *re[2] = {NULL, NULL};
    if (users && users->type == YAML_SEQUENCE_NODE) {
        CHECK_INT(users->data.sequence.items.top - users->data.sequence.items.start, 2);
        for (int i = 0; i < 2; i++) {
            yaml_node_t *e = yaml_document_get_node(&doc, users->data.sequence.items.start[i]);
            CHECK_STR(yscalar(ylookup(&doc, e, "exclusive")), "true");
            re[i] = yscalar(ylookup(&doc, e, "regex"));
        }
    }
    CHECK_STR(re[0], "^@whatsappbot:example\\.org$");
    CHECK_STR(re[1], "^@whatsapp_.+:example\\.org$");
    if (re[1]) {
        CHECK(matches(re[1], "@whatsapp_4915112345678:example.org"));
        CHECK(matches(re[1], "@whatsapp_lid-123456789:example.org")); /* LID ghosts */
        CHECK(!matches(re[1], "@whatsapp_:example.org"));
        CHECK(!matches(re[1], "@whatsapp_1:exampleXorg")); /* the dot is escaped */
        CHECK(!matches(re[1], "@whatsapp_1:example.org.evil"));
        CHECK(!matches(re[1], "@alice:example.org"));
        CHECK(!matches(re[1], "x@whatsapp_1:example.org"));
    }
    if (re[0]) {
        CHECK(matches(re[0], "@whatsappbot:example.org"));
        CHECK(!matches(re[0], "@whatsappbot2:example.org"));
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);

    /* round trip through mx_registration_load */
    mx_registration back;
    CHECK_INT(mx_registration_load(path, &back), MX_OK);
    CHECK_STR(back.id, r.id);
    CHECK_STR(back.url, r.url);
    CHECK_STR(back.as_token, r.as_token);
    CHECK_STR(back.hs_token, r.hs_token);
    CHECK_STR(back.sender_localpart, "whatsappbot");
    CHECK(!back.rate_limited);
    CHECK(back.receive_ephemeral);
    CHECK_INT(back.n_users, 2);
    CHECK_STR(back.users[1].regex, r.users[1].regex);
    CHECK(back.users[1].exclusive);
    mx_registration_free(&back);

    /* a quote in a value survives the single-quoted style */
    free(r.id);
    r.id = strdup("it's");
    CHECK_INT(mx_registration_write(&r, path), MX_OK);
    CHECK_INT(mx_registration_load(path, &back), MX_OK);
    CHECK_STR(back.id, "it's");
    mx_registration_free(&back);

    /* missing required keys / not YAML / no file */
    f = fopen(path, "w");
    fputs("id: x\nurl: null\n", f);
    fclose(f);
    CHECK_INT(mx_registration_load(path, &back), MX_ERR_BAD_JSON);
    f = fopen(path, "w");
    fputs("id: [unclosed\n", f);
    fclose(f);
    CHECK_INT(mx_registration_load(path, &back), MX_ERR_IO);
    unlink(path);
    CHECK_INT(mx_registration_load(path, &back), MX_ERR_IO);
    mx_registration_free(&r);
    return CHECK_DONE();
}
