/*
 * bench/bench_binary.c - encode + decode of the golden-vector corpus, in ns per node.
 *
 * The corpus is tests/vectors/binary/encode.json without its large vectors (encodings over 4 KB,
 * which only measure memcpy): realistic stanzas, every token, JIDs, strings, random trees. Each
 * round encodes every node tree and decodes the bytes again; the figure is the time of a round
 * divided by the number of nodes in the corpus. bench/bench_baileys_binary.mjs does the same work
 * with Baileys; bench/run prints both and the ratio.
 *   bench_binary VECTOR_DIR [SECONDS]
 */
#include "../tests/unit/vector_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t count_nodes(const wa_node *n)
{
    size_t c = 1;
    if (n->kind == WA_CONTENT_LIST)
        for (size_t i = 0; i < n->nchildren; i++)
            c += count_nodes(n->children[i]);
    return c;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTOR_DIR [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/encode.json", argv[1]);
    char *text = vj_read_file(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (!root) return 1;

    wb_arena trees;
    wb_arena_init(&trees, 1 << 16);
    wa_node **corpus = calloc((size_t)cJSON_GetArraySize(root), sizeof(*corpus));
    size_t ntrees = 0, nnodes = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "hex"))) continue; /* large */
        wa_node *n = vj_node_from_json(cJSON_GetObjectItemCaseSensitive(v, "node"), &trees);
        if (!n) return 1;
        corpus[ntrees++] = n;
        nnodes += count_nodes(n);
    }

    wb_buf buf;
    wb_buf_init(&buf);
    wb_arena scratch;
    wb_arena_init(&scratch, 1 << 16);
    size_t rounds = 0;
    double start = now_s(), elapsed;
    do {
        for (size_t i = 0; i < ntrees; i++) {
            buf.len = 0;
            wa_node *out;
            if (wa_binary_encode(corpus[i], &buf) != WA_OK ||
                wa_binary_decode(buf.data, buf.len, &scratch, &out, NULL) != WA_OK)
                return 1;
            wb_arena_reset(&scratch);
        }
        rounds++;
        elapsed = now_s() - start;
    } while (elapsed < seconds);
    double ns_per_node = elapsed * 1e9 / (double)(rounds * nnodes);
    printf("{\"impl\":\"wabridge-c\",\"trees\":%zu,\"nodes\":%zu,\"rounds\":%zu,\"ns_per_node\":%."
           "1f}\n",
           ntrees, nnodes, rounds, ns_per_node);
    wb_buf_free(&buf);
    wb_arena_free(&scratch);
    wb_arena_free(&trees);
    free(corpus);
    cJSON_Delete(root);
    free(text);
    return 0;
}
