// Kernels of fcinterp_fast._cpu; see fit.h for the contract.
//
// Per row (all in the calling thread's scratch; rows are taken kGroup at a time, threads take
// kGroupsPerChunk groups at a time):
//   load     the row's bit patterns, turned into unsigned keys that sort like the values
//   sort     rows of up to 16 KiB of 16- or 32-bit keys: a bitonic sorting network over 32-byte
//            vectors (on AVX2 and better). Other rows: an LSD radix sort of the keys: 2 passes of
//            8 bits for 16-bit types; float32 keys sorted on their top 24 bits (3 passes of 8 bits)
//            in rows of <= 1024 values, else on their top 22 (2 passes of 11 bits), float64 keys on
//            their top 33 bits (3 of 11), then one insertion pass (full radix sort if that pass
//            meets too many near-ties). Long 16-bit rows are counted instead (fit.h, "Counting
//            fits of 16-bit heads").
//   decode   x = sorted values as float64
//   logs     y = ln|x|: a table of every 16-bit pattern (float16 / bfloat16), a table-driven log
//            without divisions (float32), fdlibm's polynomial vectorised (float64)
//   tree     every node is a run [s, e) of x; per node: count, sum (mean), min, max, and the line
//            fit from three sums over its members in magnitude order; the split point of a node is
//            found by binary search for its mean, made exact where the fast sum cannot decide
//   ALD      two prefix sums of weighted gaps (the group's rows interleaved; a counted row's over its
//            runs), then the first minimum of sqrt(alpha) + sqrt(beta) with provably safe pruning of
//            blocks
// `fit_rows_profiled` (PhaseTimes) times sort (load + sort + decode), logs, tree and ALD.
//
// Build notes: the file must be compiled with -ffp-contract=off (see fit.h: bitwise agreement of
// the ALD with the reference), and without -ffast-math (the exact sum and the error bounds rely on
// IEEE rounding). The row kernel is compiled for several instruction sets and picked at load time
// when FCI_TARGET_CLONES is defined (x86-64 with GCC / Clang).
#include "fit.h"
#include "gof.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(FCI_TARGET_CLONES)
#define FCI_ROW_KERNEL __attribute__((flatten, target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#elif defined(__GNUC__)
#define FCI_ROW_KERNEL __attribute__((flatten))
#else
#define FCI_ROW_KERNEL
#endif

#if defined(__GNUC__)
#define FCI_INLINE inline __attribute__((always_inline))
#else
#define FCI_INLINE inline
#endif

