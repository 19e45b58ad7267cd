/*
 * tests/bridge/test_config.c - the daemon's configuration (bridge/config.h): the sample and its
 * defaults, every class of error with its message, environment overrides, permissions, the ghost
 * and display name templates, `-e` (write the sample) and `-g` (tokens written back in place,
 * registration file) on temporary copies.
 */
#include "bridge/config.h"
#include "matrix/err.h"
#include "matrix/registration.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef WB_CONFIG_SAMPLE
#error "WB_CONFIG_SAMPLE (the path of config.sample.yaml) comes from bridge/config.cmake"
#endif

/* The required options only; line numbers matter to the error tests (appservice extras start at
 * line 7; with no extras the tail starts at line 9). */
#define HEAD                                                                                       \
    "homeserver:\n"                                                                                \
    "  address: http://hs:8008\n"                                                                  \
    "  domain: example.org\n"                                                                      \
    "appservice:\n"                                                                                \
    "  as_token: astok\n"                                                                          \
    "  hs_token: hstok\n"
#define DB       "database:\n  uri: postgres://u@db/wabridge\n"
#define MIN_YAML HEAD DB

static char errbuf[1024];

/* HEAD + as_extra + DB + tail */
static char *cfg_text(const char *as_extra, const char *tail)
{
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s%s%s%s", HEAD, as_extra, DB, tail);
    return buf;
}

static bool all_zero(const br_config *c)
{
    static const br_config zero;
    return memcmp(c, &zero, sizeof zero) == 0;
}

/* Parses text that must fail; returns the message (and checks *out was left zeroed). */
static const char *parse_fail(const char *text, size_t len, char *const *env, unsigned flags)
{
    br_config c;
    memset(&c, 0x5a, sizeof c);
    errbuf[0] = '\0';
    int rc = br_config_parse_ex(text, len, env, flags, &c, errbuf, sizeof errbuf);
    CHECK_INT(rc, -1);
    CHECK(all_zero(&c));
    if (rc == 0) br_config_free(&c);
    return errbuf;
}

#define EXPECT_ERR(text, env, want)                                                                \
    do {                                                                                           \
        const char *e_ = parse_fail((text), strlen(text), (env), 0);                               \
        if (!strstr(e_, (want))) {                                                                 \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: error \"%s\"\n    does not contain \"%s\"\n", __FILE__,        \
                    __LINE__, e_, (want));                                                         \
        } else {                                                                                   \
            check_passed++;                                                                        \
        }                                                                                          \
    } while (0)

#define EXPECT_ERR_EXACT(text, env, want)                                                          \
    CHECK_STR(parse_fail((text), strlen(text), (env), 0), (want))

