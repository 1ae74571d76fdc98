// Formatting the configuration's problems: escaping user text, field paths, and the collected report.
#include "config_diagnostics.h"

#include <algorithm>

namespace understudy {

namespace {

// The length of the UTF-8 sequence at text[i] when it is well formed (no overlongs, no surrogates, at most
// U+10FFFF), else 0.
size_t utf8_length(std::string_view text, size_t i)
{
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || i + n > text.size())
        return 0;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; k++) {
        if ((byte(i + k) & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (byte(i + k) & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

const char kHex[] = "0123456789abcdef";

std::string hex_byte(unsigned char c) { return std::string("\\x") + kHex[c >> 4] + kHex[c & 15]; }

std::string escape(std::string_view text, bool quoting)
{
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        size_t n = utf8_length(text, i);
        if (n == 0) {
            out += hex_byte(c);
            i++;
        } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
            out += std::string("\\u00") + kHex[static_cast<unsigned char>(text[i + 1]) >> 4] +
                   kHex[static_cast<unsigned char>(text[i + 1]) & 15];
            i += 2;
        } else if (n > 1) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            i++;
            if (c == '\n')
                out += "\\n";
            else if (c == '\r')
                out += "\\r";
            else if (c == '\t')
                out += "\\t";
            else if (c < 0x20 || c == 0x7f)
                out += hex_byte(c);
            else if (quoting && (c == '\\' || c == '\''))
                out += std::string("\\") + char(c);
            else
                out += char(c);
        }
    }
    return out;
}

}  // namespace

std::string escape_text(std::string_view text) { return escape(text, false); }

std::string quote(std::string_view text) { return "'" + escape(text, true) + "'"; }

namespace config_detail {

std::string index(std::string_view name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

std::string join(const std::string &path, std::string_view key)
{
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string parent_of(const std::string &field)
{
    size_t dot = field.rfind('.'), bracket = field.rfind('[');
    size_t cut = dot == std::string::npos ? bracket
               : bracket == std::string::npos ? dot
                                               : std::max(dot, bracket);
    return cut == std::string::npos ? std::string() : field.substr(0, cut);
}

std::string range_message(int64_t lo, int64_t hi, int64_t value)
{
    return "must be " + std::to_string(lo) + "-" + std::to_string(hi) + ", not " + std::to_string(value);
}

size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++)
        row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

int Report::line_of(std::string field) const
{
    for (;;) {
        if (auto it = lines_.find(field); it != lines_.end())
            return it->second;
        if (field.empty())
            return 0;
        field = parent_of(field);
    }
}

std::string Report::ref(const std::string &field) const
{
    int line = line_of(field);
    return line > 0 ? field + " at line " + std::to_string(line) : field;
}

bool Report::known(std::string field) const
{
    if (bad_.empty())
        return true;
    for (;;) {
        if (bad_.count(field))
            return false;
        if (field.empty())
            return true;
        field = parent_of(field);
    }
}

Status Report::finish()
{
    if (problems_.empty())
        return Ok{};
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
    std::string out;
    for (const auto &[line, text] : problems_)
        out += (out.empty() ? "" : "\n") + text;
    return Error{out};
}

// Everything on the line is escaped: the file name, the field (keys are user text) and the message.
void Report::add(int line, const std::string &field, const std::string &message)
{
    problems_.emplace_back(line, escape_text(file_ + ":" + std::to_string(line) + ": " + field + ": " + message));
}

}  // namespace config_detail
}  // namespace understudy
