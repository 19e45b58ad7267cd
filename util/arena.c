/*
 * util/arena.c - the region allocator of util/arena.h: a list of blocks, bump allocation inside
 * each.
 */
#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16

struct wb_arena_block {
    wb_arena_block *next; /* older block */
    size_t size;          /* usable bytes in data */
    size_t used;          /* bytes handed out from data */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

void wb_arena_init(wb_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 8192;
    a->total = 0;
}

static wb_arena_block *arena_new_block(wb_arena *a, size_t min)
{
    size_t size = min > a->block_size ? min : a->block_size;
    if (size > SIZE_MAX - sizeof(wb_arena_block)) return NULL;
    wb_arena_block *b = malloc(sizeof(wb_arena_block) + size);
    if (!b) return NULL;
    b->size = size;
    b->used = 0;
    a->total += size;
    if (min > a->block_size && a->head) {
        /* A large block goes behind the current one so the current block's free space is kept. */
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = a->head;
        a->head = b;
    }
    return b;
}

void *wb_arena_alloc(wb_arena *a, size_t n)
{
    if (n > SIZE_MAX - ARENA_ALIGN) return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0) need = ARENA_ALIGN;
    wb_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        b = arena_new_block(a, need);
        if (!b) return NULL;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

void *wb_arena_zalloc(wb_arena *a, size_t n)
{
    void *p = wb_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

char *wb_arena_strndup(wb_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *p = wb_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void wb_arena_reset(wb_arena *a)
{
    wb_arena_block *keep = NULL;
    for (wb_arena_block *b = a->head; b;) {
        wb_arena_block *next = b->next;
        if (!keep && b->size == a->block_size) {
            keep = b;
        } else {
            free(b);
        }
        b = next;
    }
    a->head = keep;
    a->total = 0;
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
        a->total = keep->size;
    }
}

void wb_arena_free(wb_arena *a)
{
    for (wb_arena_block *b = a->head; b;) {
        wb_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
}
