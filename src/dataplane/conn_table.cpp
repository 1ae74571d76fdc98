// Connection-table allocation and the occupancy count the control thread reports.
#include "conn_table.h"

#include <rte_malloc.h>

namespace understudy::dp {

bool conn_table_create(ConnTable &table, uint32_t entries, int socket)
{
    uint64_t sets = 1;
    while (sets * kConnWays < entries)
        sets <<= 1;
    table.sets = static_cast<ConnSet *>(rte_zmalloc_socket("conn_table", sets * sizeof(ConnSet), RTE_CACHE_LINE_SIZE, socket));
    table.set_mask = sets - 1;
    return table.sets != nullptr;
}

void conn_table_free(ConnTable &table)
{
    rte_free(table.sets);
    table.sets = nullptr;
}

// Read racily by the control thread while the worker writes: the count is approximate, which is all a
// gauge needs.
uint64_t conn_table_occupancy(const ConnTable &table, uint32_t now, uint32_t max_idle)
{
    uint64_t n = 0;
    for (uint64_t s = 0; s <= table.set_mask; s++)
        for (const auto &e : table.sets[s].way)
            n += e.tag != 0 && conn_age(e, now) <= max_idle;
    return n;
}

}  // namespace understudy::dp
