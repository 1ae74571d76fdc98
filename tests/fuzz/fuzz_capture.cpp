// libFuzzer target for replay's capture reader (src/balancer/capture.cpp): any bytes as the input file.
// Whatever they are it returns (no wait for more: libFuzzer's -timeout catches a hang), reads nothing outside
// its buffers (ASan), and either:
//  - fails with a message that starts with the input's name, or
//  - loses nothing: the classic pcap it wrote holds exactly the records libpcap reads from the input, in order,
//    each with its lengths and bytes, and is exactly as long as the format says (24 + sum of 16 + caplen).
// Built with clang++ by tests/fuzz/meson.build, run for a bounded time by the fuzz-capture test; seeds in
// tests/fuzz/capture_corpus (make_capture_seeds.py).
#include <pcap/pcap.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "balancer/capture.h"

namespace {

struct Record {
    uint32_t caplen, len;
    std::vector<uint8_t> bytes;
};

[[noreturn]] void fail(const char *why, size_t size)
{
    std::fprintf(stderr, "capture reader invariant broken: %s (%zu input bytes)\n", why, size);
    std::abort();
}

// The records libpcap reads from a buffer, up to its end or the first record it refuses.
std::vector<Record> records(const uint8_t *data, size_t size)
{
    std::vector<Record> out;
    FILE *f = fmemopen(const_cast<uint8_t *>(data), size, "rb");
    if (!f)
        return out;
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_fopen_offline(f, err);
    if (!p) {
        fclose(f);
        return out;
    }
    pcap_pkthdr *h;
    const u_char *bytes;
    while (pcap_next_ex(p, &h, &bytes) == 1)
        out.push_back({h->caplen, h->len, std::vector<uint8_t>(bytes, bytes + h->caplen)});
    pcap_close(p);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;  // fmemopen refuses an empty buffer; an empty file is the replay test's
    FILE *in = fmemopen(const_cast<uint8_t *>(data), size, "rb");
    char *out_buf = nullptr;
    size_t out_len = 0;
    FILE *out = open_memstream(&out_buf, &out_len);
    if (!in || !out)
        fail("fmemopen/open_memstream", size);
    auto result = understudy::normalize_capture(in, "in.pcap", out, "out.pcap");
    if (!result) {
        if (result.error().rfind("in.pcap: ", 0) != 0)
            fail("an error that does not name the input", size);
        std::free(out_buf);
        return 0;
    }
    std::vector<Record> want = records(data, size);
    std::vector<Record> got = records(reinterpret_cast<const uint8_t *>(out_buf), out_len);
    if (result->records != want.size())
        fail("the count is not the number of records in the input", size);
    if (got.size() != want.size())
        fail("the output does not hold every record", size);
    size_t expected_len = 24;
    for (size_t i = 0; i < want.size(); i++) {
        if (got[i].caplen != want[i].caplen || got[i].len != want[i].len || got[i].bytes != want[i].bytes)
            fail("a record changed on its way out", size);
        expected_len += 16 + want[i].caplen;
    }
    if (out_len != expected_len)
        fail("the output is not as long as its records", size);
    std::free(out_buf);
    return 0;
}