namespace fcinterp {
namespace {

// ------------------------------------------------------------------------------------------------
// Vectors
// ------------------------------------------------------------------------------------------------
// GCC and Clang vector extensions (__attribute__((vector_size))) write SIMD code once for every
// instruction set the row kernel is compiled for; the sorting network and the ALD's prefix sums use
// them (MSVC has none: there the network is off and the sums take a plain struct, lane by lane).
// Vectors are 32 bytes and pass only between inlined helpers, so the compilers' note that their ABI
// differs without AVX (-Wpsabi) does not apply; it is silenced.
#if defined(__GNUC__)
#define FCI_VECTOR_EXTENSIONS 1
#endif
#if defined(__clang__)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // for the whole file: GCC reports it where templates are instantiated
#endif

template <typename V, typename T>
FCI_INLINE V load_vector(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename V, typename T>
FCI_INLINE void store_vector(T* p, const V& v) {
    std::memcpy(p, &v, sizeof v);
}

// Laps of one thread's work into PhaseTimes fields; does nothing (not even read the clock) when
// there is nowhere to record them.
class PhaseClock {
  public:
    explicit PhaseClock(PhaseTimes* times) : times_(times) {
        if (times_ != nullptr) last_ = std::chrono::steady_clock::now();
    }
    FCI_INLINE void lap(double PhaseTimes::* phase) {
        if (times_ == nullptr) return;
        const auto now = std::chrono::steady_clock::now();
        times_->*phase += std::chrono::duration<double>(now - last_).count();
        last_ = now;
    }

  private:
    PhaseTimes* times_;
    std::chrono::steady_clock::time_point last_;
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kUnitRoundoff = 0x1p-53;
// Absolute slack for float64 inputs near the subnormal range (divisions there round absolutely).
constexpr double kTinySlack = 0x1p-1000;
constexpr int64_t kAlign = 64;
constexpr int64_t kInsertionSortMax = 32;
constexpr int64_t kMinValuesPerThread = 16384;
// Runs of one level of a full tree, children of the deepest allowed level included.
constexpr int64_t kFullRuns = int64_t(1) << (kMaxFullLevels + 1);

// ------------------------------------------------------------------------------------------------
// Keys: bit patterns that sort as unsigned integers in the order of the values
// ------------------------------------------------------------------------------------------------
// Negative values have every bit flipped (larger magnitude -> smaller key); non-negative values get
// the sign bit set. -0.0 sorts just before +0.0; both compare equal as values, which is all that
// matters downstream.
template <typename Bits>
FCI_INLINE Bits to_key(Bits bits) {
    constexpr int kTop = 8 * sizeof(Bits) - 1;
    const Bits sign = static_cast<Bits>(Bits(1) << kTop);
    const Bits mask = static_cast<Bits>(-static_cast<Bits>(bits >> kTop)) | sign;
    return static_cast<Bits>(bits ^ mask);
}

template <typename Bits>
FCI_INLINE Bits from_key(Bits key) {
    constexpr int kTop = 8 * sizeof(Bits) - 1;
    const Bits sign = static_cast<Bits>(Bits(1) << kTop);
    const Bits mask = static_cast<Bits>(static_cast<Bits>(key >> kTop) - Bits(1)) | sign;
    return static_cast<Bits>(key ^ mask);
}

FCI_INLINE float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

FCI_INLINE uint32_t float_to_bits(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}

// IEEE half -> float, exact for every half (normal, subnormal, inf, NaN); branch-free so that the
// decode loop vectorises. Shifting the exponent/mantissa into a float and multiplying by 2^112
// re-biases the exponent (15 -> 127) and normalises subnormals in one exact multiplication.
FCI_INLINE float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t body = static_cast<uint32_t>(h & 0x7fffu) << 13;
    const uint32_t scaled = float_to_bits(bits_to_float(body) * 0x1p112f);
    const uint32_t special = body | 0x7f800000u;  // inf / NaN keep their payload
    return bits_to_float(((h & 0x7c00u) == 0x7c00u ? special : scaled) | sign);
}

// One value type per input dtype: its bit pattern type and how a bit pattern becomes a double.
struct Float16Traits {
    using Bits = uint16_t;
    static FCI_INLINE double decode(uint16_t bits) { return half_to_float(bits); }
};
struct BFloat16Traits {
    using Bits = uint16_t;
    static FCI_INLINE double decode(uint16_t bits) { return bits_to_float(static_cast<uint32_t>(bits) << 16); }
};
struct Float32Traits {
    using Bits = uint32_t;
    static FCI_INLINE double decode(uint32_t bits) { return bits_to_float(bits); }
};
struct Float64Traits {
    using Bits = uint64_t;
    static FCI_INLINE double decode(uint64_t bits) {
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return d;
    }
};

// ------------------------------------------------------------------------------------------------
// Radix sort
// ------------------------------------------------------------------------------------------------
// LSD radix sort. 16-bit keys: two passes of 8-bit digits. float32 and float64 keys are first sorted
// on their high digits only (sign, exponent and the leading mantissa bits: the top 24 bits of a
// float32 in three 8-bit digits for rows of at most kShortRow (1024) values, else its top 22 in two 11-bit
// digits; the top 33 bits of a float64 in three 11-bit digits), which leaves only keys that agree in
// all those bits out of order; one insertion pass finishes them. Weight rows rarely have such
// near-ties (~0.01 moves per element on Laplace rows), so this saves scatter passes; when the
// insertion pass exceeds a budget of n moves, the keys get the full radix sort instead, which keeps
// the worst case linear. Short rows take 8-bit digits because clearing and scanning 2048-bucket
// histograms costs more than the data on them (a 512-value row: 4096 buckets for 512 keys).
constexpr int64_t kShortRow = 1024;

template <typename Key, int kDigits>
struct RadixPlan {
    static constexpr int kKeyBits = 8 * static_cast<int>(sizeof(Key));
    static constexpr int kDigitBits = kDigits;
    static constexpr int kPasses = (kKeyBits + kDigitBits - 1) / kDigitBits;
    static constexpr uint32_t kBuckets = 1u << kDigitBits;
    // Digits are counted from the top; the lowest one may overlap the next (harmless for LSD).
    static constexpr int shift(int pass) {
        return kKeyBits - (kPasses - pass) * kDigitBits > 0 ? kKeyBits - (kPasses - pass) * kDigitBits : 0;
    }
};

constexpr int64_t kMaxHistogram = RadixPlan<uint64_t, 11>::kPasses * RadixPlan<uint64_t, 11>::kBuckets;

// Sorts a[0..n) on the digits kFirst.. (all histograms from one read); returns the buffer holding
// the result (a or b).
template <typename Key, int kDigits, int kFirst>
FCI_INLINE Key* lsd_radix(Key* a, Key* b, int64_t n, uint32_t* histogram) {
    using Plan = RadixPlan<Key, kDigits>;
    constexpr int kCount = Plan::kPasses - kFirst;
    constexpr uint32_t kMask = Plan::kBuckets - 1;
    std::memset(histogram, 0, sizeof(uint32_t) * kCount * Plan::kBuckets);
    for (int64_t i = 0; i < n; ++i) {
        const Key k = a[i];
        for (int p = 0; p < kCount; ++p) ++histogram[p * Plan::kBuckets + ((k >> Plan::shift(kFirst + p)) & kMask)];
    }
    for (int p = 0; p < kCount; ++p) {
        const int shift = Plan::shift(kFirst + p);
        uint32_t* h = histogram + p * Plan::kBuckets;
        if (h[(a[0] >> shift) & kMask] == static_cast<uint32_t>(n)) continue;  // one digit for all
        uint32_t offset = 0;
        for (uint32_t d = 0; d < Plan::kBuckets; ++d) {
            const uint32_t c = h[d];
            h[d] = offset;
            offset += c;
        }
        for (int64_t i = 0; i < n; ++i) {
            const Key k = a[i];
            b[h[(k >> shift) & kMask]++] = k;
        }
        std::swap(a, b);
    }
    return a;
}

// Insertion sort; gives up (returning false, the keys permuted) after `budget` moves.
template <typename Key>
FCI_INLINE bool insertion_sort(Key* a, int64_t n, int64_t budget) {
    for (int64_t i = 1; i < n; ++i) {
        const Key k = a[i];
        if (!(k < a[i - 1])) continue;
        int64_t j = i;
        do {
            a[j] = a[j - 1];
            --j;
        } while (j > 0 && k < a[j - 1]);
        a[j] = k;
        budget -= i - j;
        if (budget < 0) return false;
    }
    return true;
}

// Radix sort on the high digits from kFirst on, finished by insertion (or, past its budget, by the
// remaining digits).
template <typename Key, int kDigits, int kFirst>
FCI_INLINE Key* sort_high_digits(Key* a, Key* b, int64_t n, uint32_t* histogram) {
    Key* sorted = lsd_radix<Key, kDigits, kFirst>(a, b, n, histogram);
    if (kFirst == 0 || insertion_sort(sorted, n, n)) return sorted;
    return lsd_radix<Key, kDigits, 0>(sorted, sorted == a ? b : a, n, histogram);
}

// ------------------------------------------------------------------------------------------------
// Sorting network for short rows
// ------------------------------------------------------------------------------------------------
// A bitonic sorting network over 32-byte vectors of keys (8 float32 or 16 16-bit keys per vector):
// no data-dependent branches and no scatter, so a row of a few hundred values sorts in about half the
// radix sort's time (measurements at kNetworkMaxBytes).
// The network is the one for the next power of two of vectors; the row fills whole vectors (the last
// one padded with the largest key, which sorts to the end after any equal key, so the first n keys
// are the row sorted) and the missing vectors stand for vectors of the largest key (see
// bitonic_sort). Each merge of two sorted blocks compares element i with element (2k - 1 - i) of the
// block pair (a reversal), then halves the distance (half-cleaners): every step sends the smaller key
// to the lower index, so no step needs a direction. Steps within a vector are lane permutations with
// compile-time patterns; steps across vectors are plain min / max.
//
// It pays only with 256-bit vector units (AVX2 and better; baseline x86-64 also lacks an unsigned
// 32-bit min). It is used when the CPU has x86-64-v3 (the clone dispatch of FCI_ROW_KERNEL picks a
// v3 or v4 kernel there), and with a -march=native build for an AVX2 machine; elsewhere, and with
// compilers other than GCC (its __builtin_shuffle with a vector of lane indices), rows take the
// radix sort.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    (defined(FCI_TARGET_CLONES) || (defined(FCI_NATIVE) && defined(__AVX2__)))
#define FCI_SORTING_NETWORK 1

template <typename Key>
struct KeyVector {
    static constexpr int kLanes = 32 / static_cast<int>(sizeof(Key));
    typedef Key V __attribute__((vector_size(32)));

    template <size_t... I>
    static constexpr V iota_(std::index_sequence<I...>) {
        return V{static_cast<Key>(I)...};
    }
    static constexpr V kLane = iota_(std::make_index_sequence<kLanes>{});

    static FCI_INLINE V load(const Key* p) { return load_vector<V>(p); }
    static FCI_INLINE void store(Key* p, V v) { store_vector(p, v); }
    static FCI_INLINE V lower(V a, V b) { return a < b ? a : b; }
    static FCI_INLINE V upper(V a, V b) { return a < b ? b : a; }
    static FCI_INLINE V reversed(V v) { return __builtin_shuffle(v, kLane ^ static_cast<Key>(kLanes - 1)); }

    // Compare-exchange lane i with lane i ^ m; of each pair the lane with m's top bit keeps the larger.
    template <int m>
    static FCI_INLINE V lane_step(V v) {
        constexpr int top = [] {
            int bit = 1;
            while (2 * bit <= m) bit *= 2;
            return bit;
        }();
        const V partner = __builtin_shuffle(v, kLane ^ static_cast<Key>(m));
        return (kLane & static_cast<Key>(top)) != 0 ? upper(v, partner) : lower(v, partner);
    }
    // Half-cleaners j, j/2, ..., 1 within the vector.
    template <int j>
    static FCI_INLINE V lane_merge(V v) {
        if constexpr (j >= 1) return lane_merge<j / 2>(lane_step<j>(v));
        return v;
    }
    // Sorts the vector's blocks of k, 2k, ... lanes, up to the whole vector.
    template <int k = 2>
    static FCI_INLINE V lane_sort(V v) {
        if constexpr (k <= kLanes) return lane_sort<2 * k>(lane_merge<k / 4>(lane_step<k - 1>(v)));
        return v;
    }
};

// Sorts a[0..n) ascending (n >= 1); a has room for n rounded up to whole vectors. The network is the
// one for the next power of two of vectors, with the missing vectors standing for vectors of the
// largest key: every compare-exchange sends the smaller key to the lower index, so a step whose
// upper vector is such padding changes nothing and is skipped, and the work is that of n keys,
// not of the power of two.
template <typename Key>
FCI_INLINE void bitonic_sort(Key* a, int64_t n) {
    using KV = KeyVector<Key>;
    using V = typename KV::V;
    constexpr int64_t L = KV::kLanes;
    const int64_t vectors = (n + L - 1) / L;
    std::fill(a + n, a + vectors * L, std::numeric_limits<Key>::max());
    for (int64_t t = 0; t < vectors; ++t) KV::store(a + t * L, KV::lane_sort(KV::load(a + t * L)));
    for (int64_t width = 2; width / 2 < vectors; width *= 2) {  // merge sorted blocks of width / 2 vectors
        // The reversal step; of width 2 it is the last step across vectors (done with the lanes below).
        for (int64_t b = 0; width > 2 && b + width / 2 < vectors; b += width) {
            for (int64_t t = std::max<int64_t>(0, b + width - vectors); t < width / 2; ++t) {
                Key* low = a + (b + t) * L;
                Key* high = a + (b + width - 1 - t) * L;
                const V x = KV::load(low), y = KV::reversed(KV::load(high));
                KV::store(low, KV::lower(x, y));
                KV::store(high, KV::reversed(KV::upper(x, y)));
            }
        }
        for (int64_t distance = width / 4; distance >= 2; distance /= 2) {  // half-cleaners across vectors
            for (int64_t b = 0; b + distance < vectors; b += 2 * distance) {
                const int64_t end = std::min(b + distance, vectors - distance);
                for (int64_t t = b; t < end; ++t) {
                    const V x = KV::load(a + t * L), y = KV::load(a + (t + distance) * L);
                    KV::store(a + t * L, KV::lower(x, y));
                    KV::store(a + (t + distance) * L, KV::upper(x, y));
                }
            }
        }
        // Neighbouring vectors (the half-cleaner of distance 1, or the reversal step of width 2), then
        // the steps within each vector, in one pass.
        for (int64_t t = 0; t < vectors; t += 2) {
            const V x = KV::load(a + t * L);
            if (t + 1 == vectors) {
                KV::store(a + t * L, KV::template lane_merge<L / 2>(x));
                break;
            }
            const V y = width == 2 ? KV::reversed(KV::load(a + (t + 1) * L)) : KV::load(a + (t + 1) * L);
            const V high = KV::upper(x, y);
            KV::store(a + t * L, KV::template lane_merge<L / 2>(KV::lower(x, y)));
            KV::store(a + (t + 1) * L, KV::template lane_merge<L / 2>(width == 2 ? KV::reversed(high) : high));
        }
    }
}

// Whether this CPU runs the network (see above); read once.
bool network_sort_supported() {
#if defined(FCI_TARGET_CLONES)
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v3");
#else
    return true;
#endif
}
const bool kNetworkSort = network_sort_supported();
#else
constexpr bool kNetworkSort = false;
#endif

// The network does about n log2(n)^2 / 4 compare-exchanges, the radix sort a fixed few passes per key
// (plus its histograms): the network is taken for rows of up to 16 KiB of keys (4096 float32, 8192
// 16-bit; a whole row in L1), where it was measured faster (benchmarks/bench_cpu.py, "sort" records:
// one thread, load, sort and decode, ns per key, network vs radix: float32 2.1 vs 4.1 at 512, 2.7 vs
// 4.0 at 1280, 3.4 vs 3.5 at 4096, 3.9 vs 3.3 at 8192; bfloat16 1.2 vs 2.7 at 512, 1.9 vs 2.8 at 4096,
// 2.2 vs 2.4 at 8192, 2.4 vs 2.4 at 16384).
constexpr int64_t kNetworkMaxBytes = 16384;

template <typename Key>
FCI_INLINE bool network_sorts(int64_t n) {
    return kNetworkSort && sizeof(Key) <= 4 && n > kInsertionSortMax &&
           n * static_cast<int64_t>(sizeof(Key)) <= kNetworkMaxBytes;
}

// Sorts a[0..n) ascending using b as the second buffer; returns the buffer holding the result. `a`
// has room for n rounded up to whole 32-byte vectors (the network's padding). `method` forces a
// method for tests and benchmarks (Network sorts by radix where the network is unavailable: see
// `sort_method`).
template <typename Key>
FCI_INLINE Key* sort_keys(Key* a, Key* b, int64_t n, uint32_t* histogram, SortMethod method = SortMethod::Auto) {
    if (n <= kInsertionSortMax) {
        insertion_sort(a, n, n * n);
        return a;
    }
#if defined(FCI_SORTING_NETWORK)
    if constexpr (sizeof(Key) <= 4) {
        const bool network =
            method == SortMethod::Network ? kNetworkSort : method == SortMethod::Auto && network_sorts<Key>(n);
        if (network) {
            bitonic_sort(a, n);
            return a;
        }
    }
#else
    (void)method;
#endif
    if (sizeof(Key) == 2) return sort_high_digits<Key, 8, 0>(a, b, n, histogram);
    if (sizeof(Key) == 8) return sort_high_digits<Key, 11, 3>(a, b, n, histogram);
    if (n <= kShortRow) return sort_high_digits<Key, 8, 1>(a, b, n, histogram);
    return sort_high_digits<Key, 11, 1>(a, b, n, histogram);
}

// ------------------------------------------------------------------------------------------------
// Natural logarithm, vectorisable
// ------------------------------------------------------------------------------------------------
// fdlibm's e_log.c (Sun Microsystems, 1993; error < 1 ulp): x = 2^k (1 + f) with 1 + f in
// [sqrt(2)/2, sqrt(2)), s = f / (2 + f), ln(1 + f) = f - hfsq + s (hfsq + R(s^2)). Its branches are
// written as selects and the exponent is converted without an int64 -> double instruction, so the
// loop vectorises on every x86-64 level.
constexpr double kLn2Hi = 6.93147180369123816490e-01;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kLg1 = 6.666666666666735130e-01;
constexpr double kLg2 = 3.999999999940941908e-01;
constexpr double kLg3 = 2.857142874366239149e-01;
constexpr double kLg4 = 2.222219843214978396e-01;
constexpr double kLg5 = 1.818357216161805012e-01;
constexpr double kLg6 = 1.531383769920937332e-01;
constexpr double kLg7 = 1.479819860511658591e-01;

FCI_INLINE double log_abs_one(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits &= 0x7fffffffffffffffull;
    // Subnormals: scale by 2^54 first (and subtract 54 from the exponent below).
    const bool subnormal = bits < 0x0010000000000000ull;
    double a;
    std::memcpy(&a, &bits, sizeof a);
    const double scaled = a * 0x1p54;
    a = subnormal ? scaled : a;
    std::memcpy(&bits, &a, sizeof bits);
    const uint64_t high = (bits >> 32) & 0x000fffffull;
    const uint64_t half = (high + 0x95f64ull) & 0x100000ull;  // set when the mantissa >= sqrt(2)
    const uint64_t m_bits = (bits & 0x000fffffffffffffull) | ((half ^ 0x3ff00000ull) << 32);
    double m;
    std::memcpy(&m, &m_bits, sizeof m);
    // k = biased exponent - 1023 (+1 when the mantissa was halved), as a double: 2^52 + e - 2^52.
    const uint64_t biased = (bits >> 52) + (half >> 20);
    const uint64_t magic_bits = 0x4330000000000000ull | biased;
    double magic;
    std::memcpy(&magic, &magic_bits, sizeof magic);
    const double dk = (magic - 0x1p52) - (subnormal ? 1023.0 + 54.0 : 1023.0);

    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s;
    const double w = z * z;
    const double t1 = w * (kLg2 + w * (kLg4 + w * kLg6));
    const double t2 = z * (kLg1 + w * (kLg3 + w * (kLg5 + w * kLg7)));
    const double r = t2 + t1;
    const double hfsq = 0.5 * f * f;
    return dk * kLn2Hi - ((hfsq - (s * (hfsq + r) + dk * kLn2Lo)) - f);
}

FCI_INLINE void log_abs_block(const double* x, double* y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = log_abs_one(x[i]);
}

// ln|x| of float32 values (held as doubles, so never subnormal), table-driven and without a division:
// x = 2^k m, m in [1, 2); j = the top 7 bits of m's fraction picks the centre c_j = 1 + (j + 1/2) / 128
// of m's interval, inv_j = 1 / c_j rounded to 29 significant bits, so that r = m inv_j - 1 is exact
// (24 + 29 bits of product; Sterbenz for the subtraction) with |r| < 2^-8, and
//     ln|x| = k ln 2 + ln(1 / inv_j) + ln(1 + r),
// ln(1 + r) by its Taylor series to r^7 (truncation < 2^-64 / 8). Error: about 1 ulp of the sum's
// largest term. The tables are built once, with the correctly rounded std::log of exact numbers.
struct Float32LogTable {
    double inv[128];
    double log_c[128];  // -ln(inv[j])
    Float32LogTable() {
        for (int j = 0; j < 128; ++j) {
            const double centre = 1.0 + (j + 0.5) / 128.0;
            inv[j] = std::nearbyint(0x1p29 / centre) * 0x1p-29;  // in (0.5, 1): 29 significant bits
            log_c[j] = -std::log(inv[j]);
        }
    }
};
const Float32LogTable kFloat32Log;

FCI_INLINE double log_abs_float32(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits &= 0x7fffffffffffffffull;
    const uint64_t j = (bits >> 45) & 127u;
    const uint64_t m_bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    std::memcpy(&m, &m_bits, sizeof m);
    const uint64_t magic_bits = 0x4330000000000000ull | (bits >> 52);  // k as a double: 2^52 + e - 2^52
    double magic;
    std::memcpy(&magic, &magic_bits, sizeof magic);
    const double dk = (magic - 0x1p52) - 1023.0;
    const double r = m * kFloat32Log.inv[j] - 1.0;
    const double q =
        -0.5 + r * (1.0 / 3.0 + r * (-0.25 + r * (0.2 + r * (-1.0 / 6.0 + r * (1.0 / 7.0)))));  // (ln(1+r) - r) / r^2
    return (dk * kLn2Hi + kFloat32Log.log_c[j]) + (r + (r * r * q + dk * kLn2Lo));
}

FCI_INLINE void log_abs_float32_block(const double* x, double* y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = log_abs_float32(x[i]);
}

// ln|x| of every 16-bit pattern's magnitude (index: the pattern without its sign bit), so that the
// logs of a float16 / bfloat16 row are table lookups, no log evaluations at all. Built once per
// dtype on first use (256 KiB each) with the kernel's float64 log of the exact value; entries of
// zero, inf and NaN patterns are never read for finite non-zero values.
struct HalfLogTable {
    double log_abs[1 << 15];
    template <typename Traits>
    explicit HalfLogTable(Traits) {
        for (uint32_t bits = 0; bits < (1u << 15); ++bits) {
            log_abs[bits] = log_abs_one(Traits::decode(static_cast<uint16_t>(bits)));
        }
    }
};

template <typename Traits>
const HalfLogTable& half_log_table() {
    static const HalfLogTable table{Traits{}};  // thread-safe initialisation (C++11)
    return table;
}

// y[i] = ln|x| of 16-bit values given by their order keys (see to_key).
FCI_INLINE void log_abs_half_keys(const uint16_t* keys, const HalfLogTable& table, double* y, int64_t n) {
    const double* logs = table.log_abs;  // (a plain pointer: GCC gathers from it, not from the member array)
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = logs[static_cast<int32_t>(from_key(keys[i]) & 0x7fffu)];
}

// ------------------------------------------------------------------------------------------------
// Exact sum (CPython's math.fsum, Modules/mathmodule.c)
// ------------------------------------------------------------------------------------------------
// Partials are non-overlapping doubles, so finite inputs need at most one per bit position of the
// float64 range (< kFsumPartials); running out of room means the inputs were not finite.
double exact_sum_impl(const double* values, int64_t n, double* p) {
    int64_t count = 0;
    for (int64_t k = 0; k < n; ++k) {
        double x = values[k];
        int64_t i = 0;
        for (int64_t j = 0; j < count; ++j) {
            double y = p[j];
            if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
            const double hi = x + y;
            const double lo = y - (hi - x);
            if (lo != 0.0) p[i++] = lo;
            x = hi;
        }
        count = i;
        if (x != 0.0) {
            if (count == kFsumPartials) return kNaN;
            p[count++] = x;
        }
        if (!std::isfinite(x)) return kNaN;
    }
    double hi = 0.0;
    if (count > 0) {
        hi = p[--count];
        double lo = 0.0;
        // Add partials from the top down while the sum stays exact.
        while (count > 0) {
            const double x = hi;
            const double y = p[--count];
            hi = x + y;
            const double yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        // Round half to even across partials.
        if (count > 0 && ((lo < 0.0 && p[count - 1] < 0.0) || (lo > 0.0 && p[count - 1] > 0.0))) {
            const double y = lo * 2.0;
            const double x = hi + y;
            const double yr = x - hi;
            if (y == yr) hi = x;
        }
    }
    return hi;
}

// ------------------------------------------------------------------------------------------------
// One row
// ------------------------------------------------------------------------------------------------
struct Run {
    int64_t s = 0;  // first member (index into the sorted row)
    int64_t e = 0;  // one past the last member
    FCI_INLINE int64_t size() const { return e - s; }
};

// The sorted row and where its signs change: negatives [0, z0), zeros [z0, z1), positives [z1, n).
struct SortedRow {
    const double* x;
    const double* y;  // ln|x|, meaningless at zeros
    int64_t n;
    int64_t z0;
    int64_t z1;
};

// Output row pointers (node arrays offset to this row). Nodes in columns >= `columns` are walked but
// not written; `needed` tracks one past the deepest column holding a node.
struct RowOut {
    int64_t columns;
    int64_t needed;
    int64_t* count;
    double* mean;
    double* lo;
    double* hi;
    double* slope;
    double* intercept;
    double* r2;
};

struct LineSums {
    double sd = 0.0;   // sum d,       d = y - y_min
    double sdd = 0.0;  // sum d^2
    double srd = 0.0;  // sum rank * d
};

// Members of a single-signed run: magnitudes ascend with the index for positives and fall with it
// for negatives, so rank = first + step * i with (first, step) = (0, 1) or (n - 1, -1).
FCI_INLINE LineSums sums_run(const double* y, int64_t n, bool ascending) {
    const int64_t first = ascending ? 0 : n - 1, step = ascending ? 1 : -1;
    const double y0 = y[first];
    double sd = 0.0, sdd = 0.0, srd = 0.0;
#pragma omp simd reduction(+ : sd, sdd, srd)
    for (int64_t i = 0; i < n; ++i) {
        const double d = y[i] - y0;
        sd += d;
        sdd += d * d;
        srd += static_cast<double>(first + step * i) * d;
    }
    return {sd, sdd, srd};
}

// A node straddling zero (root="mean"): merge the negatives [neg_s, neg_e) read backwards with the
// positives [pos_s, pos_e) to visit magnitudes in ascending order (ties in either order: tied
// magnitudes share their log, so the sums do not depend on it).
FCI_INLINE LineSums sums_merged(const SortedRow& row, int64_t neg_s, int64_t neg_e, int64_t pos_s, int64_t pos_e,
                                double* y_min) {
    const double* x = row.x;
    const double* y = row.y;
    int64_t i = neg_e - 1;
    int64_t j = pos_s;
    *y_min = (-x[i] <= x[j]) ? y[i] : y[j];
    LineSums sums;
    double rank = 0.0;
    auto take = [&](double value) {
        const double d = value - *y_min;
        sums.sd += d;
        sums.sdd += d * d;
        sums.srd += rank * d;
        rank += 1.0;
    };
    while (i >= neg_s && j < pos_e) {
        if (-x[i] <= x[j]) {
            take(y[i--]);
        } else {
            take(y[j++]);
        }
    }
    while (i >= neg_s) take(y[i--]);
    while (j < pos_e) take(y[j++]);
    return sums;
}

// Algorithm 1 on one node from its sums: x_i = step * rank_i, step = 1 / L ("paper") or
// 1 / (L - 1) ("linspace"). With the ranks 0..L-1 centred at mid = (L - 1) / 2,
// Sxx = L (L^2 - 1) / 12 exactly, Sxy = sum rank d - mid sum d, and
// SS_tot = sum d^2 - (sum d)^2 / L, SS_res = SS_tot - Sxy^2 / Sxx. Because d >= 0 with min d = 0,
// both differences lose at most a factor L to cancellation (relative error ~ L * 2^-53).
FCI_INLINE void line_fit(const LineSums& s, int64_t count, double y_min, Grid grid, double* slope, double* intercept,
                         double* r2) {
    if (count == 0) return;  // already NaN
    if (count == 1) {
        *slope = 0.0;
        *intercept = y_min;
        return;  // r2 stays NaN
    }
    const double L = static_cast<double>(count);
    const double step = grid == Grid::Paper ? 1.0 / L : 1.0 / (L - 1.0);
    const double mid = 0.5 * (L - 1.0);
    const double sxx = L * (L * L - 1.0) / 12.0;
    const double sxy = s.srd - mid * s.sd;
    const double per_rank = sxy / sxx;
    const double d_mean = s.sd / L;
    *slope = per_rank / step;
    *intercept = y_min + d_mean - per_rank * mid;
    const double ss_tot = s.sdd - s.sd * d_mean;
    const double ss_res = std::max(ss_tot - sxy * per_rank, 0.0);
    if (s.sdd == 0.0 || ss_tot <= 0.0) {  // all magnitudes equal (d == 0 everywhere)
        *r2 = ss_res == 0.0 ? 1.0 : 0.0;
    } else {
        *r2 = 1.0 - ss_res / ss_tot;
    }
}

// Sum and sum of magnitudes of a run, in SIMD order. A run of one sign needs no second sum: rounding
// commutes with negation, so its sum of magnitudes is exactly |sum|.
FCI_INLINE void run_sums(const double* x, int64_t n, double* sum, double* abs_sum) {
    if (x[0] >= 0.0 || x[n - 1] <= 0.0) {
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) s += x[i];
        *sum = s;
        *abs_sum = std::fabs(s);
        return;
    }
    double s = 0.0, a = 0.0;
#pragma omp simd reduction(+ : s, a)
    for (int64_t i = 0; i < n; ++i) {
        s += x[i];
        a += std::fabs(x[i]);
    }
    *sum = s;
    *abs_sum = a;
}

// The mean of a run as docs/spec.md section 2 defines it (correctly rounded sum / count), or a fast stand-in for it.
struct NodeMean {
    double value;
    double abs_sum;  // sum |x|, for the error bound
    bool exact;      // value is the spec mean itself
};

// The SIMD sum is used unless it cancels (sum|x| > 2 |sum|: a straddling node whose mean would carry
// a large relative error); then the exact sum is taken right away.
FCI_INLINE NodeMean run_mean(const double* x, Run run, double* partials) {
    const double n = static_cast<double>(run.size());
    double sum, abs_sum;
    run_sums(x + run.s, run.size(), &sum, &abs_sum);
    if (abs_sum <= 2.0 * std::fabs(sum)) return {sum / n, abs_sum, false};
    return {exact_sum_impl(x + run.s, run.size(), partials) / n, abs_sum, true};
}

// First index in [s, e) with x >= value (e if none; with `upper`: x > value). Branch-free: the
// halving steps are conditional moves, not branches that mispredict half of the time (a short row
// spends more on those than on its node sums).
template <bool upper = false>
FCI_INLINE int64_t lower_bound(const double* x, int64_t s, int64_t e, double value) {
    int64_t n = e - s;
    if (n <= 0) return s;
    const double* base = x + s;
    while (n > 1) {
        const int64_t half = n / 2;
        const bool before = upper ? base[half] <= value : base[half] < value;
        base = before ? base + half : base;
        n -= half;
    }
    const bool before = upper ? *base <= value : *base < value;
    return (base - x) + before;
}

// Split a run at its spec mean: returns the first index of the upper child (x >= mean). A fast mean
// differs from the spec mean by less than `slack`: the SIMD sum is off by at most
// gamma_{n-1} sum|x| (Higham, Thm 4.4), the divisions add 3u sum|x| / n, doubled for margin (the
// bound of torch_vec.rounding_slack). Only when an element lies that close to the fast mean can its
// side differ; then the mean is made exact (and stored so).
FCI_INLINE int64_t split_at_mean(const SortedRow& row, Run run, NodeMean* mean, double* partials) {
    int64_t p = lower_bound(row.x, run.s, run.e, mean->value);
    if (mean->exact) return p;
    const double n = static_cast<double>(run.size());
    const double slack = 2.0 * (n + 3.0) * kUnitRoundoff * mean->abs_sum / n + kTinySlack;
    const double mu = mean->value;
    const bool close = (p > run.s && mu - row.x[p - 1] <= slack) || (p < run.e && row.x[p] - mu <= slack);
    if (close) {
        mean->value = exact_sum_impl(row.x + run.s, run.size(), partials) / n;
        mean->exact = true;
        p = lower_bound(row.x, run.s, run.e, mean->value);
    }
    return p;
}

// Record one non-empty node into column `column`; returns its mean for the split.
FCI_INLINE NodeMean record_node(const SortedRow& row, Run run, int64_t column, Grid grid, double* partials,
                                RowOut& out) {
    const double* x = row.x;
    const NodeMean mean = run_mean(x, run, partials);
    out.needed = std::max(out.needed, column + 1);
    if (column >= out.columns) return mean;
    out.count[column] = run.size();
    out.mean[column] = mean.value;
    out.lo[column] = x[run.s];
    out.hi[column] = x[run.e - 1];

    // Non-zero members: negatives [neg_s, neg_e), positives [pos_s, pos_e).
    const int64_t neg_s = run.s, neg_e = std::min(run.e, row.z0);
    const int64_t pos_s = std::max(run.s, row.z1), pos_e = run.e;
    const int64_t n_neg = std::max<int64_t>(neg_e - neg_s, 0);
    const int64_t n_pos = std::max<int64_t>(pos_e - pos_s, 0);
    LineSums sums;
    double y_min = kNaN;
    if (n_neg > 0 && n_pos > 0) {
        sums = sums_merged(row, neg_s, neg_e, pos_s, pos_e, &y_min);
    } else if (n_pos > 0) {
        sums = sums_run(row.y + pos_s, n_pos, true);
        y_min = row.y[pos_s];
    } else if (n_neg > 0) {
        sums = sums_run(row.y + neg_s, n_neg, false);
        y_min = row.y[neg_e - 1];
    }
    line_fit(sums, n_neg + n_pos, y_min, grid, out.slope + column, out.intercept + column, out.r2 + column);
    return mean;
}

FCI_INLINE bool splittable(const SortedRow& row, Run run, int level, const FitOptions& options) {
    return run.size() > 0 && run.size() >= options.min_size && level < options.levels &&
           row.x[run.s] != row.x[run.e - 1];
}

// Visit one node: record it and, when it splits, return its children (upper, lower).
FCI_INLINE bool visit(const SortedRow& row, Run run, int level, int64_t column, const FitOptions& options,
                      double* partials, RowOut& out, Run* upper, Run* lower) {
    *upper = Run{};
    *lower = Run{};
    if (run.size() == 0) return false;
    NodeMean mean = record_node(row, run, column, options.grid, partials, out);
    if (!splittable(row, run, level, options)) return false;
    const int64_t p = split_at_mean(row, run, &mean, partials);
    if (column < out.columns) out.mean[column] = mean.value;
    *upper = Run{p, run.e};
    *lower = Run{run.s, p};
    return true;
}

// Chain: level l holds "+"*l (column 2(l-1)) and "-"*l (column 2(l-1)+1); only the upper child of
// the + chain and the lower child of the - chain expand.
FCI_INLINE void walk_chain(const SortedRow& row, Run plus, Run minus, const FitOptions& options, double* partials,
                           RowOut& out) {
    Run upper, lower;
    for (int level = 1; level <= options.levels; ++level) {
        const int64_t column = 2 * (level - 1);
        bool any = false;
        if (visit(row, plus, level, column, options, partials, out, &upper, &lower)) {
            any = true;
        }
        plus = upper;
        if (visit(row, minus, level, column + 1, options, partials, out, &upper, &lower)) {
            any = true;
        }
        minus = lower;
        if (!any) return;
    }
}

// Full tree: level l holds 2^l nodes from column 2^l - 2; node i has children 2i (upper) and
// 2i + 1 (lower). `current` / `next` hold kFullRuns runs each: the deepest level's nodes still
// write their children (2^(levels + 1) of them) into `next`.
FCI_INLINE void walk_full(const SortedRow& row, Run plus, Run minus, const FitOptions& options, double* partials,
                          RowOut& out, Run* current, Run* next) {
    current[0] = plus;
    current[1] = minus;
    for (int level = 1; level <= options.levels; ++level) {
        const int64_t width = int64_t(1) << level;
        const int64_t base = width - 2;
        bool any = false;
        for (int64_t i = 0; i < width; ++i) {
            if (visit(row, current[i], level, base + i, options, partials, out, &next[2 * i], &next[2 * i + 1])) {
                any = true;
            }
        }
        if (!any) return;
        std::swap(current, next);
    }
}

// ALD maximum likelihood (docs/spec.md section 4) of a sorted row x[0..n), exactly as reference.ald_fit: with gaps
// g_i = x_{i+1} - x_i, n beta at x_p = B_{p-1} = sum_{i<p} (i+1) g_i and
// n alpha = A_p = sum_{i>=p} (n-1-i) g_i, accumulated sequentially in the reference's order; the first
// minimum of f(p) = sqrt(A_p / n) + sqrt(B_{p-1} / n) over p = 1..n-2.
//
// Prefix sums: a sequential sum is bound by the latency of its additions, so the running sums of
// kGroup rows are taken in one loop (each row's own order unchanged, the rows' additions overlap).
//
// Search: f costs two divisions and two square roots, so it is evaluated only in blocks of kAldBlock
// order statistics that may hold the minimum. Within a block p0..p1, B grows by at least
// r = (p0+1)/(n-1-p0) times what A loses, so with t = A_p0 - A_p in [0, T], T = A_p0 - A_p1,
//     f(p) >= h(t) = sqrt((A_p0 - t) / n) + sqrt((B_{p0-1} + r t) / n),
// and h is concave, so f >= min(h(0), h(T)) on the whole block. A block is skipped when that bound,
// less its rounding margin, exceeds an objective already computed; the margin covers the rounding of
// the stored sums (relative (n+2)u, sums of non-negative terms) and of the bound itself, so a skipped
// block provably holds no value <= the minimum and the result is the reference's, bit for bit.
constexpr int kGroup = 4;
// Threads take rows kGroupsPerChunk * kGroup (32) at a time: few enough trips to the shared counter,
// small enough chunks that no thread is left with a long serial tail.
constexpr int64_t kGroupsPerChunk = 8;
constexpr int64_t kAldBlock = 16;

// One double per row of a group: the group's prefix sums advance together, one vector addition per
// step, each lane (row) in its own sequential order.
#if defined(FCI_VECTOR_EXTENSIONS)
typedef double GroupLanes __attribute__((vector_size(8 * kGroup)));

template <int i0, int i1, int i2, int i3>
FCI_INLINE GroupLanes shuffle_lanes(GroupLanes a, GroupLanes b) {  // lanes of a then b, numbered 0..7
#if defined(__clang__) || __GNUC__ >= 12
    return __builtin_shufflevector(a, b, i0, i1, i2, i3);
#else
    typedef int64_t Index __attribute__((vector_size(8 * kGroup)));
    return __builtin_shuffle(a, b, Index{i0, i1, i2, i3});
#endif
}

// g[k] holds positions i .. i + 3 of row k; afterwards g[m] holds position i + m of every row.
FCI_INLINE void transpose_lanes(GroupLanes* g) {
    const GroupLanes even01 = shuffle_lanes<0, 4, 2, 6>(g[0], g[1]);
    const GroupLanes odd01 = shuffle_lanes<1, 5, 3, 7>(g[0], g[1]);
    const GroupLanes even23 = shuffle_lanes<0, 4, 2, 6>(g[2], g[3]);
    const GroupLanes odd23 = shuffle_lanes<1, 5, 3, 7>(g[2], g[3]);
    g[0] = shuffle_lanes<0, 1, 4, 5>(even01, even23);
    g[1] = shuffle_lanes<0, 1, 4, 5>(odd01, odd23);
    g[2] = shuffle_lanes<2, 3, 6, 7>(even01, even23);
    g[3] = shuffle_lanes<2, 3, 6, 7>(odd01, odd23);
}
#else
// The same arithmetic, lane by lane (GroupLanes{} is all zeros).
struct GroupLanes {
    double lane[kGroup];
    GroupLanes& operator+=(const GroupLanes& other) {
        for (int k = 0; k < kGroup; ++k) lane[k] += other.lane[k];
        return *this;
    }
    friend GroupLanes operator-(GroupLanes a, const GroupLanes& b) {
        for (int k = 0; k < kGroup; ++k) a.lane[k] -= b.lane[k];
        return a;
    }
    friend GroupLanes operator*(double scale, GroupLanes v) {
        for (int k = 0; k < kGroup; ++k) v.lane[k] = scale * v.lane[k];
        return v;
    }
};

FCI_INLINE void transpose_lanes(GroupLanes* g) {
    for (int m = 0; m < kGroup; ++m) {
        for (int k = m + 1; k < kGroup; ++k) std::swap(g[m].lane[k], g[k].lane[m]);
    }
}
#endif

// below[i * kGroup + k] = B_i (n beta at x[k][i + 1]), above[i * kGroup + k] = A_i (n alpha at
// x[k][i]), i < n - 1: the group's rows interleaved (every x[k] set; rows past the group's end repeat
// one of its rows).
FCI_INLINE void ald_prefix_sums(const double* const* x, int64_t n, double* below, double* above) {
    static_assert(kGroup == 4, "the gaps are transposed in blocks of 4 x 4");
    // B forward: gaps of 4 positions of the 4 rows, transposed so that one vector holds one position
    // of every row; the A-weighted gaps are stored for the pass from the top down.
    GroupLanes b{};
    const auto step = [&](int64_t i, GroupLanes gap) {
        b += static_cast<double>(i + 1) * gap;
        store_vector(below + i * kGroup, b);
        store_vector(above + i * kGroup, static_cast<double>(n - 1 - i) * gap);
    };
    int64_t i = 0;
    for (; i + 4 <= n - 1; i += 4) {
        GroupLanes gaps[kGroup];
        for (int k = 0; k < kGroup; ++k) {
            gaps[k] = load_vector<GroupLanes>(x[k] + i + 1) - load_vector<GroupLanes>(x[k] + i);
        }
        transpose_lanes(gaps);
        for (int m = 0; m < kGroup; ++m) step(i + m, gaps[m]);
    }
    for (; i < n - 1; ++i) {
        step(i, GroupLanes{x[0][i + 1] - x[0][i], x[1][i + 1] - x[1][i], x[2][i + 1] - x[2][i], x[3][i + 1] - x[3][i]});
    }
    GroupLanes a{};
    for (int64_t j = n - 2; j >= 0; --j) {  // A from the top down
        a += load_vector<GroupLanes>(above + j * kGroup);
        store_vector(above + j * kGroup, a);
    }
}

// The candidates of the search: order statistics p_q (q = 0 .. m-1, ascending) with A = n alpha and
// B = n beta there. Every interior order statistic (the sorted row's own prefix sums), or the first
// interior one of each run of equal values (a counted 16-bit row: the objective is constant on a
// run, so its first member is the only one the first minimum can pick).
struct EveryOrderStatistic {  // p_q = q + 1, A = above[p], B = below[p - 1] (one row of a group's sums)
    const double* above;
    const double* below;
    FCI_INLINE double a(int64_t q) const { return above[(q + 1) * kGroup]; }
    FCI_INLINE double b(int64_t q) const { return below[q * kGroup]; }
    FCI_INLINE int64_t position(int64_t q) const { return q + 1; }
};
struct RunStarts {  // explicit arrays
    const double* a_;
    const double* b_;
    const int64_t* position_;
    FCI_INLINE double a(int64_t q) const { return a_[q]; }
    FCI_INLINE double b(int64_t q) const { return b_[q]; }
    FCI_INLINE int64_t position(int64_t q) const { return position_[q]; }
};

FCI_INLINE double ald_objective(double a, double b, double n) {
    return std::sqrt(a / n) + std::sqrt(b / n);
}

// Per-block scratch for the search: 4 arrays of ald_blocks(n) doubles.
FCI_INLINE int64_t ald_blocks(int64_t n) {
    return (n + kAldBlock - 1) / kAldBlock;
}

// The first minimum of the objective over m >= 1 candidates of a row of n values; `b_total` is B at
// the row's last gap (the largest B, for the rounding margin); `scratch` holds 4 * ald_blocks(m)
// doubles. Returns the candidate's index q.
template <typename Candidates>
FCI_INLINE int64_t ald_search(const Candidates& c, int64_t m, int64_t n, double b_total, double* scratch) {
    const double nd = static_cast<double>(n);
    const int64_t blocks = ald_blocks(m);
    double* a0 = scratch;                // A at the block's first candidate
    double* b0 = a0 + ald_blocks(m);     // B there
    double* a1 = b0 + ald_blocks(m);     // A at its last
    double* ratio = a1 + ald_blocks(m);  // r, rounded down
    for (int64_t k = 0; k < blocks; ++k) {
        const int64_t q0 = k * kAldBlock, q1 = std::min(q0 + kAldBlock - 1, m - 1);
        const int64_t p0 = c.position(q0);
        a0[k] = c.a(q0);
        b0[k] = c.b(q0);
        a1[k] = c.a(q1);
        ratio[k] = static_cast<double>(p0 + 1) / static_cast<double>(n - 1 - p0) * (1.0 - 4.0 * kUnitRoundoff);
    }
    // Bounds in units of sqrt(n) f (no divisions; the scaling's rounding is in the margin below).
    double bound = std::numeric_limits<double>::infinity();  // sqrt(n) f at some candidate: >= the minimum
#pragma omp simd reduction(min : bound)
    for (int64_t k = 0; k < blocks; ++k) {
        const double start = std::sqrt(a0[k]) + std::sqrt(b0[k]);                             // h(0)
        const double end = std::sqrt(a1[k]) + std::sqrt(b0[k] + ratio[k] * (a0[k] - a1[k]));  // h(T)
        bound = std::min(bound, start);
        a0[k] = std::min(start, end);  // the block's lower bound, before rounding margins
    }
    const double eps = (nd + 2.0) * kUnitRoundoff;  // relative error of a stored prefix sum
    const double relative = 2.0 * eps + 32.0 * kUnitRoundoff;
    const double absolute = 2.0 * std::sqrt(eps * b_total);
    const double cutoff = bound * (1.0 + relative);

    double best = std::numeric_limits<double>::infinity();
    int64_t best_q = 0;
    for (int64_t k = 0; k < blocks; ++k) {
        if (a0[k] * (1.0 - relative) - absolute > cutoff) continue;  // cannot hold the minimum
        const int64_t q0 = k * kAldBlock, q1 = std::min(q0 + kAldBlock - 1, m - 1);
        double values[kAldBlock];
#pragma omp simd
        for (int64_t j = 0; j < kAldBlock; ++j) {
            const int64_t q = std::min(q0 + j, q1);
            values[j] = ald_objective(c.a(q), c.b(q), nd);
        }
        for (int64_t j = 0; j <= q1 - q0; ++j) {
            if (values[j] < best) {  // strict: the first minimum wins
                best = values[j];
                best_q = q0 + j;
            }
        }
    }
    return best_q;
}

// loc, scale, kappa, loglik from the chosen order statistic's value and its A, B (docs/spec.md section 4).
FCI_INLINE void ald_parameters(double value_at, double a, double b, int64_t n, double* loc, double* scale,
                               double* kappa, double* loglik) {
    const double nd = static_cast<double>(n);
    // Fourth roots from the square roots (docs/spec.md section 4): alpha * beta itself would overflow
    // or underflow for rows scaled by 1e+-155, while sqrt(alpha) sqrt(beta) stays in range.
    const double root_alpha = std::sqrt(a / nd), root_beta = std::sqrt(b / nd);
    const double value = root_alpha + root_beta;  // ald_objective(a, b, nd)
    *loc = value_at;
    *kappa = std::sqrt(root_beta / root_alpha);
    *scale = std::sqrt(root_alpha) * std::sqrt(root_beta) * value;
    *loglik = -nd * (1.0 + 2.0 * std::log(value));
}

// The fit from one sorted row's prefix sums (n >= 3): below / above point at the row's lane of its
// group's interleaved sums (ald_prefix_sums); `scratch` holds 4 * ald_blocks(n) doubles.
FCI_INLINE void ald_from_sums(const double* x, int64_t n, const double* below, const double* above, double* scratch,
                              double* loc, double* scale, double* kappa, double* loglik) {
    const EveryOrderStatistic candidates{above, below};
    const int64_t q = ald_search(candidates, n - 2, n, below[(n - 2) * kGroup], scratch);
    ald_parameters(x[candidates.position(q)], candidates.a(q), candidates.b(q), n, loc, scale, kappa, loglik);
}

// The same fit from a counted row (n >= 3): its runs of equal values value[i] at ranks
// first[i] .. first[i + 1] - 1, i < runs. Only the gaps between runs are non-zero, and adding the
// zero terms of the other gaps changes no sequential sum, so the prefix sums over runs are the
// per-element ones bit for bit: B before run i = sum_{j<i} first[j+1] (value[j+1] - value[j]),
// A at run i = sum_{j>=i} (n - first[j+1]) (value[j+1] - value[j]) (summed from the top down).
// `a`, `b` and `position` hold `runs` entries each; scratch as for ald_from_sums.
FCI_INLINE void ald_from_runs(const double* value, const int64_t* first, int64_t runs, int64_t n, double* a, double* b,
                              int64_t* position, double* scratch, double* loc, double* scale, double* kappa,
                              double* loglik) {
    // A at every run, from the top down (in place in `a`, read off below before it is overwritten).
    double above = 0.0;
    a[runs - 1] = 0.0;
    for (int64_t i = runs - 2; i >= 0; --i) {
        above += static_cast<double>(n - first[i + 1]) * (value[i + 1] - value[i]);
        a[i] = above;
    }
    // Candidates: the first interior rank of each run that has one (m <= i: a[i] is read first).
    int64_t m = 0;
    double below = 0.0;
    for (int64_t i = 0; i < runs; ++i) {
        if (i > 0) below += static_cast<double>(first[i]) * (value[i] - value[i - 1]);
        const int64_t p = std::max<int64_t>(first[i], 1);
        if (p <= std::min<int64_t>(first[i + 1] - 1, n - 2)) {
            a[m] = a[i];
            b[m] = below;
            position[m] = p;
            ++m;
        }
    }
    const double b_total = below;
    const RunStarts candidates{a, b, position};
    const int64_t best = ald_search(candidates, m, n, b_total, scratch);
    // The value at the chosen rank: its run is the last one starting at or before it.
    const int64_t p = position[best];
    const int64_t run = std::upper_bound(first, first + runs, p) - first - 1;
    ald_parameters(value[run], a[best], b[best], n, loc, scale, kappa, loglik);
}

// ------------------------------------------------------------------------------------------------
// Counting fits of 16-bit rows (fit.h, "Counting fits of 16-bit heads")
// ------------------------------------------------------------------------------------------------
constexpr int64_t kKeys16 = int64_t(1) << 16;
// Rows at least this long are counted; shorter ones are radix sorted (two 8-bit passes). Measured
// (one thread, Laplace rows): the buckets between a row's smallest and largest key number 2-8 per
// value at n = 16384-4096 (weight rows span many binades), and scanning them costs more than two
// scatter passes until the rows are long; bfloat16 (7 fraction bits) rows repeat values sooner than
// float16 (10 bits) rows, so their runs, which the expansion and the ALD walk, are fewer earlier.
// bfloat16 wins from 8192 values (4.4 vs 4.8 ns per value; 3.1 vs 4.9 at 16384), float16 from 32768
// (4.0 vs 4.9; at 16384 it still loses, 5.6 vs 4.9).
constexpr int64_t kCountingRowBFloat16 = 8192;
constexpr int64_t kCountingRowFloat16 = 32768;

FCI_INLINE bool counted_rows(const HeadView& head, const FitOptions& options) {
    if (head.dtype != DType::Float16 && head.dtype != DType::BFloat16) return false;
    if (options.counting_from > 0) return head.cols >= options.counting_from;
    return head.cols >= (head.dtype == DType::BFloat16 ? kCountingRowBFloat16 : kCountingRowFloat16);
}

// Counts the keys of one 16-bit row into `counts` (kKeys16 buckets, all zero on entry and again on
// return) and lists its runs of equal keys in ascending order: run_key[i], first rank first[i]
// (first[runs] = n). Returns the number of runs. Only the buckets between the row's smallest and
// largest key are read, 16 at a time, skipping empty groups.
FCI_INLINE int64_t count_row(const unsigned char* src, int64_t n, int64_t col_stride, uint16_t* keys, uint32_t* counts,
                             uint16_t* run_key, int64_t* first) {
    if (col_stride == 2) {
        std::memcpy(keys, src, 2 * n);
    } else {
        for (int64_t j = 0; j < n; ++j) std::memcpy(keys + j, src + j * col_stride, 2);
    }
    uint32_t smallest = 0xffffu, largest = 0;
#pragma omp simd reduction(min : smallest) reduction(max : largest)
    for (int64_t j = 0; j < n; ++j) {
        const uint16_t key = to_key(keys[j]);
        keys[j] = key;
        smallest = std::min<uint32_t>(smallest, key);
        largest = std::max<uint32_t>(largest, key);
    }
    for (int64_t j = 0; j < n; ++j) ++counts[keys[j]];
    int64_t runs = 0, rank = 0;
    for (uint32_t k0 = smallest & ~15u; k0 <= largest; k0 += 16) {
        uint32_t any = 0;
        for (uint32_t i = 0; i < 16; ++i) any |= counts[k0 + i];
        if (any == 0) continue;
        for (uint32_t i = 0; i < 16; ++i) {  // branch-free: an empty bucket's entry is overwritten
            const uint32_t c = counts[k0 + i];
            run_key[runs] = static_cast<uint16_t>(k0 + i);
            first[runs] = rank;
            rank += c;
            runs += c != 0;
            counts[k0 + i] = 0;
        }
    }
    first[runs] = rank;
    return runs;
}

// Writes `value` at out[0 .. count) in blocks of kExpandBlock, so possibly up to out[count + 7]: the
// arrays expanded into have kExpandBlock spare entries, and later runs overwrite the excess. Runs
// of weight rows are short (1-10 values), so one block per run is the rule and the loop's branch
// is predictable, unlike a fill of exactly `count` values.
constexpr int64_t kExpandBlock = 8;
FCI_INLINE void expand_run(double* out, int64_t count, double value) {
    int64_t at = 0;
    do {
#pragma omp simd
        for (int64_t i = 0; i < kExpandBlock; ++i) out[at + i] = value;
        at += kExpandBlock;
    } while (at < count);
}

// The runs' values, and (unless x is null) the sorted row x[0..n) expanded from them.
template <typename Traits>
FCI_INLINE void decode_runs(const uint16_t* run_key, const int64_t* first, int64_t runs, double* value, double* x) {
#pragma omp simd
    for (int64_t i = 0; i < runs; ++i) value[i] = Traits::decode(from_key(run_key[i]));
    if (x == nullptr) return;
    for (int64_t i = 0; i < runs; ++i) expand_run(x + first[i], first[i + 1] - first[i], value[i]);
}

// y[0..n) = ln|x| expanded from the runs (one table lookup per run).
FCI_INLINE void log_abs_runs(const uint16_t* run_key, const int64_t* first, int64_t runs, const HalfLogTable& table,
                             double* y) {
    for (int64_t i = 0; i < runs; ++i) {
        expand_run(y + first[i], first[i + 1] - first[i], table.log_abs[from_key(run_key[i]) & 0x7fffu]);
    }
}

// Offsets of one thread's scratch arrays inside its block.
struct Layout {
    int64_t keys_a, keys_b, y, histogram, partials, runs, ald_search, total;
    int64_t x[kGroup], below, above;
    // Counted 16-bit rows: the key counts (zero between rows) and the runs of equal values.
    int64_t counts, run_key, run_first, run_value, run_a, run_b, run_position;

    explicit Layout(int64_t cols) {
        int64_t at = 0;
        auto take = [&](int64_t bytes) {
            const int64_t start = at;
            at += (bytes + kAlign - 1) / kAlign * kAlign;
            return start;
        };
        keys_a = take(8 * cols);
        keys_b = take(8 * cols);
        y = take(8 * (cols + kExpandBlock));
        for (int k = 0; k < kGroup; ++k) {
            x[k] = take(8 * (cols + kExpandBlock));
        }
        below = take(8 * kGroup * cols);
        above = take(8 * kGroup * cols);
        histogram = take(4 * kMaxHistogram);
        partials = take(8 * kFsumPartials);
        runs = take(2 * sizeof(Run) * kFullRuns);
        ald_search = take(8 * 4 * ald_blocks(cols));
        counts = take(4 * kKeys16);
        run_key = take(2 * (cols + 16));
        run_first = take(8 * (cols + 16));
        run_value = take(8 * cols);
        run_a = take(8 * cols);
        run_b = take(8 * cols);
        run_position = take(8 * cols);
        total = at;
    }
};

FCI_INLINE RowOut row_out(const FitOutput& out, int64_t r) {
    const int64_t at = r * out.columns;
    return {out.columns,        0,          out.count + at, out.mean + at, out.lo + at, out.hi + at, out.slope + at,
            out.intercept + at, out.r2 + at};
}

// Load one row, sort it, and decode it into x (float64, ascending); returns the sorted keys.
template <typename Traits>
FCI_INLINE const void* load_sorted(const unsigned char* src, int64_t cols, int64_t col_stride, unsigned char* block,
                                   const Layout& layout, double* x, SortMethod method) {
    using Bits = typename Traits::Bits;
    Bits* keys = reinterpret_cast<Bits*>(block + layout.keys_a);
    Bits* spare = reinterpret_cast<Bits*>(block + layout.keys_b);
    if (col_stride == static_cast<int64_t>(sizeof(Bits))) {
        std::memcpy(keys, src, sizeof(Bits) * cols);
    } else {
        for (int64_t j = 0; j < cols; ++j) std::memcpy(keys + j, src + j * col_stride, sizeof(Bits));
    }
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) keys[j] = to_key(keys[j]);
    const Bits* sorted = sort_keys(keys, spare, cols, reinterpret_cast<uint32_t*>(block + layout.histogram), method);
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) x[j] = Traits::decode(from_key(sorted[j]));
    return sorted;
}

FCI_INLINE const void* sort_row(const HeadView& head, int64_t r, unsigned char* block, const Layout& layout, double* x,
                                SortMethod method = SortMethod::Auto) {
    const unsigned char* src = head.data + r * head.row_stride;
    switch (head.dtype) {
        case DType::Float16:
            return load_sorted<Float16Traits>(src, head.cols, head.col_stride, block, layout, x, method);
        case DType::BFloat16:
            return load_sorted<BFloat16Traits>(src, head.cols, head.col_stride, block, layout, x, method);
        case DType::Float32:
            return load_sorted<Float32Traits>(src, head.cols, head.col_stride, block, layout, x, method);
        case DType::Float64:
            return load_sorted<Float64Traits>(src, head.cols, head.col_stride, block, layout, x, method);
    }
    return nullptr;  // unreachable: every dtype is handled above
}

// y = ln|x| of a sorted row: x (float64) and its sorted keys in the row's own dtype.
FCI_INLINE void log_abs_row(DType dtype, const double* x, const void* keys, double* y, int64_t n) {
    switch (dtype) {
        case DType::Float16:
            return log_abs_half_keys(static_cast<const uint16_t*>(keys), half_log_table<Float16Traits>(), y, n);
        case DType::BFloat16:
            return log_abs_half_keys(static_cast<const uint16_t*>(keys), half_log_table<BFloat16Traits>(), y, n);
        case DType::Float32:
            return log_abs_float32_block(x, y, n);
        case DType::Float64:
            return log_abs_block(x, y, n);
    }
}

// Record the whole split tree of row r from its sorted values x and logs y; returns one past its
// deepest node's column.
FCI_INLINE int64_t fit_tree(int64_t r, int64_t n, const FitOptions& options, const FitOutput& out, unsigned char* block,
                            const Layout& layout, const double* x, const double* y) {
    SortedRow row{x, y, n, 0, 0};
    row.z0 = lower_bound(x, 0, n, 0.0);
    row.z1 = lower_bound<true>(x, row.z0, n, 0.0);
    double* partials = reinterpret_cast<double*>(block + layout.partials);

    RowOut o = row_out(out, r);
    std::fill(o.count, o.count + out.columns, int64_t(0));
    for (double* field : {o.mean, o.lo, o.hi, o.slope, o.intercept, o.r2}) {
        std::fill(field, field + out.columns, kNaN);
    }

    Run plus, minus;
    if (options.root == Root::Zero) {
        plus = Run{row.z1, n};
        minus = Run{0, row.z0};
    } else {
        NodeMean mean = run_mean(x, Run{0, n}, partials);
        const int64_t p = split_at_mean(row, Run{0, n}, &mean, partials);
        plus = Run{p, n};
        minus = Run{0, p};
    }
    if (options.tree == Tree::Chain) {
        walk_chain(row, plus, minus, options, partials, o);
    } else {
        Run* runs = reinterpret_cast<Run*>(block + layout.runs);
        walk_full(row, plus, minus, options, partials, o, runs, runs + kFullRuns);
    }
    return o.needed;
}

// The runs of a counted 16-bit row (see count_row), in the thread's scratch.
struct CountedRow {
    uint16_t* key;
    int64_t* first;
    double* value;
    int64_t runs = 0;

