// The run file: the result-line schema, the writer that appends one flushed
// line at a time, resuming after a kill (a partial last line is dropped and
// rewritten, finished pairs are skipped), and merge: shards joined into the
// bytes one process writes (by question, then ablation), duplicates dropped,
// other runs' shards refused.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mplug_owl2/eval/run_file.hpp"

using namespace mplug_owl2;
using namespace mplug_owl2::eval;
namespace fs = std::filesystem;

namespace {

std::string tmp(const std::string& name) {
    const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / "eval_run_file";
    fs::create_directories(dir);
    fs::remove(dir / name);
    return (dir / name).string();
}

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

const Json kSettings = {{"benchmark", "mme"}, {"data", "MME.tsv"}, {"ablations", {"official", "text"}}};

ResultLine result(std::size_t sample, const std::string& ablation) {
    ResultLine r;
    r.id = std::to_string(100 + sample);
    r.sample = sample;
    r.benchmark = "mme";
    r.category = "count";
    r.image = std::to_string(100 + sample / 2 * 2);
    r.ablation = ablation;
    r.prompt = "USER: <|image|>q" + std::to_string(sample) + "\nAnswer the question using a single word or phrase. ASSISTANT: ";
    r.answer = sample % 2 ? "No" : "Yes";
    r.prediction = ablation == "official" ? "Yes" : "No";
    r.generated_ids = {3869, 2};
    r.seconds = 0.25;
    return r;
}

}  // namespace

TEST_CASE("result lines keep the schema's fields in order") {
    ResultLine r = result(3, "text");
    r.choices = {{"A", "x"}, {"B", "y"}};
    const Json j = to_json(r);
    CHECK(j.dump() ==
          "{\"id\":\"103\",\"sample\":3,\"benchmark\":\"mme\",\"category\":\"count\",\"image\":\"102\",\"ablation\":"
          "\"text\",\"prompt\":\"USER: <|image|>q3\\nAnswer the question using a single word or phrase. ASSISTANT: \","
          "\"answer\":\"No\",\"choices\":{\"A\":\"x\",\"B\":\"y\"},\"prediction\":\"No\",\"generated_ids\":[3869,2],"
          "\"seconds\":0.25}");
    const ResultLine back = result_from_json(j, "f:2");
    CHECK(back.id == "103");
    CHECK(back.sample == std::optional<std::size_t>(3));
    CHECK(back.generated_ids == std::vector<std::int64_t>{3869, 2});
    CHECK(back.choices == r.choices);
    // another tool's line: an integer id, no ablation (official), no sample
    const ResultLine other = result_from_json(Json::parse(R"({"id": 5, "benchmark": "pope", "answer": "yes", "prediction": "no"})"), "f:3");
    CHECK(other.id == "5");
    CHECK(other.ablation == "official");
    CHECK_FALSE(other.sample);
    CHECK(error_of([] { result_from_json(Json::parse(R"({"id": 5, "benchmark": "pope", "answer": "yes"})"), "f:4"); }) ==
          "f:4: no \"prediction\"");
    CHECK(is_header_line(make_header("m", "h", "0.1.0", kSettings)));
    CHECK(is_header_line(Json::parse(R"({"model": "x", "settings": {}})")));
    CHECK_FALSE(is_header_line(to_json(r)));
}

TEST_CASE("a question's line carries its id position image key answer and choices") {
    Sample s;
    s.id = "1000007";
    s.order = 4;
    s.benchmark = Benchmark::Mmbench;
    s.category = "ocr";
    s.image_key = "7";
    s.answer = "B";
    s.choices = {{"A", "one"}, {"B", "two"}};
    const ResultLine r = result_line(s, "text", "USER: ...");
    CHECK(to_json(r).dump() == "{\"id\":\"1000007\",\"sample\":4,\"benchmark\":\"mmbench\",\"category\":\"ocr\","
                               "\"image\":\"7\",\"ablation\":\"text\",\"prompt\":\"USER: ...\",\"answer\":\"B\","
                               "\"choices\":{\"A\":\"one\",\"B\":\"two\"},\"prediction\":\"\",\"generated_ids\":[],"
                               "\"seconds\":0.0}");
    s.choices.clear();
    CHECK(result_line(s, "official", "p").choices.is_null());
    // shard 1 of 3 takes questions 1, 4, 7, ...
    CHECK(in_shard(4, 1, 3));
    CHECK_FALSE(in_shard(5, 1, 3));
    CHECK(error_of([] { in_shard(0, 3, 3); }) == "--shard 3/3: expected I/N with 0 <= I < N");
}

