// CPU kernels of fastecg::_median_filter_kernel and fastecg::_moving_average_kernel.
//
// Running median, exact (bit-for-bit scipy.ndimage.median_filter):
//   The signal is cut into chunks of kChunk outputs. For a chunk, the extended input
//   (chunk + window halo, SciPy's boundary modes applied) is ranked once by an LSD
//   radix sort (ties broken by position, so ranks are unique): of 22-bit linear keys
//   floor((v - min) * scale) in two passes, runs of one key re-sorted by value, or of
//   the values' order-preserving bits where some are Inf/NaN. Sliding the window is
//   then integer work on ranks: a bitset over ranks plus a count per rank, and the
//   current median rank `m` with the number of window elements below it. Each step
//   removes one rank and inserts one; the median moves by at most one occupied rank,
//   found with a count-trailing/leading-zeros on the bitset word. Cost: O(1) radix
//   passes per sample (2) + O(1) per slide step
//   (plus the scan over empty words, about w_gap/64); no heaps, no comparisons of
//   floats after ranking. This is the "sort once, then slide" idea of Suomela (2014,
//   "Median filtering is equivalent to sorting"), with the two linked lists replaced
//   by a bitset over ranks, which is branch-light and cache-resident.
//   Two stages (the dual median of baseline removal) share one ranking per chunk: the
//   second stage's inputs are samples the first one selected, so their ranks in the
//   chunk's ranking (chunk + both halos) order them (median_two_stages). Longer chains,
//   and two stages in wrap mode over rows of several chunks, apply one stage after the
//   other, each ranking its own input. Every output records the index of the input
//   sample it selected, so the gradient (one-hot at the arg-median) is a scatter of
//   those indices.
//
// Moving average (the "mean" baseline): running sums in double over a mirror-extended
// copy of the rows, four rows side by side in one vector and four independent segments
// interleaved so the add chains overlap.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/median_keys.h"
#include "../common/parallel.h"
#include "isa.h"

