/* streamerd.c — the daemon: reads flags and the config file, opens the data
 * directory (lock, SQLite store, volumes, TLS certificate, first
 * administrator), starts the iSCSI target (exporting the stored OS volumes
 * again), the task engine and the REST API, and stops them on SIGTERM/SIGINT.
 * Wiring only; the logic lives in the modules. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "artifact/artifact.h"
#include "deploy/boot.h"
#include "deploy/deploy.h"
#include "deploy/osvolume.h"
#include "deploy/task.h"
#include "iscsi/iscsi.h"
#include "store/store.h"
#include "util/util.h"
#include "vol/vol.h"

#define STREAMER_VERSION "0.1.0"
#define MAX_ISCSI_PORTALS 8

struct options {
  char *config;
  char *data_dir;
  char *listen;
  int insecure_http;
  char *iscsi_listen[MAX_ISCSI_PORTALS];
  int n_iscsi;
  char *iscsi_advertise[MAX_ISCSI_PORTALS];
  int n_advertise;
  int fault_injection; /* tests only; command line only */
  long max_body;
  long idle_timeout;
  long http_threads;
  long task_workers;
  long long storage_quota;
  char *log_level;
  char *boot_clients;
  char *boot_listen;
  char *samples;
};

static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: streamerd [OPTIONS]\n"
      "Streamer deployment server: the HPE Image Streamer REST API, tasks, sessions.\n\n"
      "  --config FILE               read options from FILE (key = value lines)\n"
      "                              default: /etc/streamer/streamerd.conf if it exists\n"
      "  --data-dir DIR              database, certificate, admin password, volumes\n"
      "                              default: ./var in a source checkout, else /var/lib/streamer\n"
      "  --listen ADDR:PORT          REST API address (default 0.0.0.0:8443, HTTPS)\n"
      "  --insecure-http             plain HTTP instead of HTTPS (loopback addresses only)\n"
      "  --iscsi-listen ADDR[:PORT]  iSCSI portal, repeatable (default 0.0.0.0:3260);\n"
      "                              \"none\" disables the iSCSI target\n"
      "  --iscsi-advertise ADDR      address servers boot from when a portal listens on a\n"
      "                              wildcard address (repeatable; default: the host's\n"
      "                              first non-loopback IPv4 address)\n"
      "  --max-body BYTES            largest accepted request body (default 16777216)\n"
      "  --session-idle-timeout SEC  idle time before a session ends (default 86400)\n"
      "  --http-threads N            HTTP worker threads (default: number of CPUs)\n"
      "  --task-workers N            concurrent background tasks (default 4)\n"
      "  --storage-quota BYTES       space golden images may take (default 0 = no limit)\n"
      "  --boot-clients CIDR[,CIDR]  networks allowed to fetch /boot/ipxe (default: any)\n"
      "  --boot-listen ADDR:PORT     also serve /boot/ipxe (only) over plain HTTP there,\n"
      "                              for iPXE clients (default: none; see docs/boot.md)\n"
      "  --log-level LEVEL           debug, info, warn or error (default info)\n"
      "  --fault-injection           tests only (command line only): honour\n"
      "                              STREAMER_FAULT=deploy:STEP (docs/configuration.md)\n"
      "  --samples DIR               load the sample artifacts of DIR (examples/) that this\n"
      "                              data directory never loaded\n"
      "  --version, --help\n");
}

/* ---- option values ----------------------------------------------------------- */
static int set_long(const char *name, const char *v, long min, long max, long *out) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < min || n > max) {
    fprintf(stderr, "streamerd: --%s: \"%s\" is not a number between %ld and %ld\n", name, v, min,
            max);
    return -1;
  }
  *out = n;
  return 0;
}

static int set_bool(const char *name, const char *v, int *out) {
  if (!v || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1")) {
    *out = 1;
  } else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0")) {
    *out = 0;
  } else {
    fprintf(stderr, "streamerd: %s: \"%s\" is not true or false\n", name, v);
    return -1;
  }
  return 0;
}

