// libFuzzer target for the shared packet parser: any byte string, parsed as a frame, must neither read outside
// itself (ASan) nor hit undefined behaviour (UBSan) nor break parse_invariants.h. Built with clang++ by
// tests/fuzz/meson.build and run for a bounded time by the fuzz-parse test.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "parse_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // An exactly-sized heap copy: the first byte past the frame is a redzone.
    std::unique_ptr<uint8_t[]> frame(new uint8_t[size]);
    if (size)
        std::memcpy(frame.get(), data, size);

    us_parsed p;
    std::memset(&p, 0xa5, sizeof p);
    int reason = -1;
    int verdict = us_parse_packet(frame.get(), frame.get() + size, &p, &reason);
    if (const char *why = understudy::fuzz::parse_violation(frame.get(), size, verdict, p, reason)) {
        std::fprintf(stderr, "parser invariant broken: %s (verdict %d, reason %d, %zu bytes)\n", why, verdict,
                     reason, size);
        std::abort();
    }
    return 0;
}
