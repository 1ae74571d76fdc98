// Unix-socket JSON-lines server: see api.h.
#include "api.h"

#include "core/config.h"
#include "daemon/health.h"
#include "daemon/json_text.h"
#include "config/nesting.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

namespace understudy {

ApiServer::ApiServer(EventLoop &loop, ApiHandler &handler) : loop_(loop), handler_(handler) {}

ApiServer::~ApiServer()
{
    while (!clients_.empty())
        close_client(clients_.begin()->first);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        ::close(listen_fd_);
        ::unlink(path_.c_str());
    }
}

Status ApiServer::listen(const std::string &path, const std::string &group)
{
    sockaddr_un sa{};
    if (path.size() >= sizeof sa.sun_path)
        return Error{"control socket path is too long: " + path};
    std::error_code ec;
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty())
        std::filesystem::create_directories(dir, ec);
    // A socket file left by a daemon that died is removed; a live one is not stolen.
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    if (connect(probe, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
        ::close(probe);
        return Error{"another daemon is already listening on " + path};
    }
    ::close(probe);
    // Only a socket is replaced: a path that names anything else is a mistake in the config, not ours to delete.
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
        return Error{"control socket path " + path + " exists and is not a socket; not replacing it"};
    ::unlink(path.c_str());

    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd_, 256) != 0)
        return Error{"cannot listen on " + path + ": " + std::strerror(errno)};
    path_ = path;
    gid_t gid = 0;
    if (!group.empty()) {
        struct group *g = getgrnam(group.c_str());
        if (!g)
            return Error{"control.socket_group: no group named '" + group + "'"};
        gid = g->gr_gid;
    }
    if (chown(path.c_str(), 0, gid) != 0 || chmod(path.c_str(), 0660) != 0)
        return Error{"cannot set owner and mode of " + path + ": " + std::strerror(errno)};
    loop_.add(listen_fd_, EPOLLIN, [this](uint32_t) { accept_clients(); });
    return Ok{};
}

static uint64_t now_ms() { return monotonic_ns() / 1'000'000; }

void ApiServer::accept_clients()
{
    for (;;) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (clients_.size() >= kMaxApiClients) {
            auto idlest = std::min_element(clients_.begin(), clients_.end(), [](const auto &a, const auto &b) {
                return a.second.active_ms < b.second.active_ms;
            });
            close_client(idlest->first);
        }
        Client c;
        c.active_ms = now_ms();
        c.serial = next_serial_++;
        clients_[fd] = std::move(c);
        loop_.add(fd, EPOLLIN | EPOLLRDHUP, [this, fd](uint32_t ev) { on_client(fd, ev); });
    }
}

void ApiServer::sweep(uint64_t now)
{
    std::vector<int> idle;
    for (const auto &[fd, c] : clients_)
        if (now - c.active_ms > kApiIdleMs && !c.waiting)
            idle.push_back(fd);
    for (int fd : idle)
        close_client(fd);
}

// Answers the complete lines read so far, in order, while the replies not yet read stay under their limit:
// a client that pipelines requests without reading the replies stops being read instead of growing.
void ApiServer::serve_lines(int fd, Client &c)
{
    c.serving = true;
    size_t nl;
    while (!c.waiting && c.out.size() < kMaxPendingReplyBytes && (nl = c.in.find('\n')) != std::string::npos) {
        if (nl > kMaxRequestBytes) {  // a whole line past the limit, read in one go: refused like one without end
            c.serving = false;
            refuse_oversized(fd, c);
            return;
        }
        std::string line = c.in.substr(0, nl);
        c.in.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos)
            continue;
        c.waiting = true;
        auto later = [this, fd, serial = c.serial](std::string reply) {
            auto it = clients_.find(fd);
            if (it == clients_.end() || it->second.serial != serial)
                return;  // the client left meanwhile
            Client &client = it->second;
            client.out += reply + "\n";
            client.waiting = false;
            if (!client.serving) {
                serve_lines(fd, client);
                if (clients_.count(fd) && clients_[fd].serial == serial)
                    on_client(fd, EPOLLOUT);  // write it now
            }
        };
        if (auto reply = answer(line, later)) {
            c.out += *reply + "\n";
            c.waiting = false;
        }
    }
    c.serving = false;
    update_events(fd, c);
}

// Reads while no answer is awaited and the replies not yet read stay under their limit; writes while any wait.
void ApiServer::update_events(int fd, const Client &c)
{
    // A half-closed client is noticed when it is read again (level-triggered: watching for it meanwhile would
    // wake the loop over and over).
    bool read = !c.waiting && c.out.size() < kMaxPendingReplyBytes;
    loop_.modify(fd, (read ? uint32_t(EPOLLIN | EPOLLRDHUP) : 0u) | (c.out.empty() ? 0u : uint32_t(EPOLLOUT)));
}

// A request past kMaxRequestBytes: the replies so far and an error are sent, the connection is half-closed, and
// what the client still sends is read and dropped until it closes.
void ApiServer::refuse_oversized(int fd, Client &c)
{
    nlohmann::ordered_json e{{"ok", false},
                             {"error", "request longer than " + std::to_string(kMaxRequestBytes) +
                                           " bytes; closing the connection"}};
    c.out += json_text(e) + "\n";
    c.in.clear();
    [[maybe_unused]] ssize_t n = ::write(fd, c.out.data(), c.out.size());
    c.out.clear();
    ::shutdown(fd, SHUT_WR);
    c.discarding = true;
    loop_.modify(fd, EPOLLIN | EPOLLRDHUP);
}