TEST_CASE("a killed run resumes: the partial last line is dropped and rewritten") {
    const std::string path = tmp("resume.jsonl");
    const Json header = make_header("tiny", "abc", "0.1.0", kSettings);
    {
        RunWriter w(path, header);
        w.write(result(0, "official"));
        w.write(result(0, "text"));
    }
    const std::string whole = read(path);
    // the kill: half of the next line, without its line break
    const std::string next = to_json(result(1, "official")).dump() + "\n";
    std::ofstream(path, std::ios::binary | std::ios::app) << next.substr(0, 40);
    const RunFile f = read_run_file(path);
    CHECK(f.partial_last_line);
    CHECK(f.lines.size() == 2);
    CHECK(f.complete_bytes == whole.size());
    {
        RunWriter w(path, header);
        CHECK(w.finished() == std::set<std::pair<std::string, std::string>>{{"100", "official"}, {"100", "text"}});
        CHECK(w.is_finished("100", "text"));
        CHECK_FALSE(w.is_finished("101", "official"));
        CHECK(read(path) == whole);  // cut back to the last whole line
        w.write(result(1, "official"));
    }
    CHECK(read(path) == whole + next);
    // other settings: refused
    CHECK(error_of([&] { RunWriter(path, make_header("tiny", "abd", "0.1.0", kSettings)); })
              .find("resume.jsonl: was written with other settings") != std::string::npos);
    // killed while writing the header: started afresh
    const std::string early = tmp("early.jsonl");
    std::ofstream(early, std::ios::binary) << header.dump().substr(0, 10);
    {
        RunWriter w(early, header);
        CHECK(w.finished().empty());
    }
    CHECK(read(early) == header.dump() + "\n");
    // a broken line that is not the last: refused with its number
    std::ofstream(path, std::ios::binary | std::ios::app) << "{broken\n" << next;
    CHECK(error_of([&] { read_run_file(path); }).find("resume.jsonl:5: not a JSON line") != std::string::npos);
}

TEST_CASE("merged shards equal the lines of one process in question then ablation order") {
    // 5 questions x 2 ablations; shard I of 2 holds questions I, I+2, ...
    // and writes them in an order of its own (text before official).
    const std::string one = tmp("single.jsonl"), s0 = tmp("shard0.jsonl"), s1 = tmp("shard1.jsonl");
    {
        RunWriter single(one, make_header("tiny", "abc", "0.1.0", kSettings));
        RunWriter w0(s0, make_header("tiny", "abc", "0.1.0", kSettings, 0, 2));
        RunWriter w1(s1, make_header("tiny", "abc", "0.1.0", kSettings, 1, 2));
        for (std::size_t q = 0; q < 5; ++q)
            for (const char* a : {"official", "text"}) single.write(result(q, a));
        for (std::size_t q = 0; q < 5; ++q)
            for (const char* a : {"text", "official"}) (q % 2 ? w1 : w0).write(result(q, a));
    }
    MergeReport report;
    CHECK(merge_run_files({s1, s0}, report) == read(one));
    CHECK(report.lines == 10);
    CHECK(report.duplicates == 0);
    CHECK(report.missing_shards.empty());
    // a shard given twice: its lines are dropped as duplicates, the result is the same
    MergeReport again;
    CHECK(merge_run_files({s0, s1, s1}, again) == read(one));
    CHECK(again.duplicates == 4);
    // a shard missing: reported
    MergeReport partial;
    merge_run_files({s0}, partial);
    CHECK(partial.missing_shards == std::vector<std::size_t>{1});
    CHECK(partial.lines == 6);
}

TEST_CASE("merge refuses shards of different runs and lines it cannot order") {
    const std::string a = tmp("a.jsonl"), b = tmp("b.jsonl"), c = tmp("c.jsonl");
    {
        RunWriter wa(a, make_header("tiny", "abc", "0.1.0", kSettings, 0, 2));
        RunWriter wb(b, make_header("tiny", "xyz", "0.1.0", kSettings, 1, 2));
        wa.write(result(0, "official"));
        wb.write(result(1, "official"));
    }
    MergeReport r;
    CHECK(error_of([&] { merge_run_files({a, b}, r); }).find("b.jsonl: its header differs from that of") !=
          std::string::npos);
    {
        RunWriter wc(c, make_header("tiny", "abc", "0.1.0", kSettings, 1, 2));
        ResultLine no_sample = result(1, "official");
        no_sample.sample.reset();
        wc.write(no_sample);
        wc.write(result(3, "swap"));
    }
    CHECK(error_of([&] { merge_run_files({a, c}, r); }).find("c.jsonl:2: no \"sample\"") != std::string::npos);
    CHECK(error_of([&] { merge_run_files({}, r); }) == "merge: no shard files given");
}
