// The prompt and generation limits of a question, as the official
// evaluation scripts of mPLUG-Owl2 (mplug_owl2/evaluate/*.py) build them.
// Every script decodes greedily (do_sample=False, num_beams=1) with
// max_new_tokens=10 and min_new_tokens=1, and stretches each image to a
// square (image.resize((max_edge, max_edge))) before preprocessing. The
// prompts are the whole text, chat template included:
// - mme (evaluate_mme.py) and pope (no official script; as MME, whose
//   questions are of the same kind):
//     "USER: <|image|>{question}\nAnswer the question using a single word or phrase. ASSISTANT: "
//   with the text "Please answer yes or no." removed from the question;
// - vqa (evaluate_vqa.py):
//     "USER: <|image|>{question} Answer the question using a single word or phrase. ASSISTANT: "
// - mmbench (evaluate_mmbench.py), and scienceqa and mcq the same way:
//     "USER: <|image|>{hint}\n{question}\n{A. ...\nB. ...}\nAnswer with the option’s letter from the given choices directly. ASSISTANT: "
//   hint "N/A" when the question has none; the apostrophe is U+2019 as in
//   the script;
// - text-mcq (no official script): as mmbench without the image marker and
//   without the hint line when there is no hint.
#pragma once

#include <cstddef>
#include <string>

#include "../io/image_token.hpp"
#include "benchmark.hpp"

namespace mplug_owl2::eval {

struct Prompt {
    std::string text;
    std::size_t max_new_tokens = 10;
    std::size_t min_new_tokens = 1;
    bool square_images = true;  // resize each image to max(width, height) squared first
};

inline constexpr const char* kShortAnswer = "Answer the question using a single word or phrase.";
inline constexpr const char* kOptionLetter = "Answer with the option\u2019s letter from the given choices directly.";

// "A. cat\nB. dog": the options as the scripts list them.
inline std::string option_lines(const Sample& s) {
    std::string out;
    for (const auto& [letter, text] : s.choices) out += (out.empty() ? "" : "\n") + letter + ". " + text;
    return out;
}

inline std::string without(std::string text, const std::string& part) {
    for (std::size_t at; (at = text.find(part)) != std::string::npos;) text.erase(at, part.size());
    return text;
}

inline Prompt build_prompt(const Sample& s) {
    std::string images;
    for (std::size_t k = 0; k < s.images(); ++k) images += kImageToken;
    std::string user;
    switch (s.benchmark) {
        case Benchmark::Mme:
        case Benchmark::Pope:
            user = images + without(s.question, "Please answer yes or no.") + "\n" + kShortAnswer;
            break;
        case Benchmark::Vqa:
            user = images + s.question + " " + kShortAnswer;
            break;
        case Benchmark::Mmbench:
        case Benchmark::Scienceqa:
        case Benchmark::Mcq:
            user = images + (s.hint.empty() ? "N/A" : s.hint) + "\n" + s.question + "\n" + option_lines(s) + "\n" +
                   kOptionLetter;
            break;
        case Benchmark::TextMcq:
            user = images + (s.hint.empty() ? "" : s.hint + "\n") + s.question + "\n" + option_lines(s) + "\n" +
                   kOptionLetter;
            break;
    }
    Prompt p;
    p.text = "USER: " + user + " ASSISTANT: ";
    return p;
}

}  // namespace mplug_owl2::eval
