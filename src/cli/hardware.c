/* hardware.c — `streamer hardware ...`: the machines Streamer deploys to,
 * over /rest/server-hardware: add (MACs, initiator name, CHAP and the two
 * iSCSI NICs' addresses generated or given), update (a PUT of the fields
 * given), list, show (with the boot URL of the machine), delete (refused by
 * the server while a profile uses the machine). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char HW_HELP[] =
    "usage: streamer hardware SUBCOMMAND [options]\n"
    "\n"
    "  add NAME --mac M [--mac M]... [--initiator IQN] [--ip A --netmask N]\n"
    "      [--ip2 A --netmask2 N] [--chap-name N] [--chap-secret-file F]\n"
    "                                              register a machine\n"
    "  update REF [--mac M]... [--ip A --netmask N] [--ip2 A --netmask2 N]\n"
    "      [--initiator IQN] [--chap-name N] [--description D]\n"
    "                                              change a machine's fields\n"
    "  list [--filter F] [--sort S]                list machines\n"
    "  show REF                                    show one machine and its boot URL\n"
    "  delete REF                                  forget a machine (not while a profile uses it)\n"
    "\n"
    "REF is an id, a uri (/rest/server-hardware/ID) or an exact name.\n";
static const char ADD_USAGE[] =
    "usage: streamer hardware add NAME --mac M [--mac M]... [--initiator IQN]\n"
    "                             [--ip A --netmask N] [--ip2 A --netmask2 N]\n"
    "                             [--chap-name N] [--chap-secret-file F] [--description D]\n"
    "\n"
    "Register a machine by the MAC addresses of the NICs it may network-boot from\n"
    "(52:54:00:12:34:56 or 52-54-00-12-34-56; each MAC belongs to one machine). Its iSCSI\n"
    "initiator name (IQN) and CHAP secret are generated unless given; the CHAP name\n"
    "defaults to NAME. --ip / --netmask are the machine's address, which plan scripts see\n"
    "as _Initiator1.ip / _Initiator1.netmask; --ip2 / --netmask2 the address of the\n"
    "second NIC (the second --mac), _Initiator2.ip / _Initiator2.netmask. The secret is\n"
    "never shown again: the OS volumes deployed to the machine use it ('streamer volume\n"
    "credentials').\n";
static const char UPDATE_USAGE[] =
    "usage: streamer hardware update REF [--mac M]... [--ip A --netmask N]\n"
    "                                [--ip2 A --netmask2 N] [--initiator IQN]\n"
    "                                [--chap-name N] [--description D]\n"
    "\n"
    "Change the fields given; the others stay. --mac (repeated) replaces the whole MAC\n"
    "list. An empty value (--ip2 '' --netmask2 '') removes an address. The addresses may\n"
    "change while a server profile uses the machine (the next deployment's plan scripts\n"
    "see them); the initiator name and CHAP name may not.\n";
static const char LIST_USAGE[] = "usage: streamer hardware list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] = "usage: streamer hardware show REF\n";
static const char DELETE_USAGE[] =
    "usage: streamer hardware delete REF\n"
    "\n"
    "Forget the machine. Refused while a server profile uses it: delete the profile first.\n";

/* Is `s` a MAC in one of the forms the server and /boot/ipxe accept? */
static int mac_ok(const char *s) {
  if (strlen(s) != 17 || (s[2] != ':' && s[2] != '-')) return 0;
  for (int i = 0; i < 17; i++)
    if (i % 3 == 2 ? s[i] != s[2] : !isxdigit((unsigned char)s[i])) return 0;
  return 1;
}

/* The --mac values of `a` into macs; 0 or a usage error. */
static int macs_of(const struct args *a, json_t *macs, const char *usage) {
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "mac") != 0) continue;
    if (!mac_ok(a->opt[i].value))
      return cli_usage_error(usage,
                             "--mac %s: not a MAC address (write 52:54:00:12:34:56 or "
                             "52-54-00-12-34-56)",
                             a->opt[i].value);
    json_array_append_new(macs, json_string(a->opt[i].value));
  }
  return 0;
}