/* Apply one option (from argv or the config file). */
static int apply(struct options *o, const char *key, const char *v) {
#define STR(k, field)                                                                              \
  if (!strcmp(key, k)) {                                                                           \
    free(o->field);                                                                                \
    o->field = strdup(v);                                                                          \
    return 0;                                                                                      \
  }
  STR("data-dir", data_dir)
  STR("listen", listen)
  STR("log-level", log_level)
  STR("boot-clients", boot_clients)
  STR("boot-listen", boot_listen)
  STR("samples", samples)
#undef STR
  if (!strcmp(key, "insecure-http")) return set_bool(key, v, &o->insecure_http);
  if (!strcmp(key, "iscsi-listen")) {
    if (o->n_iscsi == MAX_ISCSI_PORTALS) {
      fprintf(stderr, "streamerd: at most %d iSCSI portals\n", MAX_ISCSI_PORTALS);
      return -1;
    }
    o->iscsi_listen[o->n_iscsi++] = strdup(v);
    return 0;
  }
  if (!strcmp(key, "iscsi-advertise")) {
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, v, &a4) != 1 && inet_pton(AF_INET6, v, &a6) != 1) {
      fprintf(stderr, "streamerd: --iscsi-advertise: \"%s\" is not an IPv4 or IPv6 address\n", v);
      return -1;
    }
    if (o->n_advertise == MAX_ISCSI_PORTALS) {
      fprintf(stderr, "streamerd: at most %d advertised iSCSI addresses\n", MAX_ISCSI_PORTALS);
      return -1;
    }
    o->iscsi_advertise[o->n_advertise++] = strdup(v);
    return 0;
  }
  if (!strcmp(key, "max-body")) return set_long(key, v, 1024, 1L << 40, &o->max_body);
  if (!strcmp(key, "session-idle-timeout"))
    return set_long(key, v, 60, 7 * 86400, &o->idle_timeout);
  if (!strcmp(key, "http-threads")) return set_long(key, v, 1, 256, &o->http_threads);
  if (!strcmp(key, "task-workers")) return set_long(key, v, 1, 256, &o->task_workers);
  if (!strcmp(key, "storage-quota")) {
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0) {
      fprintf(stderr, "streamerd: --storage-quota: \"%s\" is not a number of bytes >= 0\n", v);
      return -1;
    }
    o->storage_quota = n;
    return 0;
  }
  fprintf(stderr, "streamerd: unknown option \"%s\"\n", key);
  return -1;
}

static int read_config(struct options *o, const char *path, int must_exist) {
  FILE *f = fopen(path, "r");
  if (!f) {
    if (!must_exist && errno == ENOENT) return 0;
    fprintf(stderr, "streamerd: config file %s: %s\n", path, strerror(errno));
    return -1;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    char *p = line + strspn(line, " \t");
    p[strcspn(p, "\r\n")] = 0;
    if (!*p || *p == '#') continue;
    char *eq = strchr(p, '=');
    char *key = p, *val = eq ? eq + 1 : NULL;
    if (eq) {
      *eq = 0;
      for (char *t = eq - 1; t >= key && (*t == ' ' || *t == '\t'); t--)
        *t = 0;
      val += strspn(val, " \t");
      for (char *t = val + strlen(val) - 1; t >= val && (*t == ' ' || *t == '\t'); t--)
        *t = 0;
    }
    if (!strcmp(key, "insecure-http") && !val) val = "true";
    if (!val) {
      fprintf(stderr, "streamerd: %s:%d: expected key = value\n", path, lineno);
      rc = -1;
    } else if (apply(o, key, val) < 0) {
      fprintf(stderr, "streamerd: in %s:%d\n", path, lineno);
      rc = -1;
    }
  }
  fclose(f);
  return rc;
}

