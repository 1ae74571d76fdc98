/* QUIC-LB connection ID encoding and decoding (draft-ietf-quic-load-balancers-21, sections "Server Actions"
 * and "Load Balancer Actions"), with AES-128 done by AES-NI. Compiled with -maes -msse4.1. */
#include "quic_lb.h"

#include <string.h>
#include <smmintrin.h>
#include <wmmintrin.h>

/* Key expansion, one round: FIPS-197's RotWord/SubWord/Rcon come from aeskeygenassist, the running XOR of
 * the previous key's words from three shifts. */
static __m128i expand_round(__m128i key, __m128i assist)
{
    assist = _mm_shuffle_epi32(assist, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, assist);
}

/* aeskeygenassist takes its round constant as an immediate, hence a macro rather than a loop. */
#define EXPAND(k, i, rcon) k[i] = expand_round(k[i - 1], _mm_aeskeygenassist_si128(k[i - 1], rcon))

static void expand_key(struct quic_lb_config *config, const uint8_t key[QUIC_LB_KEY_LEN])
{
    __m128i k[11];
    k[0] = _mm_loadu_si128((const __m128i *)key);
    EXPAND(k, 1, 0x01);
    EXPAND(k, 2, 0x02);
    EXPAND(k, 3, 0x04);
    EXPAND(k, 4, 0x08);
    EXPAND(k, 5, 0x10);
    EXPAND(k, 6, 0x20);
    EXPAND(k, 7, 0x40);
    EXPAND(k, 8, 0x80);
    EXPAND(k, 9, 0x1b);
    EXPAND(k, 10, 0x36);
    /* The equivalent inverse cipher: the rounds in reverse order, the inner ones through InvMixColumns. */
    for (int i = 0; i <= 10; i++) {
        _mm_store_si128((__m128i *)config->enc_round_keys[i], k[i]);
        __m128i d = (i == 0 || i == 10) ? k[10 - i] : _mm_aesimc_si128(k[10 - i]);
        _mm_store_si128((__m128i *)config->dec_round_keys[i], d);
    }
}

static __m128i encrypt(const struct quic_lb_config *config, __m128i block)
{
    const __m128i *k = (const __m128i *)config->enc_round_keys;
    block = _mm_xor_si128(block, _mm_load_si128(&k[0]));
    for (int i = 1; i < 10; i++)
        block = _mm_aesenc_si128(block, _mm_load_si128(&k[i]));
    return _mm_aesenclast_si128(block, _mm_load_si128(&k[10]));
}

static __m128i decrypt(const struct quic_lb_config *config, __m128i block)
{
    const __m128i *k = (const __m128i *)config->dec_round_keys;
    block = _mm_xor_si128(block, _mm_load_si128(&k[0]));
    for (int i = 1; i < 10; i++)
        block = _mm_aesdec_si128(block, _mm_load_si128(&k[i]));
    return _mm_aesdeclast_si128(block, _mm_load_si128(&k[10]));
}

void quic_lb_aes_encrypt_block(const struct quic_lb_config *config, const uint8_t in[16], uint8_t out[16])
{
    _mm_storeu_si128((__m128i *)out, encrypt(config, _mm_loadu_si128((const __m128i *)in)));
}

void quic_lb_aes_decrypt_block(const struct quic_lb_config *config, const uint8_t in[16], uint8_t out[16])
{
    _mm_storeu_si128((__m128i *)out, decrypt(config, _mm_loadu_si128((const __m128i *)in)));
}

/* The Feistel halves' masks and expand()'s constant octets, computed once per configuration. */
static void prepare_feistel(struct quic_lb_config *config)
{
    size_t len = (size_t)config->server_id_len + config->nonce_len;
    size_t half_len = (len + 1) / 2;
    memset(config->feistel_masks, 0, sizeof config->feistel_masks);
    memset(config->feistel_masks[0], 0xff, half_len);
    memset(config->feistel_masks[1], 0xff, half_len);
    if (len & 1) {
        config->feistel_masks[0][half_len - 1] = 0xf0;
        config->feistel_masks[1][0] = 0x0f;
    }
    memset(config->feistel_tail, 0, sizeof config->feistel_tail);
    config->feistel_tail[14] = (uint8_t)len;
}