/* --ip/--netmask and --ip2/--netmask2 (each pair together) into body; the
 * server checks the values. */
static int addrs_of(const struct args *a, json_t *body, const char *usage) {
  static const char *const opt[2][2] = {{"ip", "netmask"}, {"ip2", "netmask2"}};
  static const char *const field[2][2] = {{"ipv4Address", "netmask"}, {"ipv4Address2", "netmask2"}};
  for (int n = 0; n < 2; n++) {
    const char *ip = args_get(a, opt[n][0]), *mask = args_get(a, opt[n][1]);
    if (!ip != !mask)
      return cli_usage_error(usage, "--%s and --%s go together", opt[n][0], opt[n][1]);
    if (ip) json_object_set_new(body, field[n][0], json_string(ip));
    if (mask) json_object_set_new(body, field[n][1], json_string(mask));
  }
  return 0;
}

static int hw_add(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"mac", 1},         {"initiator", 1}, {"ip", 1},        {"netmask", 1},
      {"ip2", 1},         {"netmask2", 1},  {"chap-name", 1}, {"chap-secret-file", 1},
      {"description", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, ADD_USAGE);
  if (rc || a.help) return rc;
  const char *name = a.pos[0];
  if (!*name) return cli_usage_error(ADD_USAGE, "NAME cannot be empty");
  json_t *macs CLEANUP_JSON = json_array();
  if ((rc = macs_of(&a, macs, ADD_USAGE))) return rc;
  if (json_array_size(macs) == 0)
    return cli_usage_error(ADD_USAGE, "--mac is required: the MAC address the machine boots from");
  if (args_get(&a, "ip2") && json_array_size(macs) < 2)
    return cli_usage_error(ADD_USAGE, "--ip2 is the second NIC's address: give its MAC as a "
                                      "second --mac");
  json_t *body CLEANUP_JSON =
      json_pack("{s:s, s:s, s:O}", "type", "server-hardware", "name", name, "macAddresses", macs);
  if ((rc = addrs_of(&a, body, ADD_USAGE))) return rc;
  const char *init = args_get(&a, "initiator"), *chap = args_get(&a, "chap-name");
  const char *desc = args_get(&a, "description");
  if (init) json_object_set_new(body, "initiatorName", json_string(init));
  if (chap) json_object_set_new(body, "chapName", json_string(chap));
  if (desc) json_object_set_new(body, "description", json_string(desc));
  const char *sf = args_get(&a, "chap-secret-file");
  if (sf) {
    char *s = cli_read_secret(sf, NULL, ADD_USAGE, &rc);
    if (!s) return rc;
    json_object_set_new(body, "chapSecret", json_string(s));
    cli_wipe(s);
    free(s);
  }
  json_t *hw CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/server-hardware", body, NULL, &hw);
  json_t *cs = json_object_get(body, "chapSecret");
  if (cs) cli_wipe((char *)json_string_value(cs));
  if (rc) return rc;
  if (c->json) {
    out_json(hw);
    return CLI_OK;
  }
  char *m = out_joined(json_object_get(hw, "macAddresses"), ", ");
  printf("Registered server hardware \"%s\" (id %s).\n", jstr(hw, "name"), res_id(hw));
  printf("  MACs:        %s\n  initiator:   %s\n  CHAP name:   %s\n", m ? m : "",
         jstr(hw, "initiatorName"), jstr(hw, "chapName"));
  free(m);
  return CLI_OK;
}