void ApiServer::close_client(int fd)
{
    loop_.remove(fd);
    ::close(fd);
    clients_.erase(fd);
}

void ApiServer::on_client(int fd, uint32_t events)
{
    auto it = clients_.find(fd);
    if (it == clients_.end())
        return;
    Client &c = it->second;
    c.active_ms = now_ms();
    if ((events & (EPOLLHUP | EPOLLERR)) && c.waiting) {
        close_client(fd);  // gone while its answer is being built: nowhere to send it
        return;
    }
    if (c.discarding) {
        // Reading what the client still sends lets it receive the error instead of a reset.
        char buf[65536];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0)
            c.discarded += size_t(n);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || c.discarded > 64 * kMaxRequestBytes)
            close_client(fd);
        return;
    }
    if ((events & EPOLLIN) && !c.waiting && c.out.size() < kMaxPendingReplyBytes) {
        bool eof = false;
        char buf[16384];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) {
                c.in.append(buf, size_t(n));
                if (c.in.size() > 2 * kMaxRequestBytes)
                    break;  // enough for now: answered first, read again when the loop comes back
                continue;
            }
            eof = n == 0 || (errno != EAGAIN && errno != EINTR);
            break;
        }
        serve_lines(fd, c);  // a client that sends its requests and closes its side still gets the replies
        if (eof && c.out.empty() && !c.waiting) {
            close_client(fd);
            return;
        }
        if (c.discarding)
            return;
        if (c.in.size() > kMaxRequestBytes && c.in.find('\n') == std::string::npos) {
            refuse_oversized(fd, c);
            return;
        }
    }
    if (!c.out.empty()) {
        ssize_t n = ::write(fd, c.out.data(), c.out.size());
        if (n > 0)
            c.out.erase(0, size_t(n));
        else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            close_client(fd);
            return;
        }
        serve_lines(fd, c);  // the lines that waited for the replies to drain
    }
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && c.out.empty() && !c.waiting)
        close_client(fd);
}

std::string ApiServer::handle_line(const std::string &line) { return *answer(line, nullptr); }

std::optional<std::string> ApiServer::answer(const std::string &line, std::function<void(std::string)> later)
{
    nlohmann::ordered_json reply;
    // nlohmann-json takes a NUL byte for the end of its input: what follows would be ignored without a word.
    if (line.find('\0') != std::string::npos) {
        reply = {{"ok", false}, {"error", "request holds a NUL byte (write it as \\u0000 inside a string)"}};
        return json_text(reply);
    }
    // nlohmann-json prints (and copies) values recursively: a request nested a hundred thousand deep would
    // exhaust the stack when its id is echoed.
    if (Nesting n = measure_json(line); n.depth > kMaxNesting) {
        reply = {{"ok", false}, {"error", "request nested " + std::to_string(n.depth) + " levels deep; at most " +
                                              std::to_string(kMaxNesting)}};
        return json_text(reply);
    }
    // A key given twice would silently take the last value: refused, as the TOML reader refuses it.
    std::vector<std::set<std::string>> keys;
    std::string duplicate;
    nlohmann::json::parser_callback_t check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json &parsed) {
        if (event == nlohmann::json::parse_event_t::object_start)
            keys.emplace_back();
        else if (event == nlohmann::json::parse_event_t::object_end && !keys.empty())
            keys.pop_back();
        else if (event == nlohmann::json::parse_event_t::key && !keys.empty() &&
                 !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    nlohmann::json request = nlohmann::json::parse(line, check, false);
    if (!request.is_discarded() && !duplicate.empty()) {
        reply = {{"ok", false}, {"error", "field \"" + duplicate + "\" given twice in one object"}};
        return json_text(reply);
    }
    if (request.is_discarded()) {
        reply = {{"ok", false}, {"error", "malformed JSON: expected one object per line, e.g. {\"op\": \"status\"}"}};
        return json_text(reply);
    }
    if (!request.is_object()) {
        reply = {{"ok", false}, {"error", "a request must be a JSON object with an \"op\" field"}};
        return json_text(reply);
    }
    auto op = request.find("op");
    if (op == request.end() || !op->is_string()) {
        reply = {{"ok", false}, {"error", "missing \"op\" (a string naming the operation)"}};
        return json_text(reply);
    }
    bool has_id = request.contains("id");
    nlohmann::json id = has_id ? request["id"] : nlohmann::json();
    auto format = [has_id, id](Result<nlohmann::ordered_json> r) {
        nlohmann::ordered_json out;
        if (r) {
            out = {{"ok", true}};
            for (auto &[k, v] : r->items())
                out[k] = v;
        } else {
            out = {{"ok", false}, {"error", r.error()}};
        }
        if (has_id)
            out["id"] = id;
        return json_text(out);
    };
    Result<nlohmann::ordered_json> r = Error{"internal error"};
    try {
        if (later && handler_.start(op->get<std::string>(), request,
                                    [format, later](Result<nlohmann::ordered_json> done) { later(format(std::move(done))); }))
            return std::nullopt;
        r = handler_.handle(op->get<std::string>(), request);
    } catch (const std::exception &e) {
        r = Error{std::string("invalid request: ") + e.what()};
    }
    return format(std::move(r));
}

}  // namespace understudy
