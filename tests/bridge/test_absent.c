/*
 * tests/bridge/test_absent.c - a portal worker's note of WhatsApp ids known to have no mapping row
 * (bridge/portal.c, the duplicate check of a burst): an id is taken once, per portal; a full note
 * lets its oldest ids go and keeps every newer one findable (a hash index over a ring, whose
 * buckets must stay linked when notes leave from the middle of them); ids too long are not
 * noted.
 */
#include "bridge/bridge_internal.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void id_of(int i, char *out, size_t cap)
{
    snprintf(out, cap, "3EB0%016X", (unsigned)i * 2654435761u);
}

int main(void)
{
    br_pworker *pw = calloc(1, sizeof(*pw));
    CHECK(pw != NULL);
    if (!pw) return CHECK_DONE();
    char id[64];

    /* one note answers one check, in its own portal only */
    CHECK(!br_absent_take(pw, 7, "ABC"));
    br_absent_note(pw, 7, "ABC");
    CHECK(!br_absent_take(pw, 8, "ABC"));
    CHECK(!br_absent_take(pw, 7, "ABD"));
    CHECK(br_absent_take(pw, 7, "ABC"));
    CHECK(!br_absent_take(pw, 7, "ABC"));

    /* a full note: the oldest go, every newer one is found; half of them are taken out of the
     * middle of their buckets first (more notes than buckets: every bucket holds several) */
    const int extra = 1000, total = BR_ABSENT_MAX + extra;
    for (int i = 0; i < total; i++) {
        id_of(i, id, sizeof(id));
        br_absent_note(pw, 1 + i % 16, id);
    }
    int taken = 0, wrong = 0;
    for (int i = extra; i < total; i += 2) {
        id_of(i, id, sizeof(id));
        if (br_absent_take(pw, 1 + i % 16, id)) taken++;
        if (br_absent_take(pw, 1 + (i + 1) % 16, id)) wrong++; /* another portal's */
    }
    CHECK_INT(taken, BR_ABSENT_MAX / 2);
    CHECK_INT(wrong, 0);
    int old = 0, kept = 0, again = 0;
    for (int i = 0; i < total; i++) {
        id_of(i, id, sizeof(id));
        bool in = br_absent_take(pw, 1 + i % 16, id);
        if (i < extra && in) old++;
        if (i >= extra && (i - extra) % 2 == 1 && in) kept++;
        if (i >= extra && (i - extra) % 2 == 0 && in) again++;
    }
    CHECK_INT(old, 0);
    CHECK_INT(kept, BR_ABSENT_MAX / 2);
    CHECK_INT(again, 0);

    /* the note works on after wrapping, over freed slots */
    for (int i = 0; i < 3 * BR_ABSENT_MAX; i++) {
        id_of(i, id, sizeof(id));
        br_absent_note(pw, 3, id);
        if (i % 3 == 0) br_absent_take(pw, 3, id);
    }
    int found = 0;
    for (int i = 2 * BR_ABSENT_MAX; i < 3 * BR_ABSENT_MAX; i++) {
        id_of(i, id, sizeof(id));
        if (br_absent_take(pw, 3, id)) found++;
    }
    int want = 0;
    for (int i = 2 * BR_ABSENT_MAX; i < 3 * BR_ABSENT_MAX; i++)
        want += i % 3 != 0;
    CHECK_INT(found, want);

    /* an id too long to note is asked about each time; portal 0 is no portal */
    char longid[BR_ABSENT_ID + 8];
    memset(longid, 'A', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    br_absent_note(pw, 5, longid);
    CHECK(!br_absent_take(pw, 5, longid));
    br_absent_note(pw, 0, "ABC");
    CHECK(!br_absent_take(pw, 0, "ABC"));
    free(pw);
    return CHECK_DONE();
}