static int parse_ok(const char *text, char *const *env, br_config *c)
{
    errbuf[0] = '\0';
    int rc = br_config_parse(text, strlen(text), env, c, errbuf, sizeof errbuf);
    if (rc != 0) fprintf(stderr, "unexpected parse error: %s\n", errbuf);
    return rc;
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static bool write_whole(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(text, 1, strlen(text), f) == strlen(text);
    return fclose(f) == 0 && ok;
}

/* text with the first `from` replaced by `to` (malloc'd) */
static char *replace_first(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    if (!at) return NULL;
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    if (!out) return NULL;
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdef", *s)) return false;
    return true;
}

/* The optional options' defaults, as documented in config.h and config.sample.yaml. */
static void check_optional_defaults(const br_config *c)
{
    CHECK_STR(c->as_address, "http://127.0.0.1:29318");
    CHECK_STR(c->as_hostname, "127.0.0.1");
    CHECK_INT(c->as_port, 29318);
    CHECK_STR(c->as_id, "whatsapp");
    CHECK_STR(c->bot_username, "whatsappbot");
    CHECK_STR(c->bot_displayname, "WhatsApp bridge bot");
    CHECK_STR(c->bot_avatar, "");
    CHECK_STR(c->username_template, "whatsapp_{{.}}");
    CHECK_STR(c->displayname_template, "{{.PushName}} (WA)");
    CHECK_INT(c->db_max_conns, 8);
    CHECK_INT(c->engine_workers, 0);
    CHECK_INT(c->portal_workers, 0);
    CHECK_STR(c->wa_url, "wss://web.whatsapp.com/ws/chat");
    CHECK(!c->wa_trust_root_set);
    CHECK_STR(c->wa_ca_file, "");
    CHECK_STR(c->wa_os_name, "wabridge");
    CHECK_STR(c->command_prefix, "!wa");
    CHECK(!c->relay_enabled);
    CHECK_INT(c->qr_timeout_s, 180);
    CHECK_STR(c->log_level, "info");
    CHECK(!c->log_json);
}

/* Every option's dotted path (the env names are derived from these in test_env_all). */
static const char *const all_paths[] = {
    "homeserver.address",
    "homeserver.domain",
    "appservice.address",
    "appservice.hostname",
    "appservice.port",
    "appservice.id",
    "appservice.as_token",
    "appservice.hs_token",
    "appservice.bot.username",
    "appservice.bot.displayname",
    "appservice.bot.avatar",
    "appservice.username_template",
    "database.uri",
    "database.max_open_conns",
    "workers.engine",
    "workers.portal",
    "whatsapp.url",
    "whatsapp.trust_root",
    "whatsapp.ca_file",
    "whatsapp.os_name",
    "bridge.displayname_template",
    "bridge.command_prefix",
    "bridge.relay.enabled",
    "bridge.login_timeout_s",
    "bridge.permissions",
    "logging.level",
    "logging.json",
};

static void test_example(void)
{
    const char *ex = br_config_example();
    CHECK(ex && strlen(ex) > 1000);
    /* the file on disk is what was embedded */
    char *disk = read_whole(WB_CONFIG_SAMPLE, NULL);
    CHECK(disk != NULL);
    if (disk) CHECK(strcmp(disk, ex) == 0);
    free(disk);

    /* as shipped it holds "generate": the daemon refuses it, -g reads it */
    EXPECT_ERR(ex, NULL, "appservice.as_token: is still \"generate\": run `wabridge -g`");
    br_config c;
    CHECK_INT(br_config_parse_ex(ex, strlen(ex), NULL, BR_CONFIG_ALLOW_GENERATE, &c, errbuf,
                                 sizeof errbuf),
              0);
    CHECK_STR(c.hs_address, "http://127.0.0.1:8008");
    CHECK_STR(c.hs_domain, "example.org");
    CHECK_STR(c.as_token, "generate");
    CHECK_STR(c.hs_token, "generate");
    CHECK_STR(c.db_uri, "postgres://wabridge@localhost/wabridge?sslmode=disable");
    check_optional_defaults(&c);
    CHECK_INT(c.n_perms, 2);
    if (c.n_perms == 2) {
        CHECK_STR(c.perms[0].who, "*");
        CHECK_INT(c.perms[0].level, BR_PERM_RELAY);
        CHECK_STR(c.perms[1].who, "example.org");
        CHECK_INT(c.perms[1].level, BR_PERM_USER);
    }
    br_config_free(&c);
    CHECK(all_zero(&c));

    /* with real tokens from the environment the plain parse takes it */
    char *env[] = {"WABRIDGE_APPSERVICE_AS_TOKEN=a1", "WABRIDGE_APPSERVICE_HS_TOKEN=h1", NULL};
    CHECK_INT(br_config_parse(ex, strlen(ex), env, &c, errbuf, sizeof errbuf), 0);
    CHECK_STR(c.as_token, "a1");
    br_config_free(&c);

    /* every option is in the sample (documented next to its key) */
    for (size_t i = 0; i < sizeof all_paths / sizeof all_paths[0]; i++) {
        const char *leaf = strrchr(all_paths[i], '.') + 1;
        char key[64];
        snprintf(key, sizeof key, "  %s:", leaf);
        if (!strstr(ex, key)) {
            check_failed++;
            fprintf(stderr, "config.sample.yaml does not show %s\n", all_paths[i]);
        }
    }
}

static void test_defaults(void)
{
    br_config c;
    CHECK_INT(parse_ok(MIN_YAML, NULL, &c), 0);
    CHECK_STR(c.hs_address, "http://hs:8008");
    CHECK_STR(c.hs_domain, "example.org");
    CHECK_STR(c.as_token, "astok");
    CHECK_STR(c.hs_token, "hstok");
    CHECK_STR(c.db_uri, "postgres://u@db/wabridge");
    check_optional_defaults(&c);
    CHECK_INT(c.n_perms, 0); /* nobody by default */
    CHECK_INT(br_config_perm(&c, "@a:example.org"), BR_PERM_NONE);
    CHECK(br_config_engine_workers(&c) >= 1);
    CHECK(br_config_portal_workers(&c) == 2 * br_config_engine_workers(&c));
    br_config_free(&c);

    /* null values and empty sections keep the defaults; quoted numbers, yes/no, comments, BOM */
    CHECK_INT(parse_ok(cfg_text("  port: \"8080\"\n  bot:\n  id: ~\n",
                                "logging:\nbridge:\n  relay:\n    enabled: yes\n"
                                "  login_timeout_s: 3600\n"),
                       NULL, &c),
              0);
    CHECK_INT(c.as_port, 8080);
    CHECK_STR(c.as_id, "whatsapp");
    CHECK_STR(c.bot_username, "whatsappbot");
    CHECK(c.relay_enabled);
    CHECK_INT(c.qr_timeout_s, 3600);
    br_config_free(&c);

    char bom[2048];
    snprintf(bom, sizeof bom, "\xEF\xBB\xBF# é comment\r\n%s", MIN_YAML);
    CHECK_INT(parse_ok(bom, NULL, &c), 0);
    br_config_free(&c);

    /* normalisation and the other accepted forms */
    CHECK_INT(parse_ok("homeserver: {address: 'https://[::1]:8448/', domain: 'example.org:8448'}\n"
                       "appservice: {as_token: a, hs_token: b, address: 'http://bridge_1:29318//',"
                       " bot: {avatar: 'mxc://example.org/AbC_12-x'}}\n"
                       "database: {uri: 'host=db user=wabridge dbname=wabridge'}\n"
                       "whatsapp: {trust_root: "
                       "'000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F'}\n",
                       NULL, &c),
              0);
    CHECK_STR(c.hs_address, "https://[::1]:8448");
    CHECK_STR(c.hs_domain, "example.org:8448");
    CHECK_STR(c.as_address, "http://bridge_1:29318");
    CHECK_STR(c.bot_avatar, "mxc://example.org/AbC_12-x");
    CHECK(c.wa_trust_root_set);
    CHECK(c.wa_trust_root[0] == 0x00 && c.wa_trust_root[26] == 0x1a && c.wa_trust_root[31] == 0x1f);
    br_config_free(&c);
    /* the same 32 bytes in base64 */
    CHECK_INT(parse_ok(cfg_text("", "whatsapp:\n  trust_root: "
                                    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"),
                       NULL, &c),
              0);
    CHECK(c.wa_trust_root_set && c.wa_trust_root[1] == 0x01 && c.wa_trust_root[31] == 0x1f);
    br_config_free(&c);

    /* load from a file; a missing file names itself */
    char dir[] = "/tmp/wb-config-load-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    CHECK(write_whole(path, cfg_text("  port: 1234\n", "")));
    CHECK_INT(br_config_load(path, NULL, &c, errbuf, sizeof errbuf), 0);
    CHECK_INT(c.as_port, 1234);
    br_config_free(&c);
    CHECK(write_whole(path, cfg_text("  port: x\n", "")));
    CHECK_INT(br_config_load(path, NULL, &c, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, path) && strstr(errbuf, "appservice.port: expected an integer"));
    unlink(path);
    CHECK_INT(br_config_load(path, NULL, &c, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "cannot open") && strstr(errbuf, path));
    rmdir(dir);
}

static void test_errors(void)
{
    /* the message format: option, what was expected, what was found, line */
    EXPECT_ERR_EXACT(cfg_text("  port: abc\n", ""), NULL,
                     "appservice.port: expected an integer 1-65535, got \"abc\" (line 7)");
    EXPECT_ERR(cfg_text("  port: 0\n", ""), NULL, "expected an integer 1-65535, got \"0\"");
    EXPECT_ERR(cfg_text("  port: 65536\n", ""), NULL, "got \"65536\"");
    EXPECT_ERR(cfg_text("  port: 99999999999999999999999\n", ""), NULL, "appservice.port");
    EXPECT_ERR(cfg_text("  port: 0x50\n", ""), NULL, "appservice.port");
    EXPECT_ERR_EXACT(cfg_text("  port: [1]\n", ""), NULL,
                     "appservice.port: expected a single value, got a list (line 7)");
    EXPECT_ERR_EXACT(HEAD "database:\n  uri: postgres:///w\n  max_open_conns: 1001\n", NULL,
                     "database.max_open_conns: expected an integer 1-1000, got \"1001\" (line 9)");
    EXPECT_ERR(cfg_text("", "bridge:\n  login_timeout_s: 5\n"), NULL,
               "bridge.login_timeout_s: expected an integer 10-3600, got \"5\" (line 10)");
    EXPECT_ERR(cfg_text("", "workers:\n  engine: -1\n"), NULL,
               "workers.engine: expected an "
               "integer 0-1024");

    /* unknown keys, with a suggestion */
    EXPECT_ERR_EXACT(cfg_text("  prot: 1\n", ""), NULL,
                     "appservice.prot: unknown option; did you mean appservice.port? (line 7)");
    EXPECT_ERR(cfg_text("", "homeserer:\n  address: x\n"), NULL,
               "homeserer: unknown option; did you mean homeserver? (line 9)");
    EXPECT_ERR(cfg_text("  bot:\n    usernme: x\n", ""), NULL,
               "appservice.bot.usernme: unknown option; did you mean appservice.bot.username?");
    EXPECT_ERR(cfg_text("", "bridge:\n  port: 1\n"), NULL,
               "bridge.port: unknown option; did you mean appservice.port?");
    EXPECT_ERR(cfg_text("", "colour: blue\n"), NULL, "colour: unknown option (config.sample");
    EXPECT_ERR(cfg_text("", "appservice.port: 5\n"), NULL,
               "appservice.port: unknown option: write options nested, one key per level");

    /* wrong types */
    EXPECT_ERR(cfg_text("  bot: whatsappbot\n", ""), NULL,
               "appservice.bot: expected a mapping of options, got \"whatsappbot\" (line 7)");
    EXPECT_ERR(cfg_text("  address:\n    a: b\n", ""), NULL,
               "appservice.address: expected a single value, got a mapping");
    EXPECT_ERR(cfg_text("", "bridge:\n  relay:\n    enabled: maybe\n"), NULL,
               "bridge.relay.enabled: expected true or false, got \"maybe\" (line 11)");
    EXPECT_ERR(cfg_text("", "logging:\n  json: [true]\n"), NULL,
               "logging.json: expected a "
               "single value, got a list");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    - example.org\n"), NULL,
               "bridge.permissions: expected a mapping of who: level");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    example.org: [user]\n"), NULL,
               "bridge.permissions: expected relay, commands, user, admin or none, got a list");
    EXPECT_ERR("? [a, b]\n: 1\n", NULL, "configuration: keys must be plain names, got a list");

    /* required options */
    EXPECT_ERR_EXACT("homeserver:\n  domain: example.org\nappservice:\n  as_token: a\n"
                     "  hs_token: b\n" DB,
                     NULL,
                     "homeserver.address: required option is missing (set it in the file or in "
                     "WABRIDGE_HOMESERVER_ADDRESS)");
    EXPECT_ERR_EXACT("homeserver:\n  address:\n  domain: example.org\nappservice:\n  as_token: a\n"
                     "  hs_token: b\n" DB,
                     NULL, "homeserver.address: required option has no value (line 2)");
    EXPECT_ERR(HEAD, NULL, "database.uri: required option is missing");
    EXPECT_ERR("", NULL, "homeserver.address: required option is missing");
    EXPECT_ERR("# only a comment\n", NULL, "homeserver.address: required option is missing");

    /* templates */
    EXPECT_ERR(cfg_text("  username_template: whatsapp_\n", ""), NULL,
               "appservice.username_template: must contain {{.}} (the WhatsApp id) exactly once, "
               "got \"whatsapp_\" (line 7)");
    EXPECT_ERR(cfg_text("  username_template: wa_{{.}}_{{.}}\n", ""), NULL, "exactly once");
    EXPECT_ERR(cfg_text("  username_template: \"{{.}}_wa\"\n", ""), NULL, "needs a prefix");
    EXPECT_ERR(cfg_text("  username_template: WA_{{.}}\n", ""), NULL, "only a-z, 0-9");
    EXPECT_ERR(cfg_text("", "bridge:\n  displayname_template: \"{{.Name}} (WA)\"\n"), NULL,
               "bridge.displayname_template: unknown placeholder \"{{.Name}}\"");
    EXPECT_ERR(cfg_text("", "bridge:\n  displayname_template: WhatsApp user\n"), NULL,
               "needs at least one of");
    EXPECT_ERR(cfg_text("  bot:\n    username: whatsapp_bot\n", ""), NULL,
               "appservice.bot.username: \"whatsapp_bot\" falls inside the ghost namespace");
    EXPECT_ERR(cfg_text("  bot:\n    username: WhatsAppBot\n", ""), NULL,
               "appservice.bot.username: expected a Matrix localpart");

    /* trust root */
    EXPECT_ERR(cfg_text("", "whatsapp:\n  trust_root: abc\n"), NULL,
               "whatsapp.trust_root: expected 32 bytes as base64 (44 characters) or hex (64 "
               "digits)");
    EXPECT_ERR(cfg_text("", "whatsapp:\n  trust_root: "
                            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1\n"),
               NULL, "whatsapp.trust_root");
    EXPECT_ERR(cfg_text("", "whatsapp:\n  trust_root: "
                            "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"),
               NULL, "whatsapp.trust_root");
    EXPECT_ERR(
        cfg_text("", "whatsapp:\n  trust_root: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n"),
        NULL, "whatsapp.trust_root"); /* 31 bytes */

    /* URLs and addresses */
    EXPECT_ERR("homeserver:\n  address: ftp://hs\n  domain: example.org\n", NULL,
               "homeserver.address: expected an http:// or https:// URL (http://host:port), got "
               "\"ftp://hs\" (line 2)");
    EXPECT_ERR(cfg_text("  address: localhost:29318\n", ""), NULL,
               "appservice.address: expected an http:// or https:// URL");
    EXPECT_ERR(cfg_text("  address: http://:29318\n", ""), NULL, "appservice.address");
    EXPECT_ERR(cfg_text("  address: http://h:0\n", ""), NULL, "appservice.address");
    EXPECT_ERR(cfg_text("", "whatsapp:\n  url: https://web.whatsapp.com/ws/chat\n"), NULL,
               "whatsapp.url: expected a ws:// or wss:// URL");
    EXPECT_ERR(cfg_text("  hostname: localhost\n", ""), NULL,
               "appservice.hostname: expected an IPv4 address");
    EXPECT_ERR(cfg_text("  bot:\n    avatar: http://x/y\n", ""), NULL,
               "appservice.bot.avatar: expected an mxc://server/media-id URI");
    EXPECT_ERR("homeserver:\n  address: http://hs\n  domain: exa mple.org\n", NULL,
               "homeserver.domain: expected the homeserver's server name");

    /* permissions */
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    \"example.org\": superuser\n"), NULL,
               "bridge.permissions: entry \"example.org\": expected relay, commands, user, admin "
               "or none, got \"superuser\" (line 11)");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    \"not a domain!\": user\n"), NULL,
               "entry \"not a domain!\": expected \"*\", a domain");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    \"@:example.org\": user\n"), NULL,
               "expected \"*\", a domain");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    example.org: user\n    EXAMPLE.org: "
                            "admin\n"),
               NULL, "entry \"EXAMPLE.org\" appears twice (line 12)");

    /* duplicates */
    EXPECT_ERR_EXACT(cfg_text("  port: 1\n  port: 2\n", ""), NULL,
                     "appservice.port: duplicate key (first at line 7) (line 8)");
    EXPECT_ERR(cfg_text("", "homeserver:\n  domain: x\n"), NULL,
               "homeserver: duplicate key (first at line 1) (line 9)");
    EXPECT_ERR(cfg_text("", "bridge:\n  permissions:\n    a.org: user\n    a.org: user\n"), NULL,
               "bridge.permissions: entry \"a.org\" appears twice (line 12)");

    /* shape and syntax */
    EXPECT_ERR("- a\n- b\n", NULL, "the configuration must be a mapping of sections");
    EXPECT_ERR("just text\n", NULL,
               "must be a mapping of sections (homeserver:, appservice:, "
               "...), got \"just text\" (line 1)");
    EXPECT_ERR("homeserver:\n  address: [1, 2\n", NULL, "YAML syntax error at line 3, column 1");
    EXPECT_ERR("homeserver:\n\taddress: x\n", NULL, "YAML syntax error at line 2");
    EXPECT_ERR("a: b\n c: d\n", NULL, "YAML syntax error at line 2, column");
    EXPECT_ERR("x: &a 1\ny: *a\n", NULL, "YAML aliases (*a) are not supported (line 2)");
    EXPECT_ERR(MIN_YAML "---\nhomeserver: {}\n", NULL, "only one YAML document is allowed");
    char deep[512] = "homeserver: ";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    EXPECT_ERR(deep, NULL, "nested more than 32 levels deep");
    const char raw_nul[] = "homeserver:\n  domain: ex\0ample\n";
    CHECK(strstr(parse_fail(raw_nul, sizeof raw_nul - 1, NULL, 0), "YAML") != NULL);
    EXPECT_ERR("homeserver:\n  domain: \"ex\\0ample\"\n", NULL,
               "homeserver.domain: contains a NUL character (line 2)");
    EXPECT_ERR(cfg_text("  bot:\n    displayname: \"a\\tb\"\n", ""), NULL,
               "appservice.bot.displayname: contains a control character, got \"a\\x09b\"");
    CHECK(strstr(parse_fail("a\xc3\x28: 1\n", 7, NULL, 0),
                 "YAML syntax error at byte 2: invalid trailing UTF-8") != NULL);

    /* secrets are never quoted */
    const char *e =
        parse_fail(HEAD "database:\n  uri: mysql://user:hunter2@db/x\n",
                   strlen(HEAD "database:\n  uri: mysql://user:hunter2@db/x\n"), NULL, 0);
    CHECK(strstr(e, "database.uri: expected a postgres:// URI") && !strstr(e, "hunter2"));
    e = parse_fail(HEAD "database:\n  uri: host=db password hunter2\n",
                   strlen(HEAD "database:\n  uri: host=db password hunter2\n"), NULL, 0);
    CHECK(strstr(e, "database.uri:") && !strstr(e, "hunter2"));
    e = parse_fail("homeserver: {address: 'http://h', domain: d.org}\n"
                   "appservice: {as_token: 'my secret', hs_token: x}\n" DB,
                   strlen("homeserver: {address: 'http://h', domain: d.org}\n"
                          "appservice: {as_token: 'my secret', hs_token: x}\n" DB),
                   NULL, 0);
    CHECK(strstr(e, "appservice.as_token: expected a token") && !strstr(e, "secret\""));
    EXPECT_ERR("homeserver: {address: 'http://h', domain: d.org}\n"
               "appservice: {as_token: same, hs_token: same}\n" DB,
               NULL, "appservice.hs_token: must differ from appservice.as_token");

    /* other values */
    EXPECT_ERR(cfg_text("", "logging:\n  level: verbose\n"), NULL,
               "logging.level: expected debug, info, warn or error, got \"verbose\"");
    EXPECT_ERR(cfg_text("", "whatsapp:\n  ca_file: /nonexistent/ca.pem\n"), NULL,
               "whatsapp.ca_file: cannot read the CA bundle (No such file or directory)");
    EXPECT_ERR(cfg_text("", "bridge:\n  command_prefix: \"!w a\"\n"), NULL,
               "bridge.command_prefix: expected 1-32 bytes without spaces");
    EXPECT_ERR(cfg_text("  id: \"what sapp\"\n", ""), NULL, "appservice.id: expected 1-64");

    /* a NULL err buffer is fine */
    br_config c;
    CHECK_INT(br_config_parse("x", 1, NULL, &c, NULL, 0), -1);
}

