/* boot.c — iPXE boot scripts by MAC address (see boot.h).
 *
 * The answer for a machine follows server-hardware (by MAC) → its server
 * profile → the profile's bootConnections, and is one of:
 *
 *   #!ipxe
 *   set initiator-iqn <hardware initiatorName>
 *   set username <chapName>            (when the hardware has a CHAP secret)
 *   set password <chapSecret>
 *   sanboot iscsi:<ip>::<port>:<lun>:<target> [iscsi:... one URI per connection]
 *
 * or a script that exits to the next boot device (the local disk). iPXE has
 * no quoting and expands ${...} everywhere on a line, so every value written
 * into the script is checked against a safe character set; a value outside it
 * makes the answer an exit (BOOT_UNSAFE) rather than a script that does
 * something else than intended. */
#include "deploy/boot.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

const char *boot_kind_name(enum boot_kind k) {
  switch (k) {
  case BOOT_SANBOOT: return "sanboot";
  case BOOT_UNKNOWN_MAC: return "exit-unknown-mac";
  case BOOT_NO_PROFILE: return "exit-no-profile";
  case BOOT_NOT_READY: return "exit-profile-not-ready";
  case BOOT_NO_CONNECTIONS: return "exit-no-boot-connections";
  case BOOT_UNSAFE: return "exit-unsafe-value";
  }
  return "exit";
}

int boot_mac_normalize(const char *in, char out[18]) {
  if (!in || strlen(in) != 17) return -1;
  char sep = in[2];
  if (sep != ':' && sep != '-') return -1;
  for (int i = 0; i < 17; i++) {
    char c = in[i];
    if (i % 3 == 2) {
      if (c != sep) return -1;
      out[i] = ':';
    } else {
      if (!isxdigit((unsigned char)c)) return -1;
      out[i] = (char)tolower((unsigned char)c);
    }
  }
  out[17] = 0;
  return 0;
}

char *boot_chain_script(int tls, const char *host) {
  if (!host || !*host || strlen(host) > 255) return NULL;
  for (const char *p = host; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p)) return NULL;
  return util_strdup_printf("#!ipxe\nchain %s://%s/boot/ipxe?mac=${netX/mac}\n",
                            tls ? "https" : "http", host);
}

/* ---- script text ---------------------------------------------------------------------------- */
struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* A value iPXE reads back exactly as written: printable ASCII without
 * '$' (setting expansion), quotes, backslashes, '#' or '|' / '&' (command
 * separators), single inner spaces only (`set` joins its words with one). */
static int ipxe_safe(const char *s) {
  if (!s || !*s || s[0] == ' ' || s[strlen(s) - 1] == ' ') return 0;
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c > 0x7e || strchr("$\"'\\#|&;<>`{}", c)) return 0;
    if (c == ' ' && p[1] == ' ') return 0;
  }
  return 1;
}

/* Names in script comments: anything outside [A-Za-z0-9 ._-] becomes '_'. */
static void comment_text(char *dst, size_t size, const char *s) {
  size_t i = 0;
  for (; s && *s && i + 1 < size; s++)
    dst[i++] = (isalnum((unsigned char)*s) || strchr(" ._-", *s)) ? *s : '_';
  dst[i] = 0;
}

