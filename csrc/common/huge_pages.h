// Large CPU buffers on transparent huge pages. Where the kernel grants them on request
// (THP mode "madvise", the common default), advising a fresh mapping before its first
// touch backs it with 2 MB pages: one fault per 2 MB instead of 512, and strided reads
// that stay within a few TLB entries. A fresh 1-hour (16, 1.8M) float32 output took ~50 ms
// of page faults a call on this machine's 4 KB pages. Advice only: where it is refused,
// nothing changes. No torch headers: the kernels advise their fresh outputs with
// advise_huge_pages(out.data_ptr(), out.nbytes()) before writing them.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace fastecg
