// pybind11 bindings of fcinterp_fast._cpu: check and unwrap arrays, release the GIL, call fit.cpp.
//
// Nothing here converts or copies: the head is read in place through its strides and the outputs
// must already be C-contiguous arrays of the exact shape and dtype (the Python backend allocates
// them as torch tensors and passes their numpy views). Anything else raises before the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fit.h"

namespace py = pybind11;
using namespace fcinterp;

namespace {

template <typename Enum>
Enum parse_choice(const std::string& what, const std::string& value,
                  std::initializer_list<std::pair<const char*, Enum>> choices) {
    std::string listing;
    for (const auto& choice : choices) {
        if (value == choice.first) return choice.second;
        listing += std::string(listing.empty() ? "" : ", ") + "'" + choice.first + "'";
    }
    throw py::value_error("unknown " + what + " '" + value + "'; choose one of " + listing);
}

DType parse_dtype(const std::string& name) {
    return parse_choice<DType>("dtype", name,
                               {{"float16", DType::Float16},
                                {"bfloat16", DType::BFloat16},
                                {"float32", DType::Float32},
                                {"float64", DType::Float64}});
}

std::string shape_string(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// The head: a 2-D array whose element size matches `dtype`. Floating arrays must be exactly that
// dtype; integer arrays of the same width are raw bit views (bfloat16 has no numpy dtype).
HeadView head_view(const py::array& head, DType dtype, const std::string& dtype_name) {
    if (head.ndim() != 2) {
        throw py::value_error("head must be a 2-D (rows, D) array, got shape " + shape_string(head));
    }
    if (head.shape(0) < 1 || head.shape(1) < 1) {
        throw py::value_error("head has no rows or no columns: shape " + shape_string(head));
    }
    if (head.shape(1) >= (int64_t(1) << 31)) {
        throw py::value_error("rows longer than 2^31 - 1 values are not supported");
    }
    const char kind = head.dtype().kind();
    const auto itemsize = head.dtype().itemsize();
    const bool float_match = kind == 'f' && dtype != DType::BFloat16 && itemsize == dtype_size(dtype);
    const bool bits_match = (kind == 'i' || kind == 'u') && itemsize == dtype_size(dtype);
    if (!float_match && !bits_match) {
        throw py::type_error("head array of dtype " + std::string(py::str(head.dtype())) + " does not hold " +
                             dtype_name + " values; pass a " + dtype_name +
                             " array (or an integer bit view of the same width, e.g. bfloat16 as int16)");
    }
    HeadView view;
    view.data = static_cast<const unsigned char*>(head.data());
    view.dtype = dtype;
    view.rows = head.shape(0);
    view.cols = head.shape(1);
    view.row_stride = head.strides(0);
    view.col_stride = head.strides(1);
    return view;
}

template <typename T>
T* output_array(py::array& a, const char* name, const std::vector<int64_t>& shape) {
    bool shape_ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; shape_ok && i < shape.size(); ++i) shape_ok = a.shape(i) == shape[i];
    std::string expected = "(";
    for (size_t i = 0; i < shape.size(); ++i) expected += (i ? ", " : "") + std::to_string(shape[i]);
    expected += shape.size() == 1 ? ",)" : ")";
    const char* dtype_name = std::is_same<T, int64_t>::value ? "int64" : "float64";
    if (!a.dtype().is(py::dtype::of<T>())) {
        throw py::type_error(std::string("output '") + name + "' must have dtype " + dtype_name + ", got " +
                             std::string(py::str(a.dtype())));
    }
    if (!shape_ok) {
        throw py::value_error(std::string("output '") + name + "' must have shape " + expected + ", got " +
                              shape_string(a));
    }
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(std::string("output '") + name + "' must be C-contiguous");
    }
    if (!a.writeable()) throw py::value_error(std::string("output '") + name + "' is read-only");
    return static_cast<T*>(a.mutable_data());
}

