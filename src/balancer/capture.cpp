#include "capture.h"

#include <pcap/pcap.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace understudy {

Result<CaptureInfo> normalize_capture(FILE *in, const std::string &in_name, FILE *out, const std::string &out_name)
{
    std::unique_ptr<FILE, int (*)(FILE *)> in_owner(in, fclose), out_owner(out, fclose);
    char err[PCAP_ERRBUF_SIZE] = "";
    pcap_t *p = pcap_fopen_offline(in_owner.get(), err);
    if (!p)
        return Error{in_name + ": not a capture libpcap can read (pcap or pcapng): " + err};
    in_owner.release();  // pcap_close closes it
    std::unique_ptr<pcap_t, void (*)(pcap_t *)> reader(p, pcap_close);
    if (pcap_datalink(p) != DLT_EN10MB) {
        const char *name = pcap_datalink_val_to_name(pcap_datalink(p));
        return Error{in_name + ": link type " + std::to_string(pcap_datalink(p)) + " (" + (name ? name : "?") +
                     "), not Ethernet"};
    }
    std::unique_ptr<pcap_t, void (*)(pcap_t *)> dead(pcap_open_dead(DLT_EN10MB, 262144), pcap_close);
    pcap_dumper_t *d = pcap_dump_fopen(dead.get(), out_owner.get());
    if (!d)
        return Error{"cannot write " + out_name + ": " + pcap_geterr(dead.get())};
    out_owner.release();  // pcap_dump_close closes it
    std::unique_ptr<pcap_dumper_t, void (*)(pcap_dumper_t *)> dumper(d, pcap_dump_close);
    CaptureInfo info;
    for (long n = 1;; n++) {
        pcap_pkthdr *h;
        const u_char *data;
        int rc = pcap_next_ex(p, &h, &data);
        if (rc == PCAP_ERROR_BREAK)
            break;  // the end
        if (rc != 1)
            return Error{in_name + ": record " + std::to_string(n) + ": " + pcap_geterr(p)};
        // Every record goes in as it is, however short, long or cut: counting what the data plane does with
        // such frames is part of what replay is for.
        pcap_dump(reinterpret_cast<u_char *>(d), h, data);
        info.records++;
    }
    if (pcap_dump_flush(d) != 0)
        return Error{"cannot write " + out_name + ": " + std::strerror(errno)};
    return info;
}

Result<CaptureInfo> normalize_capture(const std::string &in, const std::string &out)
{
    FILE *i = fopen(in.c_str(), "rb");
    if (!i)
        return Error{in + ": " + std::strerror(errno)};
    FILE *o = fopen(out.c_str(), "wb");
    if (!o) {
        int e = errno;
        fclose(i);
        return Error{"cannot write " + out + ": " + std::strerror(e)};
    }
    return normalize_capture(i, in, o, out);
}

}  // namespace understudy
