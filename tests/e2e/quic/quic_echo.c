/* The end-to-end tests' QUIC server and client (tests/e2e/quic/README.md), on libngtcp2 and GnuTLS.
 *
 * server: answers on ADDR:PORT (the VIP, which backends hold on lo); every connection ID it issues (the
 *   handshake's SCID and each NEW_CONNECTION_ID) is minted by the QUIC-LB library (src/quiclb) with its
 *   server ID, so the balancer routes the client's packets to it by CID. Each request stream is answered on
 *   the same stream with "NAME REQUEST". Short-header packets whose DCID names no connection of this server
 *   (another server's CIDs, sent here because that server stopped) are reported on stdout, one JSON line each.
 * client: many connections at once from chosen source ports, one request at a time each; optionally moves
 *   each connection to another source port mid-way (NAT rebinding: same DCID; or active migration: a new
 *   DCID from the server's NEW_CONNECTION_IDs), and prints one JSON line per connection: the server named by
 *   each answer before and after the move and the DCIDs it sent to.
 *
 * Not a production server: one thread, a linear search for connections, no Retry, no 0-RTT. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "quiclb/quic_lb.h"

#define ALPN "us-echo"
#define PRIORITY                                                                                                 \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:"     \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE"
#define MAX_REQ 64
#define MAX_REPLY 160
#define MAX_DCIDS 8

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "quic_echo: %s\n", what);
    exit(2);
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int path_challenge_cb(ngtcp2_conn *conn, uint8_t *data, void *user_data)
{
    (void)conn;
    (void)user_data;
    gnutls_rnd(GNUTLS_RND_RANDOM, data, NGTCP2_PATH_CHALLENGE_DATALEN);
    return 0;
}

static int hex_decode(const char *hex, uint8_t *out, size_t max)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
    out[2 * n] = 0;
}

static struct sockaddr_in make_addr(const char *ip, unsigned port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
        die("bad IPv4 address");
    return a;
}

static int udp_socket(const struct sockaddr_in *bind_to)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)bind_to, sizeof *bind_to) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void set_alpn(gnutls_session_t tls, unsigned flags)
{
    gnutls_datum_t alpn = {(unsigned char *)ALPN, sizeof ALPN - 1};
    gnutls_alpn_set_protocols(tls, &alpn, 1, flags);
}

/* ------------------------------------------------------------------------------------------------ server */

struct reply {
    int64_t stream_id;
    char req[MAX_REQ];
    size_t req_len;
    char buf[MAX_REPLY];
    size_t len, sent;
    bool fin_received, blocked;
    struct reply *next;
};

struct sconn {
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref ref;
    ngtcp2_cid odcid;  /* the client's first DCID: its Initials until it has ours */
    struct reply *replies;
    bool dead;
    struct sconn *next;
};

static struct {
    int fd;
    struct sockaddr_in local;
    const char *name;
    struct quic_lb_config lb;
    uint8_t server_id[QUIC_LB_MAX_SERVER_ID_LEN];
    uint64_t nonce_counter;
    gnutls_certificate_credentials_t cred;
    struct sconn *conns;
    unsigned unknown_reports;
} srv;

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct sconn *)ref->user_data)->conn;
}

/* A CID of this server: QUIC-LB with its server ID and the next nonce, length in the first octet. */
static void mint_cid(ngtcp2_cid *cid)
{
    uint8_t nonce[QUIC_LB_MAX_NONCE_LEN], out[QUIC_LB_MAX_CID_LEN];
    quic_lb_nonce_from_counter(srv.nonce_counter++, nonce, srv.lb.nonce_len);
    if (quic_lb_encode(&srv.lb, srv.server_id, nonce, QUIC_LB_LENGTH_BITS, out) != QUIC_LB_OK)
        die("quic_lb_encode failed");
    ngtcp2_cid_init(cid, out, quic_lb_cid_len(&srv.lb));
}

static int srv_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *user_data)
{
    (void)conn;
    (void)cidlen;
    (void)user_data;
    mint_cid(cid);
    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
}

static struct reply *find_reply(struct sconn *c, int64_t stream_id)
{
    for (struct reply *r = c->replies; r; r = r->next)
        if (r->stream_id == stream_id)
            return r;
    struct reply *r = calloc(1, sizeof *r);
    if (!r)
        die("out of memory");
    r->stream_id = stream_id;
    r->next = c->replies;
    c->replies = r;
    return r;
}

