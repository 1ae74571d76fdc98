// An allocator for the table builder's large arrays (megabytes per pool, read at scattered places on
// every health change): 2 MiB-aligned, so that where transparent huge pages are on for every process
// (THP "always") the kernel can back them with huge pages when it has some free. They are deliberately
// not marked MADV_HUGEPAGE: with Debian's default defrag mode ("madvise") a fault in a marked region
// compacts memory synchronously, holding the process's mmap lock, and on a fragmented host that stalled
// the control thread (its own page faults and mmap calls queue behind that lock) for 0.3-1.4 s while a
// 2^24-bucket table was built off the thread. Huge pages save ~10 % of a health patch at 2^20 buckets
// (179 vs 197 us, tests/bench table_bench): not worth a second of nothing probed or answered.
// Small arrays use plain new.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace understudy {

template <typename T>
struct HugePageAllocator {
    using value_type = T;
    static constexpr size_t kHuge = size_t(2) << 20;

    HugePageAllocator() = default;
    template <typename U>
    HugePageAllocator(const HugePageAllocator<U> &) {}

    T *allocate(size_t n)
    {
        size_t bytes = n * sizeof(T);
        if (bytes < kHuge)
            return static_cast<T *>(::operator new(bytes));
        size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
        void *p = std::aligned_alloc(kHuge, rounded);
        if (!p)
            throw std::bad_alloc();
        return static_cast<T *>(p);
    }
    void deallocate(T *p, size_t n)
    {
        if (n * sizeof(T) < kHuge)
            ::operator delete(p);
        else
            std::free(p);
    }
    template <typename U>
    bool operator==(const HugePageAllocator<U> &) const { return true; }
};

template <typename T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace understudy