static void test_env(void)
{
    br_config c;
    /* every option through its variable, over a file that sets the required ones */
    char ca[] = "WABRIDGE_WHATSAPP_CA_FILE=" WB_CONFIG_SAMPLE;
    char *env[] = {
        "PATH=/usr/bin",
        "WABRIDGE_TEST_PG_STATE=/somewhere", /* not an option's section: not ours */
        "WABRIDGE_HOMESERVER_ADDRESS=https://matrix.example.net/",
        "WABRIDGE_HOMESERVER_DOMAIN=example.net",
        "WABRIDGE_APPSERVICE_ADDRESS=http://bridge:29999",
        "WABRIDGE_APPSERVICE_HOSTNAME=0.0.0.0",
        "WABRIDGE_APPSERVICE_PORT=29999",
        "WABRIDGE_APPSERVICE_ID=wa2",
        "WABRIDGE_APPSERVICE_AS_TOKEN=envas",
        "WABRIDGE_APPSERVICE_HS_TOKEN=envhs",
        "WABRIDGE_APPSERVICE_BOT_USERNAME=wabot",
        "WABRIDGE_APPSERVICE_BOT_DISPLAYNAME=WA Bot",
        "WABRIDGE_APPSERVICE_BOT_AVATAR=mxc://example.net/abc",
        "WABRIDGE_APPSERVICE_USERNAME_TEMPLATE=wa_{{.}}",
        "WABRIDGE_DATABASE_URI=host=db user=wa dbname=wa",
        "WABRIDGE_DATABASE_MAX_OPEN_CONNS=20",
        "WABRIDGE_WORKERS_ENGINE=3",
        "WABRIDGE_WORKERS_PORTAL=5",
        "WABRIDGE_WHATSAPP_URL=ws://127.0.0.1:9000/ws/chat",
        "WABRIDGE_WHATSAPP_TRUST_ROOT="
        "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ca,
        "WABRIDGE_WHATSAPP_OS_NAME=TestOS",
        "WABRIDGE_BRIDGE_DISPLAYNAME_TEMPLATE={{.ContactName}} [WA]",
        "WABRIDGE_BRIDGE_COMMAND_PREFIX=!w",
        "WABRIDGE_BRIDGE_RELAY_ENABLED=true",
        "WABRIDGE_BRIDGE_LOGIN_TIMEOUT_S=60",
        "WABRIDGE_BRIDGE_PERMISSIONS= *=relay, example.net = user,@boss:example.net=admin,",
        "WABRIDGE_LOGGING_LEVEL=debug",
        "WABRIDGE_LOGGING_JSON=yes",
        NULL,
    };
    CHECK_INT(sizeof all_paths / sizeof all_paths[0], 27);
    CHECK_INT(
        parse_ok(cfg_text("  port: 1000\n", "bridge:\n  permissions:\n    '*': admin\n"), env, &c),
        0);
    CHECK_STR(c.hs_address, "https://matrix.example.net");
    CHECK_STR(c.hs_domain, "example.net");
    CHECK_STR(c.as_address, "http://bridge:29999");
    CHECK_STR(c.as_hostname, "0.0.0.0");
    CHECK_INT(c.as_port, 29999);
    CHECK_STR(c.as_id, "wa2");
    CHECK_STR(c.as_token, "envas");
    CHECK_STR(c.hs_token, "envhs");
    CHECK_STR(c.bot_username, "wabot");
    CHECK_STR(c.bot_displayname, "WA Bot");
    CHECK_STR(c.bot_avatar, "mxc://example.net/abc");
    CHECK_STR(c.username_template, "wa_{{.}}");
    CHECK_STR(c.db_uri, "host=db user=wa dbname=wa");
    CHECK_INT(c.db_max_conns, 20);
    CHECK_INT(c.engine_workers, 3);
    CHECK_INT(c.portal_workers, 5);
    CHECK_INT(br_config_engine_workers(&c), 3);
    CHECK_INT(br_config_portal_workers(&c), 5);
    CHECK_STR(c.wa_url, "ws://127.0.0.1:9000/ws/chat");
    CHECK(c.wa_trust_root_set && c.wa_trust_root[0] == 0xff && c.wa_trust_root[31] == 0x1f);
    CHECK_STR(c.wa_ca_file, WB_CONFIG_SAMPLE);
    CHECK_STR(c.wa_os_name, "TestOS");
    CHECK_STR(c.displayname_template, "{{.ContactName}} [WA]");
    CHECK_STR(c.command_prefix, "!w");
    CHECK(c.relay_enabled);
    CHECK_INT(c.qr_timeout_s, 60);
    CHECK_INT(c.n_perms, 3); /* the variable replaces the file's mapping */
    CHECK_INT(br_config_perm(&c, "@x:other.org"), BR_PERM_RELAY);
    CHECK_INT(br_config_perm(&c, "@x:example.net"), BR_PERM_USER);
    CHECK_INT(br_config_perm(&c, "@boss:example.net"), BR_PERM_ADMIN);
    CHECK_STR(c.log_level, "debug");
    CHECK(c.log_json);
    br_config_free(&c);

    /* the variable names follow the rule, for every option in the list */
    for (size_t i = 0; i < sizeof all_paths / sizeof all_paths[0]; i++) {
        char name[96] = "WABRIDGE_";
        size_t k = strlen(name);
        for (const char *p = all_paths[i]; *p; p++)
            name[k++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        name[k] = '\0';
        bool found = false;
        for (char **e = env; *e; e++)
            found = found || (strncmp(*e, name, k) == 0 && (*e)[k] == '=');
        if (!found) {
            check_failed++;
            fprintf(stderr, "test_env sets no %s\n", name);
        }
    }

    /* required options from the environment alone */
    char *req[] = {"WABRIDGE_HOMESERVER_ADDRESS=http://h:1",
                   "WABRIDGE_HOMESERVER_DOMAIN=h.org",
                   "WABRIDGE_APPSERVICE_AS_TOKEN=a",
                   "WABRIDGE_APPSERVICE_HS_TOKEN=b",
                   "WABRIDGE_DATABASE_URI=postgres:///wabridge",
                   NULL};
    CHECK_INT(parse_ok("", req, &c), 0);
    CHECK_STR(c.hs_domain, "h.org");
    check_optional_defaults(&c);
    br_config_free(&c);

    /* an empty variable counts as unset; the first of two wins */
    char *empty[] = {"WABRIDGE_APPSERVICE_PORT=", "WABRIDGE_LOGGING_LEVEL=warn",
                     "WABRIDGE_LOGGING_LEVEL=error", NULL};
    CHECK_INT(parse_ok(cfg_text("  port: 1000\n", ""), empty, &c), 0);
    CHECK_INT(c.as_port, 1000);
    CHECK_STR(c.log_level, "warn");
    br_config_free(&c);

    /* bad values name the variable, without a line */
    char *bad_port[] = {"WABRIDGE_APPSERVICE_PORT=abc", NULL};
    EXPECT_ERR_EXACT(MIN_YAML, bad_port,
                     "WABRIDGE_APPSERVICE_PORT: expected an integer 1-65535, got \"abc\"");
    char *bad_url[] = {"WABRIDGE_HOMESERVER_ADDRESS=ftp://x", NULL};
    EXPECT_ERR(MIN_YAML, bad_url, "WABRIDGE_HOMESERVER_ADDRESS: expected an http:// or https://");
    char *bad_bool[] = {"WABRIDGE_LOGGING_JSON=sometimes", NULL};
    EXPECT_ERR(MIN_YAML, bad_bool, "WABRIDGE_LOGGING_JSON: expected true or false");
    char *bad_tmpl[] = {"WABRIDGE_APPSERVICE_USERNAME_TEMPLATE=wa_", NULL};
    EXPECT_ERR(MIN_YAML, bad_tmpl, "WABRIDGE_APPSERVICE_USERNAME_TEMPLATE: must contain {{.}}");
    char *bad_root[] = {"WABRIDGE_WHATSAPP_TRUST_ROOT=00", NULL};
    EXPECT_ERR(MIN_YAML, bad_root, "WABRIDGE_WHATSAPP_TRUST_ROOT: expected 32 bytes");
    char *bad_perm[] = {"WABRIDGE_BRIDGE_PERMISSIONS=*=relay,example.org=superuser", NULL};
    EXPECT_ERR_EXACT(MIN_YAML, bad_perm,
                     "WABRIDGE_BRIDGE_PERMISSIONS: entry \"example.org\": expected relay, "
                     "commands, user, admin or none, got \"superuser\"");
    char *bad_perm2[] = {"WABRIDGE_BRIDGE_PERMISSIONS=example.org", NULL};
    EXPECT_ERR(MIN_YAML, bad_perm2, "entry \"example.org\": expected who=level");
    char *dup_perm[] = {"WABRIDGE_BRIDGE_PERMISSIONS=a.org=user,A.ORG=admin", NULL};
    EXPECT_ERR(MIN_YAML, dup_perm, "entry \"A.ORG\" appears twice");
    char *secret[] = {"WABRIDGE_DATABASE_URI=mysql://u:hunter2@h/x", NULL};
    const char *e = parse_fail(MIN_YAML, strlen(MIN_YAML), secret, 0);
    CHECK(strstr(e, "WABRIDGE_DATABASE_URI: expected a postgres://") && !strstr(e, "hunter2"));
    char *ctl[] = {"WABRIDGE_APPSERVICE_BOT_DISPLAYNAME=a\nb", NULL};
    EXPECT_ERR(MIN_YAML, ctl, "WABRIDGE_APPSERVICE_BOT_DISPLAYNAME: contains a control character");
    char *gen[] = {"WABRIDGE_APPSERVICE_HS_TOKEN=generate", NULL};
    EXPECT_ERR(MIN_YAML, gen, "WABRIDGE_APPSERVICE_HS_TOKEN: is still \"generate\"");
    /* typos in our sections are errors too */
    char *typo[] = {"WABRIDGE_APPSERVICE_PROT=1", NULL};
    EXPECT_ERR_EXACT(MIN_YAML, typo,
                     "WABRIDGE_APPSERVICE_PROT: unknown environment variable; did you mean "
                     "WABRIDGE_APPSERVICE_PORT?");
    char *typo2[] = {"WABRIDGE_LOGGING_COLOUR=1", NULL};
    EXPECT_ERR(MIN_YAML, typo2, "WABRIDGE_LOGGING_COLOUR: unknown environment variable (no such");
}

static void test_perms(void)
{
    br_config c;
    CHECK_INT(parse_ok(cfg_text("", "bridge:\n  permissions:\n"
                                    "    '*': relay\n"
                                    "    example.org: user\n"
                                    "    '@admin:example.org': admin\n"
                                    "    '@banned:example.org': none\n"
                                    "    other.org: commands\n"
                                    "    '@a=b:third.org': admin\n"),
                       NULL, &c),
              0);
    CHECK_INT(c.n_perms, 6);
    CHECK_INT(br_config_perm(&c, "@alice:example.org"), BR_PERM_USER);
    CHECK_INT(br_config_perm(&c, "@alice:Example.ORG"), BR_PERM_USER);  /* domains: any case */
    CHECK_INT(br_config_perm(&c, "@admin:example.org"), BR_PERM_ADMIN); /* MXID > domain */
    CHECK_INT(br_config_perm(&c, "@banned:example.org"), BR_PERM_NONE); /* MXID > domain */
    CHECK_INT(br_config_perm(&c, "@bob:other.org"), BR_PERM_COMMANDS);
    CHECK_INT(br_config_perm(&c, "@eve:evil.com"), BR_PERM_RELAY);      /* "*" */
    CHECK_INT(br_config_perm(&c, "@x:sub.example.org"), BR_PERM_RELAY); /* no subdomains */
    CHECK_INT(br_config_perm(&c, "@a=b:third.org"), BR_PERM_ADMIN);
    CHECK_INT(br_config_perm(&c, "@c:third.org"), BR_PERM_RELAY);
    CHECK_INT(br_config_perm(&c, "not-an-mxid"), BR_PERM_NONE);
    CHECK_INT(br_config_perm(&c, "@nodomain"), BR_PERM_NONE);
    CHECK_INT(br_config_perm(&c, "@:example.org"), BR_PERM_NONE);
    CHECK_INT(br_config_perm(&c, NULL), BR_PERM_NONE);
    CHECK_INT(br_config_perm(NULL, "@a:example.org"), BR_PERM_NONE);
    br_config_free(&c);

    /* the order of the rules does not matter */
    CHECK_INT(parse_ok(cfg_text("", "bridge:\n  permissions:\n"
                                    "    '@admin:example.org': admin\n"
                                    "    example.org: user\n"
                                    "    '*': relay\n"),
                       NULL, &c),
              0);
    CHECK_INT(br_config_perm(&c, "@admin:example.org"), BR_PERM_ADMIN);
    CHECK_INT(br_config_perm(&c, "@x:example.org"), BR_PERM_USER);
    CHECK_INT(br_config_perm(&c, "@x:y.org"), BR_PERM_RELAY);
    br_config_free(&c);

    CHECK_STR(br_perm_name(BR_PERM_NONE), "none");
    CHECK_STR(br_perm_name(BR_PERM_RELAY), "relay");
    CHECK_STR(br_perm_name(BR_PERM_COMMANDS), "commands");
    CHECK_STR(br_perm_name(BR_PERM_USER), "user");
    CHECK_STR(br_perm_name(BR_PERM_ADMIN), "admin");
    CHECK(BR_PERM_RELAY < BR_PERM_COMMANDS && BR_PERM_COMMANDS < BR_PERM_USER &&
          BR_PERM_USER < BR_PERM_ADMIN);
}

static void test_double_puppet(void)
{
    br_config c;
    /* none by default: nobody is puppeted */
    CHECK_INT(parse_ok(MIN_YAML, NULL, &c), 0);
    CHECK_INT(c.n_dp_secrets, 0);
    CHECK(!c.dp_allow_manual);
    CHECK(br_config_dp_as_token(&c, "@alice:example.org") == NULL);
    br_config_free(&c);

    CHECK_INT(parse_ok(cfg_text("", "double_puppet:\n  secrets:\n"
                                    "    example.org: \"as_token:dp-secret\"\n"
                                    "  allow_manual: false\n"),
                       NULL, &c),
              0);
    CHECK_INT(c.n_dp_secrets, 1);
    CHECK_STR(c.dp_secrets[0].server, "example.org");
    CHECK_STR(c.dp_secrets[0].as_token, "dp-secret");
    CHECK_STR(br_config_dp_as_token(&c, "@alice:example.org"), "dp-secret");
    CHECK_STR(br_config_dp_as_token(&c, "@alice:EXAMPLE.org"), "dp-secret");
    CHECK(br_config_dp_as_token(&c, "@alice:other.org") == NULL);
    CHECK(br_config_dp_as_token(&c, "alice") == NULL);
    CHECK(br_config_dp_as_token(&c, "@alice:") == NULL);
    CHECK(br_config_dp_as_token(&c, NULL) == NULL);
    br_config_free(&c);

    /* from the environment, over the file's */
    char *env[] = {"WABRIDGE_DOUBLE_PUPPET_SECRETS=example.org=as_token:from-env", NULL};
    CHECK_INT(parse_ok(cfg_text("", "double_puppet:\n  secrets:\n"
                                    "    example.org: \"as_token:from-file\"\n"),
                       env, &c),
              0);
    CHECK_INT(c.n_dp_secrets, 1);
    CHECK_STR(br_config_dp_as_token(&c, "@bob:example.org"), "from-env");
    br_config_free(&c);

    /* errors name the option and the entry, never the secret */
    EXPECT_ERR_EXACT(cfg_text("", "double_puppet:\n  secrets:\n"
                                  "    example.org: \"hunter2\"\n"),
                     NULL,
                     "double_puppet.secrets: entry \"example.org\": expected \"as_token:<token>\" "
                     "(the as_token of a second appservice registration whose user namespace "
                     "covers the real users), got a value (not shown: it is secret) (line 11)");
    CHECK(strstr(errbuf, "hunter2") == NULL);
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    example.org: \"as_token:\"\n"), NULL,
               "expected \"as_token:<token>\"");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    example.org: \"as_token:a b\"\n"),
               NULL, "expected \"as_token:<token>\"");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    example.org: \"as_token:generate\"\n"),
               NULL, "expected \"as_token:<token>\"");
    CHECK(strstr(errbuf, "generate") == NULL);
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    example.org:\n"), NULL,
               "double_puppet.secrets: expected \"as_token:<token>\" as the value (line 11)");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets: as_token:x\n"), NULL,
               "double_puppet.secrets: expected a mapping of server name: \"as_token:<token>\"");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    'not a server': as_token:x\n"), NULL,
               "entry \"not a server\": expected a homeserver's server name");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    example.org: as_token:x\n"
                            "    EXAMPLE.org: as_token:y\n"),
               NULL, "entry \"EXAMPLE.org\" appears twice");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secrets:\n    other.org: as_token:x\n"), NULL,
               "double_puppet.secrets: entry \"other.org\": only the bridge's own homeserver "
               "(homeserver.domain \"example.org\") can be double puppeted");
    EXPECT_ERR(cfg_text("", "double_puppet:\n  allow_manual: maybe\n"), NULL,
               "double_puppet.allow_manual: expected true or false, got \"maybe\" (line 10)");
    CHECK_INT(parse_ok(cfg_text("", "double_puppet:\n  allow_manual: true\n"), NULL, &c), 0);
    CHECK(c.dp_allow_manual);
    CHECK_INT(c.n_dp_secrets, 0);
    br_config_free(&c);
    char *manual_env[] = {"WABRIDGE_DOUBLE_PUPPET_ALLOW_MANUAL=yes", NULL};
    CHECK_INT(parse_ok(MIN_YAML, manual_env, &c), 0);
    CHECK(c.dp_allow_manual);
    br_config_free(&c);
    EXPECT_ERR(cfg_text("", "double_puppet:\n  secret: {}\n"), NULL,
               "double_puppet.secret: unknown option; did you mean double_puppet.secrets?");
    char *bad_env[] = {"WABRIDGE_DOUBLE_PUPPET_SECRETS=example.org", NULL};
    EXPECT_ERR(MIN_YAML, bad_env,
               "WABRIDGE_DOUBLE_PUPPET_SECRETS: expected server=as_token:TOKEN entries");
    char *bad_env2[] = {"WABRIDGE_DOUBLE_PUPPET_SECRETS=example.org=shared:zzz", NULL};
    EXPECT_ERR(MIN_YAML, bad_env2, "WABRIDGE_DOUBLE_PUPPET_SECRETS: entry \"example.org\"");
    CHECK(strstr(errbuf, "zzz") == NULL);
}

