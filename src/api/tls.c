/* tls.c — the self-signed certificate generated at first start (GnuTLS,
 * the TLS library libmicrohttpd itself uses). ECDSA P-256, valid 10 years,
 * subjectAltName localhost, 127.0.0.1, ::1 and the host name. */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"

static int export_pem(int (*fn)(void *, gnutls_x509_crt_fmt_t, gnutls_datum_t *), void *obj,
                      const char *path, unsigned mode, struct err *e) {
  gnutls_datum_t d = {NULL, 0};
  if (fn(obj, GNUTLS_X509_FMT_PEM, &d) < 0) {
    err_set(e, 500, "TLS_ERROR", "cannot export %s", path);
    return -1;
  }
  int rc = util_write_file_atomic(path, d.data, d.size, mode, e);
  gnutls_free(d.data);
  return rc;
}

static int export_key(void *k, gnutls_x509_crt_fmt_t f, gnutls_datum_t *d) {
  return gnutls_x509_privkey_export2(k, f, d);
}
static int export_crt(void *c, gnutls_x509_crt_fmt_t f, gnutls_datum_t *d) {
  return gnutls_x509_crt_export2(c, f, d);
}

int api_tls_ensure(const char *cert_path, const char *key_path, struct err *e) {
  if (access(cert_path, R_OK) == 0 && access(key_path, R_OK) == 0) return 0;
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  int rc = -1;
  unsigned char serial[16];
  char host[256] = "streamer";
  gethostname(host, sizeof host - 1);
  time_t now = time(NULL);
  if (gnutls_x509_privkey_init(&key) < 0 ||
      gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                   GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0 ||
      gnutls_x509_crt_init(&crt) < 0 || util_random(serial, sizeof serial) < 0)
    goto fail;
  serial[0] &= 0x7f;
  static const unsigned char lo4[] = {127, 0, 0, 1};
  static const unsigned char lo6[16] = {[15] = 1};
  if (gnutls_x509_crt_set_version(crt, 3) < 0 ||
      gnutls_x509_crt_set_serial(crt, serial, sizeof serial) < 0 ||
      gnutls_x509_crt_set_activation_time(crt, now - 3600) < 0 ||
      gnutls_x509_crt_set_expiration_time(crt, now + 10L * 365 * 86400) < 0 ||
      gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, host, strlen(host)) < 0 ||
      gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, "Streamer", 8) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                           GNUTLS_FSAN_APPEND) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, host, strlen(host),
                                           GNUTLS_FSAN_APPEND) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, lo4, 4, GNUTLS_FSAN_APPEND) <
          0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, lo6, 16, GNUTLS_FSAN_APPEND) <
          0 ||
      gnutls_x509_crt_set_key(crt, key) < 0 ||
      gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE) < 0 ||
      gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) < 0 ||
      gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) < 0)
    goto fail;
  if (export_pem(export_key, key, key_path, 0600, e) < 0 ||
      export_pem(export_crt, crt, cert_path, 0644, e) < 0)
    goto out;
  log_info("tls", "generated a self-signed certificate %s (key %s)", cert_path, key_path);
  rc = 0;
  goto out;
fail:
  err_set(e, 500, "TLS_ERROR", "cannot generate a self-signed certificate");
out:
  if (crt) gnutls_x509_crt_deinit(crt);
  if (key) gnutls_x509_privkey_deinit(key);
  return rc;
}
