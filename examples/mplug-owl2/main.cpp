// mplug-owl2: the command-line program of the library.
//   mplug-owl2 info  --model DIR      what a checkpoint folder holds
//   mplug-owl2 trace --model DIR ...  run the model and write every activation
//   mplug-owl2 ablate --model DIR --cases FILE ...  ablations of the modality-adaptive module, as a table
//   mplug-owl2 answer --model DIR ... answer a question about images
//   mplug-owl2 chat --model DIR ...   talk about images on stdin and stdout
//   mplug-owl2 synth-checkpoint ...   write a random-weight checkpoint in the published layout
// Errors print one line "error: ..." on stderr and exit with code 2; usage
// errors (unknown options, bad values) exit with code 1.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>

#include "command_ablate.hpp"
#include "command_answer.hpp"
#include "command_bench.hpp"
#include "command_chat.hpp"
#include "command_info.hpp"
#include "command_merge.hpp"
#include "command_score.hpp"
#include "command_synth_checkpoint.hpp"
#include "command_trace.hpp"

// The message as one line: text quoted from input (an id list, a file's
// contents) may hold line breaks.
static std::string one_line(std::string message) {
    for (char& c : message)
        if (c == '\n' || c == '\r') c = ' ';
    return message;
}

int main(int argc, char** argv) {
    CLI::App app{"mPLUG-Owl2 in C++: run, trace and study the model"};
    app.require_subcommand(1);
    app.failure_message([](const CLI::App*, const CLI::Error& e) { return std::string("error: ") + e.what() + "\n"; });
    cli::register_info(app);
    cli::register_trace(app);
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
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << one_line(e.what()) << "\n";
        return 2;
    }
    return 0;
}
