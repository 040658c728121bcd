// Running the built mplug-owl2 program from a test: its exit code, stdout and
// stderr (each through a file under the test folder named after `tag`).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace cli_run {

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct Run {
    int code = -1;  // the exit code, -1 when the program did not exit normally
    std::string out, err;
};

// `MPLUG_OWL2_CLI args` in a shell, stdin `input` (empty: none), after
// `shell_prefix` in the same shell (e.g. "ulimit -f 8; ").
inline Run run(const std::string& args, const std::string& tag, const std::string& input = "",
               const std::string& shell_prefix = "") {
    const std::string base = std::string(MPLUG_OWL2_TEST_TMP) + "/" + tag;
    std::string cmd = shell_prefix + "'" + MPLUG_OWL2_CLI + "' " + args + " > '" + base + ".stdout' 2> '" + base +
                      ".stderr'";
    if (input.empty()) {
        cmd += " < /dev/null";
    } else {
        std::ofstream(base + ".stdin", std::ios::binary) << input;
        cmd += " < '" + base + ".stdin'";
    }
    const int status = std::system(cmd.c_str());
    Run r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(base + ".stdout");
    r.err = read_file(base + ".stderr");
    return r;
}

}  // namespace cli_run
