/*
 * util/log.c - the logger of util/log.h.
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile int log_level = WB_LOG_INFO;
static volatile bool log_json = false;
static const char *const names[] = {"debug", "info", "warn", "error"};

bool wb_log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) {
            log_level = i;
            return true;
        }
    return false;
}

void wb_log_set_level(wb_log_level level)
{
    log_level = (int)level;
}

void wb_log_set_json(bool json)
{
    log_json = json;
}

bool wb_log_enabled(wb_log_level level)
{
    return (int)level >= log_level;
}

/* JSON string escaping of s into out (always terminated). */
static void json_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

void wb_log(wb_log_level level, const char *module, const char *fmt, ...)
{
    if (!wb_log_enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    const char *lv = names[level >= 0 && level <= 3 ? level : 1];
    if (log_json) {
        char emsg[4200], emod[256];
        json_escape(msg, emsg, sizeof(emsg));
        json_escape(module ? module : "", emod, sizeof(emod));
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"%s\"}\n", ts,
                lv, emod, emsg);
    } else {
        fprintf(stderr, "%s %-5s [%s] %s\n", ts, lv, module ? module : "-", msg);
    }
}
