/*
 * tests/unit/sim_rig.c - engines and wa-sim's logic wired in memory on a virtual clock (see
 * sim_rig.h): the byte pump, the clock, and the app's side of each engine.
 */
#include "sim_rig.h"

#include "check.h"
#include "wa/store_mem.h"

#include <assert.h>
#include <stdlib.h>

#define SIM_RIG_MAX_ROUNDS 10000 /* pump rounds before it gives up on settling */

int sim_rig_init(sim_rig *r, const char *seed, wa_crypto *crypto)
{
    memset(r, 0, sizeof(*r));
    r->crypto = crypto;
    r->now = 1000;
    r->wall = 1800000000;
    return sim_init(&r->s, (const uint8_t *)seed, strlen(seed), 1800000000);
}

void sim_rig_close(sim_rig *r, sim_rig_peer *p)
{
    if (p->conn) sim_conn_free(&r->s, p->conn);
    p->conn = NULL;
}

void sim_rig_free(sim_rig *r)
{
    for (int i = 0; i < r->npeers; i++) {
        sim_rig_peer *p = r->peers[i];
        sim_rig_close(r, p);
        for (int k = 0; k < p->nmsgs; k++)
            wa_msg_free(&p->msgs[k].m);
        for (int k = 0; k < p->nresults; k++)
            wa_group_result_free(&p->results[k]);
        for (int k = 0; k < p->nupdates; k++)
            wa_group_update_free(&p->updates[k]);
        wa_client_free(p->client);
        p->store.destroy(p->store.ctx);
        free(p);
    }
    r->npeers = 0;
    sim_free(&r->s);
}

sim_rig_peer *sim_rig_peer_add(sim_rig *r, const char *phone)
{
    assert(r->npeers < SIM_RIG_MAX_PEERS);
    sim_rig_peer *p = calloc(1, sizeof(*p));
    assert(p != NULL);
    r->peers[r->npeers++] = p;
    p->phone = phone;
    p->scan_qr = true;
    CHECK_INT(wa_store_mem_new(&p->store), WA_STORE_OK);
    return p;
}

wa_client *sim_rig_peer_client(sim_rig *r, sim_rig_peer *p, const char *push_name,
                               const uint8_t *trust_root)
{
    wa_client_config cfg = {.store = &p->store,
                            .crypto = r->crypto,
                            .trust_root = trust_root,
                            .push_name = push_name,
                            .os_name = "wabridge-test"};
    int err;
    p->client = wa_client_new(&cfg, &err);
    CHECK(p->client != NULL);
    return p->client;
}