static void test_ghosts(void)
{
    br_config c;
    char out[64], id[32];
    CHECK_INT(parse_ok(MIN_YAML, NULL, &c), 0);
    CHECK_INT(br_config_ghost_localpart(&c, "15551234567", out, sizeof out), 0);
    CHECK_STR(out, "whatsapp_15551234567");
    CHECK_INT(br_config_ghost_localpart(&c, "lid-123", out, sizeof out), 0);
    CHECK_STR(out, "whatsapp_lid-123");
    CHECK(br_config_ghost_id(&c, "whatsapp_15551234567", id, sizeof id));
    CHECK_STR(id, "15551234567");
    CHECK(br_config_ghost_id(&c, "whatsapp_lid-123", id, sizeof id));
    CHECK_STR(id, "lid-123");
    /* not ghosts */
    CHECK(!br_config_ghost_id(&c, "whatsappbot", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "whatsapp_", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "alice", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "xwhatsapp_1", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "whatsapp_1=2", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "whatsapp_15551234567", id, 11)); /* 11 digits + NUL */
    CHECK(br_config_ghost_id(&c, "whatsapp_15551234567", id, 12));
    /* ids that cannot be ghosts; a short buffer */
    CHECK_INT(br_config_ghost_localpart(&c, "", out, sizeof out), -1);
    CHECK_INT(br_config_ghost_localpart(&c, "ABC", out, sizeof out), -1);
    CHECK_INT(br_config_ghost_localpart(&c, "1 2", out, sizeof out), -1);
    CHECK_INT(br_config_ghost_localpart(&c, "1@s.whatsapp.net", out, sizeof out), -1);
    CHECK_INT(br_config_ghost_localpart(&c, "15551234567", out, 20), -1);
    CHECK_INT(br_config_ghost_localpart(&c, "15551234567", out, 21), 0);
    br_config_free(&c);

    /* a template with a suffix, both ways */
    CHECK_INT(parse_ok(cfg_text("  username_template: wa.{{.}}.x\n", ""), NULL, &c), 0);
    CHECK_INT(br_config_ghost_localpart(&c, "4912345", out, sizeof out), 0);
    CHECK_STR(out, "wa.4912345.x");
    CHECK(br_config_ghost_id(&c, out, id, sizeof id));
    CHECK_STR(id, "4912345");
    CHECK(!br_config_ghost_id(&c, "wa.4912345", id, sizeof id));
    CHECK(!br_config_ghost_id(&c, "wa..x", id, sizeof id));
    br_config_free(&c);
}

