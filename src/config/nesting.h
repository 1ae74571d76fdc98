// How deeply a TOML or JSON text nests, measured without parsing it. The readers the project uses (toml++,
// nlohmann-json) recurse once per level of nesting or per part of a dotted key (and so does printing a JSON
// value back), so a small hostile input exhausts the stack: input is measured first and refused past a limit.
#pragma once

#include <cstddef>
#include <string_view>

namespace understudy {

struct Nesting {
    size_t depth = 0;      // deepest brackets and braces, outside strings and comments
    size_t key_parts = 0;  // most parts of one dotted key or table header (TOML)
    size_t line = 1;       // the line where the deepest of either was reached
};

// JSON: brackets and braces outside "strings" (with \ escapes).
inline Nesting measure_json(std::string_view text)
{
    Nesting n;
    size_t depth = 0, line = 1;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        if (c == '\n')
            line++;
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > n.depth) {
                n.depth = depth;
                n.line = line;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return n;
}

// TOML: brackets and braces (arrays, inline tables, table headers), and the dots of dotted keys, outside the
// four kinds of strings and comments. A key's parts end at '=', a newline, ',', or a bracket or brace.
inline Nesting measure_toml(std::string_view text)
{
    Nesting n;
    size_t depth = 0, parts = 1, line = 1;
    auto deeper = [&](size_t d, size_t p) {
        if (d > n.depth || p > n.key_parts) {
            n.depth = d > n.depth ? d : n.depth;
            n.key_parts = p > n.key_parts ? p : n.key_parts;
            n.line = line;
        }
    };
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        if (c == '\n') {
            line++;
            parts = 1;
            continue;
        }
        if (c == '#') {  // a comment runs to the end of the line
            while (i + 1 < text.size() && text[i + 1] != '\n')
                i++;
            continue;
        }
        if (c == '"' || c == '\'') {
            bool triple = text.substr(i, 3) == std::string_view(c == '"' ? "\"\"\"" : "'''");
            std::string_view close = triple ? text.substr(i, 3) : text.substr(i, 1);
            i += close.size();
            for (; i < text.size(); i++) {
                if (text[i] == '\n')
                    line++;
                if (c == '"' && text[i] == '\\') {
                    i++;
                    continue;
                }
                if (text.substr(i, close.size()) == close) {
                    i += close.size() - 1;
                    break;
                }
            }
            continue;
        }
        if (c == '.') {
            deeper(depth, ++parts);
        } else if (c == '[' || c == '{') {
            deeper(++depth, parts);
            parts = 1;
        } else if (c == ']' || c == '}') {
            depth -= depth > 0;
            parts = 1;
        } else if (c == '=' || c == ',') {
            parts = 1;
        }
    }
    return n;
}

}  // namespace understudy
