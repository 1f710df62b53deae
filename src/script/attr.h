/* attr.h — HPE custom attributes: the @name@ tokens of plan scripts, typed
 * declarations with constraints (build plans, deployment plans), value
 * precedence, validation and substitution. Pure functions over jansson values;
 * no I/O, no HTTP. See docs/attributes.md. */
#ifndef STREAMER_ATTR_H
#define STREAMER_ATTR_H

#include <jansson.h>
#include <stddef.h>

#include "util/util.h"

/* One @...@ token found in a text. */
struct attr_token {
  size_t offset, length; /* the whole token including both '@' */
  char *name;            /* "ManagementNIC" */
  char *sub;             /* "mac" or NULL */
  char *def;             /* default text or NULL when no ':' */
};

/* Find every token in `text` (rules of hpe-artifacts.md §4): name is
 * [A-Za-z_][A-Za-z0-9_-]*, optional .sub with the same charset, optional
 * :default of any characters except '@' and newline. "${a[@]}", "$@",
 * "user@host", "\@" and a lone '@' are not tokens. Returns the count (>= 0)
 * and a malloc'd array in *out (free with attr_tokens_free), or -1 on ENOMEM. */
int attr_scan(const char *text, struct attr_token **out);
void attr_tokens_free(struct attr_token *t, size_t n);

/* The customAttributes a plan script declares, derived from its content: a
 * JSON array of {"name","value"}, one per distinct full token name
 * ("DomainName", "ManagementNIC.vlanid"), in order of first appearance,
 * "value" = the first default given for that name, else "". Names starting
 * with '_' (appliance-provided system attributes such as _Initiator1.ip) are
 * not listed. */
json_t *attr_derive(const char *content);

/* Substitute every token of `text` with its value. `values` is an object of
 * name -> string, where NIC sub-values are keyed "Name.sub". Lookup order for
 * a token: values[full name], then its own :default, then "". Returns a
 * malloc'd string. */
char *attr_substitute(const char *text, json_t *values);

/* Attribute types. */
enum attr_type {
  ATTR_STRING,
  ATTR_NUMBER,
  ATTR_PASSWORD,
  ATTR_OPTION,
  ATTR_FQDN,
  ATTR_HOSTNAME,
  ATTR_IPV4,
  ATTR_NIC,
  ATTR_TYPE_INVALID = -1
};
enum attr_type attr_type_parse(const char *s); /* case-insensitive; NULL -> ATTR_STRING */

/* Check one declaration object as found in a build plan or deployment plan
 * customAttributes array: {"name","value","type","constraints","description"}
 * (+ "id","visible","editable" for deployment plans). Checks the name syntax,
 * the type, that "constraints" is a JSON-encoded string (or an object, or null,
 * which attr_decl_normalize turns into a string) whose keys fit the type, and
 * that "value" (if non-empty) satisfies the constraints. Each violation is
 * appended to `violations` (a JSON array) as
 *   {"errorCode":"INVALID_ATTRIBUTE","message":"attribute \"X\": <rule>", ...}
 * via err_nest-like objects. Returns the number of violations added. */
int attr_decl_check(json_t *decl, json_t *violations);

/* Normalize a declaration in place: constraints object -> JSON string,
 * null/absent constraints -> "{}", null value -> "" (except nic, which keeps
 * null), booleans "visible"/"editable" given as strings -> real booleans.
 * Returns 0, or -1 if decl is not an object. */
int attr_decl_normalize(json_t *decl);

/* Check one value against a declaration. NIC declarations take their values
 * per sub-parameter: `value` is then ignored and `nic_values` (object
 * "sub" -> string, e.g. {"constraint":"static","ipaddress":"10.0.0.5"}) is
 * checked against the nic constraints (allowed modes, declared parameters,
 * valid ipv4 addresses/netmask/gateway/dns in static mode). Violations are
 * appended as above; returns the count. */
int attr_value_check(json_t *decl, const char *value, json_t *nic_values, json_t *violations);

/* Merge attribute layers into the effective declaration list, precedence
 * plan-script default < build plan < deployment plan < profile value.
 * `ps` is an array of derived {"name","value"} (may be NULL); `bp` and `dp`
 * are declaration arrays (may be NULL); `profile` is an array of
 * {"name","value"} (may be NULL; NIC sub-values as "Name.sub"). Result: a new
 * array of declarations (name, type, value, constraints, description,
 * visible, editable) — the deployment plan's visible/editable win. */
json_t *attr_merge(json_t *ps, json_t *bp, json_t *dp, json_t *profile);

/* Validate every value of a merged list (attr_merge's result); returns the
 * number of violations appended to `violations`. One call reports them all. */
int attr_validate_all(json_t *merged, json_t *violations);

/* Replace the "value" of every password-typed declaration in `decls` (an
 * array, modified in place) with "" unless it was empty — values of
 * passwords are never returned by a GET. Use on a copy. */
void attr_mask_passwords(json_t *decls);

#endif