static int hw_update(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"mac", 1},       {"initiator", 1},   {"ip", 1},
                                         {"netmask", 1},   {"ip2", 1},         {"netmask2", 1},
                                         {"chap-name", 1}, {"description", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  if (a.nopt == 0) return cli_usage_error(UPDATE_USAGE, "nothing to update");
  json_t *body CLEANUP_JSON = json_object();
  json_t *macs CLEANUP_JSON = json_array();
  if ((rc = macs_of(&a, macs, UPDATE_USAGE)) || (rc = addrs_of(&a, body, UPDATE_USAGE))) return rc;
  if (json_array_size(macs)) json_object_set(body, "macAddresses", macs);
  static const char *const opt[] = {"initiator", "chap-name", "description", NULL};
  static const char *const field[] = {"initiatorName", "chapName", "description"};
  for (int i = 0; opt[i]; i++)
    if (args_get(&a, opt[i]))
      json_object_set_new(body, field[i], json_string(args_get(&a, opt[i])));
  json_t *hw CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_SERVER_HARDWARE, a.pos[0], &hw);
  if (rc) return rc;
  json_t *res CLEANUP_JSON = NULL;
  if ((rc = res_update(c, hw, body, &res))) return rc;
  res_done(c, "Updated", &COLL_SERVER_HARDWARE, res);
  return CLI_OK;
}

static int hw_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "server-hardware", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  json_t *profiles CLEANUP_JSON = res_name_map(c, "server-profiles");
  static const char *const hdr[] = {"NAME", "MACS", "INITIATOR", "PROFILE", "ID"};
  struct table *t = table_new(5, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char *macs = out_joined(json_object_get(m, "macAddresses"), ",");
    const char *puri = jstr(m, "serverProfileUri");
    const char *pname = *puri ? jstr(profiles, puri) : "";
    const char *row[] = {jstr(m, "name"), macs ? macs : "", jstr(m, "initiatorName"),
                         *pname ? pname : puri, res_id(m)};
    table_add(t, row);
    free(macs);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static int hw_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *hw CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_SERVER_HARDWARE, a.pos[0], &hw);
  if (rc) return rc;
  if (c->json) {
    out_json(hw);
    return CLI_OK;
  }
  static const char *const order[] = {"name",          "id",       "uri",         "description",
                                      "initiatorName", "chapName", "ipv4Address", "netmask",
                                      "ipv4Address2",  "netmask2", NULL};
  struct kv *k = kv_new();
  kv_fields(k, hw, order);
  char *macs = out_joined(json_object_get(hw, "macAddresses"), ", ");
  kv_add(k, "macAddresses", macs ? macs : "");
  free(macs);
  const char *puri = jstr(hw, "serverProfileUri");
  json_t *prof CLEANUP_JSON = NULL;
  long status = 0;
  if (*puri &&
      (http_do(c, "GET", puri, NULL, NULL, 1, &status, &prof, NULL) != CLI_OK || status != 200)) {
    json_decref(prof);
    prof = NULL;
  }
  char *p = *puri ? util_strdup_printf("%s (%s, %s)", prof ? jstr(prof, "name") : "?",
                                       prof ? jstr(prof, "state") : "?", puri)
                  : strdup("(none)");
  kv_add(k, "server profile", p);
  free(p);
  static const char *const times[] = {"created", "modified", "eTag", NULL};
  kv_fields(k, hw, times);
  kv_print(k, stdout);
  kv_free(k);
  json_t *first = json_array_get(json_object_get(hw, "macAddresses"), 0);
  if (json_is_string(first))
    printf("\nboot script: /boot/ipxe?mac=%s (on the API's address or streamerd's --boot-listen)\n",
           json_string_value(first));
  return CLI_OK;
}

static int hw_delete(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  return res_delete(c, &COLL_SERVER_HARDWARE, a.pos[0]);
}

int cmd_hardware(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {
      {"add", hw_add, "register a machine"},
      {"create", hw_add, "same as add"},
      {"update", hw_update, "change a machine"},
      {"list", hw_list, "list machines"},
      {"ls", hw_list, "same as list"},
      {"show", hw_show, "show one machine"},
      {"delete", hw_delete, "forget a machine"},
      {"rm", hw_delete, "same as delete"},
      {NULL, NULL, NULL},
  };
  return cli_dispatch(c, "hardware", HW_HELP, subs, argc, argv);
}
