/*
 * tests/unit/binary_tool.c - lets the Node interop scripts drive our codec.
 *
 *   binary_tool encode FILE.json...  prints a JSON array [{"name", "hex"}] with our encoding of the
 *                                    "node" of every vector in the files
 *   binary_tool tokens               prints the compiled token tables and, for every token, what
 * our encoder's lookup returns: {"single": [...], "double": [[...]], "lookup": {"token": [dict or
 * -1, index]}}
 */
#include "vector_json.h"
#include "wa/binary/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_encode(int n, char **files)
{
    cJSON *out = cJSON_CreateArray();
    for (int f = 0; f < n; f++) {
        char *text = vj_read_file(files[f], NULL);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        if (!root) {
            fprintf(stderr, "binary_tool: cannot read %s\n", files[f]);
            return 1;
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, root)
        {
            wb_arena a;
            wb_arena_init(&a, 0);
            wa_node *node = vj_node_from_json(cJSON_GetObjectItemCaseSensitive(v, "node"), &a);
            wb_buf buf;
            wb_buf_init(&buf);
            if (!node || wa_binary_encode(node, &buf) != WA_OK) {
                fprintf(stderr, "binary_tool: cannot encode a vector of %s\n", files[f]);
                return 1;
            }
            char *hex = malloc(buf.len * 2 + 1);
            wb_hex_encode(buf.data, buf.len, hex);
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "name",
                                    cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring);
            cJSON_AddStringToObject(item, "hex", hex);
            cJSON_AddItemToArray(out, item);
            free(hex);
            wb_buf_free(&buf);
            wb_arena_free(&a);
        }
        cJSON_Delete(root);
        free(text);
    }
    char *s = cJSON_PrintUnformatted(out);
    puts(s);
    free(s);
    cJSON_Delete(out);
    return 0;
}

static void add_lookup(cJSON *lookup, const char *t)
{
    const wa_token_slot *slot = wa_token_lookup(t, strlen(t));
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(!slot                           ? -2
                                                  : slot->dict == WA_TOKEN_SINGLE ? -1
                                                                                  : slot->dict));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(slot ? slot->index : -1));
    cJSON_AddItemToObject(lookup, t, pair);
}

static int cmd_tokens(void)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *single = cJSON_AddArrayToObject(out, "single");
    cJSON *dbl = cJSON_AddArrayToObject(out, "double");
    cJSON *lookup = cJSON_AddObjectToObject(out, "lookup");
    for (int i = 0; i < WA_TOKENS_SINGLE_COUNT; i++) {
        cJSON_AddItemToArray(single, cJSON_CreateString(wa_tokens_single[i]));
        if (i) add_lookup(lookup, wa_tokens_single[i]);
    }
    for (int d = 0; d < WA_TOKENS_DICTS; d++) {
        cJSON *dict = cJSON_CreateArray();
        for (int i = 0; i < WA_TOKENS_DICT_SIZE; i++) {
            cJSON_AddItemToArray(dict, cJSON_CreateString(wa_tokens_double[d][i]));
            add_lookup(lookup, wa_tokens_double[d][i]);
        }
        cJSON_AddItemToArray(dbl, dict);
    }
    char *s = cJSON_PrintUnformatted(out);
    puts(s);
    free(s);
    cJSON_Delete(out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "encode") == 0) return cmd_encode(argc - 2, argv + 2);
    if (argc == 2 && strcmp(argv[1], "tokens") == 0) return cmd_tokens();
    fprintf(stderr, "usage: %s encode FILE.json... | tokens\n", argv[0]);
    return 2;
}