/* ./var when the binary is <checkout>/build/.../bin/streamerd, else /var/lib/streamer. */
static char *default_data_dir(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *b = strstr(exe, "/build/");
    if (b) {
      *b = 0;
      char probe[PATH_MAX + 32];
      snprintf(probe, sizeof probe, "%s/src/streamerd.c", exe);
      if (access(probe, F_OK) == 0) return util_strdup_printf("%s/var", exe);
    }
  }
  return strdup("/var/lib/streamer");
}

static int mkdir_p(const char *dir, mode_t mode) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}

/* An exclusive lock on DATA/streamerd.lock for the daemon's lifetime. */
static int lock_data_dir(const char *dir) {
  char *path = util_strdup_printf("%s/streamerd.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "streamerd: %s: %s\n", path, strerror(errno));
    free(path);
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    if (n > 0) pid[strcspn(pid, "\n")] = 0;
    fprintf(stderr,
            "streamerd: data directory %s is in use by another streamerd%s%s%s; "
            "stop it or choose another --data-dir\n",
            dir, n > 0 ? " (pid " : "", n > 0 ? pid : "", n > 0 ? ")" : "");
    close(fd);
    free(path);
    return -1;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) < 0)
    log_warn("main", "cannot write the pid into %s", path);
  free(path);
  return fd; /* kept open: the lock lives as long as the process */
}

/* Static: the options live as long as the process. */
static struct options o;

