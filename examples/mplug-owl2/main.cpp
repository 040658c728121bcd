// mplug-owl2: the command-line program of the library.
//   mplug-owl2 info  --model DIR      what a checkpoint folder holds: sizes, parameters, memory, files
//   mplug-owl2 tokenize / detokenize  a prompt's token ids, the text of ids
//   mplug-owl2 trace --model DIR ...  run the model and write every activation
//   mplug-owl2 inspect TRACE ...      a trace's tensors, one tensor's values, or two traces compared
//   mplug-owl2 ablate --model DIR --cases FILE ...  ablations of the modality-adaptive module, as a table
//   mplug-owl2 answer --model DIR ... answer a question about images
//   mplug-owl2 chat --model DIR ...   talk about images on stdin and stdout
//   mplug-owl2 synth-checkpoint ...   write a random-weight checkpoint in the published layout
// Errors print one line "error: ..." on stderr and exit with code 2; usage
// errors (unknown options, bad values) exit with code 1. The commands that
// run a model default --model to the tiny random-weight model
// (common_options.hpp); --help shows every default.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>

#include "command_ablate.hpp"
#include "command_answer.hpp"
#include "command_bench.hpp"
#include "command_chat.hpp"
#include "command_info.hpp"
#include "command_inspect.hpp"
#include "command_merge.hpp"
#include "command_score.hpp"
#include "command_synth_checkpoint.hpp"
#include "command_tokenize.hpp"
#include "command_trace.hpp"

// The message as one line: text quoted from input (an id list, a file's
// contents) may hold line breaks.
static std::string one_line(std::string message) {
    for (char& c : message)
        if (c == '\n' || c == '\r') c = ' ';
    return message;
}

// What a failed parse is about. CLI11 checks required options before it
// looks at arguments it did not recognise, so a mistyped option would be
// reported as a missing one: the arguments left over are named first.
static std::string usage_error(const CLI::App& app, const CLI::ParseError& e) {
    const CLI::App* sub = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
    std::vector<std::string> extra = app.remaining();
    if (sub) {
        const std::vector<std::string> more = sub->remaining();
        extra.insert(extra.begin(), more.begin(), more.end());
    }
    if (extra.empty()) return e.what();
    std::string subcommands;
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) subcommands += (subcommands.empty() ? "" : ", ") + s->get_name();
    const std::string& first = extra.front();
    if (!sub) return "unknown subcommand " + first + " (the subcommands: " + subcommands + ")";
    std::string names;
    for (const std::string& x : extra) names += (names.empty() ? "" : " ") + x;
    return sub->get_name() + ": " + (first.rfind("-", 0) == 0 ? "unknown option " : "unexpected argument ") + names +
           " (see " + sub->get_name() + " --help)";
}

int main(int argc, char** argv) {
    CLI::App app{"mPLUG-Owl2 in C++: run, trace and study the model"};
    app.require_subcommand(1);
    app.option_defaults()->always_capture_default();  // --help shows every default
    cli::register_info(app);
    cli::register_tokenize(app);
    cli::register_trace(app);
    cli::register_inspect(app);
    cli::register_ablate(app);
    cli::register_answer(app);
    cli::register_chat(app);
    cli::register_synth_checkpoint(app);
    cli::register_bench(app);
    cli::register_score(app);
    cli::register_merge(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "error: " << one_line(usage_error(app, e)) << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }
    return 0;
}