static int srv_recv_stream_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t offset,
                              const uint8_t *data, size_t datalen, void *user_data, void *stream_user_data)
{
    (void)offset;
    (void)stream_user_data;
    struct sconn *c = user_data;
    struct reply *r = find_reply(c, stream_id);
    size_t room = sizeof r->req - 1 - r->req_len;
    memcpy(r->req + r->req_len, data, datalen < room ? datalen : room);
    r->req_len += datalen < room ? datalen : room;
    if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
        r->fin_received = true;
        r->len = (size_t)snprintf(r->buf, sizeof r->buf, "%s %.*s", srv.name, (int)r->req_len, r->req);
    }
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

static int srv_stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t app_error_code,
                               void *user_data, void *stream_user_data)
{
    (void)conn;
    (void)flags;
    (void)app_error_code;
    (void)stream_user_data;
    struct sconn *c = user_data;
    for (struct reply **p = &c->replies; *p; p = &(*p)->next)
        if ((*p)->stream_id == stream_id) {
            struct reply *r = *p;
            *p = r->next;
            free(r);
            break;
        }
    return 0;
}

static void srv_free(struct sconn *c)
{
    while (c->replies) {
        struct reply *r = c->replies;
        c->replies = r->next;
        free(r);
    }
    ngtcp2_conn_del(c->conn);
    gnutls_deinit(c->tls);
    free(c);
}

/* Sends what the connection has to send: pending replies (with FIN), then acknowledgements and the rest. */
static int srv_write(struct sconn *c)
{
    uint8_t buf[1500];
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_path_storage_zero(&ps);
    for (struct reply *r = c->replies; r; r = r->next)
        r->blocked = false;
    for (int guard = 0; guard < 1000; guard++) {
        struct reply *r = c->replies;
        while (r && (!r->fin_received || r->sent == r->len || r->blocked))
            r = r->next;
        ngtcp2_vec v = {0};
        ngtcp2_ssize written = -1;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        if (r) {
            v.base = (uint8_t *)r->buf + r->sent;
            v.len = r->len - r->sent;
            flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf, sizeof buf, &written, flags,
                                                   r ? r->stream_id : -1, r ? &v : NULL, r ? 1 : 0, now_ns());
        if (r && written >= 0)
            r->sent += (size_t)written;
        if (n == NGTCP2_ERR_WRITE_MORE)
            continue;
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
            n == NGTCP2_ERR_STREAM_NOT_FOUND) {
            if (r)
                r->blocked = true;
            continue;
        }
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        sendto(srv.fd, buf, (size_t)n, 0, ps.path.remote.addr, ps.path.remote.addrlen);
    }
    return 0;
}

static struct sconn *srv_find(const uint8_t *dcid, size_t dcidlen)
{
    ngtcp2_cid scids[64];
    for (struct sconn *c = srv.conns; c; c = c->next) {
        if (c->odcid.datalen == dcidlen && memcmp(c->odcid.data, dcid, dcidlen) == 0)
            return c;
        size_t n = ngtcp2_conn_get_num_scid(c->conn);
        if (n > 64)
            continue;  /* never: the client allows 4 at a time */
        ngtcp2_conn_get_scid(c->conn, scids);
        for (size_t i = 0; i < n; i++)
            if (scids[i].datalen == dcidlen && memcmp(scids[i].data, dcid, dcidlen) == 0)
                return c;
    }
    return NULL;
}

static struct sconn *srv_accept(const uint8_t *pkt, size_t len, const ngtcp2_path *path)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0)
        return NULL;
    struct sconn *c = calloc(1, sizeof *c);
    if (!c)
        die("out of memory");
    ngtcp2_callbacks cb = {
        .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_stream_data = srv_recv_stream_cb,
        .stream_close = srv_stream_close_cb,
        .rand = rand_cb,
        .get_new_connection_id = srv_new_cid_cb,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = path_challenge_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    };
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = now_ns();
    settings.no_pmtud = 1;  /* probes over 1,444 octets cannot pass the encapsulation: not what is tested */
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_stream_data_bidi_remote = 64 * 1024;
    params.initial_max_data = 1024 * 1024;
    params.initial_max_streams_bidi = 1000;
    params.max_idle_timeout = 60 * NGTCP2_SECONDS;
    params.active_connection_id_limit = 4;
    params.original_dcid = hd.dcid;
    ngtcp2_cid scid;
    mint_cid(&scid);
    c->odcid = hd.dcid;
    if (ngtcp2_conn_server_new(&c->conn, &hd.scid, &scid, path, hd.version, &cb, &settings, &params, NULL, c) != 0)
        die("ngtcp2_conn_server_new failed");
    if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) != 0 ||
        gnutls_priority_set_direct(c->tls, PRIORITY, NULL) != 0 ||
        ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, srv.cred) != 0)
        die("GnuTLS server session setup failed");
    set_alpn(c->tls, GNUTLS_ALPN_MANDATORY);
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    gnutls_session_set_ptr(c->tls, &c->ref);
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    c->next = srv.conns;
    srv.conns = c;
    return c;
}

