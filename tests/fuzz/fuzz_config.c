/*
 * tests/fuzz/fuzz_config.c - libFuzzer target for the config parser (bridge/config.h), which reads
 * a file an operator wrote, or anything else put at its path.
 *
 * Whatever the bytes, br_config_parse must return cleanly (ASan/UBSan watch). A rejection leaves
 * the config zeroed and says why. An accepted config keeps the invariants the daemon relies on:
 * every string set, the templates usable both ways, the permissions well formed, and the same
 * text parses to the same config again (no hidden state).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const br_config *c)
{
    const char *strs[] = {
        c->hs_address,      c->hs_domain,  c->as_address,        c->as_hostname,
        c->as_id,           c->as_token,   c->hs_token,          c->bot_username,
        c->bot_displayname, c->bot_avatar, c->username_template, c->displayname_template,
        c->db_uri,          c->wa_url,     c->wa_ca_file,        c->wa_os_name,
        c->command_prefix,  c->log_level};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (!strs[i]) abort();
    if (c->as_port == 0 || c->db_max_conns < 1 || c->qr_timeout_s < 10) abort();
    if (strcmp(c->as_token, "generate") == 0 || strcmp(c->as_token, c->hs_token) == 0) abort();
    if ((c->n_perms == 0) != (c->perms == NULL)) abort();
    for (size_t i = 0; i < c->n_perms; i++)
        if (!c->perms[i].who || c->perms[i].level > BR_PERM_ADMIN) abort();
    /* a ghost localpart maps back to its id; the bot is no ghost */
    char lp[512], id[64];
    if (br_config_ghost_localpart(c, "15551234567", lp, sizeof lp) != 0) abort();
    if (!br_config_ghost_id(c, lp, id, sizeof id) || strcmp(id, "15551234567") != 0) abort();
    if (br_config_ghost_id(c, c->bot_username, id, sizeof id)) abort();
    char dn[300];
    if (br_config_displayname(c, "A", NULL, NULL, NULL, dn, sizeof dn) != 0) abort();
    (void)br_config_perm(c, "@a:example.org");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    br_config c, again;
    char err[512];
    err[0] = '\0';
    int rc = br_config_parse((const char *)data, size, NULL, &c, err, sizeof err);
    if (rc != 0) {
        static const br_config zero;
        if (rc != -1 || err[0] == '\0' || memcmp(&c, &zero, sizeof zero) != 0) abort();
        return 0;
    }
    check_accepted(&c);
    if (br_config_parse((const char *)data, size, NULL, &again, err, sizeof err) != 0) abort();
    if (strcmp(c.hs_address, again.hs_address) != 0 || c.as_port != again.as_port ||
        c.n_perms != again.n_perms || strcmp(c.db_uri, again.db_uri) != 0)
        abort();
    br_config_free(&again);
    br_config_free(&c);
    return 0;
}