namespace fastecg {
namespace {

// Each kernel call runs its work loop compiled for baseline x86-64 or for x86-64-v3
// (with_isa, isa.h), the helpers below inlined into it or, for the slides and the ranking,
// compiled per ISA beside it (FASTECG_PER_ISA). The slides' scans use count-leading/
// trailing-zeros: in the x86-64-v3 variant LZCNT/TZCNT take one cycle instead of BSR/BSF's
// several, on the loop's dependency chain. The moving average's and the ranking's loops
// are memory- and latency-bound: the v3 variant gives them wider loads, conversions and
// shuffles.

constexpr int64_t kChunk = 8192;  // outputs per work item of the chunked (long-row) path
constexpr int kDigitBits = 11;    // radix digit: 2048 buckets, histogram fits in L1

// Radix-sort items: (key << 32 | position) in one word, or a 64-bit key beside the
// position (the exact ranking of float64 values).
struct Item64 {
  uint64_t key;
  uint32_t pos;
};
inline uint64_t item_key(uint64_t it) { return it >> 32; }
inline uint32_t item_pos(uint64_t it) { return uint32_t(it); }
inline uint64_t item_key(const Item64& it) { return it.key; }
inline uint32_t item_pos(const Item64& it) { return it.pos; }
inline uint64_t make_item(uint32_t key, uint32_t pos) { return uint64_t(key) << 32 | pos; }
inline Item64 make_item(uint64_t key, uint32_t pos) { return Item64{key, pos}; }
// The exact key of a T (its order-preserving bits) and the item that carries it.
template <typename T> using ExactKey = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
template <typename T> using ItemFor = std::conditional_t<sizeof(T) == 4, uint64_t, Item64>;

constexpr size_t kBuckets = size_t(1) << kDigitBits;
// Exact keys: the order-preserving bits of the value (3 passes for float32, 6 for float64).
template <typename T> constexpr int kPasses = (8 * int(sizeof(T)) + kDigitBits - 1) / kDigitBits;
// Linear keys: floor((v - min) * scale) on kLinearBits bits, 2 passes for either dtype.
constexpr int kLinearBits = 2 * kDigitBits;
// Positions that fit beside a linear key's high digit in 32 bits.
constexpr int kPackedPositionBits = 32 - kDigitBits;
constexpr int64_t kPackedPositions = int64_t(1) << kPackedPositionBits;

// Histogram counts -> bucket starts.
inline void exclusive_scan(uint32_t* h) {
  uint32_t sum = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    const uint32_t c = h[b];
    h[b] = sum;
    sum += c;
  }
}

// Per-thread scratch, reused across chunks.
template <typename T>
struct Scratch {
  std::vector<ItemFor<T>> items, tmp;
  std::vector<uint32_t> hist, keys, packed;
  std::vector<T> value;
  std::vector<int32_t> rank, src, out_rank, seq;
  std::vector<uint32_t> order;
  std::vector<int32_t> count;
  std::vector<uint64_t> bits;
};

// Stable LSD radix sort of `items` (n of them) by key, `passes` digits, written as
// ranks: rank[position] = r and order[r] = position for the r-th smallest item (ties
// by position). hist holds the lowest digit's histogram and room for the others. The
// last pass places positions straight into rank and order instead of moving items
// (writing the sorted items and reading them back was one more pass over the items).
// Each scatter pass counts the next digit of the items it moves: in that order the
// higher digits are shuffled, so consecutive increments rarely hit the same counter
// (counting them in signal order, where neighbouring samples share their top bits,
// stalls on store-to-load forwarding). A pass whose digit is the same for every item
// is skipped.
template <typename Item>
void radix_rank(Item* items, Item* tmp, size_t n, int passes, uint32_t* hist, int32_t* rank,
                uint32_t* order) {
  Item* src = items;
  Item* dst = tmp;
  for (int p = 0; p < passes; ++p) {
    uint32_t* h = hist + p * kBuckets;
    const int shift = p * kDigitBits;
    const bool last = p + 1 == passes;
    uint32_t* next = last ? h : hist + (p + 1) * kBuckets;
    if (h[(item_key(src[0]) >> shift) & (kBuckets - 1)] == n) {
      if (!last)
        for (size_t i = 0; i < n; ++i) ++next[(item_key(src[i]) >> (shift + kDigitBits)) & (kBuckets - 1)];
      continue;
    }
    exclusive_scan(h);
    if (last) {
      for (size_t i = 0; i < n; ++i) {
        const uint32_t r = h[(item_key(src[i]) >> shift) & (kBuckets - 1)]++;
        const uint32_t l = item_pos(src[i]);
        rank[l] = int32_t(r);
        order[r] = l;
      }
      return;
    }
    for (size_t i = 0; i < n; ++i) {
      const uint64_t key = item_key(src[i]);
      dst[h[(key >> shift) & (kBuckets - 1)]++] = src[i];
      ++next[(key >> (shift + kDigitBits)) & (kBuckets - 1)];
    }
    std::swap(src, dst);
  }
  for (size_t r = 0; r < n; ++r) {  // the last pass was skipped: src is sorted
    const uint32_t l = item_pos(src[r]);
    rank[l] = int32_t(r);
    order[r] = l;
  }
}

// The median (rank k of w) of every window of `seq` (ranks in [0, nranks), duplicates
// allowed); a window holding a rank >= nan_rank yields nan_rank.
// HasNaN: some rank is >= nan_rank; without, the NaN bookkeeping is compiled out.
template <bool HasNaN, typename T>
FASTECG_INLINE void slide_impl(const int32_t* seq, int64_t n_out, int64_t w, int64_t k,
                               int32_t nranks, int32_t nan_rank, int32_t* out, Scratch<T>& s) {
  s.count.assign(nranks, 0);
  s.bits.assign((nranks + 63) / 64, 0);
  int32_t* count = s.count.data();
  uint64_t* bits = s.bits.data();
  int64_t nan_count = 0;
  for (int64_t j = 0; j < w; ++j) {
    const int32_t r = seq[j];
    ++count[r];
    bits[r >> 6] |= 1ull << (r & 63);
    nan_count += r >= nan_rank;
  }
  int64_t below = 0;
  int32_t m = 0;
  while (below + count[m] <= k) below += count[m++];

  for (int64_t i = 0;; ++i) {
    out[i] = HasNaN && nan_count ? nan_rank : m;
    if (i + 1 == n_out) break;
    const int32_t r_out = seq[i], r_in = seq[i + w];
    if constexpr (HasNaN) nan_count += int64_t(r_in >= nan_rank) - int64_t(r_out >= nan_rank);
    below += int64_t(r_in < m) - int64_t(r_out < m);
    // branch-free: with duplicate ranks (the second stage) whether a rank empties or
    // fills is unpredictable
    bits[r_out >> 6] &= ~(uint64_t(--count[r_out] == 0) << (r_out & 63));
    bits[r_in >> 6] |= uint64_t(count[r_in]++ == 0) << (r_in & 63);
    while (below > k) {  // median moves down to the previous occupied rank
      int64_t wi = m >> 6;
      uint64_t word = bits[wi] & ((1ull << (m & 63)) - 1);
      while (!word) word = bits[--wi];
      m = int32_t((wi << 6) + 63 - std::countl_zero(word));
      below -= count[m];
    }
    while (below + count[m] <= k) {  // ... or up to the next one
      below += count[m];
      int64_t wi = m >> 6;
      uint64_t word = bits[wi] & (~1ull << (m & 63));
      while (!word) word = bits[++wi];
      m = int32_t((wi << 6) + std::countr_zero(word));
    }
  }
}

// The slides and the linear ranking are functions of their own per ISA (FASTECG_PER_ISA):
// inlined into the kernel's whole work loop, their loops lost registers to it (the dual
// median 3% slower).
FASTECG_PER_ISA(slide_with_nan, slide_impl<true>)
FASTECG_PER_ISA(slide_finite, slide_impl<false>)

template <class Tag, typename T>
FASTECG_INLINE void slide(Tag tag, const int32_t* seq, int64_t n_out, int64_t w, int64_t k,
                          int32_t nranks, int32_t nan_rank, int32_t* out, Scratch<T>& s) {
  if (nan_rank < nranks)
    slide_with_nan(tag, seq, n_out, w, k, nranks, nan_rank, out, s);
  else
    slide_finite(tag, seq, n_out, w, k, nranks, nan_rank, out, s);
}

// slide() for distinct ranks (every first stage: ties are broken by position). Exactly
// k occupied ranks stay below m, so no counts are needed: one rank entering below while
// none leaves below moves m down to the previous occupied rank, one leaving below (or m
// itself leaving) while none enters below moves it up to the next, otherwise m stays.
// The direction is a branch: on ECG-like rows consecutive samples sit on the same side
// of the median for long runs, so it predicts well, and the predicted step only walks
// the bitset the way it moves. (A second, bit-reversed bitset would turn a move down
// into a successor search, so that one masked lookup serves both directions without a
// branch, but it costs two more bit flips per step and is slower on ECG rows;
// benchmarks/CPU_NOTES.md.) Each direction looks at m's word, then the next one; only a
// gap longer than that takes a loop.
template <bool HasNaN>
FASTECG_INLINE void slide_distinct_impl(const int32_t* seq, int64_t n_out, int64_t w, int64_t k,
                                        int32_t nranks, int32_t nan_rank, int32_t* out,
                                        std::vector<uint64_t>& bitset) {
  const int64_t nwords = (nranks + 63) / 64;
  bitset.assign(nwords + 2, 0);
  uint64_t* bits = bitset.data() + 1;  // bits[-1] and bits[nwords]: zero padding
  auto flip = [&](int64_t r) __attribute__((always_inline)) {  // r enters or leaves
    bits[r >> 6] ^= 1ull << (r & 63);
  };
  int64_t nan_count = 0;
  for (int64_t j = 0; j < w; ++j) {
    flip(seq[j]);
    nan_count += seq[j] >= nan_rank;
  }
  int64_t wi = 0, left = k;  // the median: the (k+1)-th occupied rank
  while (std::popcount(bits[wi]) <= left) left -= std::popcount(bits[wi++]);
  uint64_t first = bits[wi];
  for (; left > 0; --left) first &= first - 1;
  int64_t m = (wi << 6) + std::countr_zero(first);

  for (int64_t i = 0;; ++i) {
    out[i] = HasNaN && nan_count ? nan_rank : int32_t(m);
    if (i + 1 == n_out) break;
    const int64_t r_out = seq[i], r_in = seq[i + w];
    if constexpr (HasNaN) nan_count += int64_t(r_in >= nan_rank) - int64_t(r_out >= nan_rank);
    flip(r_out);
    flip(r_in);
    const int64_t mw = m >> 6;
    // The rank that m moves to is occupied (r_in, or one between it and m), so the
    // scans past the next word stop inside the bitset.
    if ((r_in < m) & (r_out >= m)) {  // down: the previous occupied rank
      const uint64_t below = bits[mw] & ((1ull << (m & 63)) - 1);
      const uint64_t word = below ? below : bits[mw - 1];
      const int64_t at = below ? mw : mw - 1;
      if (__builtin_expect(word != 0, 1)) {
        m = (at << 6) + 63 - std::countl_zero(word);
      } else {
        int64_t j = mw - 2;
        while (!bits[j]) --j;
        m = (j << 6) + 63 - std::countl_zero(bits[j]);
      }
    } else if ((r_in > m) & (r_out <= m)) {  // up: the next occupied rank
      const uint64_t above = bits[mw] & (~1ull << (m & 63));
      const uint64_t word = above ? above : bits[mw + 1];
      const int64_t at = above ? mw : mw + 1;
      if (__builtin_expect(word != 0, 1)) {
        m = (at << 6) + std::countr_zero(word);
      } else {
        int64_t j = mw + 2;
        while (!bits[j]) ++j;
        m = (j << 6) + std::countr_zero(bits[j]);
      }
    }
  }
}

FASTECG_PER_ISA(slide_distinct_with_nan, slide_distinct_impl<true>)
FASTECG_PER_ISA(slide_distinct_finite, slide_distinct_impl<false>)

template <class Tag>
FASTECG_INLINE void slide_distinct(Tag tag, const int32_t* seq, int64_t n_out, int64_t w,
                                   int64_t k, int32_t nranks, int32_t nan_rank, int32_t* out,
                                   std::vector<uint64_t>& bitset) {
  if (nan_rank < nranks)
    slide_distinct_with_nan(tag, seq, n_out, w, k, nranks, nan_rank, out, bitset);
  else
    slide_distinct_finite(tag, seq, n_out, w, k, nranks, nan_rank, out, bitset);
}

struct Stage {
  int64_t size, start;  // window of output i: inputs [i + start, i + start + size)
};

// Whether no value is Inf or NaN: (bits & exponent) + (lowest exponent bit) carries
// into the sign bit iff the exponent is all ones. Adds, ANDs and ORs only, so the loop
// vectorises (a floating-point accumulation would be one long add chain).
template <typename T>
FASTECG_INLINE bool all_finite(const T* v, int64_t m) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits kSign = Bits(1) << (8 * sizeof(T) - 1);
  constexpr Bits kOne = sizeof(T) == 4 ? Bits(1) << 23 : Bits(1) << 52;
  constexpr Bits kExponent = kSign - kOne;
  Bits bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    Bits bits;
    std::memcpy(&bits, v + i, sizeof bits);
    bad |= (bits & kExponent) + kOne;
  }
  return (bad & kSign) == 0;
}