/* A short-header packet for a connection this server does not hold: another server's CID. */
static void srv_report_unknown(const uint8_t *dcid, size_t dcidlen, const struct sockaddr_in *from)
{
    if (srv.unknown_reports >= 100000)
        return;
    srv.unknown_reports++;
    char hex[2 * NGTCP2_MAX_CIDLEN + 1], ip[INET_ADDRSTRLEN];
    hex_encode(dcid, dcidlen, hex);
    inet_ntop(AF_INET, &from->sin_addr, ip, sizeof ip);
    printf("{\"server\":\"%s\",\"unknown_dcid\":\"%s\",\"from\":\"%s:%u\",\"t\":%.3f}\n", srv.name, hex,
           ip, ntohs(from->sin_port), now_ns() / 1e9);
    fflush(stdout);
}

static void srv_read(void)
{
    uint8_t buf[65536];
    for (int i = 0; i < 256; i++) {
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(srv.fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
        if (n <= 0)
            return;
        ngtcp2_version_cid vc;
        int rv = ngtcp2_pkt_decode_version_cid(&vc, buf, (size_t)n, quic_lb_cid_len(&srv.lb));
        if (rv != 0)
            continue;  /* version negotiation is not offered: the client speaks v1 */
        ngtcp2_path path = {{(ngtcp2_sockaddr *)&srv.local, sizeof srv.local},
                            {(ngtcp2_sockaddr *)&from, fromlen}, NULL};
        struct sconn *c = srv_find(vc.dcid, vc.dcidlen);
        if (!c) {
            if (!(buf[0] & 0x80)) {
                srv_report_unknown(vc.dcid, vc.dcidlen, &from);
                continue;
            }
            c = srv_accept(buf, (size_t)n, &path);
            if (!c)
                continue;
        }
        ngtcp2_pkt_info pi = {0};
        rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, (size_t)n, now_ns());
        if (rv != 0) {
            c->dead = true;
            continue;
        }
        srv_write(c);
    }
}