    CountedRow(unsigned char* block, const Layout& layout)
        : key(reinterpret_cast<uint16_t*>(block + layout.run_key)),
          first(reinterpret_cast<int64_t*>(block + layout.run_first)),
          value(reinterpret_cast<double*>(block + layout.run_value)) {}
};

// Count row r into its runs and (unless x is null) expand the sorted row x[0..n) from them.
FCI_INLINE void count_sorted(const HeadView& head, int64_t r, unsigned char* block, const Layout& layout,
                             CountedRow& row, double* x) {
    row.runs = count_row(head.data + r * head.row_stride, head.cols, head.col_stride,
                         reinterpret_cast<uint16_t*>(block + layout.keys_a),
                         reinterpret_cast<uint32_t*>(block + layout.counts), row.key, row.first);
    if (head.dtype == DType::Float16) {
        decode_runs<Float16Traits>(row.key, row.first, row.runs, row.value, x);
    } else {
        decode_runs<BFloat16Traits>(row.key, row.first, row.runs, row.value, x);
    }
}

// The ALD of a counted row from its runs (docs/spec.md section 4).
FCI_INLINE void ald_counted(const CountedRow& row, int64_t n, int64_t r, const FitOutput& out, unsigned char* block,
                            const Layout& layout) {
    if (n < 3) {
        out.loc[r] = out.scale[r] = out.kappa[r] = out.loglik[r] = kNaN;
        return;
    }
    ald_from_runs(row.value, row.first, row.runs, n, reinterpret_cast<double*>(block + layout.run_a),
                  reinterpret_cast<double*>(block + layout.run_b),
                  reinterpret_cast<int64_t*>(block + layout.run_position),
                  reinterpret_cast<double*>(block + layout.ald_search), out.loc + r, out.scale + r, out.kappa + r,
                  out.loglik + r);
}

// The goodness of fit (docs/spec.md section 7) of row r, sorted in x[0..n), once its ALD is stored.
FCI_INLINE void store_gof(const double* x, int64_t n, int64_t r, const FitOutput& out) {
    const RowGof gof = row_gof(x, n, out.loc[r], out.scale[r], out.kappa[r]);
    out.loglik_laplace[r] = gof.loglik_laplace;
    out.loglik_normal[r] = gof.loglik_normal;
    out.ks[r] = gof.ks;
}

// Rows r0 .. r0 + rows - 1 (rows <= kGroup); returns one past the deepest node column.
FCI_ROW_KERNEL int64_t fit_group(const HeadView& head, int64_t r0, int rows, const FitOptions& options,
                                 const FitOutput& out, unsigned char* block, const Layout& layout, PhaseTimes* times) {
    PhaseClock clock(times);
    double* x[kGroup] = {};
    double* below = reinterpret_cast<double*>(block + layout.below);
    double* above = reinterpret_cast<double*>(block + layout.above);
    int64_t needed = 0;
    const int64_t n = head.cols;
    double* y = reinterpret_cast<double*>(block + layout.y);
    const bool counted = counted_rows(head, options);
    CountedRow runs(block, layout);
    for (int k = 0; k < rows; ++k) {
        x[k] = reinterpret_cast<double*>(block + layout.x[k]);
        const void* keys = nullptr;
        if (counted) {
            count_sorted(head, r0 + k, block, layout, runs, options.ald_only ? nullptr : x[k]);
        } else {
            keys = sort_row(head, r0 + k, block, layout, x[k]);
        }
        clock.lap(&PhaseTimes::sort);
        if (!options.ald_only) {
            if (counted) {
                const HalfLogTable& table =
                    head.dtype == DType::Float16 ? half_log_table<Float16Traits>() : half_log_table<BFloat16Traits>();
                log_abs_runs(runs.key, runs.first, runs.runs, table, y);
            } else {
                log_abs_row(head.dtype, x[k], keys, y, n);
            }
            clock.lap(&PhaseTimes::logs);
            needed = std::max(needed, fit_tree(r0 + k, n, options, out, block, layout, x[k], y));
            clock.lap(&PhaseTimes::tree);
            // The whole sorted row is at hand here: x[k][0..n) ascending, y = ln|x|, and for a counted
            // row also its runs (value, first rank). The goodness of fit (csrc/gof.h) sweeps it once
            // the row's ALD is known: below for a counted row, after the group's ALD otherwise.
        }
        if (counted) {  // a counted row's runs are overwritten by the next row: its ALD now
            ald_counted(runs, n, r0 + k, out, block, layout);
            clock.lap(&PhaseTimes::ald);
            if (out.ks != nullptr && !options.ald_only) {
                store_gof(x[k], n, r0 + k, out);
                clock.lap(&PhaseTimes::gof);
            }
        }
    }
    if (counted) return needed;
    if (n < 3) {
        for (int k = 0; k < rows; ++k) {
            out.loc[r0 + k] = out.scale[r0 + k] = out.kappa[r0 + k] = out.loglik[r0 + k] = kNaN;
            if (out.ks != nullptr) out.loglik_laplace[r0 + k] = out.loglik_normal[r0 + k] = out.ks[r0 + k] = kNaN;
        }
        return needed;
    }
    for (int k = rows; k < kGroup; ++k) x[k] = x[0];  // a short group's spare lanes repeat its first row
    ald_prefix_sums(x, n, below, above);
    for (int k = 0; k < rows; ++k) {
        const int64_t r = r0 + k;
        ald_from_sums(x[k], n, below + k, above + k, reinterpret_cast<double*>(block + layout.ald_search), out.loc + r,
                      out.scale + r, out.kappa + r, out.loglik + r);
    }
    clock.lap(&PhaseTimes::ald);
    if (out.ks != nullptr) {
        for (int k = 0; k < rows; ++k) store_gof(x[k], n, r0 + k, out);  // one more sweep of each sorted row
        clock.lap(&PhaseTimes::gof);
    }
    return needed;
}

}  // namespace

