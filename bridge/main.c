/*
 * bridge/main.c - the wabridge command.
 *
 * `wabridge -c config.yaml` runs the daemon (bridge/bridge.h) until SIGTERM, then drains; -g writes
 * the appservice registration, -e an example config. Tools: --version, --libraries (the library
 * versions of the product card), --migrate CONNINFO, --decode / --decode-frame HEX (a WhatsApp
 * binary node).
 */
#include <cJSON.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <libwebsockets.h>
#include <mbedtls/version.h>
#include <microhttpd.h>
#include <pb.h>
#include <pb_encode.h>
#include <png.h>
#include <qrencode.h>
#include <signal_protocol.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include <zlib.h>

#include "bridge/bridge.h"
#include "db/migrate.h"
#include "util/log.h"
#include <pthread.h>
#include <signal.h>
#include "wa/binary/node.h"
#include <stdlib.h>

#ifndef WABRIDGE_VERSION
#define WABRIDGE_VERSION "dev"
#endif

static void print_libraries(void)
{
    char mbed[32];
    mbedtls_version_get_string(mbed);
    int pq = PQlibVersion();
    printf("libraries:\n");
    printf("  mbedtls            %s\n", mbed);
    printf("  libpq              %d.%d\n", pq / 10000, pq % 10000);
    printf("  libmicrohttpd      %s\n", MHD_get_version());
    printf("  cJSON              %s\n", cJSON_Version());
    printf("  libcurl            %s\n", curl_version_info(CURLVERSION_NOW)->version);
    printf("  libwebsockets      %s\n", lws_get_library_version());
    signal_context *ctx = NULL;
    int sig = signal_context_create(&ctx, NULL);
    printf("  libsignal-protocol-c %s\n", sig == 0 ? "context ok" : "context failed");
    if (ctx) signal_context_destroy(ctx);
    printf("  libyaml            %s\n", yaml_get_version_string());
    printf("  libqrencode        %s\n", QRcode_APIVersionString());
    printf("  libpng             %s\n", png_get_libpng_ver(NULL));
    printf("  zlib               %s\n", zlibVersion());
    uint8_t pb_buf[4];
    pb_ostream_t pb = pb_ostream_from_buffer(pb_buf, sizeof(pb_buf));
    printf("  nanopb             runtime %s\n", pb_encode_varint(&pb, 300) ? "ok" : "failed");
}

/* --decode HEX: prints a binary node (hex of a node, or of a frame payload with --frame). */
static int decode_hex(const char *hex, bool frame)
{
    size_t hex_len = strlen(hex), len = 0;
    uint8_t *bytes = malloc(hex_len / 2 + 1);
    if (!bytes || !wb_hex_decode(hex, hex_len, bytes, hex_len / 2, &len)) {
        fprintf(stderr, "wabridge: --decode wants an even number of hex digits\n");
        free(bytes);
        return 2;
    }
    wb_arena arena;
    wb_arena_init(&arena, 0);
    wa_node *node;
    wa_errinfo ei;
    int rc = frame ? wa_binary_unpack(bytes, len, 0, &arena, &node, &ei)
                   : wa_binary_decode(bytes, len, &arena, &node, &ei);
    if (rc == WA_OK) {
        wb_buf out;
        wb_buf_init(&out);
        wa_node_print(node, 64, &out);
        fputs((const char *)out.data, stdout);
        wb_buf_free(&out);
    } else {
        fprintf(stderr, "wabridge: not a binary node: %s: %s\n", wa_strerror(rc), ei.message);
    }
    wb_arena_free(&arena);
    free(bytes);
    return rc == WA_OK ? 0 : 1;
}

