// Work sharing of the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace fastecg {

// Calls work(claim) once on each of torch's intra-op threads (inline when there is one,
// or when called from inside a parallel region); claim() hands out the items 0 .. n - 1,
// one per call across all threads, then -1. Items are claimed as threads come free
// rather than split into equal shares up front: on a shared machine a thread that is
// preempted for a while then holds back only the items it has, and the others take the
// rest, so the median time falls while the best time stays (benchmarks/CPU_NOTES.md).
// work sets up its per-thread scratch once.
template <typename Work>
void parallel_claim(int64_t n, const Work& work) {
  std::atomic<int64_t> next{0};
  auto claim = [&]() -> int64_t {
    const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
    return i < n ? i : -1;
  };
  const int64_t threads = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) { work(claim); });
}

}  // namespace fastecg
