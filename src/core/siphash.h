// C++ face of the one SipHash in src/common/us_siphash.h, with the round counts as template arguments.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "us_siphash.h"

namespace understudy {

using Secret = std::array<uint8_t, 16>;

template <int C, int D>
uint64_t siphash(const Secret &key, std::span<const uint8_t> data)
{
    return us_siphash(key.data(), data.data(), uint32_t(data.size()), C, D);
}

inline uint64_t siphash13(const Secret &key, std::span<const uint8_t> data) { return siphash<1, 3>(key, data); }
inline uint64_t siphash24(const Secret &key, std::span<const uint8_t> data) { return siphash<2, 4>(key, data); }

}  // namespace understudy