/* --migrate CONNINFO: brings the database to this binary's schema and exits. */
static int migrate(const char *conninfo)
{
    db_conn *conn;
    db_error err;
    db_conn_opts opts = {.reconnect_timeout_ms = 5000};
    if (db_conn_open(conninfo, &opts, &conn, &err) != DB_OK) {
        fprintf(stderr, "wabridge: cannot connect to the database: %s\n", err.message);
        return 1;
    }
    db_migrate_report rep;
    int rc = db_migrate(conn, db_migrations_embedded, db_migrations_embedded_count, &rep);
    if (rc != DB_OK) {
        fprintf(stderr, "wabridge: migration failed: %s\n", db_conn_error(conn)->message);
    } else if (rep.applied == 0) {
        printf("database schema is up to date (version %d)\n", rep.to_version);
    } else {
        printf("database schema migrated from version %d to %d (%d applied)\n", rep.from_version,
               rep.to_version, rep.applied);
    }
    db_conn_close(conn);
    return rc == DB_OK ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: wabridge [-c CONFIG]             run the bridge (CONFIG: config.yaml)\n"
               "       wabridge -g [-c CONFIG] [-r REG]  write the appservice registration (REG:\n"
               "                                         registration.yaml), generating tokens\n"
               "       wabridge -e [-c CONFIG]           write an example config to CONFIG\n"
               "       wabridge --version | --libraries | --migrate CONNINFO | --decode HEX |\n"
               "                --decode-frame HEX\n"
               "Options can be overridden by environment variables: see config.sample.yaml.\n");
}

extern char **environ;

/* Runs the daemon until SIGTERM or SIGINT, then drains and exits. */
static int run(const char *config_path)
{
    br_config cfg;
    char err[1024];
    if (br_config_load(config_path, environ, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "wabridge: %s\n", err); /* err names the file and the option */
        return 1;
    }
    if (!wb_log_set_level_name(cfg.log_level)) wb_log_set_level(WB_LOG_INFO);
    wb_log_set_json(cfg.log_json);
    /* every thread inherits the blocked signals; this one waits for them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    br_bridge *b;
    if (br_bridge_start(&cfg, &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "wabridge: %s\n", err);
        br_config_free(&cfg);
        curl_global_cleanup();
        return 1;
    }
    printf("wabridge %s running (bridge bot @%s:%s); SIGTERM stops it\n", WABRIDGE_VERSION,
           cfg.bot_username, cfg.hs_domain);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    WB_INFO("main", "got %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    br_bridge_stop(b);
    br_config_free(&cfg);
    curl_global_cleanup();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--migrate") == 0) return migrate(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--decode") == 0) return decode_hex(argv[2], false);
    if (argc == 3 && strcmp(argv[1], "--decode-frame") == 0) return decode_hex(argv[2], true);
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("wabridge %s\n", WABRIDGE_VERSION);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--libraries") == 0) {
        print_libraries();
        return 0;
    }
    const char *config = "config.yaml", *reg = "registration.yaml";
    bool gen = false, example = false;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if ((strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--registration") == 0) &&
                 i + 1 < argc)
            reg = argv[++i];
        else if (strcmp(argv[i], "-g") == 0 || strcmp(argv[i], "--generate-registration") == 0)
            gen = true;
        else if (strcmp(argv[i], "-e") == 0 || strcmp(argv[i], "--generate-example-config") == 0)
            example = true;
        else {
            fprintf(stderr, "wabridge: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[1024];
    if (example) {
        if (br_config_write_example(config, err, sizeof(err)) != 0) {
            fprintf(stderr, "wabridge: %s\n", err);
            return 1;
        }
        printf("wrote an example config to %s: edit it, then run wabridge -g -c %s\n", config,
               config);
        return 0;
    }
    if (gen) {
        if (br_config_generate_registration(config, reg, err, sizeof(err)) != 0) {
            fprintf(stderr, "wabridge: %s\n", err);
            return 1;
        }
        printf("wrote %s: install it on your homeserver (app_service_config_files), then run "
               "wabridge -c %s\n",
               reg, config);
        return 0;
    }
    return run(config);
}
