// Configure-time probe (tests/fuzz/meson.build): links only if clang++ has the libFuzzer and sanitizer runtimes.
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *, size_t) { return 0; }