static void test_displayname(void)
{
    br_config c;
    char out[128];
    CHECK_INT(parse_ok(MIN_YAML, NULL, &c), 0);
    CHECK_INT(br_config_displayname(&c, "Alice", "Alice Smith", "15551234567",
                                    "15551234567@s."
                                    "whatsapp.net",
                                    out, sizeof out),
              0);
    CHECK_STR(out, "Alice (WA)");
    br_config_displayname(&c, NULL, "Bob", "1555", NULL, out, sizeof out);
    CHECK_STR(out, "Bob (WA)"); /* PushName -> ContactName */
    br_config_displayname(&c, "", "", "15551234567", NULL, out, sizeof out);
    CHECK_STR(out, "+15551234567 (WA)"); /* -> +Phone */
    br_config_displayname(&c, NULL, NULL, "+15551234567", NULL, out, sizeof out);
    CHECK_STR(out, "+15551234567 (WA)"); /* no second '+' */
    br_config_displayname(&c, NULL, NULL, NULL, "lid-9@lid", out, sizeof out);
    CHECK_STR(out, "lid-9@lid (WA)"); /* -> JID */
    br_config_displayname(&c, NULL, NULL, NULL, NULL, out, sizeof out);
    CHECK_STR(out, "(WA)");
    br_config_displayname(&c, "Eve\nNewline\t", NULL, NULL, NULL, out, sizeof out);
    CHECK_STR(out, "Eve Newline (WA)"); /* control characters become spaces, then collapse */
    /* cut at a character boundary: "Ünï (WA)" in 5 bytes is "Ün" (Ü and n: 3 bytes; ï: 2) */
    br_config_displayname(&c, "\xC3\x9Cn\xC3\xAF", NULL, NULL, NULL, out, 5);
    CHECK_STR(out, "\xC3\x9Cn");
    br_config_displayname(&c, "\xC3\x9Cn\xC3\xAF", NULL, NULL, NULL, out, 6);
    CHECK_STR(out, "\xC3\x9Cn\xC3\xAF");
    CHECK_INT(br_config_displayname(&c, "A", NULL, NULL, NULL, NULL, 0), -1);
    br_config_free(&c);

    /* empty placeholders leave no "()" or doubled spaces behind */
    CHECK_INT(parse_ok(cfg_text("", "bridge:\n  displayname_template: \"{{.PushName}} "
                                    "({{.Phone}}) [{{.JID}}]\"\n"),
                       NULL, &c),
              0);
    br_config_displayname(&c, "Alice", NULL, NULL, NULL, out, sizeof out);
    CHECK_STR(out, "Alice");
    br_config_displayname(&c, "Alice", NULL, "49170", NULL, out, sizeof out);
    CHECK_STR(out, "Alice (+49170)");
    br_config_displayname(&c, "Alice", NULL, NULL, "49170@s.whatsapp.net", out, sizeof out);
    CHECK_STR(out, "Alice [49170@s.whatsapp.net]");
    br_config_free(&c);
    CHECK_INT(parse_ok(cfg_text("", "bridge:\n  displayname_template: \"{{.ContactName}} - "
                                    "{{.PushName}}\"\n"),
                       NULL, &c),
              0);
    br_config_displayname(&c, "Ally", "Alice Smith", NULL, NULL, out, sizeof out);
    CHECK_STR(out, "Alice Smith - Ally");
    br_config_displayname(&c, "Ally", NULL, NULL, NULL, out, sizeof out);
    CHECK_STR(out, "Ally - Ally"); /* ContactName falls back to PushName */
    br_config_free(&c);
}

