/* QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21): a server encodes its server ID into the
 * connection IDs it issues, and the load balancer decodes it from the destination CID of each packet. Plain
 * C11 with no DPDK, shared by the balancer's data plane, understudyctl and the servers that mint CIDs
 * (docs/quic-lb.md). Decoding allocates nothing and makes no system call. */
#ifndef UNDERSTUDY_QUIC_LB_H
#define UNDERSTUDY_QUIC_LB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define QUIC_LB_ALIGN16 alignas(16)
#else
#define QUIC_LB_ALIGN16 _Alignas(16)
#endif

#define QUIC_LB_MAX_CID_LEN 20          /* QUIC v1 */
#define QUIC_LB_KEY_LEN 16              /* AES-128 */
#define QUIC_LB_CODEPOINTS 7            /* 0..6 select a configuration */
#define QUIC_LB_UNROUTABLE_CODEPOINT 7  /* 0b111: a server without a configuration */
#define QUIC_LB_MIN_SERVER_ID_LEN 1
#define QUIC_LB_MAX_SERVER_ID_LEN 15
#define QUIC_LB_MIN_NONCE_LEN 4
#define QUIC_LB_MAX_NONCE_LEN 18
#define QUIC_LB_MAX_PLAINTEXT_LEN 19    /* server ID + nonce */

/* The first octet's 5 low bits say the length of the rest of the CID (the draft's length self-description),
 * instead of bits of the server's choosing: pass as quic_lb_encode()'s low_bits. */
#define QUIC_LB_LENGTH_BITS (-1)

enum quic_lb_algorithm {
    QUIC_LB_PLAINTEXT = 0,    /* no key: the server ID is in the clear */
    QUIC_LB_SINGLE_PASS = 1,  /* key, server ID + nonce = 16: one AES-128-ECB block */
    QUIC_LB_FOUR_PASS = 2,    /* key, other lengths: a four-round Feistel network over AES-128-ECB */
};

enum quic_lb_status {
    QUIC_LB_OK = 0,
    /* configuration */
    QUIC_LB_ERR_CODEPOINT,         /* not 0..6 */
    QUIC_LB_ERR_SERVER_ID_LEN,     /* not 1..15 */
    QUIC_LB_ERR_NONCE_LEN,         /* not 4..18 */
    QUIC_LB_ERR_PLAINTEXT_LEN,     /* server ID + nonce longer than 19 octets */
    QUIC_LB_ERR_NO_AESNI,          /* a key, but this CPU has no AES-NI */
    /* connection IDs */
    QUIC_LB_ERR_CID_EMPTY,         /* zero-length CID */
    QUIC_LB_ERR_CID_TOO_LONG,      /* more than 20 octets */
    QUIC_LB_ERR_CID_UNROUTABLE,    /* codepoint 7 */
    QUIC_LB_ERR_CID_CODEPOINT,     /* the CID names another configuration than the one given */
    QUIC_LB_ERR_CID_TOO_SHORT,     /* fewer than 1 + server ID + nonce octets */
    QUIC_LB_ERR_LOW_BITS,          /* low_bits neither QUIC_LB_LENGTH_BITS nor 0..31 */
    QUIC_LB_ERR_ARGUMENT,          /* a required pointer is NULL */
};

/* One configuration, prepared once by quic_lb_config_init() into memory the caller owns and then only read,
 * so any number of threads may decode with it. The AES round keys are expanded here, never per packet. */
struct quic_lb_config {
    QUIC_LB_ALIGN16 uint8_t enc_round_keys[11][16];  /* AES-128 encryption schedule */
    QUIC_LB_ALIGN16 uint8_t dec_round_keys[11][16];  /* the equivalent inverse cipher's, for single pass */
    QUIC_LB_ALIGN16 uint8_t feistel_masks[2][16];    /* four-pass: the left and right halves' octets */
    QUIC_LB_ALIGN16 uint8_t feistel_tail[16];        /* four-pass: expand()'s length octet */
    uint8_t codepoint;
    uint8_t server_id_len;
    uint8_t nonce_len;
    uint8_t algorithm;  /* enum quic_lb_algorithm */
};

/* Validates the lengths and, with a key (NULL: plaintext), expands its schedules. */
enum quic_lb_status quic_lb_config_init(struct quic_lb_config *config, unsigned codepoint, unsigned server_id_len,
                                        unsigned nonce_len, const uint8_t key[QUIC_LB_KEY_LEN]);

/* The length of the CIDs a configuration mints: 1 + server ID + nonce. */
static inline size_t quic_lb_cid_len(const struct quic_lb_config *config)
{
    return 1u + config->server_id_len + config->nonce_len;
}

/* The config-rotation codepoint of a CID (its first octet's 3 high bits); cid_len must be at least 1. */
static inline unsigned quic_lb_cid_codepoint(const uint8_t *cid) { return cid[0] >> 5; }

/* Writes quic_lb_cid_len(config) octets to cid: the first octet (the codepoint, then low_bits: 0..31 of the
 * server's choosing, or QUIC_LB_LENGTH_BITS), then server_id and nonce, encrypted when there is a key. The
 * nonce must never repeat under one key (draft section "Connection ID Entropy"). */
enum quic_lb_status quic_lb_encode(const struct quic_lb_config *config, const uint8_t *server_id,
                                   const uint8_t *nonce, int low_bits, uint8_t *cid);

/* The server ID of a CID: writes config->server_id_len octets to server_id. Octets past 1 + server ID + nonce
 * (a server may append its own) are ignored; the length self-description bits are not checked (a server need
 * not use them). Decrypts only as far as the server ID needs: three AES blocks for four-pass when the nonce is
 * at least as long as the server ID, else four. */
enum quic_lb_status quic_lb_decode(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len,
                                   uint8_t *server_id);

/* The whole plaintext of a CID, server ID then nonce (server_id_len + nonce_len octets): for tests and tools. */
enum quic_lb_status quic_lb_decrypt(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len,
                                    uint8_t *plaintext);

/* nonce_len octets from a counter: big-endian in the last octets, zeros before. A server starts the counter
 * at a random value and must switch configuration before it comes back to it (draft: "Connection ID Entropy").
 * With no key the nonce is in the clear, and the draft asks for nonces that look random: do not use this. */
void quic_lb_nonce_from_counter(uint64_t counter, uint8_t *nonce, size_t nonce_len);

/* One AES-128-ECB block under the configuration's key (in and out may be the same): what every pass uses,
 * exposed so that tests can pin it to FIPS-197 and the draft's worked example. */
void quic_lb_aes_encrypt_block(const struct quic_lb_config *config, const uint8_t in[16], uint8_t out[16]);
void quic_lb_aes_decrypt_block(const struct quic_lb_config *config, const uint8_t in[16], uint8_t out[16]);

/* A short English sentence for a status, never NULL. */
const char *quic_lb_strerror(enum quic_lb_status status);

/* The name of an algorithm: "plaintext", "single-pass" or "four-pass". */
const char *quic_lb_algorithm_name(enum quic_lb_algorithm algorithm);

#ifdef __cplusplus
}
#endif

#endif