static void srv_make_cert(void)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    unsigned char serial[8];
    gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial);
    serial[0] &= 0x7f;
    if (gnutls_x509_privkey_init(&key) != 0 ||
        gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) ||
        gnutls_x509_crt_init(&crt) != 0 || gnutls_x509_crt_set_version(crt, 3) != 0 ||
        gnutls_x509_crt_set_serial(crt, serial, sizeof serial) != 0 ||
        gnutls_x509_crt_set_activation_time(crt, time(NULL) - 3600) != 0 ||
        gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 86400) != 0 ||
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, srv.name, strlen(srv.name)) != 0 ||
        gnutls_x509_crt_set_key(crt, key) != 0 || gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) != 0 ||
        gnutls_certificate_allocate_credentials(&srv.cred) != 0 ||
        gnutls_certificate_set_x509_key(srv.cred, &crt, 1, key) != 0)
        die("cannot make the self-signed certificate");
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int run_server(const char *addr, unsigned port, const char *name, unsigned codepoint, const char *sid_hex,
                      unsigned nonce_len, const char *key_hex)
{
    uint8_t key[QUIC_LB_KEY_LEN];
    int sid_len = hex_decode(sid_hex, srv.server_id, sizeof srv.server_id);
    if (sid_len <= 0)
        die("--server-id: hex, 1-15 octets");
    if (key_hex && hex_decode(key_hex, key, sizeof key) != QUIC_LB_KEY_LEN)
        die("--key: 32 hex digits");
    enum quic_lb_status s = quic_lb_config_init(&srv.lb, codepoint, (unsigned)sid_len, nonce_len,
                                                key_hex ? key : NULL);
    if (s != QUIC_LB_OK) {
        fprintf(stderr, "quic_echo: QUIC-LB configuration: %s\n", quic_lb_strerror(s));
        return 2;
    }
    uint8_t start[8];
    gnutls_rnd(GNUTLS_RND_NONCE, start, sizeof start);
    memcpy(&srv.nonce_counter, start, sizeof start);
    srv.nonce_counter >>= 8;  /* far from wrapping in a test's life */
    srv.name = name;
    srv_make_cert();
    srv.local = make_addr(addr, port);
    srv.fd = udp_socket(&srv.local);
    if (srv.fd < 0) {
        perror("quic_echo: bind");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fprintf(stderr, "quic_echo: server %s on %s:%u, QUIC-LB codepoint %u, server ID %s, nonce %u octets, %s\n",
            name, addr, port, codepoint, sid_hex, nonce_len, quic_lb_algorithm_name(srv.lb.algorithm));
    while (!stop_flag) {
        uint64_t now = now_ns(), next = now + 100 * NGTCP2_MILLISECONDS;
        for (struct sconn *c = srv.conns; c; c = c->next) {
            uint64_t e = ngtcp2_conn_get_expiry(c->conn);
            if (e < next)
                next = e;
        }
        struct pollfd pfd = {srv.fd, POLLIN, 0};
        poll(&pfd, 1, next > now ? (int)((next - now) / 1000000u) + 1 : 0);
        if (pfd.revents & POLLIN)
            srv_read();
        now = now_ns();
        for (struct sconn **p = &srv.conns; *p;) {
            struct sconn *c = *p;
            if (!c->dead && ngtcp2_conn_get_expiry(c->conn) <= now &&
                (ngtcp2_conn_handle_expiry(c->conn, now) != 0 || srv_write(c) != 0))
                c->dead = true;
            if (c->dead || ngtcp2_conn_is_in_draining_period(c->conn) || ngtcp2_conn_is_in_closing_period(c->conn)) {
                *p = c->next;
                srv_free(c);
                continue;
            }
            p = &c->next;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ client */

enum move_mode { MOVE_NONE, MOVE_NAT, MOVE_MIGRATE };

struct cconn {
    int fd;
    struct sockaddr_in local, remote;
    unsigned sport, new_sport;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref ref;
    bool handshake, moved, done, failed;
    char error[160];
    unsigned cid_len;          /* the server's CID length, from its first long-header packet */
    char dcids[MAX_DCIDS][2 * NGTCP2_MAX_CIDLEN + 1];
    unsigned n_dcids;
    char dcid_before[2 * NGTCP2_MAX_CIDLEN + 1], dcid_after[2 * NGTCP2_MAX_CIDLEN + 1];
    /* the request in flight */
    int64_t stream_id;
    bool in_flight;
    char req[MAX_REQ];
    size_t req_len, req_sent;
    char resp[MAX_REPLY];
    size_t resp_len;
    bool resp_fin;
    uint64_t req_t0, next_send;
    unsigned seq;              /* requests sent */
    char **answers;            /* per request: the server's name, "-" for no answer, "?" for a wrong one */
    double *answer_s;          /* per request: when its answer came (CLOCK_MONOTONIC, s), 0 for none */
    uint64_t handshake_ns, move_ns;
};

static struct {
    unsigned requests, move_after, interval_ms, timeout_ms;
    enum move_mode mode;
} cli;

static ngtcp2_conn *cli_get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct cconn *)ref->user_data)->conn;
}

static int cli_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *user_data)
{
    (void)conn;
    (void)user_data;
    uint8_t b[NGTCP2_MAX_CIDLEN];
    gnutls_rnd(GNUTLS_RND_RANDOM, b, cidlen);
    ngtcp2_cid_init(cid, b, cidlen);
    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
}

static int cli_handshake_cb(ngtcp2_conn *conn, void *user_data)
{
    (void)conn;
    struct cconn *c = user_data;
    c->handshake = true;
    c->handshake_ns = now_ns();
    return 0;
}