int64_t fit_rows_checked(const py::array& head, const std::string& dtype_name, const std::string& tree_name,
                         const std::string& root_name, const std::string& grid_name, int64_t min_size, int levels,
                         py::array count, py::array mean, py::array lo, py::array hi, py::array slope,
                         py::array intercept, py::array r2, py::array loc, py::array scale, py::array kappa,
                         py::array loglik, int threads, int64_t counting_from, const py::object& loglik_laplace,
                         const py::object& loglik_normal, const py::object& ks, PhaseTimes* times) {
    const DType dtype = parse_dtype(dtype_name);
    FitOptions options;
    options.tree = parse_choice<Tree>("tree", tree_name, {{"chain", Tree::Chain}, {"full", Tree::Full}});
    options.root = parse_choice<Root>("root", root_name, {{"zero", Root::Zero}, {"mean", Root::Mean}});
    options.grid = parse_choice<Grid>("grid", grid_name, {{"paper", Grid::Paper}, {"linspace", Grid::Linspace}});
    if (min_size < 0) throw py::value_error("min_size must be >= 0, got " + std::to_string(min_size));
    const int max_levels = options.tree == Tree::Chain ? kMaxChainLevels : kMaxFullLevels;
    if (levels < 1 || levels > max_levels) {
        throw py::value_error("levels must be in 1.." + std::to_string(max_levels) + " for tree='" + tree_name +
                              "', got " + std::to_string(levels));
    }
    if (threads < 0) throw py::value_error("threads must be >= 0 (0: the OpenMP default)");
    if (counting_from < 0) throw py::value_error("counting_from must be >= 0 (0: the default lengths)");
    options.min_size = min_size;
    options.counting_from = counting_from;
    options.levels = levels;

    const HeadView view = head_view(head, dtype, dtype_name);
    const int64_t rows = view.rows;
    const int64_t max_columns = n_columns(options.tree, levels);
    // Node arrays may stop short of the tree's last column (see fit.h); `count` sets the width.
    const int64_t columns = count.ndim() == 2 ? count.shape(1) : max_columns;
    if (columns < 1 || columns > max_columns) {
        throw py::value_error("node outputs have " + std::to_string(columns) + " columns; tree='" + tree_name +
                              "' with levels=" + std::to_string(levels) + " has 1.." + std::to_string(max_columns));
    }
    FitOutput out;
    out.columns = columns;
    out.count = output_array<int64_t>(count, "count", {rows, columns});
    out.mean = output_array<double>(mean, "mean", {rows, columns});
    out.lo = output_array<double>(lo, "lo", {rows, columns});
    out.hi = output_array<double>(hi, "hi", {rows, columns});
    out.slope = output_array<double>(slope, "slope", {rows, columns});
    out.intercept = output_array<double>(intercept, "intercept", {rows, columns});
    out.r2 = output_array<double>(r2, "r2", {rows, columns});
    out.loc = output_array<double>(loc, "loc", {rows});
    out.scale = output_array<double>(scale, "scale", {rows});
    out.kappa = output_array<double>(kappa, "kappa", {rows});
    out.loglik = output_array<double>(loglik, "loglik", {rows});
    const int gof_given = int(!loglik_laplace.is_none()) + int(!loglik_normal.is_none()) + int(!ks.is_none());
    if (gof_given != 0 && gof_given != 3) {
        throw py::value_error("pass all of loglik_laplace, loglik_normal and ks, or none of them");
    }
    std::vector<py::array> gof_arrays;  // held until the kernel is done
    auto gof_output = [&](const py::object& given, const char* name) {
        if (!py::isinstance<py::array>(given)) {
            throw py::type_error(std::string("output '") + name + "' must be a numpy array (R,) float64");
        }
        gof_arrays.push_back(py::reinterpret_borrow<py::array>(given));
        return output_array<double>(gof_arrays.back(), name, {rows});
    };
    if (gof_given == 3) {
        gof_arrays.reserve(3);
        out.loglik_laplace = gof_output(loglik_laplace, "loglik_laplace");
        out.loglik_normal = gof_output(loglik_normal, "loglik_normal");
        out.ks = gof_output(ks, "ks");
    }

    Workspace workspace(view.cols, threads);
    py::gil_scoped_release release;
    return fit_rows(view, options, out, workspace, times);
}

