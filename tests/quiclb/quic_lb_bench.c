/* Decode cost of the QUIC-LB library alone, per algorithm: a loop over 1,024 distinct CIDs, not packets
 * through the data plane. Prints figures, asserts nothing (run by hand: BUILD/tests/quiclb/quiclb_bench). */
#include <stdio.h>
#include <time.h>

#include "quiclb/quic_lb.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const struct {
        const char *name;
        unsigned server_id_len, nonce_len;
        const uint8_t *key;
    } cases[] = {
        {"plaintext 2+8", 2, 8, NULL},
        {"single-pass 4+12", 4, 12, key},
        {"four-pass 2+8 (3 AES)", 2, 8, key},
        {"four-pass 3+4 (3 AES)", 3, 4, key},
        {"four-pass 9+4 (4 AES)", 9, 4, key},
    };
    enum { kCids = 1024, kDecodes = 2000000 };
    static uint8_t cids[kCids][QUIC_LB_MAX_CID_LEN];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct quic_lb_config config;
        if (quic_lb_config_init(&config, 0, cases[c].server_id_len, cases[c].nonce_len, cases[c].key) != QUIC_LB_OK)
            return 1;
        uint8_t server_id[QUIC_LB_MAX_SERVER_ID_LEN] = {0}, nonce[QUIC_LB_MAX_NONCE_LEN];
        for (unsigned i = 0; i < kCids; i++) {
            server_id[0] = (uint8_t)i;
            quic_lb_nonce_from_counter(i * 7919u, nonce, cases[c].nonce_len);
            quic_lb_encode(&config, server_id, nonce, QUIC_LB_LENGTH_BITS, cids[i]);
        }
        unsigned sum = 0;  /* keeps the decodes from being optimised away */
        double start = now();
        for (unsigned i = 0; i < kDecodes; i++) {
            uint8_t out[QUIC_LB_MAX_SERVER_ID_LEN];
            quic_lb_decode(&config, cids[i % kCids], quic_lb_cid_len(&config), out);
            sum += out[0];
        }
        double ns = (now() - start) / kDecodes * 1e9;
        printf("%-24s %7.1f ns per decode (checksum %u)\n", cases[c].name, ns, sum);
    }
    return 0;
}