enum quic_lb_status quic_lb_config_init(struct quic_lb_config *config, unsigned codepoint, unsigned server_id_len,
                                        unsigned nonce_len, const uint8_t key[QUIC_LB_KEY_LEN])
{
    if (!config)
        return QUIC_LB_ERR_ARGUMENT;
    if (codepoint >= QUIC_LB_CODEPOINTS)
        return QUIC_LB_ERR_CODEPOINT;
    if (server_id_len < QUIC_LB_MIN_SERVER_ID_LEN || server_id_len > QUIC_LB_MAX_SERVER_ID_LEN)
        return QUIC_LB_ERR_SERVER_ID_LEN;
    if (nonce_len < QUIC_LB_MIN_NONCE_LEN || nonce_len > QUIC_LB_MAX_NONCE_LEN)
        return QUIC_LB_ERR_NONCE_LEN;
    if (server_id_len + nonce_len > QUIC_LB_MAX_PLAINTEXT_LEN)
        return QUIC_LB_ERR_PLAINTEXT_LEN;
    __builtin_cpu_init();  /* needed when called before constructors have run */
    if (key && !__builtin_cpu_supports("aes"))
        return QUIC_LB_ERR_NO_AESNI;
    memset(config, 0, sizeof *config);
    config->codepoint = (uint8_t)codepoint;
    config->server_id_len = (uint8_t)server_id_len;
    config->nonce_len = (uint8_t)nonce_len;
    config->algorithm = !key                                ? QUIC_LB_PLAINTEXT
                        : server_id_len + nonce_len == 16 ? QUIC_LB_SINGLE_PASS
                                                          : QUIC_LB_FOUR_PASS;
    if (key)
        expand_key(config, key);
    prepare_feistel(config);
    return QUIC_LB_OK;
}

/* The four-pass Feistel network. Its halves are half_len = ceil(len / 2) octets; when len is odd the middle
 * octet is shared: the left half keeps its high nibble, the right half its low one, and the other nibble is
 * kept at zero after every pass. A half lives in the first half_len octets of an SSE register, zeros after,
 * which is also how expand() wants it: the pass's input is the half ORed with (len, pass) in octets 14, 15. */
static __m128i load_mask(const uint8_t mask[16]) { return _mm_load_si128((const __m128i *)mask); }

/* half ^ truncate(AES(expand(len, pass, other)), half_len), the shared nibble cleared by the half's mask. */
static __m128i feistel_pass(const struct quic_lb_config *config, unsigned pass, __m128i other, __m128i half,
                            __m128i half_mask)
{
    __m128i block = _mm_or_si128(other, _mm_insert_epi8(load_mask(config->feistel_tail), (int)pass, 15));
    return _mm_xor_si128(half, _mm_and_si128(encrypt(config, block), half_mask));
}

/* The two halves of a len-octet string (plaintext or ciphertext), read from a buffer of at least 16 + len
 * octets so that the unaligned loads stay inside it. */
static void feistel_split(const struct quic_lb_config *config, const uint8_t *buf, __m128i *left, __m128i *right)
{
    size_t len = (size_t)config->server_id_len + config->nonce_len;
    size_t half_len = (len + 1) / 2;
    *left = _mm_and_si128(_mm_loadu_si128((const __m128i *)buf), load_mask(config->feistel_masks[0]));
    *right = _mm_and_si128(_mm_loadu_si128((const __m128i *)(buf + len - half_len)),
                           load_mask(config->feistel_masks[1]));
}

/* The inverse of feistel_split into out (len octets): the shared octet is the OR of the two nibbles. */
static void feistel_join(const struct quic_lb_config *config, __m128i left, __m128i right, uint8_t *out)
{
    size_t len = (size_t)config->server_id_len + config->nonce_len;
    size_t half_len = (len + 1) / 2;
    uint8_t l[16], r[16];
    _mm_storeu_si128((__m128i *)l, left);
    _mm_storeu_si128((__m128i *)r, right);
    if (len & 1) {
        memcpy(out, l, half_len - 1);
        out[half_len - 1] = (uint8_t)(l[half_len - 1] | r[0]);
        memcpy(out + half_len, r + 1, half_len - 1);
    } else {
        memcpy(out, l, half_len);
        memcpy(out + half_len, r, half_len);
    }
}

