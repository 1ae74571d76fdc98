// The daemons' log: lines on stderr. When stderr is the systemd journal's stream ($JOURNAL_STREAM names it),
// every line starts with its syslog priority (sd-daemon(3): "<3>" error ... "<7>" debug), so that the journal
// files and filters them by level; elsewhere the text is written as it is.
#pragma once

#include <string>

namespace understudy {

enum class LogPriority { error = 3, warning = 4, info = 6, debug = 7 };

// Writes text (one or more lines, each ending in '\n') to stderr and flushes it.
void write_log(LogPriority priority, const std::string &text);

// Whether stderr is the journal: $JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected, and
// stderr is still that stream (not redirected since). Looked at once.
bool stderr_is_journal();

}  // namespace understudy
