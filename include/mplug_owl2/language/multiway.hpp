// The modality-adaptive module (official `MultiwayNetwork`, multiway.py):
// two copies of a module, `multiway.0` for text and `multiway.1` for visual
// positions, each position going through the copy its modality indicator
// picks. In the decoder it wraps input_layernorm, post_attention_layernorm,
// self_attn.k_proj and self_attn.v_proj of every layer.
//
// Every routing decision goes through one MamRouting object, so an ablation
// (all positions through the text copy, through the visual copy, or swapped)
// is one setting, restricted if wanted to some of the four parts and some
// layers.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/hooks.hpp"
#include "../core/linear.hpp"
#include "../core/rms_norm.hpp"

namespace mplug_owl2 {

// One route per position: 0 text, 1 visual (the official int64 indicators).
using ModalityIndicators = std::vector<std::int64_t>;

// The four multiway modules of a decoder layer.
enum class MamPart { InputLayernorm, PostAttentionLayernorm, KProj, VProj };

inline const std::vector<MamPart>& all_mam_parts() {
    static const std::vector<MamPart> parts = {MamPart::InputLayernorm, MamPart::PostAttentionLayernorm,
                                               MamPart::KProj, MamPart::VProj};
    return parts;
}

// The part's official module name inside a layer.
inline const char* mam_part_name(MamPart p) {
    switch (p) {
        case MamPart::InputLayernorm: return "input_layernorm";
        case MamPart::PostAttentionLayernorm: return "post_attention_layernorm";
        case MamPart::KProj: return "k_proj";
        case MamPart::VProj: return "v_proj";
    }
    return "?";
}

inline MamPart mam_part_from_name(const std::string& s) {
    for (MamPart p : all_mam_parts())
        if (s == mam_part_name(p)) return p;
    fail("modality-adaptive part ", s, ": expected input_layernorm, post_attention_layernorm, k_proj or v_proj");
}

// official: each position through the copy of its own modality;
// text / visual: every position through the text / visual copy;
// swap: text positions through the visual copy and visual through the text copy.
enum class MamPolicy { Official, Text, Visual, Swap };

inline const char* mam_policy_name(MamPolicy p) {
    switch (p) {
        case MamPolicy::Official: return "official";
        case MamPolicy::Text: return "text";
        case MamPolicy::Visual: return "visual";
        case MamPolicy::Swap: return "swap";
    }
    return "?";
}

inline MamPolicy mam_policy_from_name(const std::string& s) {
    for (MamPolicy p : {MamPolicy::Official, MamPolicy::Text, MamPolicy::Visual, MamPolicy::Swap})
        if (s == mam_policy_name(p)) return p;
    fail("modality-adaptive policy ", s, ": expected official, text, visual or swap");
}

// The routing policy of every multiway module of the model. The policy acts
// on the chosen parts of the chosen layers; elsewhere routing is official.
struct MamRouting {
    MamPolicy policy = MamPolicy::Official;
    std::set<MamPart> parts;         // empty: all four parts
    std::set<std::size_t> layers;    // empty: every layer

    bool applies(MamPart part, std::size_t layer) const {
        return policy != MamPolicy::Official && (parts.empty() || parts.count(part)) &&
               (layers.empty() || layers.count(layer));
    }

    // The copy (0 text, 1 visual) a position with this indicator goes through.
    std::size_t route(std::int64_t indicator, MamPart part, std::size_t layer) const {
        const auto own = static_cast<std::size_t>(indicator);
        if (!applies(part, layer)) return own;
        switch (policy) {
            case MamPolicy::Text: return 0;
            case MamPolicy::Visual: return 1;
            case MamPolicy::Swap: return 1 - own;
            case MamPolicy::Official: break;
        }
        return own;
    }
};

namespace multiway_detail {
// The wrapped module's computation without its own report: the wrapper
// reports the merged output under the wrapped module's name.
template <class T>
Matrix<T> compute(const RMSNorm<T>& m, const Matrix<T>& x) {
    return m.apply(x);
}
template <class T>
Matrix<T> compute(const Linear<T>& m, const Matrix<T>& x) {
    return m.project(x);
}
}  // namespace multiway_detail

template <class Module>
struct Multiway {
    std::string name;  // the wrapped module's official path, e.g. model.layers.0.self_attn.k_proj
    MamPart part = MamPart::KProj;
    std::size_t layer = 0;
    std::array<Module, 2> multiway;  // [0] text copy (.multiway.0), [1] visual copy (.multiway.1)

    // Loads both copies; `args` are the wrapped module's load arguments after its path.
    template <class... Args>
    void load(WeightLoader& w, const std::string& path, MamPart which, std::size_t layer_index, Args... args) {
        name = path;
        part = which;
        layer = layer_index;
        multiway[0].load(w, path + ".multiway.0", args...);
        multiway[1].load(w, path + ".multiway.1", args...);
    }

    // x [L, in] with one indicator per row -> [L, out], each row computed by
    // the copy its route picks.
    template <class T>
    Matrix<T> forward(const Matrix<T>& x, const ModalityIndicators& indicators, const MamRouting& routing,
                      const Hooks<T>& hooks) const {
        const std::size_t L = x.shape(0);
        if (indicators.size() != L)
            fail(name, ": ", indicators.size(), " modality indicators for ", L, " positions");
        // 1. the route of every position, through the one routing policy
        std::array<std::vector<std::size_t>, 2> rows;
        for (std::size_t i = 0; i < L; ++i) {
            if (indicators[i] != 0 && indicators[i] != 1)
                fail(name, ": modality indicator ", indicators[i], " at position ", i, ", expected 0 or 1");
            rows[routing.route(indicators[i], part, layer)].push_back(i);
        }
        // 2. each copy computes its own rows, reported under the copy's name
        //    (…multiway.m, [rows, out]), scattered back in position order
        //    (when every position takes one route, that copy runs on x as is)
        Matrix<T> y;
        if (rows[0].size() == L || rows[1].size() == L) {
            const std::size_t m = rows[0].size() == L ? 0 : 1;
            y = multiway_detail::compute(multiway[m], x);
            hooks.report(multiway[m].name, y);
        } else {
            for (std::size_t m = 0; m < 2; ++m) {
                Matrix<T> part_in = Matrix<T>::from_shape({rows[m].size(), x.shape(1)});
                for (std::size_t r = 0; r < rows[m].size(); ++r)
                    std::copy(&x(rows[m][r], 0), &x(rows[m][r], 0) + x.shape(1), &part_in(r, 0));
                Matrix<T> part_out = multiway_detail::compute(multiway[m], part_in);
                hooks.report(multiway[m].name, part_out);
                if (m == 0) y = Matrix<T>::from_shape({L, part_out.shape(1)});
                for (std::size_t r = 0; r < rows[m].size(); ++r)
                    std::copy(&part_out(r, 0), &part_out(r, 0) + part_out.shape(1), &y(rows[m][r], 0));
            }
        }
        // 3. the merged output, under the wrapped module's name
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