int64_t fit_rows_py(const py::array& head, const std::string& dtype_name, const std::string& tree_name,
                    const std::string& root_name, const std::string& grid_name, int64_t min_size, int levels,
                    py::array count, py::array mean, py::array lo, py::array hi, py::array slope, py::array intercept,
                    py::array r2, py::array loc, py::array scale, py::array kappa, py::array loglik, int threads,
                    int64_t counting_from, const py::object& loglik_laplace, const py::object& loglik_normal,
                    const py::object& ks) {
    return fit_rows_checked(head, dtype_name, tree_name, root_name, grid_name, min_size, levels, count, mean, lo, hi,
                            slope, intercept, r2, loc, scale, kappa, loglik, threads, counting_from, loglik_laplace,
                            loglik_normal, ks, nullptr);
}

// fit_rows, also returning the seconds each phase took (summed over threads).
py::tuple fit_rows_profiled_py(const py::array& head, const std::string& dtype_name, const std::string& tree_name,
                               const std::string& root_name, const std::string& grid_name, int64_t min_size, int levels,
                               py::array count, py::array mean, py::array lo, py::array hi, py::array slope,
                               py::array intercept, py::array r2, py::array loc, py::array scale, py::array kappa,
                               py::array loglik, int threads, int64_t counting_from, const py::object& loglik_laplace,
                               const py::object& loglik_normal, const py::object& ks) {
    PhaseTimes times;
    const int64_t needed = fit_rows_checked(head, dtype_name, tree_name, root_name, grid_name, min_size, levels, count,
                                            mean, lo, hi, slope, intercept, r2, loc, scale, kappa, loglik, threads,
                                            counting_from, loglik_laplace, loglik_normal, ks, &times);
    py::dict phases;
    phases["sort"] = times.sort;
    phases["logs"] = times.logs;
    phases["tree"] = times.tree;
    phases["ald"] = times.ald;
    phases["gof"] = times.gof;
    return py::make_tuple(needed, phases);
}

// Sort and ALD only (the benchmark's "ALD part"): same kernel, no logs and no tree.
void ald_rows_py(const py::array& head, const std::string& dtype_name, py::array loc, py::array scale, py::array kappa,
                 py::array loglik, int threads, int64_t counting_from) {
    const DType dtype = parse_dtype(dtype_name);
    if (threads < 0) throw py::value_error("threads must be >= 0 (0: the OpenMP default)");
    if (counting_from < 0) throw py::value_error("counting_from must be >= 0 (0: the default lengths)");
    const HeadView view = head_view(head, dtype, dtype_name);
    FitOptions options;
    options.ald_only = true;
    options.counting_from = counting_from;
    FitOutput out;
    out.loc = output_array<double>(loc, "loc", {view.rows});
    out.scale = output_array<double>(scale, "scale", {view.rows});
    out.kappa = output_array<double>(kappa, "kappa", {view.rows});
    out.loglik = output_array<double>(loglik, "loglik", {view.rows});
    Workspace workspace(view.cols, threads);
    py::gil_scoped_release release;
    fit_rows(view, options, out, workspace);
}

// The kernel's sort of every row, by a named method: (rows, cols) float64.
py::array_t<double> sort_rows_py(const py::array& head, const std::string& dtype_name, const std::string& method_name) {
    const DType dtype = parse_dtype(dtype_name);
    const SortMethod method = parse_choice<SortMethod>(
        "sort method", method_name,
        {{"auto", SortMethod::Auto}, {"network", SortMethod::Network}, {"radix", SortMethod::Radix}});
    const HeadView view = head_view(head, dtype, dtype_name);
    py::array_t<double> out({view.rows, view.cols});
    double* data = out.mutable_data();
    py::gil_scoped_release release;
    sort_rows(view, method, data);
    return out;
}

