/*
 * tests/unit/vector_json.h - the JSON form of nodes used by the golden vectors
 * (tests/interop/binary_common.mjs describes it), read with cJSON.
 */
#ifndef WB_TESTS_VECTOR_JSON_H
#define WB_TESTS_VECTOR_JSON_H

#include "wa/binary/node.h"

#include <cJSON.h>

/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL (and a message) on failure. */
char *vj_read_file(const char *path, size_t *len);
/* Builds the node a JSON node describes, in arena a; NULL if the JSON is not a node. */
wa_node *vj_node_from_json(const cJSON *j, wb_arena *a);
/* Compares a decoded node with a JSON node strictly (content kinds must match). Returns NULL when
 * equal, else a static message naming the first difference. */
const char *vj_node_matches(const wa_node *n, const cJSON *j);

#endif
