/*
 * tests/bridge/test_rooms.c - the bridge's room cache (bridge/bridge.c "rooms"): every portal
 * found by room id and by (receiver, chat) among thousands, duplicates ignored, a login's rooms
 * forgotten with the others kept, group portals (receiver 0) apart from direct ones of the same
 * chat.
 */
#include "bridge/bridge_internal.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 5000

int main(void)
{
    br_bridge *b = calloc(1, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    br_room_ref r;
    CHECK(!br_room_lookup(b, "!nothing:x", &r));
    CHECK(!br_room_of_chat(b, 1, "1@s.whatsapp.net", &r));
    char room[64], chat[64];
    for (int i = 0; i < N; i++) { /* logins 1..7 own the direct chats; i % 10 == 0 are groups */
        snprintf(room, sizeof(room), "!r%d:example.org", i);
        if (i % 10 == 0)
            snprintf(chat, sizeof(chat), "%d@g.us", i);
        else
            snprintf(chat, sizeof(chat), "%d@s.whatsapp.net", i % 500);
        br_room_remember(b, room, chat, i % 10 == 0 ? 0 : 1 + i % 7, 1000 + i);
    }
    /* the same room again changes nothing */
    br_room_remember(b, "!r3:example.org", "other@s.whatsapp.net", 9, 1);
    CHECK_INT(b->n_rooms, N);
    int found = 0, right = 0;
    for (int i = 0; i < N; i++) {
        snprintf(room, sizeof(room), "!r%d:example.org", i);
        if (!br_room_lookup(b, room, &r)) continue;
        found++;
        if (r.portal_id == 1000 + i && r.receiver == (i % 10 == 0 ? 0 : 1 + i % 7)) right++;
    }
    CHECK_INT(found, N);
    CHECK_INT(right, N);
    /* by chat: the first remembered wins for a (receiver, chat) pair */
    CHECK(br_room_of_chat(b, 0, "20@g.us", &r));
    CHECK_STR(r.room, "!r20:example.org");
    CHECK(!br_room_of_chat(b, 1, "20@g.us", &r)); /* a group is not a login's direct chat */
    CHECK(br_room_of_chat(b, 1 + 3 % 7, "3@s.whatsapp.net", &r));
    CHECK_STR(r.room, "!r3:example.org");
    CHECK(!br_room_of_chat(b, 99, "3@s.whatsapp.net", &r)); /* no login 99 */
    /* forgetting login 4's rooms keeps every other */
    br_room_forget_login(b, 4);
    int kept = 0, gone = 0;
    for (int i = 0; i < N; i++) {
        snprintf(room, sizeof(room), "!r%d:example.org", i);
        bool mine = i % 10 != 0 && 1 + i % 7 == 4;
        bool in = br_room_lookup(b, room, &r);
        if (mine && !in) gone++;
        if (!mine && in && r.portal_id == 1000 + i) kept++;
    }
    CHECK(gone > 0);
    CHECK_INT(kept + gone, N);
    CHECK_INT(b->n_rooms, (size_t)kept);
    CHECK(br_room_of_chat(b, 0, "4990@g.us", &r));
    /* and new rooms still go in */
    br_room_remember(b, "!new:example.org", "new@s.whatsapp.net", 4, 77);
    CHECK(br_room_lookup(b, "!new:example.org", &r) && r.portal_id == 77);
    CHECK(br_room_of_chat(b, 4, "new@s.whatsapp.net", &r) && r.portal_id == 77);
    free(b->rooms);
    free(b->by_room);
    free(b->by_chat);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return CHECK_DONE();
}
