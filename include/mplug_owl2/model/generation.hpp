// What generate() is asked for and what it returns (Hugging Face's
// GenerationConfig and output, reduced to what inference with one prompt
// uses).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "../core/tensor.hpp"
#include "sampling.hpp"

namespace mplug_owl2 {

// The defaults are the release's: greedy decoding (the official evaluation
// scripts' do_sample=False, num_beams=1) with a budget of 512 new tokens (the
// official CLI's --max-new-tokens), stopping at the end-of-sequence id.
struct GenerationConfig {
    std::size_t max_new_tokens = 512;        // the token budget
    bool stop_at_eos = true;                 // stop once an end-of-sequence id is chosen
    std::vector<std::int64_t> eos_token_ids;  // empty: config.json's eos_token_id (an id or a list)
    SamplingConfig sampling;                 // greedy unless sampling.do_sample
    // Called with each chosen id as soon as it is chosen (streaming, stop
    // strings, timing); returning false ends generation after that id.
    std::function<bool(std::int64_t)> on_token;
};

enum class StopReason {
    Budget,       // max_new_tokens ids chosen
    Eos,          // an end-of-sequence id was chosen (it is the last id)
    ContextFull,  // the sequence reached the most positions the config allows
    Stopped,      // on_token asked to stop (it is the last id)
};

inline const char* stop_reason_name(StopReason r) {
    switch (r) {
        case StopReason::Budget: return "budget";
        case StopReason::Eos: return "eos";
        case StopReason::ContextFull: return "context full";
        case StopReason::Stopped: return "stopped";
    }
    return "?";
}

template <class T>
struct Generation {
    std::vector<std::int64_t> ids;  // the chosen ids, in order
    // Row i: the logits after feeding ids[i] through the cache (one row per
    // id fed; an end-of-sequence id that stops generation is not fed).
    Matrix<T> step_logits;
    StopReason stop = StopReason::Budget;
};

}  // namespace mplug_owl2
