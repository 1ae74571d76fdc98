// JSON forms of lookup and plan results: see results.h.
#include "results.h"

namespace understudy {

nlohmann::ordered_json to_json(const LookupResult &r)
{
    nlohmann::ordered_json j;
    j["session_hash"] = hex16(r.session_hash);
    j["bucket"] = r.bucket;
    j["ordering"] = r.ordering;
    j["primary"] = r.primary ? nlohmann::ordered_json(*r.primary) : nlohmann::ordered_json(nullptr);
    j["serving"] = r.serving ? nlohmann::ordered_json(*r.serving) : nlohmann::ordered_json(nullptr);
    return j;
}

Result<nlohmann::ordered_json> lookup_request(const Lookup &lookup, const nlohmann::json &r)
{
    using Json = nlohmann::ordered_json;
    if (r.contains("lines")) {
        if (!r["lines"].is_array())
            return Error{"field \"lines\" must be an array of strings"};
        Json results = Json::array();
        for (const auto &line : r["lines"]) {
            if (!line.is_string())
                return Error{"field \"lines\" must be an array of strings"};
            auto res = lookup.lookup_line(line.get<std::string>());
            results.push_back(res ? to_json(*res) : Json{{"error", res.error()}});
        }
        return Json{{"results", results}};
    }
    if (!r.contains("vip") || !r["vip"].is_string() || !r.contains("src") || !r["src"].is_string())
        return Error{"lookup needs \"vip\" (ADDR:PORT/PROTO) and \"src\" (ADDR:PORT) strings, or \"lines\""};
    auto vip = parse_vip_spec(r["vip"].get<std::string>());
    if (!vip)
        return Error{"field \"vip\": " + vip.error()};
    auto src = Endpoint::parse(r["src"].get<std::string>());
    if (!src)
        return Error{"field \"src\": " + src.error()};
    auto res = lookup.lookup(vip->first, vip->second, *src);
    if (!res)
        return Error{res.error()};
    Json j = to_json(*res);
    j["pool"] = res->pool->name;
    return j;
}

nlohmann::ordered_json to_json(const PlanResult &plan)
{
    nlohmann::ordered_json j;
    j["moved"] = plan.moved;
    j["ideal"] = plan.ideal;
    j["buckets"] = plan.buckets;
    j["moved_buckets"] = plan.moved_buckets;
    j["pools"] = nlohmann::ordered_json::array();
    for (const PlanPool &p : plan.pools) {
        j["pools"].push_back({{"name", p.name},
                              {"buckets", p.buckets},
                              {"buckets_after", p.buckets_after},
                              {"table_bits_before", p.table_bits_before},
                              {"table_bits_after", p.table_bits_after},
                              {"moved", p.moved},
                              {"moved_buckets", p.moved_buckets},
                              {"ideal", p.ideal},
                              {"unserved_before", p.unserved_before},
                              {"unserved_after", p.unserved_after},
                              {"note", p.note}});
    }
    j["backends"] = nlohmann::ordered_json::array();
    for (const PlanBackend &b : plan.backends) {
        j["backends"].push_back({{"pool", b.pool},
                                 {"id", b.id},
                                 {"address", b.address},
                                 {"share_before", b.share_before},
                                 {"share_after", b.share_after},
                                 {"moved_away", b.moved_away},
                                 {"moved_in", b.moved_in},
                                 {"note", b.note}});
    }
    j["notes"] = plan.notes;
    return j;
}

}  // namespace understudy