int dtype_size(DType dtype) {
    switch (dtype) {
        case DType::Float16:
        case DType::BFloat16:
            return 2;
        case DType::Float32:
            return 4;
        case DType::Float64:
            return 8;
    }
    return 0;
}

int64_t n_columns(Tree tree, int levels) {
    return tree == Tree::Chain ? 2 * int64_t(levels) : (int64_t(2) << levels) - 2;
}

Workspace::Workspace(int64_t cols, int threads) {
#ifdef _OPENMP
    threads_ = threads > 0 ? threads : omp_get_max_threads();
#else
    threads_ = 1;
    (void)threads;
#endif
    stride_ = Layout(cols).total;
    const size_t bytes = static_cast<size_t>(stride_) * static_cast<size_t>(threads_);
    base_ = static_cast<unsigned char*>(::operator new(bytes, std::align_val_t(kAlign)));  // throws bad_alloc
}

Workspace::~Workspace() {
    ::operator delete(base_, std::align_val_t(kAlign));
}

int64_t fit_rows(const HeadView& head, const FitOptions& options, const FitOutput& out, Workspace& workspace,
                 PhaseTimes* times) {
    const Layout layout(head.cols);
    // Waking a thread costs more than fitting a few thousand values: small blocks use fewer threads.
    const int64_t useful = std::max<int64_t>(1, head.rows * head.cols / kMinValuesPerThread);
    const int threads =
        static_cast<int>(std::min<int64_t>({workspace.threads(), (head.rows + kGroup - 1) / kGroup, useful}));
    int64_t needed = 0;
#pragma omp parallel num_threads(threads) reduction(max : needed)
    {
#ifdef _OPENMP
        unsigned char* block = workspace.thread_block(omp_get_thread_num());
#else
        unsigned char* block = workspace.thread_block(0);
#endif
        if (counted_rows(head, options)) std::memset(block + layout.counts, 0, 4 * kKeys16);
        PhaseTimes mine;
        const int64_t groups = (head.rows + kGroup - 1) / kGroup;
#pragma omp for schedule(dynamic, kGroupsPerChunk) nowait
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t r0 = g * kGroup;
            const int rows = static_cast<int>(std::min<int64_t>(kGroup, head.rows - r0));
            needed = std::max(
                needed, fit_group(head, r0, rows, options, out, block, layout, times != nullptr ? &mine : nullptr));
        }
        if (times != nullptr) {
#pragma omp critical(fcinterp_phase_times)
            {
                times->sort += mine.sort;
                times->logs += mine.logs;
                times->tree += mine.tree;
                times->ald += mine.ald;
                times->gof += mine.gof;
            }
        }
    }
    return needed;
}

