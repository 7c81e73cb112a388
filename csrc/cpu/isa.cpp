// Run-time instruction-set selection of the CPU kernels (isa.h), and fastecg::_cpu_isa.
#include "isa.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>

namespace fastecg {
namespace {

Isa widest_supported() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

std::string cpu_isa_op() { return isa_name(cpu_isa()); }

}  // namespace

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

Isa cpu_isa() {
  static const Isa best = widest_supported();
  const char* forced = std::getenv("FASTECG_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return best;
  const std::string want(forced);
  int rank = -1;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (isa_name(isa) == want) rank = static_cast<int>(isa);
  TORCH_CHECK(rank >= 0, "FASTECG_CPU_ISA must be generic, avx2 or avx512, got ", want);
  TORCH_CHECK(rank <= static_cast<int>(best), "FASTECG_CPU_ISA=", want,
              " but this CPU supports at most ", isa_name(best));
  return static_cast<Isa>(rank);
}

TORCH_LIBRARY_IMPL(fastecg, CompositeExplicitAutograd, m) { m.impl("_cpu_isa", &cpu_isa_op); }

}  // namespace fastecg
