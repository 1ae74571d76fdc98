// replay's capture reader: any capture libpcap reads (classic pcap or pcapng, either byte order, any
// timestamp precision) rewritten as classic pcap, what net_pcap reads. No DPDK here: tests/fuzz fuzzes it.
#pragma once

#include <cstdio>
#include <string>

#include "core/result.h"

namespace understudy {

// What replay made of its input capture.
struct CaptureInfo {
    size_t records = 0;
};

// Reads `in` (named `in_name` in errors) and writes every record to `out`, as it is. Takes both streams
// (closes them). A record libpcap cannot read is an error that names it (a length past 256 KiB, a cut header
// or cut data), never a wait for more.
Result<CaptureInfo> normalize_capture(FILE *in, const std::string &in_name, FILE *out, const std::string &out_name);

// The same, from and to files.
Result<CaptureInfo> normalize_capture(const std::string &in, const std::string &out);

}  // namespace understudy
