// `mplug-owl2 inspect TRACE.safetensors [NAME...] [--diff OTHER.safetensors]`:
// the parity check a user runs by hand on the files `trace` writes and the
// reference dumps of reference_outputs/.
//   - TRACE alone: one line per tensor: name, dtype, shape, min, max, mean, RMS;
//   - TRACE NAME...: those lines, then each tensor's values, one line per
//     row of its last dimension;
//   - --diff OTHER: tensor by tensor (all, or the NAMEs), max |a − b|, RMS(b)
//     and max |a − b| / RMS(b), the measure of the parity tests; then the
//     tensors found in only one file, and those whose shapes differ.
// Numbers are printed with 6 significant digits, values with 9.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "mplug_owl2/io/safetensors.hpp"

namespace cli {

inline std::string number_text(double v, int digits = 6) {
    char s[64];
    std::snprintf(s, sizeof s, "%.*g", digits, v);
    return s;
}

struct TensorStats {
    double min = 0, max = 0, mean = 0, rms = 0;
};

inline TensorStats tensor_stats(const xt::xarray<double>& x) {
    TensorStats s;
    if (x.size() == 0) return s;
    s.min = *std::min_element(x.begin(), x.end());
    s.max = *std::max_element(x.begin(), x.end());
    double sum = 0, squares = 0;
    for (double v : x) {
        sum += v;
        squares += v * v;
    }
    s.mean = sum / double(x.size());
    s.rms = std::sqrt(squares / double(x.size()));
    return s;
}

// Rows of text as a table: each column padded to its widest cell, two spaces between.
inline void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
    std::vector<std::size_t> width;
    for (const auto& r : rows)
        for (std::size_t c = 0; c < r.size(); ++c) {
            if (width.size() <= c) width.push_back(0);
            width[c] = std::max(width[c], r[c].size());
        }
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t c = 0; c < r.size(); ++c)
            line += c + 1 < r.size() ? r[c] + std::string(width[c] - r[c].size() + 2, ' ') : r[c];
        out << line << "\n";
    }
}

// The tensor `name` of `f`, refused by name when absent.
inline xt::xarray<double> read_named(const mplug_owl2::SafetensorsFile& f, const std::string& name) {
    if (!f.find(name)) mplug_owl2::fail(f.path(), ": no tensor named ", name);
    return mplug_owl2::read_tensor<double>(f, name);
}

inline void print_stats(const mplug_owl2::SafetensorsFile& f, const std::vector<std::string>& names, std::ostream& out) {
    std::vector<std::vector<std::string>> rows = {{"name", "dtype", "shape", "min", "max", "mean", "rms"}};
    for (const std::string& n : names) {
        const TensorStats s = tensor_stats(read_named(f, n));
        const mplug_owl2::TensorInfo* info = f.find(n);
        rows.push_back({n, mplug_owl2::dtype_name(info->dtype), mplug_owl2::shape_str(info->shape), number_text(s.min),
                        number_text(s.max), number_text(s.mean), number_text(s.rms)});
    }
    print_table(rows, out);
}

inline void print_values(const mplug_owl2::SafetensorsFile& f, const std::string& name, std::ostream& out) {
    const xt::xarray<double> x = read_named(f, name);
    const mplug_owl2::Shape& shape = f.find(name)->shape;
    const std::size_t row = shape.empty() ? 1 : shape.back();
    out << name << " " << mplug_owl2::shape_str(shape) << ":\n";
    for (std::size_t i = 0; i < x.size(); i += row) {
        std::string line;
        for (std::size_t j = i; j < std::min(x.size(), i + std::max<std::size_t>(row, 1)); ++j)
            line += (j > i ? " " : "") + number_text(x.data()[j], 9);
        out << line << "\n";
    }
}

inline void print_diff(const mplug_owl2::SafetensorsFile& a, const mplug_owl2::SafetensorsFile& b,
                       std::vector<std::string> names, std::ostream& out) {
    const bool all = names.empty();
    if (all) names = a.names();
    std::vector<std::vector<std::string>> rows = {{"name", "max|a-b|", "rms(b)", "max|a-b|/rms(b)"}};
    std::vector<std::string> only_a, only_b, shapes;
    for (const std::string& n : names) {
        if (!b.find(n)) {
            only_a.push_back(n);
            continue;
        }
        const xt::xarray<double> x = read_named(a, n), y = read_named(b, n);
        if (a.find(n)->shape != b.find(n)->shape) {
            shapes.push_back(n + " " + mplug_owl2::shape_str(a.find(n)->shape) + " vs " +
                             mplug_owl2::shape_str(b.find(n)->shape));
            continue;
        }
        double diff = 0;
        for (std::size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x.data()[i] - y.data()[i]));
        const double rms = tensor_stats(y).rms;
        rows.push_back({n, number_text(diff), number_text(rms), rms > 0 ? number_text(diff / rms) : "-"});
    }
    if (all)
        for (const std::string& n : b.names())
            if (!a.find(n)) only_b.push_back(n);
    out << "a = " << a.path() << "\nb = " << b.path() << "\n";
    print_table(rows, out);
    auto list = [&](const char* what, const std::vector<std::string>& items) {
        if (items.empty()) return;
        out << what << ":";
        for (const std::string& n : items) out << " " << n;
        out << "\n";
    };
    list("only in a", only_a);
    list("only in b", only_b);
    list("shapes differ", shapes);
}

inline void register_inspect(CLI::App& app) {
    struct Options {
        std::string trace, other;
        std::vector<std::string> names;
    };
    auto o = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "inspect", "List a trace's tensors with their statistics, print one, or compare two traces tensor by tensor");
    sub->add_option("trace", o->trace, "a safetensors file (a trace, a reference dump)")->required();
    sub->add_option("names", o->names, "tensors to print (with --diff: to compare)");
    sub->add_option("--diff", o->other, "a second safetensors file to compare with, tensor by tensor");
    sub->callback([o] {
        const mplug_owl2::SafetensorsFile a(o->trace);
        if (!o->other.empty()) {
            print_diff(a, mplug_owl2::SafetensorsFile(o->other), o->names, std::cout);
            return;
        }
        if (o->names.empty()) {
            std::cout << o->trace << ": " << a.names().size() << " tensors\n";
            print_stats(a, a.names(), std::cout);
            return;
        }
        print_stats(a, o->names, std::cout);
        for (const std::string& n : o->names) print_values(a, n, std::cout);
    });
}

}  // namespace cli