py::array_t<double> contiguous_float64(const py::array& values, const char* what) {
    if (values.ndim() != 1 || !values.dtype().is(py::dtype::of<double>()) || !(values.flags() & py::array::c_style)) {
        throw py::type_error(std::string(what) + " takes a contiguous 1-D float64 array");
    }
    return py::array_t<double>::ensure(values);
}

double exact_sum_py(const py::array& values) {
    const auto v = contiguous_float64(values, "_exact_sum");
    std::vector<double> partials(kFsumPartials);
    return exact_sum(v.data(), v.size(), partials.data());
}

py::array_t<double> log_abs_py(const py::array& values) {
    const auto v = contiguous_float64(values, "_log_abs");
    py::array_t<double> y(v.size());
    log_abs(v.data(), y.mutable_data(), v.size());
    return y;
}

py::array_t<double> exp_nonpositive_py(const py::array& values) {
    const auto v = contiguous_float64(values, "_exp_nonpositive");
    py::array_t<double> y(v.size());
    exp_nonpositive_block(v.data(), y.mutable_data(), v.size());
    return y;
}

py::array_t<double> log_abs_float32_py(const py::array& values) {
    if (values.ndim() != 1 || !values.dtype().is(py::dtype::of<float>()) || !(values.flags() & py::array::c_style)) {
        throw py::type_error("_log_abs_float32 takes a contiguous 1-D float32 array");
    }
    const auto v = py::array_t<float>::ensure(values);
    std::vector<double> x(v.data(), v.data() + v.size());
    py::array_t<double> y(v.size());
    log_abs_float32(x.data(), y.mutable_data(), v.size());
    return y;
}