// Smallest and largest of value[0, len), all finite.
template <typename T>
FASTECG_INLINE std::pair<T, T> min_max(const T* value, int64_t len) {
  // independent lanes, so the loop vectorises: four AVX2 vectors of each, since one
  // would wait on the latency of the previous min/max every step
  constexpr int kLanes = 128 / sizeof(T);
  T lo[kLanes], hi[kLanes];
  std::fill(lo, lo + kLanes, value[0]);
  std::fill(hi, hi + kLanes, value[0]);
  int64_t l = 0;
  for (; l + kLanes <= len; l += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      lo[k] = value[l + k] < lo[k] ? value[l + k] : lo[k];
      hi[k] = value[l + k] > hi[k] ? value[l + k] : hi[k];
    }
  for (; l < len; ++l) lo[0] = std::min(lo[0], value[l]), hi[0] = std::max(hi[0], value[l]);
  return {*std::min_element(lo, lo + kLanes), *std::max_element(hi, hi + kLanes)};
}

// Ranks finite values by linear keys floor((v - min) * scale) of kLinearBits bits: two
// radix passes for float32 or float64 (their exact keys take 3 or 6). The first pass
// consumes the low digit, so what it moves (high digit, position) packs into 32 bits:
// half the bytes scattered of (key, position) items. The map is monotone, so it orders
// any two values it tells apart; values closer than (max - min) / 2^kLinearBits may
// share a key and come out ordered by position, so the sorted sequence is checked and
// such runs re-sorted by value. False, leaving the ranking to exact keys, when the range
// overflows a double or the positions do not pack (windows of over 2M samples).
// The keys come first, in a loop of their own that vectorises (inside the histogram
// loop the float-to-integer conversions would run one at a time); float32 values in
// float arithmetic, 8 to a vector: a subtraction, a multiplication by a positive scale
// and a truncation, each rounded monotonically, so the map stays monotone and only
// merges more neighbours into one key, which the check sorts out like any other tie.
template <typename T>
FASTECG_INLINE bool rank_linear(const T* value, int64_t len, Scratch<T>& s) {
  const auto [lo, hi] = min_max(value, len);
  const double range = double(hi) - double(lo);
  if (!(range <= std::numeric_limits<double>::max()) || len > kPackedPositions) return false;
  constexpr double kTop = double((1u << kLinearBits) - 1);
  const double scale = range > 0 ? kTop / range : 0.0;
  s.keys.resize(len);
  s.packed.resize(len);
  s.hist.assign(2 * kBuckets, 0);
  uint32_t* keys = s.keys.data();
  uint32_t* packed = s.packed.data();
  uint32_t *low = s.hist.data(), *high = low + kBuckets;
  // Keys below 2^kLinearBits convert through int32 (vcvttps2dq/vcvttpd2dq; x86-64 has no
  // vector conversion to uint32 below AVX-512). min(top, x) puts top first: a NaN
  // product (none can arise here) would give top, not an out-of-range key.
  const float fscale = float(scale);
  if (std::is_same_v<T, float> && fscale <= std::numeric_limits<float>::max()) {
    const float flo = float(lo), ftop = float(kTop);
    for (int64_t i = 0; i < len; ++i)
      keys[i] = uint32_t(int32_t(std::min(ftop, (float(value[i]) - flo) * fscale)));
  } else {  // float64, or a float32 range so narrow that the scale overflows a float
    for (int64_t i = 0; i < len; ++i)
      keys[i] = uint32_t(int32_t(std::min(kTop, (double(value[i]) - double(lo)) * scale)));
  }
  for (int64_t i = 0; i < len; ++i) {
    ++low[keys[i] & (kBuckets - 1)];
    ++high[keys[i] >> kDigitBits];
  }
  exclusive_scan(low);
  exclusive_scan(high);
  for (int64_t i = 0; i < len; ++i) {
    const uint32_t k = keys[i];
    packed[low[k & (kBuckets - 1)]++] = (k >> kDigitBits) << kPackedPositionBits | uint32_t(i);
  }
  int32_t* rank = s.rank.data();
  uint32_t* order = s.order.data();
  for (int64_t i = 0; i < len; ++i) {
    const uint32_t r = high[packed[i] >> kPackedPositionBits]++, l = packed[i] & (kPackedPositions - 1);
    rank[l] = int32_t(r);
    order[r] = l;
  }
  for (int64_t r = 1; r < len; ++r) {
    if (!(value[order[r]] < value[order[r - 1]])) continue;
    // a run of one key out of value order: sort it by (value, position)
    const uint32_t k = keys[order[r]];
    int64_t first = r - 1, last = r + 1;
    while (first > 0 && keys[order[first - 1]] == k) --first;
    while (last < len && keys[order[last]] == k) ++last;
    std::sort(order + first, order + last, [&](uint32_t i, uint32_t j) {
      return value[i] < value[j] || (value[i] == value[j] && i < j);
    });
    for (int64_t q = first; q < last; ++q) rank[order[q]] = int32_t(q);
    r = last - 1;
  }
  return true;
}