static int cli_recv_stream_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t offset,
                              const uint8_t *data, size_t datalen, void *user_data, void *stream_user_data)
{
    (void)offset;
    (void)stream_user_data;
    struct cconn *c = user_data;
    if (c->in_flight && stream_id == c->stream_id) {
        size_t room = sizeof c->resp - 1 - c->resp_len;
        memcpy(c->resp + c->resp_len, data, datalen < room ? datalen : room);
        c->resp_len += datalen < room ? datalen : room;
        if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
            c->resp_fin = true;
    }
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

static void note_dcid(struct cconn *c, const uint8_t *pkt, size_t len)
{
    if (!c->cid_len || (pkt[0] & 0x80) || len < 1 + c->cid_len)
        return;
    char hex[2 * NGTCP2_MAX_CIDLEN + 1];
    hex_encode(pkt + 1, c->cid_len, hex);
    strcpy(c->moved ? c->dcid_after : c->dcid_before, hex);
    for (unsigned i = 0; i < c->n_dcids; i++)
        if (strcmp(c->dcids[i], hex) == 0)
            return;
    if (c->n_dcids < MAX_DCIDS)
        strcpy(c->dcids[c->n_dcids++], hex);
}

static void cli_fail(struct cconn *c, const char *what, int rv)
{
    if (c->failed || c->done)
        return;
    c->failed = true;
    snprintf(c->error, sizeof c->error, "%s: %s", what, rv ? ngtcp2_strerror(rv) : "");
}

static void cli_write(struct cconn *c)
{
    uint8_t buf[1500];
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_path_storage_zero(&ps);
    for (int guard = 0; guard < 100; guard++) {
        bool with_req = c->in_flight && c->req_sent < c->req_len;
        ngtcp2_vec v = {(uint8_t *)c->req + c->req_sent, c->req_len - c->req_sent};
        ngtcp2_ssize written = -1;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE | (with_req ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf, sizeof buf, &written, flags,
                                                   with_req ? c->stream_id : -1, with_req ? &v : NULL,
                                                   with_req ? 1 : 0, now_ns());
        if (with_req && written >= 0)
            c->req_sent += (size_t)written;
        if (n == NGTCP2_ERR_WRITE_MORE)
            continue;
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
            n == NGTCP2_ERR_STREAM_NOT_FOUND) {
            /* try again with no stream data: flush the rest */
            n = ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, buf, sizeof buf, now_ns());
        }
        if (n < 0) {
            cli_fail(c, "write", (int)n);
            return;
        }
        if (n == 0)
            return;
        note_dcid(c, buf, (size_t)n);
        sendto(c->fd, buf, (size_t)n, 0, (const struct sockaddr *)&c->remote, sizeof c->remote);
    }
}

static void cli_read(struct cconn *c)
{
    uint8_t buf[65536];
    for (int i = 0; i < 64 && !c->failed; i++) {
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(c->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
        if (n <= 0)
            return;
        if (!c->cid_len && (buf[0] & 0x80)) {
            ngtcp2_version_cid vc;
            if (ngtcp2_pkt_decode_version_cid(&vc, buf, (size_t)n, 0) == 0 && vc.scidlen)
                c->cid_len = (unsigned)vc.scidlen;
        }
        ngtcp2_path path = {{(ngtcp2_sockaddr *)&c->local, sizeof c->local},
                            {(ngtcp2_sockaddr *)&from, fromlen}, NULL};
        ngtcp2_pkt_info pi = {0};
        int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, (size_t)n, now_ns());
        if (rv != 0) {
            cli_fail(c, "read", rv);
            return;
        }
    }
}

static int cli_start(struct cconn *c, const char *bind_ip, const char *vip, unsigned port)
{
    c->local = make_addr(bind_ip, c->sport);
    c->remote = make_addr(vip, port);
    c->fd = udp_socket(&c->local);
    if (c->fd < 0)
        return -1;
    ngtcp2_callbacks cb = {
        .client_initial = ngtcp2_crypto_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .handshake_completed = cli_handshake_cb,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_stream_data = cli_recv_stream_cb,
        .recv_retry = ngtcp2_crypto_recv_retry_cb,
        .rand = rand_cb,
        .get_new_connection_id = cli_new_cid_cb,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = path_challenge_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    };
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = now_ns();
    settings.handshake_timeout = 5 * NGTCP2_SECONDS;
    settings.no_pmtud = 1;
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_stream_data_bidi_local = 64 * 1024;
    params.initial_max_data = 1024 * 1024;
    params.max_idle_timeout = 60 * NGTCP2_SECONDS;
    params.active_connection_id_limit = 4;
    uint8_t b[18];
    ngtcp2_cid dcid, scid;
    gnutls_rnd(GNUTLS_RND_RANDOM, b, sizeof b);
    ngtcp2_cid_init(&dcid, b, 18);
    gnutls_rnd(GNUTLS_RND_RANDOM, b, sizeof b);
    ngtcp2_cid_init(&scid, b, 8);
    ngtcp2_path path = {{(ngtcp2_sockaddr *)&c->local, sizeof c->local},
                        {(ngtcp2_sockaddr *)&c->remote, sizeof c->remote}, NULL};
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, NULL,
                               c) != 0)
        die("ngtcp2_conn_client_new failed");
    static gnutls_certificate_credentials_t cred;
    if (!cred && gnutls_certificate_allocate_credentials(&cred) != 0)
        die("GnuTLS credentials");
    if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0 ||
        gnutls_priority_set_direct(c->tls, PRIORITY, NULL) != 0 ||
        ngtcp2_crypto_gnutls_configure_client_session(c->tls) != 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cred) != 0)
        die("GnuTLS client session setup failed");
    set_alpn(c->tls, 0);
    gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "understudy-e2e", strlen("understudy-e2e"));
    c->ref.get_conn = cli_get_conn;
    c->ref.user_data = c;
    gnutls_session_set_ptr(c->tls, &c->ref);
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    c->answers = calloc(cli.requests, sizeof *c->answers);
    c->answer_s = calloc(cli.requests, sizeof *c->answer_s);
    if (!c->answers || !c->answer_s)
        die("out of memory");
    cli_write(c);
    return 0;
}

