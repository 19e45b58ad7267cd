/*
 * tests/unit/test_util.c - the byte cursor, the builder, hex and the arena.
 */
#include "check.h"
#include "util/arena.h"
#include "util/bytes.h"

#include <stdint.h>
#include <stdlib.h>

static void test_cursor(void)
{
    const uint8_t in[] = {0x01, 0x02, 0x03, 0xF4, 0x05, 0x06, 0x07, 0x08, 0x09};
    wb_cur c;
    wb_cur_init(&c, in, sizeof(in));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    CHECK(wb_cur_u8(&c, &u8) && u8 == 0x01);
    CHECK(wb_cur_u16be(&c, &u16) && u16 == 0x0203);
    CHECK(wb_cur_u20be(&c, &u32) && u32 == 0x40506); /* top nibble of 0xF4 dropped */
    CHECK_INT(wb_cur_offset(&c, in), 6);
    CHECK(!wb_cur_u32be(&c, &u32)); /* 3 left: fails and consumes nothing */
    CHECK_INT(wb_cur_left(&c), 3);
    CHECK(wb_cur_u24be(&c, &u32) && u32 == 0x070809);
    CHECK(!wb_cur_u8(&c, &u8));
    const uint8_t *p;
    CHECK(wb_cur_bytes(&c, 0, &p));
    wb_cur_init(&c, in, sizeof(in));
    wb_cur sub;
    CHECK(!wb_cur_sub(&c, 10, &sub));
    CHECK(wb_cur_sub(&c, 4, &sub) && wb_cur_left(&sub) == 4 && wb_cur_left(&c) == 5);
    CHECK(!wb_cur_skip(&c, 6));
    CHECK(wb_cur_skip(&c, 5));
    CHECK(!wb_cur_bytes(&c, SIZE_MAX, &p));
}

static void test_builder(void)
{
    wb_buf b;
    wb_buf_init(&b);
    CHECK(wb_buf_u8(&b, 0xAB));
    CHECK(wb_buf_u16be(&b, 0x1234));
    CHECK(wb_buf_u20be(&b, 0xFFFFF));
    CHECK(wb_buf_u24be(&b, 0x123456));
    CHECK(wb_buf_u32be(&b, 0xDEADBEEF));
    const uint8_t want[] = {0xAB, 0x12, 0x34, 0x0F, 0xFF, 0xFF, 0x12,
                            0x34, 0x56, 0xDE, 0xAD, 0xBE, 0xEF};
    CHECK_INT(b.len, sizeof(want));
    CHECK(memcmp(b.data, want, sizeof(want)) == 0);
    for (int i = 0; i < 100000; i++)
        wb_buf_u8(&b, (uint8_t)i);
    CHECK_INT(b.len, sizeof(want) + 100000);
    CHECK(!wb_buf_reserve(&b, SIZE_MAX - 10)); /* impossible: fails, marks failed */
    CHECK(b.failed);
    CHECK(!wb_buf_u8(&b, 1)); /* later writes are refused */
    size_t len = 1;
    CHECK(wb_buf_steal(&b, &len) == NULL && len == 0);
    wb_buf_append(&b, "xyz", 3);
    uint8_t *p = wb_buf_steal(&b, &len);
    CHECK(p && len == 3 && memcmp(p, "xyz", 3) == 0);
    free(p);
    CHECK(b.data == NULL && b.len == 0);
}

static void test_hex(void)
{
    char out[9];
    const uint8_t in[] = {0x00, 0x9f, 0xA0, 0xff};
    wb_hex_encode(in, 4, out);
    CHECK_STR(out, "009fa0ff");
    uint8_t back[4];
    size_t n;
    CHECK(wb_hex_decode("009FA0ff", 8, back, sizeof(back), &n) && n == 4 &&
          memcmp(back, in, 4) == 0);
    CHECK(!wb_hex_decode("009", 3, back, sizeof(back), &n));
    CHECK(!wb_hex_decode("0g", 2, back, sizeof(back), &n));
    CHECK(!wb_hex_decode("0011223344", 10, back, sizeof(back), &n));
}

static void test_arena(void)
{
    wb_arena a;
    wb_arena_init(&a, 128);
    char *s = wb_arena_strndup(&a, "hello world", 5);
    CHECK_STR(s, "hello");
    void *prev = NULL;
    for (int i = 0; i < 1000; i++) {
        uint64_t *p = wb_arena_alloc(&a, 24);
        CHECK(p != NULL && ((uintptr_t)p % 16) == 0 && p != prev);
        *p = (uint64_t)i;
        prev = p;
    }
    uint8_t *big = wb_arena_zalloc(&a, 100000); /* bigger than a block: its own block */
    CHECK(big && big[0] == 0 && big[99999] == 0);
    char *after = wb_arena_strndup(&a, "still here", 10);
    CHECK_STR(after, "still here");
    CHECK_STR(s, "hello");
    CHECK(wb_arena_alloc(&a, SIZE_MAX) == NULL);
    wb_arena_reset(&a);
    CHECK(a.total <= 128);
    CHECK(wb_arena_alloc(&a, 0) != NULL);
    wb_arena_free(&a);
    CHECK(a.head == NULL);
}

int main(void)
{
    test_cursor();
    test_builder();
    test_hex();
    test_arena();
    return CHECK_DONE();
}