FASTECG_PER_ISA(rank_linear_for, rank_linear)

// Ranks any values (Inf and NaN included) by their order-preserving bits: float32 keys
// fit beside the position in one word, float64 keys take an Item64.
template <typename T>
void rank_exact(const T* value, int64_t len, Scratch<T>& s) {
  s.items.resize(len);
  s.tmp.resize(len);
  s.hist.assign(kPasses<T> * kBuckets, 0);
  ItemFor<T>* items = s.items.data();
  uint32_t* hist = s.hist.data();
  for (int64_t l = 0; l < len; ++l) {
    items[l] = make_item(ExactKey<T>(order_key(value[l])), uint32_t(l));
    ++hist[item_key(items[l]) & (kBuckets - 1)];
  }
  radix_rank(items, s.tmp.data(), size_t(len), kPasses<T>, hist, s.rank.data(), s.order.data());
}

// Ranks the extended input of outputs [c0, c1): position l reads stage input
// j = map(c0 + start + l); stage input j is row sample src_in[j] (src_in == nullptr:
// j itself), or cval where that is < 0. With `with_cval`, one more position holding
// cval is ranked too. Fills s.rank, s.order and, with `need_src` (or src_in), s.src (row
// index per position: what selected_index reads); returns the number of positions and
// sets nan_rank (ranks >= it hold NaN).
template <class Tag, typename T>
FASTECG_INLINE int64_t rank_extended(Tag tag, const T* row, const int32_t* src_in, int64_t n,
                                     const Stage& st, int64_t mode, T cval, int64_t c0, int64_t c1,
                                     bool with_cval, bool need_src, int32_t& nan_rank,
                                     Scratch<T>& s) {
  const int64_t span = c1 - c0 + st.size - 1, len = span + with_cval, q0 = c0 + st.start;
  s.value.resize(len);
  s.src.resize(len);
  T* value = s.value.data();
  int32_t* srcs = s.src.data();
  auto put = [&](int64_t l, int64_t j) __attribute__((always_inline)) {
    if (j >= 0 && src_in) j = src_in[j];
    value[l] = j >= 0 ? row[j] : cval;
    srcs[l] = int32_t(j);
  };
  // interior positions need no boundary mapping
  const int64_t lo = std::clamp<int64_t>(-q0, 0, span), hi = std::clamp<int64_t>(n - q0, lo, span);
  for (int64_t l = 0; l < lo; ++l) put(l, map_index(q0 + l, n, mode));
  if (src_in) {
    for (int64_t l = lo; l < hi; ++l) put(l, q0 + l);
  } else {  // the hot loop: plain samples
    std::copy(row + q0 + lo, row + q0 + hi, value + lo);
    if (need_src)
      for (int64_t l = lo; l < hi; ++l) srcs[l] = int32_t(q0 + l);
  }
  for (int64_t l = hi; l < span; ++l) put(l, map_index(q0 + l, n, mode));
  if (with_cval) put(span, -1);
  s.rank.resize(len);
  s.order.resize(len);
  int64_t n_nan = 0;
  if (!all_finite(value, len) || !rank_linear_for(tag, value, len, s)) {
    for (int64_t l = 0; l < len; ++l) n_nan += value[l] != value[l];
    rank_exact(value, len, s);
  }
  nan_rank = int32_t(len - n_nan);
  return len;
}

