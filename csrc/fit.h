// fcinterp_fast C++ kernels: docs/spec.md sections 2-4 and 7 for every row of a classifier head, on raw pointers.
//
// One call fits a block of R rows of a (R, D) head. Per row, in one pass over per-thread scratch:
// load the row in its own dtype (float16 / bfloat16 / float32 / float64, any strides), sort the
// float bit patterns (a sorting network for short rows, a radix sort for the others: fit.cpp), or
// count them ("Counting fits of 16-bit heads" below and in docs/spec.md), decode to float64 and
// take ln|x| (a table for 16-bit dtypes, no log calls), walk the split tree (chain or full, root at
// zero or at the row mean) writing every node's count / mean / min / max / line fit, fit the ALD by
// maximum likelihood, and sweep the sorted row once more for its goodness of fit (csrc/gof.h,
// docs/spec.md section 7). Rows run in parallel (OpenMP); nothing is allocated per row.
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
// The algorithm is written down once, for every backend, in docs/spec.md ("Counting fits of 16-bit
// heads", end of section 4): count the order-preserving keys of a float16 / bfloat16 row, list the
// occupied keys as runs (value v_i, count c_i, first rank s_i), and take every statistic from them.
// What this kernel does with it (fit.cpp, count_row .. ald_from_runs):
// * Keys: to_key keeps -0.0 as its own key just below +0.0 (equal values; the order is harmless).
// * Count: a per-thread 2^16-bucket histogram that stays zero between rows; only the buckets between
//   the row's smallest and largest key are scanned, 16 at a time (empty groups skipped, the rest
//   compacted without branches) and cleared. Weight rows span many binades (2-8 buckets per value
//   at n = 16384-4096, 60 at 512), so short rows sort their keys instead: counted are
//   bfloat16 rows of >= 8192 values and float16 rows of >= 32768 (measured; float16's 3 more
//   fraction bits make shorter runs). FitOptions::counting_from moves the threshold (tests compare
//   the two paths bit for bit).
// * Logs: ln|v| of every pattern from a 2^15-entry float64 table per dtype (no log calls). The
//   sorted row x and y = ln|x| are the runs expanded, so the split tree (exact means as above) walks
//   exactly the arrays a sort gives, and a per-row sweep over the sorted row reads x or the runs.
// * ALD: the prefix sums over the runs, B before run i = sum_{j<i} s_{j+1} (v_{j+1} - v_j) from the
//   bottom and A at run i = sum_{j>=i} (n - s_{j+1}) (v_{j+1} - v_j) from the top, are the
//   per-element sequential sums bit for bit (a zero term changes no float64 sum), so loc equals the
//   reference's; the candidates are the first interior rank p = max(s_i, 1) <= min(s_{i+1} - 1,
//   n - 2) of each run, searched with the same block bounds as a sorted row's order statistics.
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
    // Goodness of fit (docs/spec.md section 7, csrc/gof.h), (rows,) each: all three or none (nullptr:
    // the sweep is skipped, for timing it).
    double* loglik_laplace = nullptr;
    double* loglik_normal = nullptr;
    double* ks = nullptr;
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
// the search), gof (the goodness-of-fit sweep, when asked for). For the benchmark's breakdown; reading
// the clock costs ~5 calls per row.
struct PhaseTimes {
    double sort = 0.0;
    double logs = 0.0;
    double tree = 0.0;
    double ald = 0.0;
    double gof = 0.0;
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
// The same for float32 values (held as doubles): the table-driven log of float32 rows.
void log_abs_float32(const double* x, double* y, int64_t n);
// y[i] = e^a[i] for a[i] <= 0 (0 below -708): the goodness-of-fit sweep's exp (csrc/gof.h).
void exp_nonpositive_block(const double* a, double* y, int64_t n);
// How the row kernel sorts: its own choice (Auto), or forced, for tests and benchmarks. Network is the
// bitonic network of 16- and 32-bit keys; where it is unavailable (network_sort_available) or for
// float64 keys, Network sorts by radix.
enum class SortMethod { Auto, Network, Radix };
// Sorts every row of `head` (any strides) as the row kernel does, by `method`, into out: (rows, cols)
// float64, C-contiguous, each row ascending.
void sort_rows(const HeadView& head, SortMethod method, double* out);
// The method the row kernel sorts rows of `cols` values of `dtype` by: "insertion" (rows of at most
// 32), "network" or "radix" (16-bit rows long enough to be counted are counted in the fit instead).
const char* sort_method(DType dtype, int64_t cols);
// Whether this build and CPU run the sorting network.
bool network_sort_available();
// Name of the instruction set the dispatcher picked on this CPU ("x86-64-v4", "x86-64-v3",
// "default" (baseline) or "native").
const char* simd_target();

}  // namespace fcinterp
