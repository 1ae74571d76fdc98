// The balancer's control API operations. Changes are made to a copy of the running config and go through
// Controller::apply_config, so they are validated exactly like the config file.
#include "balancer_api.h"

#include "core/config_limits.h"
#include "core/lookup.h"
#include "json/results.h"

namespace understudy {

using nlohmann::json;

BalancerApi::BalancerApi(Controller &controller, EventLoop &loop, Reload reload)
    : controller_(controller), reload_(std::move(reload)), planner_(loop)
{
}

// Field access with messages that name the field and the expected type.
static void check_fields(const json &r, std::initializer_list<const char *> allowed)
{
    for (auto &[k, v] : r.items()) {
        if (k == "op" || k == "id")
            continue;
        bool ok = false;
        for (const char *a : allowed)
            ok |= k == a;
        if (!ok)
            throw std::invalid_argument("unknown field \"" + k + "\"");
    }
}

static std::string str_field(const json &r, const char *name, bool required = true, const std::string &def = "")
{
    auto it = r.find(name);
    if (it == r.end()) {
        if (required)
            throw std::invalid_argument(std::string("missing field \"") + name + "\"");
        return def;
    }
    if (!it->is_string())
        throw std::invalid_argument(std::string("field \"") + name + "\" must be a string");
    std::string v = it->get<std::string>();
    if (v.find('\0') != std::string::npos)  // would cut addresses and names short where C strings are used
        throw std::invalid_argument(std::string("field \"") + name + "\" holds a NUL character");
    return v;
}

static int64_t int_field(const json &r, const char *name, int64_t lo, int64_t hi, bool required = true, int64_t def = 0)
{
    auto it = r.find(name);
    if (it == r.end()) {
        if (required)
            throw std::invalid_argument(std::string("missing field \"") + name + "\"");
        return def;
    }
    if (!it->is_number_integer())
        throw std::invalid_argument(std::string("field \"") + name + "\" must be an integer");
    auto range = [&](const std::string &got) {
        return std::invalid_argument(std::string("field \"") + name + "\" must be " + std::to_string(lo) + ".." +
                                     std::to_string(hi) + ", got " + got);
    };
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX))
        throw range(std::to_string(it->get<uint64_t>()));
    int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
        throw range(std::to_string(v));
    return v;
}

template <class T>
static T parsed(Result<T> r, const char *field)
{
    if (!r)
        throw std::invalid_argument(std::string("field \"") + field + "\": " + r.error());
    return *r;
}

static Pool &find_pool(Config &c, const std::string &name)
{
    for (Pool &p : c.pools)
        if (p.name == name)
            return p;
    throw std::invalid_argument("no pool named '" + name + "'");
}

static std::vector<Backend>::iterator find_backend(Pool &p, uint32_t id)
{
    auto it = std::find_if(p.backends.begin(), p.backends.end(), [id](const Backend &b) { return b.id == id; });
    if (it == p.backends.end())
        throw std::invalid_argument("pool '" + p.name + "' has no backend " + std::to_string(id));
    return it;
}

std::pair<Config, std::string> BalancerApi::edited(const std::string &op, const json &r) const
{
    if (op == "vip.add") {
        check_fields(r, {"address", "port", "protocol", "pool", "method", "affinity", "conn_table", "conn_idle_timeout_s"});
        Vip v;
        v.address = parsed(Address::parse(str_field(r, "address")), "address");
        v.port = uint16_t(int_field(r, "port", 1, 65535));
        v.protocol = parsed(parse_protocol(str_field(r, "protocol", false, "tcp")), "protocol");
        v.pool = str_field(r, "pool");
        v.method = parsed(parse_method(str_field(r, "method", false, "gue")), "method");
        v.affinity = parsed(parse_affinity(str_field(r, "affinity", false, "flow")), "affinity");
        if (r.contains("conn_table")) {
            if (!r["conn_table"].is_boolean())
                throw std::invalid_argument("field \"conn_table\" must be true or false");
            v.conn_table = r["conn_table"].get<bool>();
        }
        // the same bound and default as the file
        v.conn_idle_timeout_s = uint32_t(int_field(r, "conn_idle_timeout_s", 1, kMaxConnIdleTimeoutS, false, 300));
        Config next = controller_.config();
        next.vips.push_back(v);
        return {std::move(next), "vip.add " + Endpoint{v.address, v.port}.str()};
    }
    if (op == "vip.remove") {
        check_fields(r, {"address", "port", "protocol"});
        Address a = parsed(Address::parse(str_field(r, "address")), "address");
        uint16_t port = uint16_t(int_field(r, "port", 1, 65535));
        Protocol proto = parsed(parse_protocol(str_field(r, "protocol", false, "tcp")), "protocol");
        Config next = controller_.config();
        auto it = std::find_if(next.vips.begin(), next.vips.end(), [&](const Vip &v) {
            return v.address == a && v.port == port && v.protocol == proto;
        });
        if (it == next.vips.end())
            throw std::invalid_argument("no VIP " + Endpoint{a, port}.str() + "/" + std::string(to_string(proto)));
        next.vips.erase(it);
        return {std::move(next), "vip.remove " + Endpoint{a, port}.str()};
    }
    if (op == "backend.add") {
        check_fields(r, {"pool", "id", "address", "weight", "state", "mac"});
        Config next = controller_.config();
        Pool &pool = find_pool(next, str_field(r, "pool"));
        Backend b;
        b.id = uint32_t(int_field(r, "id", 1, 4294967294LL));
        b.address = parsed(Address::parse(str_field(r, "address")), "address");
        b.weight = uint32_t(int_field(r, "weight", 0, kMaxWeight, false, 100));
        b.state = parsed(parse_admin_state(str_field(r, "state", false, "enabled")), "state");
        if (r.contains("mac"))
            b.mac = parsed(parse_mac(str_field(r, "mac")), "mac");
        b.health = pool.health;
        b.line = pool.line;
        pool.backends.push_back(b);
        return {std::move(next), "backend.add " + pool.name + "/" + std::to_string(b.id)};
    }
    if (op == "backend.remove" || op == "backend.set" || op == "backend.drain" || op == "backend.enable" ||
        op == "backend.disable") {
        if (op == "backend.set")
            check_fields(r, {"pool", "id", "weight", "state"});
        else
            check_fields(r, {"pool", "id"});
        Config next = controller_.config();
        Pool &pool = find_pool(next, str_field(r, "pool"));
        uint32_t id = uint32_t(int_field(r, "id", 1, 4294967294LL));
        auto it = find_backend(pool, id);
        if (op == "backend.remove") {
            pool.backends.erase(it);
        } else if (op == "backend.set") {
            if (!r.contains("weight") && !r.contains("state"))
                throw std::invalid_argument("backend.set needs \"weight\" and/or \"state\"");
            if (r.contains("weight"))
                it->weight = uint32_t(int_field(r, "weight", 0, kMaxWeight));
            if (r.contains("state"))
                it->state = parsed(parse_admin_state(str_field(r, "state")), "state");
        } else {
            it->state = op == "backend.drain" ? AdminState::drain
                        : op == "backend.enable" ? AdminState::enabled
                                                 : AdminState::disabled;
        }
        return {std::move(next), op + " " + pool.name + "/" + std::to_string(id)};
    }
    throw std::logic_error("not a change: " + op);
}