// Row index of the sample output i of the last stage selected (-1 for cval).
template <typename T>
int32_t selected_index(const Scratch<T>& s, int64_t i) {
  return s.src[s.order[s.out_rank[i]]];
}

// One stage over outputs [c0, c1) of one row; leaves each output's rank in s.out_rank
// (and, with need_src, what selected_index needs).
template <class Tag, typename T>
FASTECG_INLINE void median_chunk(Tag tag, const T* row, const int32_t* src_in, int64_t n,
                                 const Stage& st, int64_t mode, T cval, int64_t c0, int64_t c1,
                                 bool need_src, Scratch<T>& s) {
  int32_t nan_rank;
  const int64_t len =
      rank_extended(tag, row, src_in, n, st, mode, cval, c0, c1, false, need_src, nan_rank, s);
  s.out_rank.resize(c1 - c0);
  // A later stage reads runs of repeated samples (the previous stage's medians): their
  // ranks come in clumps with wide empty gaps, where the two-word lookup of
  // slide_distinct misses often and the counting slide is faster.
  if (src_in)
    slide(tag, s.rank.data(), c1 - c0, st.size, st.size / 2, int32_t(len), nan_rank,
          s.out_rank.data(), s);
  else
    slide_distinct(tag, s.rank.data(), c1 - c0, st.size, st.size / 2, int32_t(len), nan_rank,
                   s.out_rank.data(), s.bits);
}

// Two stages over outputs [c0, c1) of a row with one ranking: the second stage's inputs
// are samples the first one selected (or cval), so their ranks in the first ranking
// order them. The first stage runs over the outputs [a, b) that the second one reads:
// the chunk and its halo (the whole row for a row of one chunk). Leaves each output's
// rank in s.out_rank (and, with need_src, what selected_index needs).
template <class Tag, typename T>
FASTECG_INLINE void median_two_stages(Tag tag, const T* row, int64_t n, const Stage& st1,
                                      const Stage& st2, int64_t mode, T cval, int64_t c0,
                                      int64_t c1, bool need_src, Scratch<T>& s) {
  const int64_t m = c1 - c0, len2 = m + st2.size - 1, q0 = c0 + st2.start;
  // Second-stage input l is first-stage output q0 + l: the row's own outputs in
  // [lo, hi), boundary-mapped ones (or cval, -1) outside.
  const int64_t lo = std::clamp<int64_t>(-q0, 0, len2), hi = std::clamp<int64_t>(n - q0, lo, len2);
  int64_t a = hi > lo ? q0 + lo : n, b = hi > lo ? q0 + hi : 0;
  s.seq.resize(len2);
  auto map_edge = [&](int64_t l) {
    const int64_t j = map_index(q0 + l, n, mode);
    s.seq[l] = int32_t(j);
    if (j >= 0) a = std::min(a, j), b = std::max(b, j + 1);
  };
  for (int64_t l = 0; l < lo; ++l) map_edge(l);
  for (int64_t l = hi; l < len2; ++l) map_edge(l);
  TORCH_INTERNAL_ASSERT(a < b);  // a window always holds its own output's sample
  int32_t nan_rank;
  const bool with_cval = mode == kConstant;
  const int64_t len =
      rank_extended(tag, row, nullptr, n, st1, mode, cval, a, b, with_cval, need_src, nan_rank,
                    s);
  const int32_t cval_rank = with_cval ? s.rank[len - 1] : -1;
  s.out_rank.resize(std::max(b - a, m));
  slide_distinct(tag, s.rank.data(), b - a, st1.size, st1.size / 2, int32_t(len), nan_rank,
                 s.out_rank.data(), s.bits);
  auto rank_of = [&](int64_t l) { s.seq[l] = s.seq[l] >= 0 ? s.out_rank[s.seq[l] - a] : cval_rank; };
  for (int64_t l = 0; l < lo; ++l) rank_of(l);
  for (int64_t l = hi; l < len2; ++l) rank_of(l);
  std::copy(s.out_rank.data() + (q0 + lo - a), s.out_rank.data() + (q0 + hi - a), s.seq.data() + lo);
  slide(tag, s.seq.data(), m, st2.size, st2.size / 2, int32_t(len), nan_rank, s.out_rank.data(),
        s);
}

