// The instruction set of the CPU kernels, chosen at run time in one place for all of
// them: the widest this CPU runs, unless FASTECG_CPU_ISA (generic, avx2, avx512) asks for
// a narrower one, so that tests can run every variant the CPU has and users can rule one
// out. Binaries are built for baseline x86-64 (never -march=native: users' CPUs differ);
// the wider variants are functions compiled with a target attribute.
#pragma once

#include <string>
#include <utility>

namespace fastecg {

enum class Isa { kGeneric, kAvx2, kAvx512 };

// kAvx512: AVX-512 F, DQ, VL and BW; kAvx2: AVX2 and FMA (the x86-64-v3 level). Reads
// FASTECG_CPU_ISA on every call (a getenv: cheap next to a kernel call) so that a process
// can switch it; throws (c10::Error) when it names no ISA or one this CPU lacks.
Isa cpu_isa();

std::string isa_name(Isa isa);

// The instruction set a piece of code is being compiled for, as a type (see with_isa).
template <Isa I>
struct IsaTag {
  static constexpr Isa isa = I;
};

#if defined(__x86_64__)
#define FASTECG_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))

namespace isa_detail {
template <typename F> FASTECG_TARGET_AVX2 void run_avx2(const F& f) { f(IsaTag<Isa::kAvx2>{}); }
template <typename F> void run_generic(const F& f) { f(IsaTag<Isa::kGeneric>{}); }
}  // namespace isa_detail
#endif

// Runs f(tag) compiled for `isa` where the kernel has no variant of its own per ISA: for
// x86-64-v3 (AVX2, FMA, LZCNT/TZCNT) from kAvx2 up, for baseline x86-64 below; tag is the
// IsaTag of the variant. f must be an always_inline lambda whose helpers are always_inline
// too (FASTECG_INLINE): they are then compiled into each of the two wrappers with its
// instruction set (GCC inlines a default-target function into a wider-target caller; a
// helper that failed to inline would be a compile error, not silently baseline code).
// Call it once per thread and kernel call around the whole work loop, not per item.
template <typename F>
inline void with_isa(Isa isa, const F& f) {
#if defined(__x86_64__)
  if (isa >= Isa::kAvx2)
    isa_detail::run_avx2(f);
  else
    isa_detail::run_generic(f);
#else
  (void)isa;
  f(IsaTag<Isa::kGeneric>{});
#endif
}

// name(tag, args...): body(args...) compiled out of line, once per ISA, the variant of
// `tag` called (no run-time choice). For a hot loop that should keep the registers to
// itself instead of being inlined into with_isa's whole work loop. body: an always_inline
// function (template) taking no vector arguments.
#if defined(__x86_64__)
#define FASTECG_PER_ISA(name, body)                                                      \
  template <class... A>                                                                   \
  __attribute__((noinline)) decltype(auto) name##_generic(A&&... a) {                     \
    return body(std::forward<A>(a)...);                                                   \
  }                                                                                       \
  template <class... A>                                                                   \
  __attribute__((noinline)) FASTECG_TARGET_AVX2 decltype(auto) name##_avx2(A&&... a) {    \
    return body(std::forward<A>(a)...);                                                   \
  }                                                                                       \
  template <class Tag, class... A>                                                        \
  inline __attribute__((always_inline)) decltype(auto) name(Tag, A&&... a) {             \
    if constexpr (Tag::isa >= ::fastecg::Isa::kAvx2)                                      \
      return name##_avx2(std::forward<A>(a)...);                                          \
    else                                                                                  \
      return name##_generic(std::forward<A>(a)...);                                       \
  }
#else
#define FASTECG_PER_ISA(name, body)                                                      \
  template <class Tag, class... A>                                                        \
  __attribute__((noinline)) decltype(auto) name(Tag, A&&... a) {                          \
    return body(std::forward<A>(a)...);                                                   \
  }
#endif

}  // namespace fastecg