py::dict build_info() {
    py::dict info;
    info["simd_target"] = simd_target();
    info["sorting_network"] = network_sort_available();
#ifdef _OPENMP
    info["openmp"] = true;
    info["max_threads"] = Workspace(1, 0).threads();
#else
    info["openmp"] = false;
    info["max_threads"] = 1;
#endif
#ifdef FCI_BUILD_FLAGS
    info["compile_flags"] = FCI_BUILD_FLAGS;
#endif
    return info;
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
    m.doc() = "fcinterp_fast C++ kernels (docs/spec.md sections 2-4 and 7 per row, OpenMP over rows); see csrc/fit.h";
    m.def("fit_rows", &fit_rows_py, py::arg("head").noconvert(), py::arg("dtype"), py::arg("tree"), py::arg("root"),
          py::arg("grid"), py::arg("min_size"), py::arg("levels"), py::arg("count").noconvert(),
          py::arg("mean").noconvert(), py::arg("lo").noconvert(), py::arg("hi").noconvert(),
          py::arg("slope").noconvert(), py::arg("intercept").noconvert(), py::arg("r2").noconvert(),
          py::arg("loc").noconvert(), py::arg("scale").noconvert(), py::arg("kappa").noconvert(),
          py::arg("loglik").noconvert(), py::arg("threads") = 0, py::arg("counting_from") = 0,
          py::arg("loglik_laplace") = py::none(), py::arg("loglik_normal") = py::none(), py::arg("ks") = py::none(),
          R"doc(Fit every row of ``head`` (R, D) into the output arrays, in place; returns the number of
node columns the results need (larger than N when some node did not fit into the outputs).

Args:
    head: numpy array (R, D), any strides, read in place: float16 / float32 / float64, or an integer
        bit view of the same width (bfloat16 as int16).
    dtype: "float16", "bfloat16", "float32" or "float64".
    tree, root, grid, min_size, levels: the fit options (levels: deepest level, 1..64 for chains,
        1..10 for full trees).
    count: (R, N) int64; mean, lo, hi, slope, intercept, r2: (R, N) float64 with 1 <= N <=
        2 * levels (chain) or 2**(levels + 1) - 2 (full); nodes beyond column N are not written.
        loc, scale, kappa, loglik: (R,) float64. All C-contiguous and writeable; every entry is
        written.
    threads: OpenMP threads (0: the OpenMP default).
    counting_from: float16 / bfloat16 rows of at least this many values take the counting fit
        (fit.h, "Counting fits of 16-bit heads"); 0: the measured default lengths. A test hook: both
        paths give the same results.
    loglik_laplace, loglik_normal, ks: (R,) float64 for the goodness of fit (docs/spec.md section 7), all
        three or none (None: the sweep is skipped).)doc");
    m.def("_fit_rows_profiled", &fit_rows_profiled_py, py::arg("head").noconvert(), py::arg("dtype"), py::arg("tree"),
          py::arg("root"), py::arg("grid"), py::arg("min_size"), py::arg("levels"), py::arg("count").noconvert(),
          py::arg("mean").noconvert(), py::arg("lo").noconvert(), py::arg("hi").noconvert(),
          py::arg("slope").noconvert(), py::arg("intercept").noconvert(), py::arg("r2").noconvert(),
          py::arg("loc").noconvert(), py::arg("scale").noconvert(), py::arg("kappa").noconvert(),
          py::arg("loglik").noconvert(), py::arg("threads") = 0, py::arg("counting_from") = 0,
          py::arg("loglik_laplace") = py::none(), py::arg("loglik_normal") = py::none(), py::arg("ks") = py::none(),
          "fit_rows, returning (columns needed, {phase: seconds}) with the time of each phase of the row kernel "
          "(sort, logs, tree, ald: the goodness-of-fit sweep counts in ald) summed over rows and threads; for the "
          "benchmark's breakdown.");
    m.def("_ald_rows", &ald_rows_py, py::arg("head").noconvert(), py::arg("dtype"), py::arg("loc").noconvert(),
          py::arg("scale").noconvert(), py::arg("kappa").noconvert(), py::arg("loglik").noconvert(),
          py::arg("threads") = 0, py::arg("counting_from") = 0,
          "The ALD fit alone (sort + docs/spec.md section 4) of every row of ``head``, into (R,) float64 arrays; for "
          "timing the ALD part against scipy.");
    m.def("_sort_rows", &sort_rows_py, py::arg("head").noconvert(), py::arg("dtype"), py::arg("method") = "auto",
          "Every row of head sorted as the row kernel sorts it, by method 'auto', 'network' or 'radix'.");
    m.def(
        "_sort_method",
        [](const std::string& dtype_name, int64_t cols) {
            return std::string(sort_method(parse_dtype(dtype_name), cols));
        },
        py::arg("dtype"), py::arg("cols"),
        "How the row kernel sorts rows of cols values of dtype: 'insertion', 'network' or 'radix'.");
    m.def("_exact_sum", &exact_sum_py, py::arg("values").noconvert(),
          "Correctly rounded sum of a 1-D float64 array (the kernel's math.fsum).");
    m.def("_log_abs", &log_abs_py, py::arg("values").noconvert(),
          "ln|x| of a 1-D float64 array with the kernel's vectorised log.");
    m.def("_exp_nonpositive", &exp_nonpositive_py, py::arg("values").noconvert(),
          "e^x of a 1-D float64 array of x <= 0: the goodness-of-fit sweep's exp.");
    m.def("_log_abs_float32", &log_abs_float32_py, py::arg("values").noconvert(),
          "ln|x| of a 1-D float32 array (as float64) with the kernel's table-driven float32 log.");
    m.def("build_info", &build_info, "How the extension was built and what it runs on here.");
}