static void test_write_example(void)
{
    char dir[] = "/tmp/wb-config-ex-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    CHECK_INT(br_config_write_example(path, errbuf, sizeof errbuf), 0);
    char *text = read_whole(path, NULL);
    CHECK(text && strcmp(text, br_config_example()) == 0);
    free(text);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* a second run must not touch the (maybe edited) file */
    CHECK(write_whole(path, "edited\n"));
    CHECK_INT(br_config_write_example(path, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "already exists: refusing to overwrite it") != NULL);
    text = read_whole(path, NULL);
    CHECK(text && strcmp(text, "edited\n") == 0);
    free(text);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/config.yaml", dir);
    CHECK_INT(br_config_write_example(bad, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "cannot create") != NULL);
    unlink(path);
    rmdir(dir);
}

/* Runs -g on cfg (written from text) and checks config and registration; returns the new text. */
static char *run_generate(const char *dir, const char *text, char *const *env)
{
    char cfg[256], reg[256];
    snprintf(cfg, sizeof cfg, "%s/config.yaml", dir);
    snprintf(reg, sizeof reg, "%s/registration.yaml", dir);
    unlink(reg);
    CHECK(write_whole(cfg, text));
    CHECK(chmod(cfg, 0640) == 0);
    int rc = br_config_generate_registration_env(cfg, reg, env, errbuf, sizeof errbuf);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "generate: %s\n", errbuf);
    struct stat st;
    CHECK(stat(cfg, &st) == 0 && (st.st_mode & 07777) == 0640); /* mode kept */
    return read_whole(cfg, NULL);
}

