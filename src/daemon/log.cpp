// See log.h.
#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace understudy {

bool stderr_is_journal()
{
    static const bool journal = [] {
        const char *stream = getenv("JOURNAL_STREAM");
        if (!stream)
            return false;
        uintmax_t dev = 0, ino = 0;
        if (sscanf(stream, "%ju:%ju", &dev, &ino) != 2)
            return false;
        struct stat st;
        return fstat(STDERR_FILENO, &st) == 0 && uintmax_t(st.st_dev) == dev && uintmax_t(st.st_ino) == ino;
    }();
    return journal;
}

void write_log(LogPriority priority, const std::string &text)
{
    if (!stderr_is_journal()) {
        std::cerr << text << std::flush;
        return;
    }
    // Every line gets the prefix: the journal reads each line as its own entry.
    std::string prefix = "<" + std::to_string(int(priority)) + ">", out;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos)
            end = text.size();
        out += prefix;
        out.append(text, at, end - at);
        out += '\n';
        at = end + 1;
    }
    std::cerr << out << std::flush;
}

}  // namespace understudy