int main(int argc, char **argv) {
  /* Responses of a few hundred KB are built per request: keep them on the
   * heap and keep freed memory, instead of mmap/munmap and page faults on
   * every request (measured: -25..35 % CPU per HTTPS collection GET). */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  o.max_body = 16L << 20;
  o.idle_timeout = 86400;
  o.task_workers = 4;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  o.http_threads = ncpu > 0 ? ncpu : 2;
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"data-dir", required_argument, NULL, 0},
      {"listen", required_argument, NULL, 0},
      {"insecure-http", no_argument, NULL, 0},
      {"iscsi-listen", required_argument, NULL, 0},
      {"iscsi-advertise", required_argument, NULL, 0},
      {"fault-injection", no_argument, NULL, 'F'},
      {"max-body", required_argument, NULL, 0},
      {"session-idle-timeout", required_argument, NULL, 0},
      {"http-threads", required_argument, NULL, 0},
      {"task-workers", required_argument, NULL, 0},
      {"storage-quota", required_argument, NULL, 0},
      {"log-level", required_argument, NULL, 0},
      {"boot-clients", required_argument, NULL, 0},
      {"boot-listen", required_argument, NULL, 0},
      {"samples", required_argument, NULL, 0},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  /* First pass: --config, --help, --version. The config file is read before
   * the other flags so that flags win. */
  int idx, c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
    if (c == 'c') o.config = strdup(optarg);
    if (c == 'F') o.fault_injection = 1; /* never from the config file */
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    if (c == 'V') {
      printf("streamerd %s\n", STREAMER_VERSION);
      return 0;
    }
    if (c == '?') {
      fprintf(stderr, "streamerd: unknown or incomplete option \"%s\"\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "streamerd: unexpected argument \"%s\"\n", argv[optind]);
    return 2;
  }
  if (read_config(&o, o.config ? o.config : "/etc/streamer/streamerd.conf", o.config != NULL) < 0)
    return 2;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
    if (c != 0) continue;
    const char *key = longopts[idx].name;
    if (apply(&o, key, longopts[idx].has_arg && optarg ? optarg : "true") < 0) return 2;
  }
  if (!o.data_dir) o.data_dir = default_data_dir();
  if (!o.listen) o.listen = strdup("0.0.0.0:8443");
  if (o.n_iscsi == 0) o.iscsi_listen[o.n_iscsi++] = strdup("0.0.0.0:3260");
  int iscsi_off = 0;
  for (int i = 0; i < o.n_iscsi; i++)
    if (!strcasecmp(o.iscsi_listen[i], "none")) iscsi_off = 1;
  if (iscsi_off && o.n_iscsi > 1) {
    fprintf(stderr, "streamerd: --iscsi-listen none cannot be combined with portal addresses\n");
    return 2;
  }
  if (o.log_level) {
    static const char *lv[] = {"debug", "info", "warn", "error"};
    int found = 0;
    for (int i = 0; i < 4; i++)
      if (!strcasecmp(o.log_level, lv[i])) {
        log_set_level((enum log_level)i);
        found = 1;
      }
    if (!found) {
      fprintf(stderr, "streamerd: --log-level must be debug, info, warn or error\n");
      return 2;
    }
  }
  struct err e;
  err_init(&e);
  /* Check addresses before touching the data dir. */
  struct sockaddr_storage ss;
  unsigned sl;
  int lo;
  if (api_parse_addr(o.listen, &ss, &sl, &lo, &e) < 0) {
    fprintf(stderr, "streamerd: --listen: %s\n", e.message);
    return 2;
  }
  if (o.insecure_http && !lo) {
    fprintf(stderr,
            "streamerd: --insecure-http is allowed only on loopback addresses "
            "(127.0.0.0/8, [::1]), not %s\n",
            o.listen);
    return 2;
  }
  if (o.boot_listen && api_parse_addr(o.boot_listen, &ss, &sl, &lo, &e) < 0) {
    fprintf(stderr, "streamerd: --boot-listen: %s\n", e.message);
    return 2;
  }
  struct boot_nets bn;
  if (boot_nets_parse(o.boot_clients, &bn, &e) < 0) {
    fprintf(stderr, "streamerd: --boot-clients: %s\n", e.message);
    return 2;
  }
  for (int i = 0; i < o.n_iscsi && !iscsi_off; i++) {
    /* ADDR without a port: the iSCSI port, 3260. */
    const char *a = o.iscsi_listen[i], *rb = strrchr(a, ']');
    if (a[0] == '[' ? rb && !rb[1] : !strchr(a, ':')) {
      char *full = util_strdup_printf("%s:3260", a);
      free(o.iscsi_listen[i]);
      o.iscsi_listen[i] = full;
    }
    if (api_parse_addr(o.iscsi_listen[i], &ss, &sl, &lo, &e) < 0) {
      fprintf(stderr, "streamerd: --iscsi-listen: %s\n", e.message);
      return 2;
    }
  }

  /* Everything the daemon writes (database, keys, password file) is private. */
  umask(077);
  if (mkdir_p(o.data_dir, 0700) < 0) {
    fprintf(stderr, "streamerd: cannot create data directory %s: %s\n", o.data_dir,
            strerror(errno));
    return 1;
  }
  if (lock_data_dir(o.data_dir) < 0) return 1;
  char *tlsdir = util_strdup_printf("%s/tls", o.data_dir);
  char *db_path = util_strdup_printf("%s/streamer.db", o.data_dir);
  char *pw_path = util_strdup_printf("%s/admin-password", o.data_dir);
  char *cert = util_strdup_printf("%s/cert.pem", tlsdir);
  char *key = util_strdup_printf("%s/key.pem", tlsdir);
  char *vol_dir = util_strdup_printf("%s/volumes", o.data_dir);

  /* Signals are taken synchronously by the main thread only. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct store *store = NULL;
  struct task_engine *tasks = NULL;
  struct api *api = NULL;
  struct vol_store *vols = NULL;
  struct iscsi_srv *iscsi = NULL;
  struct osvol_service *osvols = NULL;
  struct deploy_service *deploy = NULL;
  int rc = 1;
  if (store_open(&store, db_path, &e) < 0) goto fail;
  if (vol_store_open(&vols, vol_dir, &e) < 0) goto fail;
  artifact_register(store);
  if (api_bootstrap_admin(store, pw_path, &e) < 0) goto fail;
  if (!o.insecure_http && (mkdir_p(tlsdir, 0700) < 0 || api_tls_ensure(cert, key, &e) < 0)) {
    if (!e.message[0]) err_set(&e, 500, "IO_ERROR", "%s: %s", tlsdir, strerror(errno));
    goto fail;
  }
  if (!iscsi_off) {
    struct iscsi_config ic = {.portals = (const char *const *)o.iscsi_listen,
                              .nportals = (size_t)o.n_iscsi};
    if (iscsi_start(&ic, &iscsi, &e) < 0) goto fail;
  }
  /* Export the stored OS volumes again (a missing one is marked Critical). */
  osvols = osvol_service_open(store, vols, iscsi, &e);
  if (!osvols) goto fail;
  tasks = task_engine_start(store, (int)o.task_workers, &e);
  if (!tasks) goto fail;
  /* Deployments: finish or undo what a stop left, remove orphan volumes. */
  struct deploy_config dc = {.store = store,
                             .volumes = vols,
                             .osvols = osvols,
                             .iscsi = iscsi,
                             .tasks = tasks,
                             .advertise = (const char *const *)o.iscsi_advertise,
                             .nadvertise = (size_t)o.n_advertise,
                             .faults = o.fault_injection};
  deploy = deploy_service_open(&dc, &e);
  if (!deploy) goto fail;
  struct api_config ac = {
      .listen = o.listen,
      .insecure_http = o.insecure_http,
      .tls_cert_path = cert,
      .tls_key_path = key,
      .max_body = (size_t)o.max_body,
      .session_idle_timeout = (int)o.idle_timeout,
      .threads = (int)o.http_threads,
      .volumes = vols,
      .storage_quota = (uint64_t)o.storage_quota,
      .osvols = osvols,
      .boot_clients = o.boot_clients,
      .boot_listen = o.boot_listen,
      .deploy = deploy,
  };
  api = api_start(&ac, store, tasks, &e);
  if (!api) goto fail;
  if (o.samples && api_samples_load(api, o.samples, &e) < 0) goto fail;
  char portals[600] = "disabled";
  if (iscsi) {
    size_t np = 0;
    const char *const *pv = iscsi_portals(iscsi, &np);
    portals[0] = 0;
    for (size_t i = 0; pv && i < np; i++)
      snprintf(portals + strlen(portals), sizeof portals - strlen(portals), "%s%s", i ? " " : "",
               pv[i]);
  }
  log_info("main",
           "streamerd %s ready: API %s://%s, data dir %s, first administrator password in %s, "
           "iSCSI %s",
           STREAMER_VERSION, o.insecure_http ? "http" : "https", o.listen, o.data_dir, pw_path,
           portals);
  for (;;) {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGHUP) {
      log_info("main", "SIGHUP ignored (restart to apply configuration changes)");
      continue;
    }
    log_info("main", "signal %d: shutting down", sig);
    break;
  }
  rc = 0;
  goto out;
fail:
  log_error("main", "%s", e.message);
  fprintf(stderr, "streamerd: %s\n", e.message);
out:
  api_stop(api);
  task_engine_stop(tasks);
  deploy_service_close(deploy);
  osvol_service_close(osvols);
  if (iscsi) iscsi_stop(iscsi); /* drops the sessions, closes the exported volumes */
  if (vols) vol_store_close(vols);
  store_close(store);
  err_clear(&e);
  if (rc == 0) log_info("main", "stopped");
  free(tlsdir);
  free(db_path);
  free(pw_path);
  free(cert);
  free(key);
  free(vol_dir);
  free(o.config);
  free(o.data_dir);
  free(o.listen);
  free(o.log_level);
  free(o.boot_clients);
  free(o.boot_listen);
  free(o.samples);
  for (int i = 0; i < o.n_iscsi; i++)
    free(o.iscsi_listen[i]);
  for (int i = 0; i < o.n_advertise; i++)
    free(o.iscsi_advertise[i]);
  return rc;
}
