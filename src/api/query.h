/* query.h — the OneView/HPE collection query language: filter, query and sort
 * parameters, evaluated over JSON resource documents. See docs/api-collections.md
 * No HTTP here: the caller passes the decoded parameter values. */
#ifndef STREAMER_QUERY_H
#define STREAMER_QUERY_H

#include <jansson.h>
#include <stddef.h>

#include "util/util.h"

struct query;

/* Parse the decoded values of every `filter` parameter (ANDed together), the
 * optional `query` parameter and the optional `sort` parameter.
 * Filter/query grammar (case-insensitive keywords):
 *   expr   := term { (AND | OR) term }         (AND binds tighter than OR)
 *   term   := [NOT] '(' expr ')' | [NOT] field op value
 *   op     := = | == | != | <> | < | <= | > | >= | EQ | NE | LT | LE | GT | GE | matches
 *   field  := name, dotted path (a.b), optionally in single or double quotes
 *   value  := 'single quoted' (with '' as an escaped quote) | "double quoted" | bare word | null
 * A whole filter wrapped in double quotes ("name='x'") is unwrapped first.
 * `matches` is SQL LIKE: % any run, _ one char, case-insensitive.
 * Comparison: strings case-insensitively; if both sides are numbers, numerically;
 * JSON true/false compare with the words true/false; a missing field equals only null.
 * A field whose value is an array matches if any element matches.
 * Sort: "field[:asc|:desc|:ascending|:descending]" comma-separated, default asc.
 * Returns NULL and sets e (status 400, code "INVALID_FILTER" / "INVALID_SORT")
 * on a syntax error. Any of the inputs may be NULL/empty. */
struct query *query_parse(const char *const *filters, size_t nfilters, const char *query,
                          const char *sort, struct err *e);
void query_free(struct query *q);

/* 1 if doc satisfies every filter and the query (1 when there are none). */
int query_match(const struct query *q, json_t *doc);

/* qsort-style comparison by the sort keys (0 when there is no sort). */
int query_compare(const struct query *q, json_t *a, json_t *b);

#endif