static void four_pass_encrypt(const struct quic_lb_config *config, const uint8_t *plaintext, uint8_t *out)
{
    uint8_t buf[16 + QUIC_LB_MAX_PLAINTEXT_LEN] = {0};
    memcpy(buf, plaintext, (size_t)config->server_id_len + config->nonce_len);
    __m128i left, right;
    __m128i left_mask = load_mask(config->feistel_masks[0]), right_mask = load_mask(config->feistel_masks[1]);
    feistel_split(config, buf, &left, &right);
    right = feistel_pass(config, 1, left, right, right_mask);  /* right_1 */
    left = feistel_pass(config, 2, right, left, left_mask);    /* left_1 */
    right = feistel_pass(config, 3, left, right, right_mask);  /* right_2 */
    left = feistel_pass(config, 4, right, left, left_mask);    /* left_2 */
    feistel_join(config, left, right, out);
}

/* Decrypts the server ID, or with whole set the server ID and the nonce, into out (len octets; only the
 * server ID's are meaningful unless whole). The fourth pass is needed only when the server ID reaches past
 * left_0, which holds floor(len / 2) whole octets: when it is longer than the nonce. */
static void four_pass_decrypt(const struct quic_lb_config *config, const uint8_t *ciphertext, uint8_t *out,
                              int whole)
{
    uint8_t buf[16 + QUIC_LB_MAX_PLAINTEXT_LEN] = {0};
    memcpy(buf, ciphertext, (size_t)config->server_id_len + config->nonce_len);
    __m128i left, right;
    __m128i left_mask = load_mask(config->feistel_masks[0]), right_mask = load_mask(config->feistel_masks[1]);
    feistel_split(config, buf, &left, &right);
    left = feistel_pass(config, 4, right, left, left_mask);    /* left_1 */
    right = feistel_pass(config, 3, left, right, right_mask);  /* right_1 */
    left = feistel_pass(config, 2, right, left, left_mask);    /* left_0 */
    if (whole || config->server_id_len > config->nonce_len) {
        right = feistel_pass(config, 1, left, right, right_mask);  /* right_0 */
        feistel_join(config, left, right, out);
    } else {
        uint8_t l[16];
        _mm_storeu_si128((__m128i *)l, left);
        memcpy(out, l, config->server_id_len);
    }
}

enum quic_lb_status quic_lb_encode(const struct quic_lb_config *config, const uint8_t *server_id,
                                   const uint8_t *nonce, int low_bits, uint8_t *cid)
{
    if (!config || !server_id || !nonce || !cid)
        return QUIC_LB_ERR_ARGUMENT;
    size_t len = (size_t)config->server_id_len + config->nonce_len;
    if (low_bits == QUIC_LB_LENGTH_BITS)
        low_bits = (int)len;
    else if (low_bits < 0 || low_bits > 31)
        return QUIC_LB_ERR_LOW_BITS;
    uint8_t plaintext[QUIC_LB_MAX_PLAINTEXT_LEN];
    memcpy(plaintext, server_id, config->server_id_len);
    memcpy(plaintext + config->server_id_len, nonce, config->nonce_len);
    cid[0] = (uint8_t)(config->codepoint << 5 | low_bits);
    switch (config->algorithm) {
    case QUIC_LB_SINGLE_PASS:
        quic_lb_aes_encrypt_block(config, plaintext, cid + 1);
        break;
    case QUIC_LB_FOUR_PASS:
        four_pass_encrypt(config, plaintext, cid + 1);
        break;
    default:
        memcpy(cid + 1, plaintext, len);
        break;
    }
    return QUIC_LB_OK;
}