double exact_sum(const double* values, int64_t n, double* partials) {
    return exact_sum_impl(values, n, partials);
}

FCI_ROW_KERNEL void log_abs(const double* x, double* y, int64_t n) {
    log_abs_block(x, y, n);
}

FCI_ROW_KERNEL void log_abs_float32(const double* x, double* y, int64_t n) {
    log_abs_float32_block(x, y, n);
}

FCI_ROW_KERNEL void exp_nonpositive_block(const double* a, double* y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = exp_nonpositive(a[i]);
}

FCI_ROW_KERNEL void sort_rows(const HeadView& head, SortMethod method, double* out) {
    const Layout layout(head.cols);
    Workspace workspace(head.cols, 1);
    for (int64_t r = 0; r < head.rows; ++r)
        sort_row(head, r, workspace.thread_block(0), layout, out + r * head.cols, method);
}

const char* sort_method(DType dtype, int64_t cols) {
    if (cols <= kInsertionSortMax) return "insertion";
    switch (dtype) {
        case DType::Float16:
        case DType::BFloat16:
            return network_sorts<uint16_t>(cols) ? "network" : "radix";
        case DType::Float32:
            return network_sorts<uint32_t>(cols) ? "network" : "radix";
        case DType::Float64:
            return "radix";
    }
    return "radix";
}

bool network_sort_available() {
    return kNetworkSort;
}

const char* simd_target() {
#if defined(FCI_NATIVE)
    return "native";
#elif defined(FCI_TARGET_CLONES)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
    return "default";
#else
    return "default";
#endif
}

}  // namespace fcinterp