static bool is_change(const std::string &op)
{
    return op == "vip.add" || op == "vip.remove" || op == "backend.add" || op == "backend.remove" ||
           op == "backend.set" || op == "backend.drain" || op == "backend.enable" || op == "backend.disable";
}

bool BalancerApi::start(const std::string &op, const json &r, Completion done)
{
    if (is_change(op)) {
        auto [next, what] = edited(op, r);  // a bad field throws: answered at once
        // Validation errors name the request, not the config file's path (the request is not in the file).
        Config named = next;
        named.path = "request " + op;
        if (auto st = validate_config(named); !st) {
            done(Error{st.error()});
            return true;
        }
        controller_.change(std::move(next), "api: " + what, monotonic_ns(), [this, done](Status st) {
            if (!st)
                return done(Error{st.error()});
            done(Json{{"generation", controller_.generation()}});
        });
        return true;
    }
    if (op == "reload") {
        check_fields(r, {});
        reload_([this, done](Status st) {
            if (!st)
                return done(Error{st.error()});
            done(Json{{"generation", controller_.generation()}});
        });
        return true;
    }
    if (op == "plan") {
        check_fields(r, {"config_text", "path"});
        auto next = parse_config(str_field(r, "config_text"), str_field(r, "path", false, "<new config>"));
        if (!next) {
            done(Error{next.error()});
            return true;
        }
        if (planner_.busy()) {
            done(Error{"another plan is being computed; try again in a moment"});
            return true;
        }
        // The tables of both configs are built: seconds for large pools, so on a thread of its own, from copies.
        auto in = std::make_shared<std::tuple<Config, Config, std::set<std::pair<std::string, uint32_t>>>>(
            controller_.config(), std::move(*next), controller_.down_pairs());
        auto out = std::make_shared<Json>();
        planner_.run(
            [in, out]() -> Status {
                auto plan = plan_change(std::get<0>(*in), std::get<1>(*in), std::get<2>(*in));
                if (!plan)
                    return Error{plan.error()};
                *out = to_json(*plan);
                (*out)["text"] = plan_text(*plan);
                return Ok{};
            },
            [out, done](Status st) {
                if (!st)
                    return done(Error{st.error()});
                done(std::move(*out));
            });
        return true;
    }
    return false;
}

Result<nlohmann::ordered_json> BalancerApi::handle(const std::string &op, const json &r)
{
    const Config &cur = controller_.config();
    if (op == "status") {
        check_fields(r, {});
        return controller_.status_json();
    }
    if (op == "vip.list") {
        check_fields(r, {});
        return Json{{"vips", controller_.vips_json()}};
    }
    if (op == "backend.list") {
        check_fields(r, {"pool"});
        return Json{{"backends", controller_.backends_json(str_field(r, "pool", false))}};
    }
    if (op == "health") {
        check_fields(r, {"pool"});
        return Json{{"health", controller_.health_json(str_field(r, "pool", false))}};
    }
    if (op == "stats") {
        check_fields(r, {});
        return controller_.stats_json();
    }
    if (op == "lookup") {
        check_fields(r, {"vip", "src", "lines"});
        return lookup_request(Lookup(cur, controller_.down_pairs()), r);
    }
    if (is_change(op) || op == "reload" || op == "plan")
        return Error{"\"" + op + "\" is answered by the daemon's control loop only"};  // handle_line() callers
    return Error{"unknown op \"" + op +
                 "\"; known: status, vip.list, vip.add, vip.remove, backend.list, backend.add, backend.remove, "
                 "backend.set, backend.drain, backend.enable, backend.disable, health, stats, lookup, plan, reload"};
}

}  // namespace understudy
