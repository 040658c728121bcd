// `mplug-owl2 score` and `mplug-owl2 merge` end to end: the table and the
// --json last line of a run file (values computed by hand below), a run
// killed mid-line still scored, shards merged into one process's bytes,
// mismatched shards and bad usage refused with the documented exit codes.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "cli_run.hpp"
#include "mplug_owl2/eval/run_file.hpp"

using namespace mplug_owl2::eval;
namespace fs = std::filesystem;

namespace {

std::string tmp(const std::string& name) {
    const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / "score_cli";
    fs::create_directories(dir);
    fs::remove(dir / name);
    return (dir / name).string();
}

cli_run::Run run(const std::string& args, const std::string& tag) { return cli_run::run(args, "score_cli_" + tag); }

std::string last_line(const std::string& text) {
    const std::size_t end = text.find_last_not_of('\n');
    const std::size_t start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

ResultLine pope(std::size_t sample, const std::string& ablation, const std::string& answer, const std::string& prediction) {
    ResultLine r;
    r.id = "p" + std::to_string(sample);
    r.sample = sample;
    r.benchmark = "pope";
    r.category = "random";
    r.image = "img" + std::to_string(sample);
    r.ablation = ablation;
    r.answer = answer;
    r.prediction = prediction;
    return r;
}

const Json kSettings = {{"benchmark", "pope"}, {"ablations", {"official", "text"}}};

}  // namespace

TEST_CASE("score prints a table and the scores as the last JSON line") {
    const std::string path = tmp("run.jsonl");
    {
        RunWriter w(path, make_header("tiny", "abc", "0.1.0", kSettings));
        w.write(pope(0, "official", "yes", "Yes"));  // TP
        w.write(pope(0, "text", "yes", "No"));       // FN
        w.write(pope(1, "official", "no", "No"));    // TN
        w.write(pope(1, "text", "no", "Yes"));       // FP
    }
    std::ofstream(path, std::ios::app) << "{\"id\": \"p2\", \"bench";  // a killed run's partial line
    const auto r = run("score '" + path + "' --json", "json");
    REQUIRE(r.code == 0);
    CHECK(r.out.rfind("benchmark  ablation  metric", 0) == 0);
    CHECK(r.out.find("pope       official  accuracy          1.0000\n") != std::string::npos);
    // official: TP 1, TN 1 -> everything 1, yes ratio 1/2; text: FN 1, FP 1 -> everything 0, yes ratio 1/2
    const Json s = Json::parse(last_line(r.out));
    CHECK(s["pope"]["official"]["accuracy"] == 1.0);
    CHECK(s["pope"]["official"]["f1"] == 1.0);
    CHECK(s["pope"]["official"]["yes_ratio"] == 0.5);
    CHECK(s["pope"]["text"]["accuracy"] == 0.0);
    CHECK(s["pope"]["text"]["precision"] == 0.0);
    CHECK(s["pope"]["text"]["yes_ratio"] == 0.5);
    CHECK(s["pope"]["text"]["random/n"] == 2);
    // without --json: the table only
    const auto t = run("score '" + path + "'", "table");
    CHECK(t.code == 0);
    CHECK(t.out.find('{') == std::string::npos);
}

TEST_CASE("merge writes the single-process file and refuses other runs' shards") {
    const std::string one = tmp("one.jsonl"), s0 = tmp("s0.jsonl"), s1 = tmp("s1.jsonl"), out = tmp("merged.jsonl");
    {
        RunWriter w(one, make_header("tiny", "abc", "0.1.0", kSettings));
        RunWriter w0(s0, make_header("tiny", "abc", "0.1.0", kSettings, 0, 2));
        RunWriter w1(s1, make_header("tiny", "abc", "0.1.0", kSettings, 1, 2));
        for (std::size_t q = 0; q < 4; ++q)
            for (const char* a : {"official", "text"}) {
                w.write(pope(q, a, "yes", "yes"));
                (q % 2 ? w1 : w0).write(pope(q, a, "yes", "yes"));
            }
    }
    const auto r = run("merge '" + s1 + "' '" + s0 + "' --out '" + out + "'", "merge");
    REQUIRE(r.code == 0);
    CHECK(r.err == "merged 2 files: 8 lines, 0 duplicates dropped\n");
    CHECK(cli_run::read_file(out) == cli_run::read_file(one));

    const std::string other = tmp("other.jsonl");
    {
        RunWriter w(other, make_header("tiny", "abc", "0.1.0", Json{{"benchmark", "mme"}}, 1, 2));
        w.write(pope(1, "official", "yes", "yes"));
    }
    const auto bad = run("merge '" + s0 + "' '" + other + "' --out '" + tmp("bad.jsonl") + "'", "mismatch");
    CHECK(bad.code == 2);
    CHECK(bad.err.rfind("error: ", 0) == 0);
    CHECK(bad.err.find("other.jsonl: its header differs") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp("bad.jsonl")));
    CHECK(run("merge '" + s0 + "'", "no_out").code == 1);
    CHECK(run("score", "no_files").code == 1);
    const auto dup = run("score '" + s0 + "' '" + s0 + "'", "dup");
    CHECK(dup.code == 2);
    CHECK(dup.err.find("was already read at") != std::string::npos);
}
