// fcinterp_fast C++ kernels: docs/spec.md sections 2-4 for every row of a classifier head, on raw pointers.
//
// One call fits a block of R rows of a (R, D) head. Per row, in one pass over per-thread scratch:
// load the row in its own dtype (float16 / bfloat16 / float32 / float64, any strides), radix sort the
// float bit patterns (or count them: "Counting fits of 16-bit heads" below), decode to float64 and take
// ln|x| (a table for 16-bit dtypes, no log calls), walk the split tree (chain or full, root at
// zero or at the row mean) writing every node's count / mean / min / max / line fit, and fit the ALD
// by maximum likelihood. Rows run in parallel (OpenMP); nothing is allocated per row.
//
// Exactness (the two readings fixed in fcinterp_fast/backends/reference.py):
// * A split threshold is the correctly rounded float64 sum of the node divided once by its count.
//   The kernel sums in SIMD order, bounds the error, and only when some element lies within that
//   bound of the computed mean does it recompute the sum exactly (Shewchuk / math.fsum). Every
//   membership therefore equals the reference's; nothing is left ambiguous. The reported mean is
//   the fast one where no exact sum was needed (within that bound; docs/spec.md section 2).
// * The line fit works on d = y - y_min. A node whose magnitudes are all equal gives slope 0,
//   intercept y_0 and r2 = 1 exactly.
// * The ALD prefix sums are accumulated sequentially in the reference's order with no FMA
//   contraction (the build passes -ffp-contract=off), and the search for the first minimum skips only
//   blocks it proves cannot hold it; the objective is formed with correctly rounded divisions and
//   square roots, as the reference does in plain Python floats, so the chosen order statistic (loc)
//   is the reference's bit for bit, even on likelihoods flat to the last bit. kappa and scale come
//   from the square roots (sqrt(rb / ra), sqrt(ra) sqrt(rb) (ra + rb)): finite for rows scaled by
//   1e+-155 and beyond, where (alpha beta)^(1/4) over- or underflows.
//
// Counting fits of 16-bit heads
// -----------------------------
// A float16 / bfloat16 row holds at most 2^16 distinct bit patterns, so its fit needs no comparison
// sort, no log evaluation and no per-element ALD walk. With n values per row:
// 1. Keys. k = to_key(bits): negative patterns with every bit flipped, non-negative ones with the
//    sign bit set, so that unsigned order is value order (-0.0 just before +0.0; they compare equal).
// 2. Count. c[k] += 1 over the row (2^16 buckets kept zero between rows), then one pass over the
//    buckets from the row's smallest to its largest key lists the runs of equal values in ascending
//    order: key u_i, count c_i, first rank s_i = c_0 + ... + c_{i-1} (s_U = n), and clears them.
//    Short rows instead radix sort their keys (two 8-bit passes): weight rows span many binades,
//    so the buckets between the extreme keys number 2-8 per value at n = 16384-4096 and 60 at 512.
// 3. Values and logs. v_i = decode(u_i) (exact in float64), ln|v_i| from a table of ln|x| for every
//    pattern without its sign (2^15 float64 entries per dtype, built once). The sorted row x and
//    its logs y are the runs expanded (x[s_i .. s_{i+1}) = v_i), so the split tree is walked on
//    exactly the arrays a comparison sort gives; a per-row sweep over the sorted row (further
//    statistics) reads x, or the runs with their cumulative counts s_i.
// 4. Split tree. Unchanged (node means are exact, see above): it reads x and y only.
// 5. ALD. The gaps x_{j+1} - x_j are zero inside a run, and adding a zero term changes no
//    sequential float64 sum, so the prefix sums over the runs are the per-element ones bit for bit:
//        B before run i = sum_{j<i} s_{j+1} (v_{j+1} - v_j)          (n beta, summed from the bottom),
//        A at run i     = sum_{j>=i} (n - s_{j+1}) (v_{j+1} - v_j)   (n alpha, summed from the top),
//    with the weights of the per-element sums at the run boundaries (rank j + 1 = s_{j+1}). The
//    objective sqrt(A/n) + sqrt(B/n) is constant on a run, so the first minimum can only be the
//    first interior rank p = max(s_i, 1) <= min(s_{i+1} - 1, n - 2) of a run: U candidates instead
//    of n - 2, searched with the same block bounds (positions p), and loc = v_i.
// Used for bfloat16 rows of >= 8192 values and float16 rows of >= 32768 (measured: float16 has 3
// more fraction bits, so its runs are shorter and counting pays later); the FitOptions hook
// counting_from moves the threshold (tests compare the two paths bit for bit).
#pragma once

#include <cstdint>

