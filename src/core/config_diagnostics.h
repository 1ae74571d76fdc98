// Diagnostics of the configuration reader and checks: one "FILE:LINE: FIELD: message" line per problem, and
// user text made safe to print (a key, a value or a path may hold control characters, terminal escape
// sequences or bytes that are not UTF-8). Shared by config_read.cpp and config_check.cpp; the two escaping
// functions are for every place that echoes user text (understudyctl too).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "result.h"

namespace understudy {

// `text` with what a terminal would act on written as escapes: \n \r \t, other C0 controls and DEL as \xNN,
// C1 controls (U+0080-U+009F, the 8-bit CSI of escape sequences) as \u0080-\u009f, and bytes that are not
// UTF-8 as \xNN. Printable text, backslashes included, is left as it is.
std::string escape_text(std::string_view text);

// 'text', escaped as above, with its backslashes and quotes escaped too so that the quoted form is unambiguous.
std::string quote(std::string_view text);

namespace config_detail {

std::string index(std::string_view name, size_t i);                  // "pool[3]"
std::string join(const std::string &path, std::string_view key);     // "pool[3].name"
std::string parent_of(const std::string &field);                     // "pool[3].name" -> "pool[3]" -> "pool"
std::string range_message(int64_t lo, int64_t hi, int64_t value);     // "must be LO-HI, not VALUE"
size_t edit_distance(std::string_view a, std::string_view b);

// Collects the problems of one file or model. Fields are paths as messages name them ("pool[0].backend[2].id");
// a field's line is its own, else that of the nearest enclosing table with one.
class Report {
  public:
    explicit Report(std::string file) : file_(std::move(file)) {}

    void set_line(const std::string &field, int line) { lines_[field] = line; }
    const std::unordered_map<std::string, int> &lines() const { return lines_; }
    int line_of(std::string field) const;
    bool has_line(const std::string &field) const { return lines_.count(field) != 0; }

    // "pool[0].backend[1] at line 12": how messages point at another place.
    std::string ref(const std::string &field) const;

    // The reader rejected this field: its value in the model is a default, so the semantic checks must
    // not judge it (or anything inside it) again.
    void reject(const std::string &field, const std::string &message)
    {
        bad_.insert(field);
        add(line_of(field), field, message);
    }
    void reject_at(int line, const std::string &field, const std::string &message) { add(line, field, message); }
    // Like reject() when the problem was already reported on a part of the field.
    void mark_bad(const std::string &field) { bad_.insert(field); }

    // A semantic problem; silent when the reader already rejected the field.
    void problem(const std::string &field, const std::string &message)
    {
        if (known(field))
            add(line_of(field), field, message);
    }
    void problem_at(int line, const std::string &field, const std::string &message)
    {
        if (known(field))
            add(line, field, message);
    }

    // False when the reader rejected the field or a table that holds it.
    bool known(std::string field) const;

    Status finish();

  private:
    void add(int line, const std::string &field, const std::string &message);

    std::string file_;
    std::unordered_map<std::string, int> lines_;
    std::unordered_set<std::string> bad_;
    std::vector<std::pair<int, std::string>> problems_;
};

}  // namespace config_detail
}  // namespace understudy