static enum quic_lb_status check_cid(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len)
{
    if (cid_len == 0)
        return QUIC_LB_ERR_CID_EMPTY;
    if (cid_len > QUIC_LB_MAX_CID_LEN)
        return QUIC_LB_ERR_CID_TOO_LONG;
    unsigned codepoint = quic_lb_cid_codepoint(cid);
    if (codepoint == QUIC_LB_UNROUTABLE_CODEPOINT)
        return QUIC_LB_ERR_CID_UNROUTABLE;
    if (codepoint != config->codepoint)
        return QUIC_LB_ERR_CID_CODEPOINT;
    if (cid_len < quic_lb_cid_len(config))
        return QUIC_LB_ERR_CID_TOO_SHORT;
    return QUIC_LB_OK;
}

static enum quic_lb_status decode(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len,
                                  uint8_t *out, int whole)
{
    if (!config || !out || (!cid && cid_len))
        return QUIC_LB_ERR_ARGUMENT;
    enum quic_lb_status status = check_cid(config, cid, cid_len);
    if (status != QUIC_LB_OK)
        return status;
    size_t want = whole ? (size_t)config->server_id_len + config->nonce_len : config->server_id_len;
    uint8_t plaintext[16];
    switch (config->algorithm) {
    case QUIC_LB_SINGLE_PASS:
        quic_lb_aes_decrypt_block(config, cid + 1, plaintext);
        memcpy(out, plaintext, want);
        break;
    case QUIC_LB_FOUR_PASS: {
        uint8_t text[QUIC_LB_MAX_PLAINTEXT_LEN];
        four_pass_decrypt(config, cid + 1, text, whole);
        memcpy(out, text, want);
        break;
    }
    default:
        memcpy(out, cid + 1, want);
        break;
    }
    return QUIC_LB_OK;
}

enum quic_lb_status quic_lb_decode(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len,
                                   uint8_t *server_id)
{
    return decode(config, cid, cid_len, server_id, 0);
}

enum quic_lb_status quic_lb_decrypt(const struct quic_lb_config *config, const uint8_t *cid, size_t cid_len,
                                    uint8_t *plaintext)
{
    return decode(config, cid, cid_len, plaintext, 1);
}

void quic_lb_nonce_from_counter(uint64_t counter, uint8_t *nonce, size_t nonce_len)
{
    for (size_t i = nonce_len; i-- > 0;) {
        nonce[i] = (uint8_t)counter;
        counter >>= 8;
    }
}

const char *quic_lb_strerror(enum quic_lb_status status)
{
    switch (status) {
    case QUIC_LB_OK: return "ok";
    case QUIC_LB_ERR_CODEPOINT: return "the codepoint must be 0-6 (7 marks unroutable connection IDs)";
    case QUIC_LB_ERR_SERVER_ID_LEN: return "the server ID length must be 1-15 octets";
    case QUIC_LB_ERR_NONCE_LEN: return "the nonce length must be 4-18 octets";
    case QUIC_LB_ERR_PLAINTEXT_LEN: return "the server ID and nonce lengths must sum to 19 octets or less";
    case QUIC_LB_ERR_NO_AESNI: return "this CPU has no AES-NI, which encrypted configurations need";
    case QUIC_LB_ERR_CID_EMPTY: return "the connection ID is empty";
    case QUIC_LB_ERR_CID_TOO_LONG: return "the connection ID is longer than 20 octets";
    case QUIC_LB_ERR_CID_UNROUTABLE: return "codepoint 7: made by a server with no QUIC-LB configuration";
    case QUIC_LB_ERR_CID_CODEPOINT: return "the connection ID names another configuration";
    case QUIC_LB_ERR_CID_TOO_SHORT: return "the connection ID is shorter than 1 + server ID + nonce octets";
    case QUIC_LB_ERR_LOW_BITS: return "the first octet's low bits must be 0-31 or QUIC_LB_LENGTH_BITS";
    case QUIC_LB_ERR_ARGUMENT: return "a required argument is NULL";
    }
    return "unknown QUIC-LB status";
}

const char *quic_lb_algorithm_name(enum quic_lb_algorithm algorithm)
{
    switch (algorithm) {
    case QUIC_LB_PLAINTEXT: return "plaintext";
    case QUIC_LB_SINGLE_PASS: return "single-pass";
    case QUIC_LB_FOUR_PASS: return "four-pass";
    }
    return "unknown";
}