/* The client's move to its new source port: a new socket (the old one closed, as a NAT forgets a binding);
 * NAT rebinding keeps the DCID and lets the server find the new path, migration starts on a new DCID. */
static void cli_move(struct cconn *c, const char *bind_ip)
{
    struct sockaddr_in nl = make_addr(bind_ip, c->new_sport);
    int fd = udp_socket(&nl);
    if (fd < 0) {
        cli_fail(c, "bind the new source port", 0);
        return;
    }
    if (cli.mode == MOVE_NAT) {
        ngtcp2_addr a = {(ngtcp2_sockaddr *)&nl, sizeof nl};
        ngtcp2_conn_set_local_addr(c->conn, &a);
    } else {
        ngtcp2_path p = {{(ngtcp2_sockaddr *)&nl, sizeof nl}, {(ngtcp2_sockaddr *)&c->remote, sizeof c->remote},
                         NULL};
        int rv = ngtcp2_conn_initiate_immediate_migration(c->conn, &p, now_ns());
        if (rv != 0) {
            close(fd);
            cli_fail(c, "migrate", rv);
            return;
        }
    }
    close(c->fd);
    c->fd = fd;
    c->local = nl;
    c->moved = true;
    c->move_ns = now_ns();
}

/* The request/answer cycle of one connection, run after reads and timers. */
static void cli_step(struct cconn *c, const char *bind_ip)
{
    uint64_t now = now_ns();
    if (c->failed || c->done || !c->handshake)
        return;
    if (c->in_flight) {
        if (c->resp_fin) {
            size_t name_len = 0;
            const char *sp = memchr(c->resp, ' ', c->resp_len);
            bool ok = sp && (size_t)(c->resp + c->resp_len - sp - 1) == c->req_len &&
                      memcmp(sp + 1, c->req, c->req_len) == 0;
            if (ok)
                name_len = (size_t)(sp - c->resp);
            c->answers[c->seq - 1] = ok ? strndup(c->resp, name_len) : strdup("?");
            c->answer_s[c->seq - 1] = now / 1e9;
            c->in_flight = false;
        } else if (now - c->req_t0 > (uint64_t)cli.timeout_ms * 1000000u) {
            c->answers[c->seq - 1] = strdup("-");
            ngtcp2_conn_shutdown_stream(c->conn, c->stream_id, 0);
            c->in_flight = false;
        }
        if (!c->in_flight)
            c->next_send = now + (uint64_t)cli.interval_ms * 1000000u;
    }
    if (c->in_flight || now < c->next_send)
        return;
    if (c->seq == cli.requests) {
        c->done = true;
        return;
    }
    if (cli.mode != MOVE_NONE && !c->moved && c->seq == cli.move_after) {
        cli_move(c, bind_ip);
        if (c->failed)
            return;
    }
    int rv = ngtcp2_conn_open_bidi_stream(c->conn, &c->stream_id, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
        return;
    if (rv != 0) {
        cli_fail(c, "open stream", rv);
        return;
    }
    c->seq++;
    c->req_len = (size_t)snprintf(c->req, sizeof c->req, "%u:%u", c->sport, c->seq);
    c->req_sent = 0;
    c->resp_len = 0;
    c->resp_fin = false;
    c->in_flight = true;
    c->req_t0 = now;
}

static void cli_report(const struct cconn *c)
{
    printf("{\"sport\":%u,\"new_sport\":%u,\"handshake\":%s,\"moved\":%s,\"error\":", c->sport,
           c->moved ? c->new_sport : 0, c->handshake ? "true" : "false", c->moved ? "true" : "false");
    if (c->failed)
        printf("\"%s\"", c->error);
    else if (!c->done)
        printf("\"%s\"", c->handshake ? "unfinished" : "no handshake");
    else
        printf("null");
    printf(",\"dcid_before\":\"%s\",\"dcid_after\":\"%s\",\"dcids\":[", c->dcid_before, c->dcid_after);
    for (unsigned i = 0; i < c->n_dcids; i++)
        printf("%s\"%s\"", i ? "," : "", c->dcids[i]);
    printf("],\"before\":[");
    unsigned before = c->moved ? cli.move_after : cli.requests;
    for (unsigned i = 0; i < before && i < c->seq; i++)
        printf("%s\"%s\"", i ? "," : "", c->answers[i] ? c->answers[i] : "-");
    printf("],\"after\":[");
    for (unsigned i = before; i < c->seq; i++)
        printf("%s\"%s\"", i > before ? "," : "", c->answers[i] ? c->answers[i] : "-");
    printf("],\"answer_s\":[");
    for (unsigned i = 0; i < c->seq; i++)
        printf("%s%.3f", i ? "," : "", c->answer_s ? c->answer_s[i] : 0.0);
    printf("],\"handshake_s\":%.3f,\"move_s\":%.3f}\n", c->handshake_ns / 1e9, c->move_ns / 1e9);
}

static int parse_range(const char *s, unsigned *first, unsigned *count)
{
    unsigned a, b;
    if (sscanf(s, "%u-%u", &a, &b) == 2 && b >= a && b < 65536) {
        *first = a;
        *count = b - a + 1;
        return 0;
    }
    if (sscanf(s, "%u", &a) == 1 && a < 65536) {
        *first = a;
        *count = 1;
        return 0;
    }
    return -1;
}

static int run_client(const char *vip, unsigned port, const char *bind_ip, const char *sports, const char *new_sports,
                      double max_seconds)
{
    unsigned first, count, new_first = 0, new_count = 0;
    if (parse_range(sports, &first, &count) != 0)
        die("--sports: PORT or FIRST-LAST");
    if (cli.mode != MOVE_NONE && (!new_sports || parse_range(new_sports, &new_first, &new_count) != 0 ||
                                  new_count != count))
        die("--move needs --new-sports with as many ports as --sports");
    struct cconn *conns = calloc(count, sizeof *conns);
    struct pollfd *pfds = calloc(count, sizeof *pfds);
    if (!conns || !pfds)
        die("out of memory");
    uint64_t deadline = now_ns() + (uint64_t)(max_seconds * 1e9);
    for (unsigned i = 0; i < count; i++) {
        conns[i].sport = first + i;
        conns[i].new_sport = new_first + i;
        if (cli_start(&conns[i], bind_ip, vip, port) != 0)
            cli_fail(&conns[i], "bind the source port", 0);
    }
    for (;;) {
        uint64_t now = now_ns();
        bool active = false;
        uint64_t next = now + 20 * NGTCP2_MILLISECONDS;
        for (unsigned i = 0; i < count; i++) {
            struct cconn *c = &conns[i];
            pfds[i].fd = (c->failed || c->done) ? -1 : c->fd;
            pfds[i].events = POLLIN;
            pfds[i].revents = 0;
            if (c->failed || c->done)
                continue;
            active = true;
            uint64_t e = ngtcp2_conn_get_expiry(c->conn);
            if (e < next)
                next = e;
            if (c->handshake && !c->in_flight && c->next_send < next)
                next = c->next_send;
        }
        if (!active || now >= deadline || stop_flag)
            break;
        poll(pfds, count, next > now ? (int)((next - now) / 1000000u) + 1 : 0);
        for (unsigned i = 0; i < count; i++) {
            struct cconn *c = &conns[i];
            if (pfds[i].fd >= 0 && (pfds[i].revents & POLLIN))
                cli_read(c);
            if (c->failed || c->done)
                continue;
            now = now_ns();
            if (ngtcp2_conn_get_expiry(c->conn) <= now) {
                int rv = ngtcp2_conn_handle_expiry(c->conn, now);
                if (rv != 0) {
                    cli_fail(c, "timer", rv);
                    continue;
                }
            }
            cli_step(c, bind_ip);
            if (!c->failed)
                cli_write(c);
        }
    }
    int bad = 0;
    for (unsigned i = 0; i < count; i++) {
        struct cconn *c = &conns[i];
        if (c->done && !c->failed) {
            /* a clean close, so the servers free the connection at once */
            uint8_t buf[1500];
            ngtcp2_path_storage ps;
            ngtcp2_connection_close_error ccerr;
            ngtcp2_path_storage_zero(&ps);
            ngtcp2_connection_close_error_default(&ccerr);
            ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, NULL, buf, sizeof buf, &ccerr,
                                                                now_ns());
            if (n > 0)
                sendto(c->fd, buf, (size_t)n, 0, (const struct sockaddr *)&c->remote, sizeof c->remote);
        }
        cli_report(c);
        bad += !c->done || c->failed;
    }
    fflush(stdout);
    return bad ? 1 : 0;
}