template <typename T>
void median_chain(const at::Tensor& x, const std::vector<Stage>& stages, int64_t mode, double cval,
                  bool subtract, at::Tensor& out, at::Tensor& index) {
  const int64_t rows = x.size(0), n = x.size(1);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const T* xd = x.data_ptr<T>();
  const T cv = static_cast<T>(cval);
  T* od = out.data_ptr<T>();
  int64_t* id = index.numel() ? index.data_ptr<int64_t>() : nullptr;
  const Isa isa = cpu_isa();
  auto emit = [&](int64_t at, T med) __attribute__((always_inline)) {  // output at = r n + i
    od[at] = subtract ? xd[at] - med : med;
  };
  // Outputs [c0, c1) of row r, from the last stage's ranks in the chunk's scratch: the
  // selected values straight from the ranked values (no row indices unless asked for).
  auto finish_chunk = [&](int64_t r, int64_t c0, int64_t c1, const Scratch<T>& s)
                          __attribute__((always_inline)) {
    const int32_t* rank = s.out_rank.data();
    const uint32_t* order = s.order.data();
    const T* value = s.value.data();
    for (int64_t i = c0; i < c1; ++i) emit(r * n + i, value[order[rank[i - c0]]]);
    if (id)
      for (int64_t i = c0; i < c1; ++i) id[r * n + i] = selected_index(s, i - c0);
  };
  // One stage, or both of a dual median, and the output chunk by chunk, while the chunk
  // is in cache (a selection array for the whole batch would go through memory twice
  // more). In wrap mode an edge chunk of a longer row reads first-stage outputs at the
  // row's far end; such rows, and longer chains, take the stage-by-stage path below.
  if (stages.size() == 1 || (stages.size() == 2 && (chunks == 1 || mode != kWrap))) {
    const bool need_src = id != nullptr;  // only the indices read the row index per position
    parallel_claim(rows * chunks, [&](auto& claim) {
      thread_local Scratch<T> own;
      Scratch<T>& scratch = own;  // one look-up of the thread-local, not one per use
      with_isa(isa, [&](auto tag) __attribute__((always_inline)) {
        for (int64_t item; (item = claim()) >= 0;) {
          const int64_t r = item / chunks, c0 = (item % chunks) * kChunk;
          const int64_t c1 = std::min(n, c0 + kChunk);
          if (stages.size() == 2)
            median_two_stages(tag, xd + r * n, n, stages[0], stages[1], mode, cv, c0, c1, need_src,
                              scratch);
          else
            median_chunk(tag, xd + r * n, nullptr, n, stages[0], mode, cv, c0, c1, need_src,
                         scratch);
          finish_chunk(r, c0, c1, scratch);
        }
      });
    });
    return;
  }
  // sel[0] holds the previous stage's selection, sel[1] the current one.
  std::vector<int32_t> sel[2];
  sel[0].resize(rows * n);
  sel[1].resize(rows * n);
  for (size_t st = 0; st < stages.size(); ++st) {
    const int32_t* prev = st == 0 ? nullptr : sel[(st + 1) % 2].data();
    int32_t* cur = sel[st % 2].data();
    parallel_claim(rows * chunks, [&](auto& claim) {
      thread_local Scratch<T> own;
      Scratch<T>& scratch = own;  // one look-up of the thread-local, not one per use
      with_isa(isa, [&](auto tag) __attribute__((always_inline)) {
        for (int64_t item; (item = claim()) >= 0;) {
          const int64_t r = item / chunks, c0 = (item % chunks) * kChunk;
          const int64_t c1 = std::min(n, c0 + kChunk);
          median_chunk(tag, xd + r * n, prev ? prev + r * n : nullptr, n, stages[st], mode, cv,
                       c0, c1, true, scratch);
          for (int64_t i = c0; i < c1; ++i) cur[r * n + i] = selected_index(scratch, i - c0);
        }
      });
    });
  }
  const int32_t* final_sel = sel[(stages.size() - 1) % 2].data();
  parallel_claim(rows, [&](auto& claim) {
    for (int64_t r; (r = claim()) >= 0;)
      for (int64_t i = 0; i < n; ++i) {
        const int32_t j = final_sel[r * n + i];
        emit(r * n + i, j >= 0 ? xd[r * n + j] : cv);
        if (id) id[r * n + i] = j;
      }
  });
}

