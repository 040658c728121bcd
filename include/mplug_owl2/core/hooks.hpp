// Observation and intervention at every official module boundary. Each
// module, after computing its output, calls hooks.report(name, output) with
// its official module path (e.g. "model.layers.3.self_attn.k_proj"). A hook
// sees the activation as a [rows, cols] matrix (rows = positions) and may
// change it in place; the forward pass continues with what the hook left.
// With no hook installed a report is one predictable branch.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tensor.hpp"

namespace mplug_owl2 {

template <class T>
class Hooks {
public:
    // name: official module path; value: the activation, modifiable;
    // shape: its official shape (e.g. [images, tokens, width]); the product
    // of shape equals value.size().
    using Fn = std::function<void(const std::string& name, Matrix<T>& value, const Shape& shape)>;

    // Installs a hook; returns a handle for remove(). Hooks run in the order
    // they were added.
    int add(Fn fn) {
        fns_.emplace_back(next_id_, std::move(fn));
        return next_id_++;
    }
    void remove(int handle) {
        for (auto it = fns_.begin(); it != fns_.end(); ++it)
            if (it->first == handle) {
                fns_.erase(it);
                return;
            }
    }
    void clear() { fns_.clear(); }
    bool active() const { return !fns_.empty(); }

    // Attention probabilities are large ([heads, queries, keys] per layer)
    // and cost a buffer to keep, so attention modules report them, as
    // "<attention module>.probs", only when asked to and a hook is installed.
    void request_attention_probs(bool on = true) { attention_probs_ = on; }
    bool attention_probs() const { return attention_probs_ && !fns_.empty(); }

    // Called by modules. `shape` empty means the matrix's own [rows, cols].
    void report(const std::string& name, Matrix<T>& value, const Shape& shape = {}) const {
        if (fns_.empty()) return;
        dispatch(name, value, shape);
    }

private:
    void dispatch(const std::string& name, Matrix<T>& value, const Shape& shape) const {
        const Shape own = shape.empty() ? Shape{value.shape(0), value.shape(1)} : shape;
        if (shape_numel(own) != value.size())
            fail("hook report ", name, ": shape ", shape_str(own), " does not match ", value.size(), " values");
        for (const auto& f : fns_) f.second(name, value, own);
    }

    std::vector<std::pair<int, Fn>> fns_;
    int next_id_ = 0;
    bool attention_probs_ = false;
};

}  // namespace mplug_owl2
