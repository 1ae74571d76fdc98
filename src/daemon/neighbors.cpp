// rtnetlink RTM_GETNEIGH dump. Called by the control thread only.
#include "neighbors.h"

#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cstring>

namespace understudy {

std::map<Address, MacAddress> read_neighbors()
{
    std::map<Address, MacAddress> out;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return out;
    struct {
        nlmsghdr nh;
        ndmsg nd;
    } req{};
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = RTM_GETNEIGH;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nd.ndm_family = AF_UNSPEC;
    if (send(fd, &req, sizeof req, 0) < 0) {
        ::close(fd);
        return out;
    }
    alignas(nlmsghdr) char buf[32768];
    for (bool done = false; !done;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (auto *nh = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
            if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            auto *nd = static_cast<ndmsg *>(NLMSG_DATA(nh));
            if (!(nd->ndm_state & (NUD_REACHABLE | NUD_STALE | NUD_PERMANENT | NUD_DELAY | NUD_PROBE)))
                continue;
            int len = int(nh->nlmsg_len - NLMSG_LENGTH(sizeof *nd));
            std::optional<Address> addr;
            std::optional<MacAddress> mac;
            for (auto *rta = reinterpret_cast<rtattr *>(reinterpret_cast<char *>(nd) + NLMSG_ALIGN(sizeof *nd));
                 RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
                if (rta->rta_type == NDA_DST) {
                    Address a;
                    if (RTA_PAYLOAD(rta) == 4) {
                        a.bytes[10] = a.bytes[11] = 0xff;
                        std::memcpy(a.bytes.data() + 12, RTA_DATA(rta), 4);
                        addr = a;
                    } else if (RTA_PAYLOAD(rta) == 16) {
                        std::memcpy(a.bytes.data(), RTA_DATA(rta), 16);
                        addr = a;
                    }
                } else if (rta->rta_type == NDA_LLADDR && RTA_PAYLOAD(rta) == 6) {
                    MacAddress m;
                    std::memcpy(m.data(), RTA_DATA(rta), 6);
                    mac = m;
                }
            }
            if (addr && mac)
                out[*addr] = *mac;
        }
    }
    ::close(fd);
    return out;
}

void solicit_neighbor(const Address &address)
{
    int fd = socket(address.is_v4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (address.is_v4()) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(9);
        std::memcpy(&sa.sin_addr, address.bytes.data() + 12, 4);
        sendto(fd, "", 0, 0, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
    } else {
        sockaddr_in6 sa{};
        sa.sin6_family = AF_INET6;
        sa.sin6_port = htons(9);
        std::memcpy(&sa.sin6_addr, address.bytes.data(), 16);
        sendto(fd, "", 0, 0, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
    }
    ::close(fd);
}

}  // namespace understudy
