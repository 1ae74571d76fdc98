// Helpers shared by the core tests: the source tree and the oracle's vector file.
#pragma once

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/siphash.h"

namespace understudy::test {

inline std::string source_root()
{
    const char *root = std::getenv("UNDERSTUDY_SOURCE_ROOT");
    if (!root)
        throw std::runtime_error("UNDERSTUDY_SOURCE_ROOT is not set: run the tests through meson test");
    return root;
}

// tests/core/ordering_vectors.json is written by tools/ordering_ref.py, an independent implementation.
inline const nlohmann::json &vectors()
{
    static nlohmann::json v = [] {
        std::ifstream in(source_root() + "/tests/core/ordering_vectors.json");
        if (!in)
            throw std::runtime_error("cannot open tests/core/ordering_vectors.json");
        return nlohmann::json::parse(in);
    }();
    return v;
}

inline std::vector<uint8_t> unhex(const std::string &s)
{
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < s.size(); i += 2)
        out.push_back(uint8_t(std::stoul(s.substr(i, 2), nullptr, 16)));
    return out;
}

inline Secret secret_of(const std::string &hex)
{
    Secret s{};
    auto b = unhex(hex);
    std::copy(b.begin(), b.end(), s.begin());
    return s;
}

inline uint64_t u64_of(const std::string &hex) { return std::stoull(hex, nullptr, 16); }

}  // namespace understudy::test
