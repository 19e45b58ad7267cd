/*
 * tests/db/test_store_mem.c - the shared store cases against the in-memory store (no server).
 */
#include "check.h"
#include "store_cases.h"
#include "wa/store_mem.h"

static void break_mem(wa_store *st, void *arg)
{
    (void)arg;
    wa_store_mem_fail_after(st, 1);
}

int main(void)
{
    wa_store st;
    CHECK_INT(wa_store_mem_new(&st), WA_STORE_OK);
    store_hooks hooks = {break_mem, NULL};
    store_cases_run(&st, &hooks, &check_passed, &check_failed);
    /* injected failures outside transactions */
    wa_store_mem_fail_after(&st, 2);
    uint8_t key[WA_KEY_LEN] = {1};
    CHECK_INT(st.identity_save(st.ctx, "a:1", key), WA_STORE_OK);
    CHECK_INT(st.identity_save(st.ctx, "a:2", key), WA_STORE_ERR_IO);
    CHECK_INT(st.identity_load(st.ctx, "a:2", key), WA_STORE_NOT_FOUND);
    CHECK_INT((int)wa_store_mem_count(&st), 1);
    CHECK_STR(wa_store_strerror(WA_STORE_ERR_IO), "storage failed; nothing written");
    st.destroy(st.ctx);
    return CHECK_DONE();
}
