// fcinterp_fast C++ kernels: docs/spec.md sections 2-4 and 7 for every row of a classifier head, on raw pointers.
//
// One call fits a block of R rows of a (R, D) head. Per row, in one pass over per-thread scratch:
// load the row in its own dtype (float16 / bfloat16 / float32 / float64, any strides), radix sort the
// float bit patterns, decode to float64 and take ln|x|, walk the split tree (chain or full, root at
// zero or at the row mean) writing every node's count / mean / min / max / line fit, fit the ALD
// by maximum likelihood, and sweep the sorted row once more for its goodness of fit (csrc/gof.h). Rows run in parallel
// (OpenMP); nothing is allocated per row.
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

// Fit every row of `head` into `out`; returns the number of node columns the results need (one past
// the deepest node any row has), which exceeds out.columns when nodes were left out. Preconditions
// (checked by the bindings): rows >= 1, 1 <= cols < 2^31, 1 <= levels <= kMaxChainLevels
// (kMaxFullLevels for full trees), min_size >= 0, 1 <= out.columns <= n_columns(tree, levels)
// (with ald_only: out.columns == 0 and no node arrays),
// `workspace` built for `cols`; rows run on the workspace's threads. Non-finite values do not crash
// the kernel but give meaningless results (the Python layer rejects them first).
int64_t fit_rows(const HeadView& head, const FitOptions& options, const FitOutput& out, Workspace& workspace);

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
