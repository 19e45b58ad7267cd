/*
 * util/log.h - the process's logger: one line per record on stderr, as text or JSON.
 *
 * The level and format are set once at start-up from the config (the only global mutable state
 * besides the config, as STYLE.md allows). Thread-safe: a record is written with one call.
 * Never pass secrets (tokens, keys) to it.
 */
#ifndef WB_LOG_H
#define WB_LOG_H

#include <stdbool.h>

typedef enum wb_log_level { WB_LOG_DEBUG = 0, WB_LOG_INFO, WB_LOG_WARN, WB_LOG_ERROR } wb_log_level;

/* name: "debug" / "info" / "warn" / "error"; false when unknown (nothing changes). */
bool wb_log_set_level_name(const char *name);
void wb_log_set_level(wb_log_level level);
void wb_log_set_json(bool json);
bool wb_log_enabled(wb_log_level level);
/* module: a short tag ("bridge", "portal", "login 3"). */
void wb_log(wb_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define WB_DEBUG(mod, ...) wb_log(WB_LOG_DEBUG, mod, __VA_ARGS__)
#define WB_INFO(mod, ...)  wb_log(WB_LOG_INFO, mod, __VA_ARGS__)
#define WB_WARN(mod, ...)  wb_log(WB_LOG_WARN, mod, __VA_ARGS__)
#define WB_ERROR(mod, ...) wb_log(WB_LOG_ERROR, mod, __VA_ARGS__)

#endif
