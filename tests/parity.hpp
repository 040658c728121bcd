// The parity harness: loads a reference case written by the official
// PyTorch code (reference_outputs/<model>/<case>.safetensors) and compares
// our tensors with it by name, reporting the worst
// max|ours − ref| / rms(ref).
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"

namespace parity {

inline std::string reference_dir() { return MPLUG_OWL2_REFERENCE_DIR; }
inline std::string tiny_dir() { return reference_dir() + "/tiny"; }

inline nlohmann::json tiny_cases() {
    std::ifstream in(tiny_dir() + "/cases.json");
    REQUIRE(in.good());
    nlohmann::json j;
    in >> j;
    return j["cases"];
}

inline nlohmann::json tiny_case(const std::string& name) {
    for (const auto& c : tiny_cases())
        if (c["name"] == name) return c;
    FAIL("no reference case " << name);
    return {};
}

// Relative error of `ours` against `ref`: max|ours − ref| / rms(ref).
template <class A, class B>
double relative_error(const A& ours, const B& ref) {
    double num = 0, ss = 0;
    auto o = ours.begin();
    for (auto r = ref.begin(); r != ref.end(); ++r, ++o) {
        num = std::max(num, std::abs(double(*o) - double(*r)));
        ss += double(*r) * double(*r);
    }
    const double rms = std::sqrt(ss / double(ref.size()));
    return num / (rms > 0 ? rms : 1.0);
}

// One reference case: every tensor it holds, as double.
class Case {
public:
    explicit Case(const std::string& name, const std::string& model_dir = tiny_dir())
        : name_(name),
          model_dir_(model_dir),
          file_(std::make_unique<mplug_owl2::SafetensorsFile>(model_dir + "/" + name + ".safetensors")) {}

    bool has(const std::string& tensor) const { return file_->find(tensor) != nullptr; }
    std::vector<std::string> names() const { return file_->names(); }
    xt::xarray<double> get(const std::string& tensor) const {
        INFO("reference case " << name_ << ", tensor " << tensor);
        REQUIRE(has(tensor));
        return mplug_owl2::read_tensor<double>(*file_, tensor);
    }
    mplug_owl2::Shape shape(const std::string& tensor) const { return file_->find(tensor)->shape; }
    const mplug_owl2::SafetensorsFile& file() const { return *file_; }
    const std::string& name() const { return name_; }

    // The preprocessed pixels of the case's first `n_images` images
    // (image.<n>.pixel_values, [3, S, S] each) as one batch [n_images, 3, S, S];
    // S is the model's image_size.
    template <class T>
    xt::xtensor<T, 4> pixel_values(std::size_t n_images) const {
        const auto S = std::size_t(mplug_owl2::load_config(model_dir_ + "/config.json").vision.image_size);
        xt::xtensor<T, 4> p = xt::xtensor<T, 4>::from_shape({n_images, 3, S, S});
        for (std::size_t n = 0; n < n_images; ++n) {
            const auto one = get("image." + std::to_string(n) + ".pixel_values");
            REQUIRE(one.size() == 3 * S * S);
            std::copy(one.begin(), one.end(), p.begin() + n * one.size());
        }
        return p;
    }

    // Checks `ours` (any xtensor expression or container of the same number
    // of elements, in the reference's row-major order) against the tensor.
    template <class A>
    void check(const std::string& tensor, const A& ours, double tol) const {
        const auto ref = get(tensor);
        INFO("case " << name_ << ", tensor " << tensor);
        REQUIRE(std::size_t(ours.size()) == ref.size());
        const double err = relative_error(ours, ref);
        INFO("max|ours - ref| / rms(ref) = " << err << " (tolerance " << tol << ")");
        CHECK(err <= tol);
    }

private:
    std::string name_, model_dir_;
    std::unique_ptr<mplug_owl2::SafetensorsFile> file_;
};

// Tolerances of the parity tests, relative to the reference's RMS.
template <class T>
constexpr double tolerance() {
    return sizeof(T) == 8 ? 1e-9 : 1e-3;
}

// How many leading greedy ids a run in T must reproduce: pick k is made on
// the prompt's last logits row (k = 0) or on step row k−1, and a run within
// the parity tolerance cannot flip it while the reference's best and
// second-best logits there differ by more than twice the tolerance (relative
// to the RMS of the prompt logits). Every pick counts in double.
template <class T>
std::size_t guaranteed_picks(const xt::xarray<double>& logits, const xt::xarray<double>& steps, std::size_t n) {
    double ss = 0;
    for (double v : logits) ss += v * v;
    const double slack = 2 * tolerance<T>() * std::sqrt(ss / double(logits.size()));
    const std::size_t V = logits.shape(1);
    auto gap = [V](const double* row) {
        double a = -INFINITY, b = -INFINITY;
        for (std::size_t j = 0; j < V; ++j) {
            if (row[j] > a) {
                b = a;
                a = row[j];
            } else if (row[j] > b) {
                b = row[j];
            }
        }
        return a - b;
    };
    for (std::size_t k = 0; k < n; ++k) {
        const double* row = k == 0 ? logits.data() + (logits.shape(0) - 1) * V : steps.data() + (k - 1) * V;
        if (gap(row) <= slack) return k;
    }
    return n;
}

template <class T>
void check_greedy_ids(const std::vector<std::int64_t>& ours, const std::vector<std::int64_t>& expected,
                      const xt::xarray<double>& logits, const xt::xarray<double>& steps) {
    REQUIRE(ours.size() == expected.size());
    const std::size_t n = guaranteed_picks<T>(logits, steps, expected.size());
    INFO("the reference's logit margins fix the first " << n << " of " << expected.size() << " greedy ids");
    if (sizeof(T) == 8) CHECK(n == expected.size());
    CHECK(std::vector<std::int64_t>(ours.begin(), ours.begin() + n) ==
          std::vector<std::int64_t>(expected.begin(), expected.begin() + n));
}

}  // namespace parity