std::tuple<at::Tensor, at::Tensor> median_filter_cpu(const at::Tensor& x, at::IntArrayRef sizes,
                                                     at::IntArrayRef origins, int64_t mode,
                                                     double cval, bool subtract, bool need_index) {
  TORCH_CHECK(x.dim() == 2, "expected (rows, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.size(1) < (int64_t(1) << 31), "rows longer than 2**31 - 1 samples");
  TORCH_CHECK(!sizes.empty() && sizes.size() == origins.size(), "one origin per size");
  TORCH_CHECK(mode >= kReflect && mode <= kWrap, "bad mode code ", mode);
  std::vector<Stage> stages;
  for (size_t i = 0; i < sizes.size(); ++i) {
    TORCH_CHECK(sizes[i] >= 1 && sizes[i] < (int64_t(1) << 30), "bad window size ", sizes[i]);
    TORCH_CHECK(-(sizes[i] / 2) <= origins[i] && origins[i] <= (sizes[i] - 1) / 2,
                "origin ", origins[i], " out of range for size ", sizes[i]);
    stages.push_back(Stage{sizes[i], -(sizes[i] / 2) - origins[i]});
  }
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  at::Tensor index = need_index ? at::empty(xc.sizes(), xc.options().dtype(at::kLong))
                                : at::empty({0}, xc.options().dtype(at::kLong));
  if (xc.numel() == 0) return {out, index};
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "median_filter_cpu", [&] {
    median_chain<scalar_t>(xc, stages, mode, cval, subtract, out, index);
  });
  return {out, index};
}

// ---- moving average ------------------------------------------------------------------

// A block of kLanes rows is filtered side by side: element t of its buffers holds sample
// t of every row (a V4), so each step of the running sum is one vector add for kLanes
// rows instead of a scalar add per row. The same templates run one row (E = double) for
// the rows left over and for blocks holding an Inf/NaN.
constexpr int kLanes = 4;
template <typename E> constexpr int kLanesOf = sizeof(E) / sizeof(double);

// out[i] = mean(ext[i .. i + w)) for i < n, with running sums in double. The row is cut
// into kSeg equal segments whose add chains interleave (one chain would wait on the
// add latency at every sample); each segment re-sums its window exactly every kResum
// outputs to bound drift.
template <typename E>
FASTECG_INLINE void running_mean(const E* ext, int64_t n, int64_t w, bool finite, E* out) {
  const double inv = 1.0 / double(w);
  auto window_sum = [&](int64_t i) __attribute__((always_inline)) {  // four add chains, not one
    E s[4] = {};
    int64_t j = 0;
    for (; j + 4 <= w; j += 4)
      for (int k = 0; k < 4; ++k) s[k] += ext[i + j + k];
    for (; j < w; ++j) s[0] += ext[i + j];
    return (s[0] + s[1]) + (s[2] + s[3]);
  };
  if (!finite) {  // Inf/NaN: a running sum would carry them past their windows
    for (int64_t i = 0; i < n; ++i) out[i] = window_sum(i) * inv;
    return;
  }
  // Chains to hide the add latency: 4 for one row (8 was slower; benchmarks/CPU_NOTES.md);
  // 2 for a block, whose window of V4s is 4x longer: 4 segments' trailing reads
  // (4 * w * 32 B for w = 301) would no longer fit L1.
  constexpr int kSeg = kLanesOf<E> > 1 ? 2 : 4;
  constexpr int64_t kResum = 1 << 14;
  const int64_t seg = n / kSeg;
  for (int64_t base = 0; base < seg; base += kResum) {
    const int64_t len = std::min(kResum, seg - base);
    E sum[kSeg];
    for (int k = 0; k < kSeg; ++k) sum[k] = window_sum(k * seg + base);
    for (int64_t t = base; t < base + len; ++t)
      for (int k = 0; k < kSeg; ++k) {
        const int64_t i = k * seg + t;
        out[i] = sum[k] * inv;
        sum[k] += ext[i + w] - ext[i];
      }
  }
  if (kSeg * seg < n) {  // the few samples left over
    E sum = window_sum(kSeg * seg);
    for (int64_t i = kSeg * seg; i < n; ++i) {
      out[i] = sum * inv;
      sum += ext[i + w] - ext[i];
    }
  }
}

// Fills ext[0, n + w) around rows already stored at ext[h, h + n), h = w / 2: the
// mirror (torch's "reflect") extension on both sides, plus one trailing 0 read by the
// last running-sum update.
template <typename E>
void mirror_fill(E* ext, int64_t n, int64_t w) {
  const int64_t h = w / 2, len = n + w - 1;
  if (h < n) {  // one reflection each side (no modulo)
    for (int64_t l = 0; l < h; ++l) ext[l] = ext[2 * h - l];
    for (int64_t l = h + n; l < len; ++l) ext[l] = ext[2 * (h + n - 1) - l];
  } else {
    for (int64_t l = 0; l < std::min(h, len); ++l) ext[l] = ext[h + map_index(l - h, n, kMirror)];
    for (int64_t l = h + n; l < len; ++l) ext[l] = ext[h + map_index(l - h, n, kMirror)];
  }
  ext[len] = E{};
}

// out[t] = x[.][t] as double: one row, or kLanes rows interleaved.
template <typename T>
FASTECG_INLINE void widen(const T* const* x, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = double(x[0][i]);
}
template <typename T>
FASTECG_INLINE void widen(const T* const* x, int64_t n, V4* out) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    V4 v[kLanes];
    for (int k = 0; k < kLanes; ++k) v[k] = load4(x[k] + t);
    transpose4(v);
    for (int j = 0; j < 4; ++j) out[t + j] = v[j];
  }
  for (; t < n; ++t)
    for (int k = 0; k < kLanes; ++k) out[t][k] = double(x[k][t]);
}