static void test_generate(void)
{
    char dir[] = "/tmp/wb-config-gen-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cfg[256], reg[256];
    snprintf(cfg, sizeof cfg, "%s/config.yaml", dir);
    snprintf(reg, sizeof reg, "%s/registration.yaml", dir);

    /* the sample, with non-ASCII before the tokens (libyaml counts characters, not bytes) */
    size_t n = strlen(br_config_example()) + 64;
    char *orig = malloc(n);
    snprintf(orig, n, "# Ünïcödé ✓ comment\n%s", br_config_example());
    char *after = run_generate(dir, orig, NULL);
    br_config c;
    CHECK(after && parse_ok(after, NULL, &c) == 0);
    CHECK(is_hex64(c.as_token) && is_hex64(c.hs_token));
    CHECK(strcmp(c.as_token, c.hs_token) != 0);
    /* only the two values changed */
    char as_q[80], hs_q[80];
    snprintf(as_q, sizeof as_q, "as_token: \"%s\"", c.as_token);
    snprintf(hs_q, sizeof hs_q, "hs_token: \"%s\"", c.hs_token);
    char *x1 = replace_first(orig, "as_token: generate", as_q);
    char *x2 = x1 ? replace_first(x1, "hs_token: generate", hs_q) : NULL;
    CHECK(x2 && after && strcmp(x2, after) == 0);
    free(x1);
    free(x2);
    /* the registration file matches */
    mx_registration r;
    CHECK_INT(mx_registration_load(reg, &r), MX_OK);
    CHECK_STR(r.id, "whatsapp");
    CHECK_STR(r.url, "http://127.0.0.1:29318");
    CHECK_STR(r.as_token, c.as_token);
    CHECK_STR(r.hs_token, c.hs_token);
    CHECK_STR(r.sender_localpart, "whatsappbot");
    CHECK(!r.rate_limited && r.receive_ephemeral);
    CHECK_INT(r.n_users, 2);
    CHECK_STR(r.users[0].regex, "^@whatsappbot:example\\.org$");
    CHECK_STR(r.users[1].regex, "^@whatsapp_.+:example\\.org$");
    mx_registration_free(&r);
    struct stat st;
    CHECK(stat(reg, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* a second run keeps the tokens and the file */
    CHECK_INT(br_config_generate_registration_env(cfg, reg, NULL, errbuf, sizeof errbuf), 0);
    char *again = read_whole(cfg, NULL);
    CHECK(again && after && strcmp(again, after) == 0);
    CHECK_INT(mx_registration_load(reg, &r), MX_OK);
    CHECK_STR(r.as_token, c.as_token);
    CHECK_STR(r.hs_token, c.hs_token);
    mx_registration_free(&r);
    free(again);
    free(after);
    br_config_free(&c);

    /* quoted placeholders, CRLF lines, one token already set, other names */
    const char *t2 =
        "# \xC3\x9Cn\xC3\xAF\r\nhomeserver:\r\n  address: http://hs:8008\r\n  domain: my.org\r\n"
        "appservice:\r\n  id: wa_test\r\n  address: http://bridge:1234/\r\n"
        "  hs_token: 'generate'   # é\r\n  as_token: keepme\r\n"
        "  username_template: \"wa-{{.}}\"\r\n  bot:\r\n    username: wabot\r\n"
        "database:\r\n  uri: postgres:///x\r\n";
    after = run_generate(dir, t2, NULL);
    CHECK(after && parse_ok(after, NULL, &c) == 0);
    CHECK_STR(c.as_token, "keepme");
    CHECK(is_hex64(c.hs_token));
    snprintf(hs_q, sizeof hs_q, "hs_token: \"%s\"", c.hs_token);
    x1 = replace_first(t2, "hs_token: 'generate'", hs_q);
    CHECK(x1 && after && strcmp(x1, after) == 0);
    free(x1);
    CHECK_INT(mx_registration_load(reg, &r), MX_OK);
    CHECK_STR(r.id, "wa_test");
    CHECK_STR(r.url, "http://bridge:1234");
    CHECK_STR(r.as_token, "keepme");
    CHECK_STR(r.hs_token, c.hs_token);
    CHECK_STR(r.sender_localpart, "wabot");
    CHECK_STR(r.users[0].regex, "^@wabot:my\\.org$");
    CHECK_STR(r.users[1].regex, "^@wa\\-.+:my\\.org$");
    mx_registration_free(&r);
    br_config_free(&c);
    free(after);

    /* tokens from the environment are used and not written anywhere */
    char *env[] = {"WABRIDGE_APPSERVICE_AS_TOKEN=env-as", "WABRIDGE_APPSERVICE_HS_TOKEN=env-hs",
                   NULL};
    after = run_generate(dir, br_config_example(), env);
    CHECK(after && strcmp(after, br_config_example()) == 0);
    free(after);
    CHECK_INT(mx_registration_load(reg, &r), MX_OK);
    CHECK_STR(r.as_token, "env-as");
    CHECK_STR(r.hs_token, "env-hs");
    mx_registration_free(&r);

    /* errors: "generate" from the environment; a block scalar; a bad config; no file */
    char *envgen[] = {"WABRIDGE_APPSERVICE_AS_TOKEN=generate", NULL};
    CHECK(write_whole(cfg, br_config_example()));
    CHECK_INT(br_config_generate_registration_env(cfg, reg, envgen, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "WABRIDGE_APPSERVICE_AS_TOKEN is \"generate\"") != NULL);
    char *block =
        replace_first(br_config_example(), "as_token: generate", "as_token: |-\n    generate");
    CHECK(block && write_whole(cfg, block));
    CHECK_INT(br_config_generate_registration_env(cfg, reg, NULL, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "appservice.as_token: cannot find the value \"generate\"") != NULL);
    char *unchanged = read_whole(cfg, NULL);
    CHECK(unchanged && block && strcmp(unchanged, block) == 0);
    free(unchanged);
    free(block);
    CHECK(write_whole(cfg, "homeserver: [\n"));
    CHECK_INT(br_config_generate_registration_env(cfg, reg, NULL, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, cfg) && strstr(errbuf, "YAML syntax error"));
    unlink(cfg);
    CHECK_INT(br_config_generate_registration(cfg, reg, errbuf, sizeof errbuf), -1);
    CHECK(strstr(errbuf, "cannot open") && strstr(errbuf, cfg));

    /* a symlinked config: the link stays, its target gets the tokens */
    char target[300];
    snprintf(target, sizeof target, "%s/real.yaml", dir);
    CHECK(write_whole(target, br_config_example()));
    CHECK(symlink(target, cfg) == 0);
    CHECK_INT(br_config_generate_registration_env(cfg, reg, NULL, errbuf, sizeof errbuf), 0);
    CHECK(lstat(cfg, &st) == 0 && S_ISLNK(st.st_mode));
    after = read_whole(target, NULL);
    CHECK(after && !strstr(after, "as_token: generate") && !strstr(after, "hs_token: generate"));
    free(after);

    unlink(cfg);
    unlink(target);
    unlink(reg);
    free(orig);
    CHECK(rmdir(dir) == 0);
}

int main(void)
{
    test_example();
    test_defaults();
    test_errors();
    test_env();
    test_perms();
    test_double_puppet();
    test_ghosts();
    test_displayname();
    test_write_example();
    test_generate();
    return CHECK_DONE();
}