namespace fcinterp {

enum class DType : int { Float16 = 0, BFloat16 = 1, Float32 = 2, Float64 = 3 };
enum class Tree : int { Chain = 0, Full = 1 };
enum class Root : int { Zero = 0, Mean = 1 };
enum class Grid : int { Paper = 0, Linspace = 1 };

// Deepest chain (docs/spec.md section 2 allows capping at 64 levels) and deepest full tree.
constexpr int kMaxChainLevels = 64;
constexpr int kMaxFullLevels = 10;

// Bytes of one element of `dtype` (2, 2, 4 or 8).
int dtype_size(DType dtype);

// Node columns of a tree with `levels` levels: 2 * levels (chain) or 2^(levels+1) - 2 (full).
int64_t n_columns(Tree tree, int levels);

struct FitOptions {
    Tree tree = Tree::Chain;
    Root root = Root::Zero;
    Grid grid = Grid::Paper;
    int64_t min_size = 20;         // split a node only when it has at least this many members
    int levels = kMaxChainLevels;  // deepest level produced (1-based)
    bool ald_only = false;         // sort and ALD only, no logs and no tree (timing the ALD part alone)
    int64_t counting_from = 0;     // 16-bit rows of at least this many values are counted; 0: the measured
                                   // defaults (see "Counting fits of 16-bit heads"); tests set 1
};

// The (rows, cols) head, read in place. Element (r, j) lies at data + r * row_stride + j * col_stride
// (strides in bytes, any sign, need not be multiples of the element size).
struct HeadView {
    const unsigned char* data = nullptr;
    DType dtype = DType::Float32;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t row_stride = 0;
    int64_t col_stride = 0;
};

// Where the results go; every array is C-contiguous. Node arrays are (rows, columns) with
// 1 <= columns <= n_columns(tree, levels) (nodes in later columns are not written: a caller that
// expects shallow chains allocates fewer columns and checks the count fit_rows returns); ALD arrays
// are (rows,). The kernel writes every entry: absent nodes get count 0 and NaN statistics.
struct FitOutput {
    int64_t columns = 0;
    int64_t* count = nullptr;
    double* mean = nullptr;
    double* lo = nullptr;
    double* hi = nullptr;
    double* slope = nullptr;
    double* intercept = nullptr;
    double* r2 = nullptr;
    double* loc = nullptr;
    double* scale = nullptr;
    double* kappa = nullptr;
    double* loglik = nullptr;
};

// Per-thread working memory, allocated once per call (never per row).
class Workspace {
  public:
    Workspace(int64_t cols, int threads);  // threads <= 0: the OpenMP default
    ~Workspace();
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    unsigned char* thread_block(int thread) const { return base_ + thread * stride_; }
    int threads() const { return threads_; }

  private:
    unsigned char* base_ = nullptr;
    int64_t stride_ = 0;
    int threads_ = 1;
};

// Seconds spent in each phase of the row kernel, summed over rows and threads (CPU time): sort (load,
// sort, decode to float64), logs (ln|x|), tree (split walk and node statistics), ald (prefix sums and
// the search). For the benchmark's breakdown; reading the clock costs ~4 calls per row.
struct PhaseTimes {
    double sort = 0.0;
    double logs = 0.0;
    double tree = 0.0;
    double ald = 0.0;
};

// Fit every row of `head` into `out`; returns the number of node columns the results need (one past
// the deepest node any row has), which exceeds out.columns when nodes were left out. Preconditions
// (checked by the bindings): rows >= 1, 1 <= cols < 2^31, 1 <= levels <= kMaxChainLevels
// (kMaxFullLevels for full trees), min_size >= 0, 1 <= out.columns <= n_columns(tree, levels)
// (with ald_only: out.columns == 0 and no node arrays),
// `workspace` built for `cols`; rows run on the workspace's threads. Non-finite values do not crash
// the kernel but give meaningless results (the Python layer rejects them first).
// With `times`, also adds each phase's seconds to it.
int64_t fit_rows(const HeadView& head, const FitOptions& options, const FitOutput& out, Workspace& workspace,
                 PhaseTimes* times = nullptr);

// Test hooks for the building blocks.
// Correctly rounded sum of n doubles (Shewchuk's algorithm exactly as CPython's math.fsum); NaN if
// the values are not finite. `partials` needs kFsumPartials doubles.
constexpr int64_t kFsumPartials = 2112;
double exact_sum(const double* values, int64_t n, double* partials);
// y[i] = ln|x[i]| for finite non-zero x (within 1 ulp); the vectorised log the kernel uses.
void log_abs(const double* x, double* y, int64_t n);
// Name of the instruction set the dispatcher picked on this CPU ("x86-64-v4", "x86-64-v3",
// "default" (baseline) or "native").
const char* simd_target();

}  // namespace fcinterp
