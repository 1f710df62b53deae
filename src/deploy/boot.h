/* boot.h — the iPXE boot script of a machine, by MAC address: the server
 * hardware with that MAC, its server profile's boot connections, and the
 * script that sanboots the profile's OS volume over every portal (or exits to
 * the local disk). Also the client networks allowed to ask. No HTTP here:
 * src/api/boot.c serves GET /boot/ipxe over these functions. */
#ifndef STREAMER_DEPLOY_BOOT_H
#define STREAMER_DEPLOY_BOOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "store/store.h"
#include "util/util.h"

/* What the answer to a machine is, for the request log. */
enum boot_kind {
  BOOT_SANBOOT,        /* its profile is Normal: sanboot the OS volume */
  BOOT_UNKNOWN_MAC,    /* no server hardware has this MAC: exit */
  BOOT_NO_PROFILE,     /* the hardware has no server profile: exit */
  BOOT_NOT_READY,      /* its profile is not Normal (Creating, Updating, ...): exit */
  BOOT_NO_CONNECTIONS, /* its profile has no usable boot connection: exit */
  BOOT_UNSAFE,         /* a value cannot be written into an iPXE script: exit */
};
const char *boot_kind_name(enum boot_kind k); /* "sanboot", "exit-unknown-mac", ... */

/* "52-54-00-AB-cd-EF" or "52:54:00:ab:cd:ef" -> "52:54:00:ab:cd:ef" (lower
 * case, colons). Both separators are accepted, not mixed; 0 or -1. */
int boot_mac_normalize(const char *in, char out[18]);

/* sanboot URIs in one script: the iBFT iPXE writes for the OS holds two targets. */
#define BOOT_MAX_PATHS 2

struct boot_answer {
  enum boot_kind kind;
  char *script;       /* text/plain iPXE script, malloc'd */
  char hardware[160]; /* name of the server hardware, "" when unknown */
  char profile[160];  /* name of its server profile, "" when none */
  int paths;          /* sanboot URIs in the script */
  char reason[256];   /* why it exits, or what a sanboot left out (log; never a secret) */
};

/* The script for the machine with MAC `mac` (normalized). `local_ip` is the
 * address the client reached the server at (used for boot connections whose
 * targetIp is a wildcard, 0.0.0.0 or ::); may be NULL. 0, or -1 when out of
 * memory. Secrets appear only in out->script. */
int boot_script(struct store *s, const char *mac, const char *local_ip, struct boot_answer *out);
void boot_answer_free(struct boot_answer *a);

/* Same, from documents (tests): `hw` a server-hardware document (with its
 * "secrets"), `profile` its server profile or NULL. */
int boot_script_for(json_t *hw, json_t *profile, const char *mac, const char *local_ip,
                    struct boot_answer *out);

/* The script that chains a client to its own answer:
 * "#!ipxe\nchain http://HOST/boot/ipxe?mac=${netX/mac}\n" (https when `tls`;
 * iPXE 2019 does not resolve a relative URI there). `host` is "addr[:port]"
 * as the client named us (its Host header); malloc'd, or NULL when `host`
 * holds anything but letters, digits, '.', '-', ':', '[' and ']'. */
char *boot_chain_script(int tls, const char *host);

/* Client networks allowed to fetch boot scripts ("10.0.0.0/8,fd00::/64,
 * 192.168.1.7"). An empty list allows every client. */
#define BOOT_MAX_NETS 32
struct boot_net {
  int family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  int prefix;
};
struct boot_nets {
  struct boot_net net[BOOT_MAX_NETS];
  int n;
};
/* Parse a comma-separated list of CIDRs or addresses; 0, or -1 with e set
 * (400 INVALID_BOOT_CLIENTS). NULL or "" gives the empty list. */
int boot_nets_parse(const char *spec, struct boot_nets *out, struct err *e);
/* Is `sa` (AF_INET or AF_INET6, IPv4-mapped IPv6 counts as IPv4) allowed? */
int boot_nets_allow(const struct boot_nets *nets, const struct sockaddr *sa);

#endif