// out[.][t] = x[.][t] - v[t] (x given) or v[t], rounded to T: one row, or kLanes rows.
template <typename T>
FASTECG_INLINE void narrow(const T* const* x, const double* v, int64_t n, T* const* out) {
  for (int64_t i = 0; i < n; ++i) out[0][i] = static_cast<T>(x ? double(x[0][i]) - v[i] : v[i]);
}
template <typename T>
FASTECG_INLINE void narrow(const T* const* x, const V4* v, int64_t n, T* const* out) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    V4 r[kLanes];
    for (int j = 0; j < 4; ++j) r[j] = v[t + j];
    transpose4(r);
    for (int k = 0; k < kLanes; ++k) store4(out[k] + t, x ? load4(x[k] + t) - r[k] : r[k]);
  }
  for (; t < n; ++t)
    for (int k = 0; k < kLanes; ++k)
      out[k][t] = static_cast<T>(x ? double(x[k][t]) - v[t][k] : v[t][k]);
}

// The E view of buf resized to m elements, 32-byte aligned: operator new promises only
// 16, and the AVX2 variant moves V4s with aligned loads and stores. The old contents are
// not kept in place (the alignment offset may change).
template <typename E> E* lanes_buffer(std::vector<double>& buf, int64_t m) {
  buf.resize(m * kLanesOf<E> + kLanes);
  const auto address = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<E*>((address + 31) & ~uintptr_t(31));
}

// The chain of moving averages on one row (E = double) or kLanes rows (E = V4). Each
// stage writes into the middle of the next stage's extended buffer (the last stage into
// the free one), so rows are converted once, filtered and written once. A block holding
// an Inf/NaN returns false having written nothing: only the one-row path has the direct
// sums those need.
template <typename T, typename E>
FASTECG_INLINE bool average_chain(const T* const* x, int64_t n, const std::vector<int64_t>& sizes,
                                  bool subtract, std::vector<double> (&ext)[2], T* const* out) {
  constexpr int lanes = kLanesOf<E>;
  constexpr bool block = lanes > 1;
  bool finite = true;
  for (int k = 0; k < lanes; ++k) finite = finite && all_finite(x[k], n);
  if (block && !finite) return false;
  E* buf[2] = {lanes_buffer<E>(ext[0], n + sizes[0]), nullptr};
  widen(x, n, buf[0] + sizes[0] / 2);
  for (size_t s = 0; s < sizes.size(); ++s) {
    E* cur = buf[s % 2];
    mirror_fill(cur, n, sizes[s]);
    // The extension repeats the rows. Means of float32 values cannot overflow a
    // double, so a float32 row's later stage inputs are finite when it is.
    if (s > 0 && !std::is_same_v<T, float>)
      finite = finite &&
               all_finite(reinterpret_cast<const double*>(cur), (n + sizes[s] - 1) * lanes);
    if (block && !finite) return false;
    const int64_t next = s + 1 < sizes.size() ? sizes[s + 1] : 0;
    buf[(s + 1) % 2] = lanes_buffer<E>(ext[(s + 1) % 2], n + next);
    running_mean(cur, n, sizes[s], finite, buf[(s + 1) % 2] + next / 2);
  }
  narrow(subtract ? x : nullptr, buf[sizes.size() % 2], n, out);
  return true;
}

// Rows longer than this run one by one: their buffers miss the caches either way, so
// blocks gain nothing, and a block's buffers (64 B per sample) cost 4x the fresh memory
// (page faults: a Holter batch is slower in blocks; benchmarks/CPU_NOTES.md).
constexpr int64_t kBlockMaxSamples = 1 << 15;

template <typename T>
void moving_average_rows(const at::Tensor& x, const std::vector<int64_t>& sizes, bool subtract,
                         at::Tensor& out) {
  const int64_t rows = x.size(0), n = x.size(1);
  const T* xd = x.data_ptr<T>();
  T* od = out.data_ptr<T>();
  const Isa isa = cpu_isa();
  parallel_claim((rows + kLanes - 1) / kLanes, [&](auto& claim) {
    std::vector<double> ext[2];
    with_isa(isa, [&](auto) __attribute__((always_inline)) {
      for (int64_t b; (b = claim()) >= 0;) {
        const int64_t r0 = b * kLanes, count = std::min<int64_t>(kLanes, rows - r0);
        const T* xr[kLanes];
        T* outr[kLanes];
        for (int64_t k = 0; k < count; ++k)
          xr[k] = xd + (r0 + k) * n, outr[k] = od + (r0 + k) * n;
        if (count == kLanes && n <= kBlockMaxSamples &&
            average_chain<T, V4>(xr, n, sizes, subtract, ext, outr))
          continue;
        for (int64_t k = 0; k < count; ++k)
          average_chain<T, double>(xr + k, n, sizes, subtract, ext, outr + k);
      }
    });
  });
}

at::Tensor moving_average_cpu(const at::Tensor& x, at::IntArrayRef sizes, bool subtract) {
  TORCH_CHECK(x.dim() == 2, "expected (rows, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", x.scalar_type());
  for (int64_t w : sizes) TORCH_CHECK(w >= 1, "bad window size ", w);
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  if (xc.numel() == 0) return out;
  std::vector<int64_t> ws(sizes.begin(), sizes.end());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "moving_average_cpu", [&] {
    moving_average_rows<scalar_t>(xc, ws, subtract, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_median_filter_kernel", &median_filter_cpu);
  m.impl("_moving_average_kernel", &moving_average_cpu);
}

}  // namespace fastecg
