// Large CPU buffers on transparent huge pages. Where the kernel grants them on request
// (THP mode "madvise", the common default), advising a fresh mapping before its first
// touch backs it with 2 MB pages: one fault per 2 MB instead of 512, and strided reads
// that stay within a few TLB entries: page faults of a fresh Holter-length output on 4 KB
// pages cost a visible part of a call (benchmarks/CPU_NOTES.md). Advice only: where it
// is refused, nothing changes. No torch headers: the kernels advise their fresh outputs
// with advise_huge_pages(out.data_ptr(), out.nbytes()) before writing them, and take
// their work memory from AlignedArray.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastecg {

constexpr size_t kHugePageBytes = size_t(2) << 20;

// The whole 2 MB pages inside [data, data + bytes).
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePageBytes - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

// n uninitialised elements of E, 64-byte aligned (whole cache lines; aligned vector
// loads and stores), from 4 MB on aligned to 2 MB and advised onto huge pages before
// their first touch. Out of memory throws std::bad_alloc (torch reports it as an error).
template <typename E>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(size_t n) : size_(n) {
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(E);
    const size_t align = bytes >= 2 * kHugePageBytes ? kHugePageBytes : 64;
    void* p = nullptr;
    if (posix_memalign(&p, align, bytes) != 0) throw std::bad_alloc();
    if (align == kHugePageBytes) advise_huge_pages(p, bytes);
    data_.reset(static_cast<E*>(p));
  }
  E* get() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(E* p) const { std::free(p); }
  };
  std::unique_ptr<E, Free> data_;
  size_t size_ = 0;
};

}  // namespace fastecg
