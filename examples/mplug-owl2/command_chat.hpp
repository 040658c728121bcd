// `mplug-owl2 chat`: a conversation on stdin and stdout, held as the official
// CLI (serve/cli.py) holds it. Each line read is a user turn; the images
// given at the start are shown on the first turn (their markers stay in the
// history, so every later prompt shows them again, as in the official CLI);
// each prompt is the whole conversation in the release's template, tokenised
// and answered as `answer` does (command_answer.hpp). The reply is stored in
// the history as the official CLI stores it: decoded with special tokens
// kept, then stripped, so a reply that ended with the end-of-sequence token
// keeps its "</s>". An empty line or the end of the input ends the chat.
//
// Like the official CLI it samples at temperature 0.2 unless told otherwise
// (--temperature 0 is greedy); turn k draws with seed --seed + k.
//
// The context: --max-new-tokens must leave room for a prompt (it is refused
// at the start if it reaches max_position_embeddings); as the history grows,
// a reply stops where the context is full, and a turn whose prompt alone
// exceeds it ends the chat with an error.
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command_answer.hpp"
#include "common_options.hpp"
#include "mplug_owl2/io/conversation.hpp"

namespace cli {

struct ChatOptions {
    ModelOptions model;
    std::vector<std::string> images;
    GenerateOptions gen;
    ReportOptions report;
};

// Python's str.strip() for ASCII whitespace.
inline std::string strip(const std::string& s) {
    const char* space = " \t\n\r\f\v";
    const auto b = s.find_first_not_of(space);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(space) - b + 1);
}

template <class T>
void run_chat(const ChatOptions& o, std::istream& in, std::ostream& out) {
    using namespace mplug_owl2;
    // 1. tokenizer, images, generation settings, then the model
    const ModelConfig config = load_config(o.model.model_dir + "/config.json");
    const std::unique_ptr<Tokenizer> tok = require_tokenizer(o.model.model_dir, "");
    const xt::xtensor<T, 4> pixels = image_pixels<T>(o.model, config, o.images);
    generation_config(o.gen);  // refuses bad generation options before the load
    if (o.gen.max_new_tokens >= max_positions(config.text))
        fail("--max-new-tokens ", o.gen.max_new_tokens, ": leaves no room for a prompt in the ",
             max_positions(config.text), " positions the model allows (max_position_embeddings ",
             config.text.max_position_embeddings, ")");
    const auto start = Clock::now();
    const MplugOwl2LlamaForCausalLM<T> model = load_cli_model<T>(o.model, config);
    if (o.report.timings) std::cerr << "timings: model loaded in " << seconds_since(start) << " s\n";
    const std::vector<Matrix<T>> features = encode_cli_images(model, pixels, o.report);

    // 2. turn after turn until an empty line or the end of the input
    Conversation conv;
    for (std::uint64_t turn = 0;; ++turn) {
        out << Conversation::kUser << ": " << std::flush;
        std::string line;
        if (!std::getline(in, line)) line.clear();
        if (line.empty()) {
            out << "exit...\n" << std::flush;
            break;
        }
        out << Conversation::kAssistant << ": " << std::flush;
        conv.add_user_turn(line, turn == 0 ? static_cast<int>(o.images.size()) : 0);
        const std::vector<std::int64_t> prompt = tok->encode_prompt(conv.prompt());
        GenerateOptions gen = o.gen;
        gen.seed += turn;
        check_context(prompt_positions(prompt, config), 0, config.text,
                      "--max-new-tokens");
        const std::vector<std::int64_t> reply = answer_turn(model, tok.get(), prompt, features, gen, o.report, out);
        conv.set_reply(strip(tok->decode(reply, false)));
    }
    if (o.report.timings) std::cerr << memory_timings();
}

inline void register_chat(CLI::App& app) {
    auto* sub = app.add_subcommand("chat", "Talk with the model about images on stdin and stdout, as the official CLI");
    auto o = std::make_shared<ChatOptions>();
    o->gen.temperature = 0.2;  // the official CLI's default
    add_model_options(sub, o->model);
    sub->add_option("--image", o->images, "image file shown on the first turn (repeatable)");
    add_generate_options(sub, o->gen);
    add_report_options(sub, o->report);
    sub->callback([o] { with_dtype(o->model, [&](auto tag) { run_chat<decltype(tag)>(*o, std::cin, std::cout); }); });
}

}  // namespace cli