/* --------------------------------------------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage:\n"
          "  quic_echo server --addr IP --port N --name NAME --codepoint N --server-id HEX --nonce-len N [--key HEX]\n"
          "  quic_echo client --vip IP --port N --bind IP --sports A[-B] [--move nat|migrate --new-sports C[-D]\n"
          "                   --move-after K] [--requests N] [--interval-ms N] [--timeout-ms N] [--max-seconds S]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    const char *addr = NULL, *name = NULL, *sid = NULL, *key = NULL, *bind_ip = NULL, *sports = NULL;
    const char *new_sports = NULL;
    unsigned port = 0, codepoint = 0, nonce_len = 0;
    double max_seconds = 30;
    cli.requests = 10;
    cli.interval_ms = 100;
    cli.timeout_ms = 1000;
    static const struct option opts[] = {
        {"addr", required_argument, 0, 'a'},       {"vip", required_argument, 0, 'a'},
        {"port", required_argument, 0, 'p'},       {"name", required_argument, 0, 'n'},
        {"codepoint", required_argument, 0, 'c'},  {"server-id", required_argument, 0, 's'},
        {"nonce-len", required_argument, 0, 'l'},  {"key", required_argument, 0, 'k'},
        {"bind", required_argument, 0, 'b'},       {"sports", required_argument, 0, 'S'},
        {"new-sports", required_argument, 0, 'N'}, {"move", required_argument, 0, 'm'},
        {"move-after", required_argument, 0, 'A'}, {"requests", required_argument, 0, 'r'},
        {"interval-ms", required_argument, 0, 'i'}, {"timeout-ms", required_argument, 0, 't'},
        {"max-seconds", required_argument, 0, 'M'}, {0, 0, 0, 0},
    };
    optind = 2;
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'a': addr = optarg; break;
        case 'p': port = (unsigned)atoi(optarg); break;
        case 'n': name = optarg; break;
        case 'c': codepoint = (unsigned)atoi(optarg); break;
        case 's': sid = optarg; break;
        case 'l': nonce_len = (unsigned)atoi(optarg); break;
        case 'k': key = optarg; break;
        case 'b': bind_ip = optarg; break;
        case 'S': sports = optarg; break;
        case 'N': new_sports = optarg; break;
        case 'm':
            cli.mode = strcmp(optarg, "nat") == 0       ? MOVE_NAT
                       : strcmp(optarg, "migrate") == 0 ? MOVE_MIGRATE
                                                        : MOVE_NONE;
            if (cli.mode == MOVE_NONE && strcmp(optarg, "none") != 0)
                usage();
            break;
        case 'A': cli.move_after = (unsigned)atoi(optarg); break;
        case 'r': cli.requests = (unsigned)atoi(optarg); break;
        case 'i': cli.interval_ms = (unsigned)atoi(optarg); break;
        case 't': cli.timeout_ms = (unsigned)atoi(optarg); break;
        case 'M': max_seconds = atof(optarg); break;
        default: usage();
        }
    }
    if (gnutls_global_init() != 0)
        die("gnutls_global_init");
    if (strcmp(mode, "server") == 0) {
        if (!addr || !port || !name || !sid || !nonce_len)
            usage();
        setvbuf(stdout, NULL, _IOLBF, 0);
        return run_server(addr, port, name, codepoint, sid, nonce_len, key);
    }
    if (strcmp(mode, "client") == 0) {
        if (!addr || !port || !bind_ip || !sports || cli.requests == 0)
            usage();
        if (cli.mode != MOVE_NONE && (cli.move_after == 0 || cli.move_after >= cli.requests))
            die("--move-after: 1 .. requests-1");
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        return run_client(addr, port, bind_ip, sports, new_sports, max_seconds);
    }
    usage();
    return 2;
}
