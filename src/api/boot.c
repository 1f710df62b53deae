/* boot.c — GET /boot/ipxe: the iPXE script a machine boots with, by MAC.
 * No session (the firmware has none); restricted to --boot-clients; every
 * answer is logged (MAC, client, kind), never the CHAP secret. The logic is
 * in deploy/boot.c; this file maps it to HTTP. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "api/api_int.h"
#include "deploy/boot.h"

int boot_path(const char *url) {
  return url && (strcmp(url, "/boot") == 0 || strncmp(url, "/boot/", 6) == 0);
}

static void reply_script(struct request *r, int status, const char *text) {
  char *s = strdup(text);
  reply_text(r, status, s, s ? strlen(s) : 0);
  r->content_type = "text/plain; charset=utf-8";
}

/* "a.b.c.d" / "v6" of a socket address; "?" when unknown. */
static void addr_text(const struct sockaddr *sa, char *buf, size_t size) {
  snprintf(buf, size, "?");
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6))
      inet_ntop(AF_INET, a6->s6_addr + 12, buf, (socklen_t)size);
    else
      inet_ntop(AF_INET6, a6, buf, (socklen_t)size);
  }
}

void route_boot(struct request *r) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  const struct sockaddr *client = ci ? ci->client_addr : NULL;
  char client_ip[INET6_ADDRSTRLEN] = "?";
  addr_text(client, client_ip, sizeof client_ip);
  /* The path without trailing slashes. */
  char path[64];
  size_t len = strlen(r->url);
  while (len > 1 && r->url[len - 1] == '/')
    len--;
  snprintf(path, sizeof path, "%.*s", (int)(len < sizeof path ? len : sizeof path - 1), r->url);
  if (strcmp(path, "/boot/ipxe") != 0) {
    reply_script(r, 404, "not found: the boot script is at /boot/ipxe?mac=MAC\n");
    log_info("boot", "%s %.100s client=%s -> 404", r->method, r->url, client_ip);
    return;
  }
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
    reply_script(r, 405, "method not allowed: use GET /boot/ipxe?mac=MAC\n");
    log_info("boot", "%s /boot/ipxe client=%s -> 405", r->method, client_ip);
    return;
  }
  if (!boot_nets_allow(&r->api->boot_nets, client)) {
    reply_script(r, 403, "forbidden: this client is not in the boot client networks\n");
    log_warn("boot", "GET /boot/ipxe client=%s -> 403 (not in --boot-clients)", client_ip);
    return;
  }
  const char *mac = req_arg(r, "mac");
  /* The address this client reached us at: the portal of wildcard boot
   * connections, and the host of the chain URL when the client sent no Host. */
  char local_ip[INET6_ADDRSTRLEN] = "", local_host[INET6_ADDRSTRLEN + 10] = "";
  const union MHD_ConnectionInfo *fi =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl = sizeof ss;
  if (fi && getsockname(fi->connect_fd, (struct sockaddr *)&ss, &sl) == 0) {
    addr_text((struct sockaddr *)&ss, local_ip, sizeof local_ip);
    unsigned port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(local_host, sizeof local_host, strchr(local_ip, ':') ? "[%s]:%u" : "%s:%u", local_ip,
             port);
  }
  if (local_ip[0] == '?') local_ip[0] = local_host[0] = 0;
  if (!mac) {
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    int tls = ti && ti->tls_session;
    const char *host = req_header(r, MHD_HTTP_HEADER_HOST);
    char *script = boot_chain_script(tls, host && *host ? host : local_host);
    if (!script) {
      reply_script(r, 400, "bad request: the Host header is not a host name or address\n");
      log_info("boot", "GET /boot/ipxe client=%s -> 400 (bad Host header)", client_ip);
      return;
    }
    reply_text(r, 200, script, strlen(script));
    r->content_type = "text/plain; charset=utf-8";
    log_info("boot", "GET /boot/ipxe client=%s -> chain (no mac)", client_ip);
    return;
  }
  char norm[18];
  if (boot_mac_normalize(mac, norm) < 0) {
    reply_script(r, 400,
                 "bad request: mac must be a MAC address like 52:54:00:12:34:56 or "
                 "52-54-00-12-34-56\n");
    log_info("boot", "GET /boot/ipxe client=%s mac=(invalid) -> 400", client_ip);
    return;
  }
  struct boot_answer a;
  if (boot_script(r->api->store, norm, local_ip[0] ? local_ip : NULL, &a) < 0) {
    boot_answer_free(&a);
    reply_script(r, 500, "internal error: out of memory\n");
    log_error("boot", "GET /boot/ipxe client=%s mac=%s -> 500 (out of memory)", client_ip, norm);
    return;
  }
  reply_script(r, 200, a.script);
  if (a.kind == BOOT_SANBOOT)
    log_info("boot",
             "GET /boot/ipxe client=%s mac=%s -> sanboot (%d path%s) hardware=\"%s\" "
             "profile=\"%s\"",
             client_ip, norm, a.paths, a.paths == 1 ? "" : "s", a.hardware, a.profile);
  else
    log_info("boot", "GET /boot/ipxe client=%s mac=%s -> %s: %s", client_ip, norm,
             boot_kind_name(a.kind), a.reason);
  boot_answer_free(&a);
}
