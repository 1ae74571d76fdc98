// JSON text for replies and output. Strings that came from outside (a config path, a lookup line, a key the
// user typed) may hold bytes that are not UTF-8: nlohmann-json's dump() throws on them, which aborted the
// CLI and the daemon. Such bytes are written as U+FFFD instead.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace understudy {

template <typename JsonT>
inline std::string json_text(const JsonT &j)
{
    return j.dump(-1, ' ', false, JsonT::error_handler_t::replace);
}

}  // namespace understudy