sim_rig_peer *sim_rig_pair(sim_rig *r, const char *phone, const char *push_name)
{
    sim_rig_peer *p = sim_rig_peer_add(r, phone);
    sim_rig_peer_client(r, p, push_name, r->s.root.pub);
    CHECK_INT(wa_client_start(p->client, r->now, r->wall), WA_OK);
    sim_rig_advance(r, 2000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    return p;
}

static void take_messages(sim_rig_peer *p)
{
    wa_received rcv;
    while (wa_client_next_message(p->client, &rcv)) {
        if (p->nmsgs < SIM_RIG_MAX_MSGS) {
            sim_rig_msg *g = &p->msgs[p->nmsgs++];
            memset(g, 0, sizeof(*g));
            snprintf(g->id, sizeof(g->id), "%s", rcv.id);
            snprintf(g->chat, sizeof(g->chat), "%s", rcv.chat);
            snprintf(g->sender, sizeof(g->sender), "%s", rcv.sender);
            snprintf(g->type, sizeof(g->type), "%s", rcv.type);
            g->nparts = rcv.nparts;
            for (size_t i = 0; i < rcv.nparts; i++) {
                g->skmsg[i] = rcv.parts[i].skmsg;
                g->skdm_only[i] = rcv.parts[i].skdm_only;
                memcpy(g->hash[i], rcv.parts[i].hash, 32);
            }
            CHECK_INT(wa_received_parse(&rcv, &g->m), WA_OK);
        }
        wa_received_free(&rcv);
    }
}

void sim_rig_take_groups(sim_rig_peer *p)
{
    wa_group_result res;
    while (wa_client_next_group_result(p->client, &res)) {
        if (p->nresults < SIM_RIG_MAX_GROUP)
            p->results[p->nresults++] = res;
        else
            wa_group_result_free(&res);
    }
    wa_group_update up;
    while (wa_client_next_group_update(p->client, &up)) {
        if (p->nupdates < SIM_RIG_MAX_GROUP)
            p->updates[p->nupdates++] = up;
        else
            wa_group_update_free(&up);
    }
}

/* What the app does with an event: keeps it, and acts on a few. */
static void take_event(sim_rig *r, sim_rig_peer *p, const wa_event *ev)
{
    char err[160];
    if (p->nevents < SIM_RIG_MAX_EVENTS) p->events[p->nevents++] = *ev;
    if (ev->type == WA_EV_PAIR_CODE && p->pair_code) {
        /* the user types the code the moment it shows, before any more bytes move: the server
         * must already hold the companion's request (the engine shows the code on its answer) */
        char code[9];
        memcpy(code, ev->text, 8);
        code[8] = 0;
        if (p->pair_code == 2) code[0] = code[0] == 'A' ? 'B' : 'A';
        p->pair_code = 0;
        CHECK_INT(sim_admin_pair_code(&r->s, p->phone, code, err, sizeof(err)), 0);
    }
    if (ev->type == WA_EV_QR && p->scan_qr) {
        CHECK_INT(sim_admin_scan(&r->s, p->phone, ev->text, err, sizeof(err)), 0);
        p->scan_qr = false;
    }
    if (ev->type == WA_EV_MESSAGE) take_messages(p);
    if ((ev->type == WA_EV_GROUP_RESULT || ev->type == WA_EV_GROUP) && !p->hold_groups)
        sim_rig_take_groups(p);
}

/* One round for one peer: its connection opened or closed, bytes each way, its events. Returns
 * whether anything moved. */
static bool pump_peer(sim_rig *r, sim_rig_peer *p)
{
    bool moved = false;
    wa_io io = wa_client_io(p->client);
    if (io == WA_IO_OPEN) {
        sim_rig_close(r, p);
        p->conn = sim_conn_new(&r->s, NULL);
        wa_client_on_open(p->client, r->now, r->wall);
        moved = true;
    } else if (io == WA_IO_CLOSE) {
        sim_rig_close(r, p);
        moved = true;
    }
    wb_buf *out = wa_client_output(p->client);
    if (out->len && p->conn) {
        if (sim_conn_receive(&r->s, p->conn, out->data, out->len) < 0) {
            sim_rig_close(r, p);
            wa_client_on_closed(p->client, r->now);
        }
        moved = true;
    }
    out->len = 0;
    if (p->conn && p->conn->hello_pending) {
        r->now += r->hello_ms;
        sim_conn_timer(&r->s, p->conn);
        moved = true;
    }
    if (p->conn && p->conn->out.len) {
        wb_buf bytes = p->conn->out;
        wb_buf_init(&p->conn->out);
        if (!p->server_mute) wa_client_on_data(p->client, bytes.data, bytes.len, r->now, r->wall);
        wb_buf_free(&bytes);
        moved = true;
    } else if (p->conn && p->conn->state == SIM_CONN_CLOSING) {
        sim_rig_close(r, p);
        wa_client_on_closed(p->client, r->now);
        moved = true;
    }
    wa_event ev;
    while (wa_client_next_event(p->client, &ev)) {
        take_event(r, p, &ev);
        moved = true;
    }
    return moved;
}

void sim_rig_pump(sim_rig *r)
{
    for (int round = 0; round < SIM_RIG_MAX_ROUNDS; round++) {
        bool moved = false;
        for (int i = 0; i < r->npeers; i++)
            if (r->peers[i]->client && pump_peer(r, r->peers[i])) moved = true;
        if (!moved) return;
    }
}

void sim_rig_advance(sim_rig *r, int64_t ms)
{
    int64_t end = r->now + ms;
    sim_rig_pump(r);
    for (int i = 0; i < 100000; i++) {
        int64_t d = INT64_MAX;
        for (int k = 0; k < r->npeers; k++)
            if (r->peers[k]->client && wa_client_deadline(r->peers[k]->client) < d)
                d = wa_client_deadline(r->peers[k]->client);
        if (d > end) break;
        if (d > r->now) {
            if (r->wall_follows) r->wall += (uint64_t)(d - r->now) / 1000;
            r->now = d;
        }
        for (int k = 0; k < r->npeers; k++)
            if (r->peers[k]->client) wa_client_tick(r->peers[k]->client, r->now, r->wall);
        sim_rig_pump(r);
    }
    r->now = end;
}

int sim_rig_send_text(sim_rig *r, sim_rig_peer *p, const char *to, const char *text, char *id)
{
    int rc = wa_client_send_text(p->client, to, text, id, r->now);
    sim_rig_advance(r, 100);
    return rc;
}

int sim_rig_send(sim_rig *r, sim_rig_peer *p, const char *to, const wa_msg *m, char *id)
{
    int rc = wa_client_send_message(p->client, to, m, id, r->now);
    sim_rig_advance(r, 100);
    return rc;
}

int sim_rig_count(const sim_rig_peer *p, wa_event_type t, const char *text_prefix)
{
    int n = 0;
    for (int i = 0; i < p->nevents; i++)
        if (p->events[i].type == t &&
            (!text_prefix || strncmp(p->events[i].text, text_prefix, strlen(text_prefix)) == 0))
            n++;
    return n;
}

const wa_event *sim_rig_last(const sim_rig_peer *p, wa_event_type t)
{
    for (int i = p->nevents - 1; i >= 0; i--)
        if (p->events[i].type == t) return &p->events[i];
    return NULL;
}

const sim_rig_msg *sim_rig_got(const sim_rig_peer *p, const char *id)
{
    for (int i = 0; i < p->nmsgs; i++)
        if (strcmp(p->msgs[i].id, id) == 0) return &p->msgs[i];
    return NULL;
}

int sim_rig_got_count(const sim_rig_peer *p, const char *id)
{
    int n = 0;
    for (int i = 0; i < p->nmsgs; i++)
        n += strcmp(p->msgs[i].id, id) == 0;
    return n;
}

const sim_phone_msg *sim_rig_phone_got(sim_rig *r, const char *phone, const char *id)
{
    size_t n = 0;
    const sim_phone_msg *m = sim_admin_phone_messages(&r->s, phone, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].id, id) == 0) return &m[i];
    return NULL;
}

wa_node *sim_rig_queued(sim_rig *r, const char *phone, uint16_t dev, const char *id, wb_arena *a)
{
    sim_account *acct = sim_account_find(&r->s, phone);
    for (int i = 0; acct && i < acct->ndevices; i++) {
        if (acct->devices[i].id != dev) continue;
        for (sim_queued *q = acct->devices[i].queue_head; q; q = q->next) {
            wa_node *n;
            if (!q->is_receipt && strcmp(q->id, id) == 0 &&
                wa_binary_decode(q->node, q->node_len, a, &n, NULL) == WA_OK)
                return n;
        }
    }
    return NULL;
}

void sim_rig_add_checks(int *passed, int *failed)
{
    *passed += check_passed;
    *failed += check_failed;
    check_passed = check_failed = 0;
}
