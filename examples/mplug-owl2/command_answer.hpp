// `mplug-owl2 answer`: one question about images, answered as the released
// model is used. The question goes into the release's chat template
// ("USER: <|image|>question ASSISTANT:", io/conversation.hpp), is tokenised
// with the checkpoint's tokenizer.model as the official code does, and the
// answer is generated greedily (the official evaluation setting) or by
// sampling, until the end-of-sequence id, a token whose text holds "</s>"
// (the official stopping criterion) or the token budget. The answer is
// printed as it comes, decoded with special tokens skipped, as the official
// CLI streams it.
//
// Without tokenizer.model (e.g. a synthetic checkpoint) --prompt-ids gives
// the prompt as ids and the answer is printed as ids.
//
// On stderr: with --print-prompt-ids "prompt ids: ..." and with --ids "ids:
// ..." (comma-separated, as --prompt-ids takes them); with --timings the
// time each stage took, the peak resident memory and how much of the
// mapped checkpoint the kernel maps in 2 MB pages.
#pragma once

#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common_options.hpp"
#include "mplug_owl2/io/conversation.hpp"
#include "mplug_owl2/io/tokenizer.hpp"

namespace cli {

// What each turn reports besides the answer.
struct ReportOptions {
    bool ids = false;
    bool prompt_ids = false;
    bool timings = false;
};

inline void add_report_options(CLI::App* sub, ReportOptions& o) {
    sub->add_flag("--ids", o.ids, "print the generated ids on stderr (\"ids: ...\")");
    sub->add_flag("--print-prompt-ids", o.prompt_ids, "print each prompt's ids on stderr (\"prompt ids: ...\")");
    sub->add_flag("--timings", o.timings, "print load, image, prefill and decoding times on stderr");
}

inline bool has_tokenizer(const std::string& dir) {
    struct stat st {};
    return ::stat((dir + "/tokenizer.model").c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline std::unique_ptr<mplug_owl2::Tokenizer> require_tokenizer(const std::string& dir, const char* without) {
    if (!has_tokenizer(dir))
        mplug_owl2::fail(dir, "/tokenizer.model: not found; the prompt is tokenised with the checkpoint's LLaMA "
                              "tokenizer (tokenizer.model, tokenizer_config.json, special_tokens_map.json of the "
                              "release)", without);
    return std::make_unique<mplug_owl2::Tokenizer>(dir);
}

// A field of a /proc/self file, in GB of 10⁹ bytes (the file gives kB), or -1.
inline double proc_self_gb(const char* file, const std::string& field) {
    std::ifstream in(std::string("/proc/self/") + file);
    std::string key;
    while (in >> key) {
        if (key == field) {
            double kb = 0;
            in >> kb;
            return kb * 1024.0 / 1e9;
        }
        in.ignore(1 << 20, '\n');
    }
    return -1;
}

// Peak resident memory of this process so far (VmHWM).
inline double peak_resident_gb() { return proc_self_gb("status", "VmHWM:"); }

// The last line of --timings: the peak resident memory (VmHWM) and, of the
// files this process maps (the checkpoint's, chiefly), the part mapped in
// 2 MB pages (FilePmdMapped; io/mapped_file.hpp says why it matters).
inline std::string memory_timings() {
    std::ostringstream line;
    line << "timings: peak resident memory " << peak_resident_gb() << " GB; of the mapped files, ";
    const double huge = proc_self_gb("smaps_rollup", "FilePmdMapped:");
    if (huge < 0)
        line << "the part in 2 MB pages is not reported by this kernel\n";
    else
        line << huge << " GB in 2 MB pages\n";
    return line.str();
}

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Prints the answer while it is generated: the text of the ids so far,
// decoded with special tokens skipped, minus what is already printed. Text
// that ends in U+FFFD (an incomplete UTF-8 character of byte tokens) waits
// for the next token.
class AnswerStream {
public:
    AnswerStream(const mplug_owl2::Tokenizer& tok, std::ostream& out) : tok_(tok), out_(out) {}

    void add(std::int64_t id) {
        ids_.push_back(id);
        emit(false);
    }
    void finish() {
        emit(true);
        out_ << "\n" << std::flush;
    }

private:
    void emit(bool last) {
        const std::string text = tok_.decode(ids_, true);
        static const std::string replacement = "\xEF\xBF\xBD";
        if (!last && text.size() >= 3 && text.compare(text.size() - 3, 3, replacement) == 0) return;
        if (text.compare(0, printed_.size(), printed_) != 0) return;  // cannot take back what is printed
        out_ << text.substr(printed_.size()) << std::flush;
        printed_ = text;
    }

    const mplug_owl2::Tokenizer& tok_;
    std::ostream& out_;
    std::vector<std::int64_t> ids_;
    std::string printed_;
};

// One turn: the prompt's ids with one marker per image feature -> the
// generated ids, the answer printed to `out` as it comes (as text with a
// tokenizer, else as ids) and the reports on stderr.
template <class T>
std::vector<std::int64_t> answer_turn(const mplug_owl2::MplugOwl2LlamaForCausalLM<T>& model,
                                      const mplug_owl2::Tokenizer* tok, const std::vector<std::int64_t>& ids,
                                      const std::vector<mplug_owl2::Matrix<T>>& image_features,
                                      const GenerateOptions& gen, const ReportOptions& report, std::ostream& out) {
    using namespace mplug_owl2;
    if (report.prompt_ids) std::cerr << "prompt ids: " << ids_text(ids) << "\n";
    const Hooks<T> hooks;
    const auto start = Clock::now();

    // 1. the prefill (logits of the last position only)
    const GenerationConfig g0 = generation_config(gen);
    KVCache<T> cache = model.new_cache();
    const PreparedInputs<T> in = model.prepare_inputs(ids, image_features, hooks);
    model.reserve_cache(cache, in.inputs_embeds.shape(0), g0.max_new_tokens);
    const Matrix<T> logits = model.prefill(in, cache, hooks);
    const double prefill = seconds_since(start);

    // 2. the tokens, printed as they come; a token whose text holds the
    //    template's stop string ends the turn, as KeywordsStoppingCriteria does
    std::unique_ptr<AnswerStream> stream = tok ? std::make_unique<AnswerStream>(*tok, out) : nullptr;
    GenerationConfig g = g0;
    double first_token = 0, last_token = 0;
    g.on_token = [&](std::int64_t id) {
        last_token = seconds_since(start);
        if (first_token == 0) first_token = last_token;
        if (!tok) return true;
        stream->add(id);
        return tok->decode({static_cast<int>(id)}, true).find(Conversation::stop_string()) == std::string::npos;
    };
    const Generation<T> result = model.generate(logits, cache, g, hooks);
    if (stream)
        stream->finish();
    else
        out << ids_text(result.ids) << "\n" << std::flush;

    // 3. the reports
    if (report.ids) std::cerr << "ids: " << ids_text(result.ids) << "\n";
    if (report.timings) {
        std::cerr << "timings: prompt of " << ids.size() << " ids (" << in.modality_indicators.size()
                  << " positions): prefill " << prefill << " s, first token after " << first_token << " s; "
                  << result.ids.size() << " tokens (stop: " << stop_reason_name(result.stop) << ")";
        if (result.ids.size() > 1)
            std::cerr << ", the " << result.ids.size() - 1 << " after the first in " << last_token - first_token
                      << " s = " << double(result.ids.size() - 1) / (last_token - first_token) << " tokens/s";
        std::cerr << "\n";
    }
    return result.ids;
}

// Encodes the images once for every turn that shows them.
template <class T>
std::vector<mplug_owl2::Matrix<T>> encode_cli_images(const mplug_owl2::MplugOwl2LlamaForCausalLM<T>& model,
                                                     const xt::xtensor<T, 4>& pixels, const ReportOptions& report) {
    const auto start = Clock::now();
    std::vector<mplug_owl2::Matrix<T>> features = model.encode_images(pixels, mplug_owl2::Hooks<T>());
    if (report.timings && pixels.shape(0) > 0)
        std::cerr << "timings: " << pixels.shape(0) << " image(s) through the vision encoder and abstractor in "
                  << seconds_since(start) << " s\n";
    return features;
}

struct AnswerOptions {
    ModelOptions model;
    std::vector<std::string> images;
    std::string prompt, prompt_ids;
    bool by_ids = false;  // --prompt-ids given
    GenerateOptions gen;
    ReportOptions report;
};

template <class T>
void run_answer(const AnswerOptions& o) {
    using namespace mplug_owl2;
    // 1. the prompt and its images, then the model (the slow part)
    const ModelConfig config = load_config(o.model.model_dir + "/config.json");
    std::unique_ptr<Tokenizer> tok;
    std::vector<std::int64_t> ids;
    if (o.by_ids) {
        if (has_tokenizer(o.model.model_dir)) tok = std::make_unique<Tokenizer>(o.model.model_dir);
        ids = parse_ids(o.prompt_ids, "--prompt-ids");
    } else {
        tok = require_tokenizer(o.model.model_dir, "; or give the prompt as --prompt-ids");
        Conversation conv;
        conv.add_user_turn(o.prompt, static_cast<int>(o.images.size()));
        ids = tok->encode_prompt(conv.prompt());
    }
    const xt::xtensor<T, 4> pixels = image_pixels<T>(o.model, config, o.images);
    check_prompt(ids, pixels.shape(0), static_cast<std::size_t>(config.text.vocab_size));
    generation_config(o.gen);  // refuses bad generation options before the load
    check_prompt_context(ids, o.gen.max_new_tokens, config, "--max-new-tokens");
    const auto start = Clock::now();
    const MplugOwl2LlamaForCausalLM<T> model = load_cli_model<T>(o.model, config);
    if (o.report.timings) std::cerr << "timings: model loaded in " << seconds_since(start) << " s\n";

    // 2. the answer
    answer_turn(model, tok.get(), ids, encode_cli_images(model, pixels, o.report), o.gen, o.report, std::cout);
    if (o.report.timings) std::cerr << memory_timings();
}

inline void register_answer(CLI::App& app) {
    auto* sub = app.add_subcommand("answer", "Answer one question about images with the release's chat template");
    auto o = std::make_shared<AnswerOptions>();
    add_model_options(sub, o->model);
    sub->add_option("--image", o->images, "image file (repeatable; all are shown before the question)");
    auto* prompt = sub->add_option("--prompt", o->prompt, "the question");
    auto* ids = sub->add_option("--prompt-ids", o->prompt_ids,
                                "the whole prompt as token ids instead, comma-separated; -200 marks an image");
    prompt->excludes(ids);
    add_generate_options(sub, o->gen);
    add_report_options(sub, o->report);
    sub->callback([o, prompt, ids] {
        if (prompt->count() == 0 && ids->count() == 0) throw CLI::RequiredError("--prompt or --prompt-ids");
        o->by_ids = ids->count() > 0;
        with_dtype(o->model, [&](auto tag) { run_answer<decltype(tag)>(*o); });
    });
}

}  // namespace cli