static const char *str(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static int exit_answer(struct boot_answer *out, enum boot_kind kind, const char *mac,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int exit_answer(struct boot_answer *out, enum boot_kind kind, const char *mac,
                       const char *fmt, ...) {
  out->kind = kind;
  out->paths = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->reason, sizeof out->reason, fmt, ap);
  va_end(ap);
  free(out->script);
  out->script =
      util_strdup_printf("#!ipxe\necho no OS volume for %s: booting from local disk\nexit\n", mac);
  return out->script ? 0 : -1;
}

/* Order: Primary before Secondary (then anything else), then by id. */
static int conn_rank(json_t *c) {
  const char *p = str(c, "priority");
  return is(p, "Primary") ? 0 : is(p, "Secondary") ? 1 : 2;
}

static int conn_cmp(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int d = conn_rank(x) - conn_rank(y);
  if (d) return d;
  json_int_t ix = json_integer_value(json_object_get(x, "id"));
  json_int_t iy = json_integer_value(json_object_get(y, "id"));
  return ix < iy ? -1 : ix > iy;
}

/* One iPXE SAN URI: iscsi:<server>:<protocol>:<port>:<lun>:<targetname>. */
static int san_uri(json_t *c, const char *local_ip, char *buf, size_t size, char *why,
                   size_t wsize) {
  const char *ip = str(c, "targetIp"), *tn = str(c, "targetName");
  json_t *jport = json_object_get(c, "targetPort"), *jlun = json_object_get(c, "targetLun");
  if (!ip || !tn) {
    snprintf(why, wsize, "a boot connection has no targetIp or targetName");
    return -1;
  }
  if (!*ip || is(ip, "0.0.0.0") || is(ip, "::") || is(ip, "[::]")) {
    if (!local_ip || !*local_ip) {
      snprintf(why, wsize, "a boot connection's portal is a wildcard address");
      return -1;
    }
    ip = local_ip;
  }
  char host[64];
  snprintf(host, sizeof host, "%s", ip[0] == '[' ? ip + 1 : ip);
  if (ip[0] == '[') host[strcspn(host, "]")] = 0;
  struct in6_addr a6;
  struct in_addr a4;
  int v6 = inet_pton(AF_INET6, host, &a6) == 1;
  if (!v6 && inet_pton(AF_INET, host, &a4) != 1) {
    snprintf(why, wsize, "a boot connection's targetIp \"%.60s\" is not an IP address", ip);
    return -1;
  }
  long port = jport ? (long)json_integer_value(jport) : 3260;
  long lun = jlun ? (long)json_integer_value(jlun) : 0;
  if ((jport && !json_is_integer(jport)) || port < 1 || port > 65535 ||
      (jlun && !json_is_integer(jlun)) || lun < 0 || lun > 255) {
    snprintf(why, wsize, "a boot connection has an invalid targetPort or targetLun");
    return -1;
  }
  if (!ipxe_safe(tn) || strchr(tn, ' ') || strchr(tn, ':') == tn) {
    snprintf(why, wsize, "a boot connection's targetName cannot be written into an iPXE script");
    return -1;
  }
  char portbuf[8] = "";
  if (port != 3260) snprintf(portbuf, sizeof portbuf, "%ld", port);
  int n = snprintf(buf, size, "iscsi:%s%s%s::%s:%ld:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                   portbuf, lun, tn);
  if (n < 0 || (size_t)n >= size) {
    snprintf(why, wsize, "a boot connection's target name is too long");
    return -1;
  }
  return 0;
}

int boot_script_for(json_t *hw, json_t *profile, const char *mac, const char *local_ip,
                    struct boot_answer *out) {
  snprintf(out->hardware, sizeof out->hardware, "%s", hw && str(hw, "name") ? str(hw, "name") : "");
  snprintf(out->profile, sizeof out->profile, "%s",
           profile && str(profile, "name") ? str(profile, "name") : "");
  if (!hw) return exit_answer(out, BOOT_UNKNOWN_MAC, mac, "no server hardware has this MAC");
  if (!profile)
    return exit_answer(out, BOOT_NO_PROFILE, mac, "server hardware \"%.80s\" has no server profile",
                       out->hardware);
  const char *state = str(profile, "state");
  if (!is(state, "Normal"))
    return exit_answer(out, BOOT_NOT_READY, mac, "server profile \"%.80s\" is %.20s", out->profile,
                       state ? state : "in no state");
  json_t *conns = json_object_get(profile, "bootConnections");
  size_t n = json_array_size(conns);
  if (n == 0 || n > 16)
    return exit_answer(out, BOOT_NO_CONNECTIONS, mac,
                       "server profile \"%.80s\" has %zu boot connections", out->profile, n);
  json_t *sorted[16];
  for (size_t i = 0; i < n; i++)
    sorted[i] = json_array_get(conns, i);
  qsort(sorted, n, sizeof *sorted, conn_cmp);

  /* The initiator name: the connection's (the OS volume's ACL), else the hardware's. */
  const char *iqn = str(sorted[0], "initiatorName");
  if (!iqn || !*iqn) iqn = str(hw, "initiatorName");
  json_t *secrets = json_object_get(hw, "secrets");
  const char *secret = str(secrets, "chapSecret");
  const char *chap_name = str(sorted[0], "chapName");
  if (!chap_name || !*chap_name) chap_name = str(hw, "chapName");
  if (!chap_name || !*chap_name) chap_name = str(hw, "name");
  if (!iqn || !ipxe_safe(iqn) || strchr(iqn, ' '))
    return exit_answer(out, BOOT_UNSAFE, mac,
                       "the initiator name of \"%.80s\" cannot be written into an iPXE script",
                       out->hardware);
  if (secret && *secret && (!ipxe_safe(chap_name) || !ipxe_safe(secret)))
    return exit_answer(out, BOOT_UNSAFE, mac,
                       "the CHAP name or secret of \"%.80s\" cannot be written into an iPXE script",
                       out->hardware);

  struct sbuf b = {0};
  char c1[170], c2[170];
  comment_text(c1, sizeof c1, out->profile);
  comment_text(c2, sizeof c2, out->hardware);
  sb_add(&b, "#!ipxe\n# Streamer: server profile %s on server hardware %s\n", c1, c2);
  sb_add(&b, "set initiator-iqn %s\n", iqn);
  if (secret && *secret) {
    sb_add(&b, "set username %s\n", chap_name);
    sb_add(&b, "set password %s\n", secret);
  }
  sb_add(&b, "sanboot");
  char uri[600];
  /* iPXE describes the SAN paths to the OS in the iBFT, which holds two
   * targets: a third makes sanboot fail ("Could not describe SAN device"). */
  size_t used = n < BOOT_MAX_PATHS ? n : BOOT_MAX_PATHS;
  for (size_t i = 0; i < used; i++) {
    char why[200];
    if (san_uri(sorted[i], local_ip, uri, sizeof uri, why, sizeof why) < 0) {
      free(b.p);
      return exit_answer(out, BOOT_UNSAFE, mac, "server profile \"%.80s\": %s", out->profile, why);
    }
    sb_add(&b, " %s", uri);
  }
  sb_add(&b, " || goto streamer_failed\nexit\n:streamer_failed\n"
             "echo Streamer: sanboot failed: booting from local disk\nexit 1\n");
  if (b.oom) {
    free(b.p);
    return -1;
  }
  free(out->script);
  out->script = b.p;
  out->kind = BOOT_SANBOOT;
  out->paths = (int)used;
  out->reason[0] = 0;
  if (used < n)
    snprintf(out->reason, sizeof out->reason, "%zu boot connections beyond the first %d left out",
             n - used, BOOT_MAX_PATHS);
  return 0;
}

/* ---- the store ------------------------------------------------------------------------------ */
static int has_mac(json_t *hw, const char *mac) {
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(hw, "macAddresses"), i, m) {
    char norm[18];
    const char *s = json_string_value(m);
    if (s && boot_mac_normalize(s, norm) == 0 && is(norm, mac)) return 1;
  }
  return 0;
}

/* "/rest/server-profiles/<id>" -> "<id>" */
static const char *uri_id(const char *uri, const char *prefix) {
  size_t n = strlen(prefix);
  return uri && strncmp(uri, prefix, n) == 0 && uri[n] && !strchr(uri + n, '/') ? uri + n : NULL;
}

int boot_script(struct store *s, const char *mac, const char *local_ip, struct boot_answer *out) {
  memset(out, 0, sizeof *out);
  struct store_entry **v = NULL, *hw = NULL, *prof = NULL;
  size_t n = 0;
  if (store_list(s, "server-hardware", &v, &n) < 0) return -1;
  for (size_t i = 0; i < n && !hw; i++)
    if (has_mac(v[i]->doc, mac)) hw = v[i];
  if (hw) {
    const char *pid = uri_id(str(hw->doc, "serverProfileUri"), "/rest/server-profiles/");
    if (pid) prof = store_get(s, "server-profiles", pid);
    if (!prof) { /* a profile that names this hardware, should the link be missing */
      struct store_entry **pv = NULL;
      size_t pn = 0;
      const char *hw_uri = str(hw->doc, "uri");
      if (hw_uri && store_list(s, "server-profiles", &pv, &pn) == 0) {
        for (size_t i = 0; i < pn && !prof; i++)
          if (is(str(pv[i]->doc, "serverHardwareUri"), hw_uri))
            prof = store_get(s, "server-profiles", pv[i]->id);
        store_entries_release(pv, pn);
      }
    }
  }
  int rc = boot_script_for(hw ? hw->doc : NULL, prof ? prof->doc : NULL, mac, local_ip, out);
  if (prof) store_entry_release(prof);
  store_entries_release(v, n);
  return rc;
}

void boot_answer_free(struct boot_answer *a) {
  if (!a) return;
  free(a->script);
  a->script = NULL;
}

/* ---- client networks ------------------------------------------------------------------------ */
int boot_nets_parse(const char *spec, struct boot_nets *out, struct err *e) {
  memset(out, 0, sizeof *out);
  if (!spec || !*spec) return 0;
  const char *p = spec;
  for (;;) {
    size_t len = strcspn(p, ",");
    char item[80];
    if (len == 0 || len >= sizeof item) {
      err_set(e, 400, "INVALID_BOOT_CLIENTS",
              "boot clients \"%.200s\": expected a comma-separated list of ADDR or ADDR/PREFIX",
              spec);
      return -1;
    }
    if (out->n == BOOT_MAX_NETS) {
      err_set(e, 400, "INVALID_BOOT_CLIENTS", "boot clients: at most %d networks", BOOT_MAX_NETS);
      return -1;
    }
    memcpy(item, p, len);
    item[len] = 0;
    struct boot_net *nt = &out->net[out->n];
    char *slash = strchr(item, '/');
    if (slash) *slash++ = 0;
    int max;
    if (inet_pton(AF_INET, item, nt->addr) == 1) {
      nt->family = AF_INET;
      max = 32;
    } else if (inet_pton(AF_INET6, item, nt->addr) == 1) {
      nt->family = AF_INET6;
      max = 128;
    } else {
      err_set(e, 400, "INVALID_BOOT_CLIENTS", "boot clients: \"%s\" is not an IP address", item);
      return -1;
    }
    nt->prefix = max;
    if (slash) {
      char *end;
      long pl = strtol(slash, &end, 10);
      if (!isdigit((unsigned char)*slash) || *end || pl > max) {
        err_set(e, 400, "INVALID_BOOT_CLIENTS",
                "boot clients: \"%s/%s\": the prefix must be a number from 0 to %d", item, slash,
                max);
        return -1;
      }
      nt->prefix = (int)pl;
    }
    out->n++;
    p += len;
    if (!*p) return 0;
    p++; /* the comma; an item must follow */
  }
}

static int prefix_match(const uint8_t *a, const uint8_t *b, int bits) {
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(a, b, (size_t)whole) != 0) return 0;
  if (!rest) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

int boot_nets_allow(const struct boot_nets *nets, const struct sockaddr *sa) {
  if (!nets || nets->n == 0) return 1;
  if (!sa) return 0;
  uint8_t addr[16];
  int family;
  if (sa->sa_family == AF_INET) {
    memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    family = AF_INET;
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      memcpy(addr, a6->s6_addr + 12, 4);
      family = AF_INET;
    } else {
      memcpy(addr, a6->s6_addr, 16);
      family = AF_INET6;
    }
  } else {
    return 0;
  }
  for (int i = 0; i < nets->n; i++)
    if (nets->net[i].family == family && prefix_match(addr, nets->net[i].addr, nets->net[i].prefix))
      return 1;
  return 0;
}
