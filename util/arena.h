/*
 * util/arena.h - a region allocator: many small allocations, one free.
 *
 * A decoded binary node tree (and anything else built and dropped as a whole) lives in one arena,
 * so decoding costs a few large mallocs instead of one per node and freeing a tree is a single
 * call. Memory handed out is aligned for any scalar type and lives until wb_arena_reset or
 * wb_arena_free.
 */
#ifndef WB_UTIL_ARENA_H
#define WB_UTIL_ARENA_H

#include <stddef.h>

typedef struct wb_arena_block wb_arena_block;

typedef struct wb_arena {
    wb_arena_block *head; /* newest block first; NULL when empty */
    size_t block_size;    /* bytes per ordinary block; larger requests get a block of their own */
    size_t total;         /* bytes obtained from malloc, for limits and statistics */
} wb_arena;

/* block_size 0 picks a default (8 KiB). No memory is taken until the first allocation. */
void wb_arena_init(wb_arena *a, size_t block_size);
/* Returns n bytes, or NULL when malloc fails. n == 0 returns a valid unique pointer. */
void *wb_arena_alloc(wb_arena *a, size_t n);
/* Like wb_arena_alloc, zero-filled. */
void *wb_arena_zalloc(wb_arena *a, size_t n);
/* Copies n bytes and appends a NUL byte, so strings copied here are also C strings. */
char *wb_arena_strndup(wb_arena *a, const char *s, size_t n);
/* Keeps the first block for reuse and frees the rest; everything handed out becomes invalid. */
void wb_arena_reset(wb_arena *a);
/* Frees every block. The arena may be used again afterwards. */
void wb_arena_free(wb_arena *a);

#endif
