#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "ks/error.hpp"
#include "ks/settings.hpp"

namespace {

ks::Exit code_of(const std::function<void()>& f, std::string* msg = nullptr) {
    try {
        f();
    } catch (const ks::Error& e) {
        if (msg) *msg = e.what();
        return e.code();
    }
    return ks::Exit::ok;
}

std::string temp_file(const std::string& name, const std::string& content) {
    const std::string path = ::testing::TempDir() + "ks_settings_" + name;
    std::ofstream(path) << content;
    return path;
}

TEST(Settings, DefaultsMatchKilosort4Table) {
    ks::Settings s;
    EXPECT_TRUE(s.is_none("n_chan_bin"));
    EXPECT_EQ(s.get_float("fs"), 30000);
    EXPECT_EQ(s.get_int("batch_size"), 60000);
    EXPECT_EQ(s.get_int("nblocks"), 1);
    EXPECT_EQ(s.get_float("Th_universal"), 9);
    EXPECT_EQ(s.get_float("Th_learned"), 8);
    EXPECT_TRUE(std::isinf(s.get_float("tmax")));
    EXPECT_EQ(s.get_int("nt"), 61);
    EXPECT_TRUE(s.is_none("shift"));
    EXPECT_TRUE(std::isinf(s.get_float("artifact_threshold")));
    EXPECT_EQ(s.get_int("nskip"), 25);
    EXPECT_EQ(s.get_int("whitening_range"), 32);
    EXPECT_EQ(s.get_float("highpass_cutoff"), 300);
    EXPECT_EQ(s.get_list("drift_smoothing"), (std::vector<double>{0.5, 0.5, 0.5}));
    EXPECT_TRUE(s.is_none("nt0min"));
    EXPECT_TRUE(s.is_none("dmin"));
    EXPECT_EQ(s.get_float("dminx"), 32);
    EXPECT_EQ(s.get_int("template_sizes"), 5);
    EXPECT_EQ(s.get_int("max_peels"), 100);
    EXPECT_TRUE(s.get_bool("templates_from_data"));
    EXPECT_EQ(s.get_float("acg_threshold"), 0.2);
    EXPECT_EQ(s.get_float("ccg_threshold"), 0.25);
    EXPECT_EQ(s.get_int("max_cluster_subset"), 25000);
    EXPECT_EQ(s.get_float("duplicate_spike_ms"), 0.25);
    EXPECT_EQ(s.get_float("position_limit"), 100);
    EXPECT_EQ(s.get_string("data_dtype"), "int16");
    EXPECT_TRUE(s.changed().empty());
}

TEST(Settings, EveryKilosort4SettingIsInTheTable) {
    // The 41 names of Kilosort4's parameter table (MAIN_PARAMETERS + EXTRA_PARAMETERS).
    const char* names[] = {"n_chan_bin", "fs", "batch_size", "nblocks", "Th_universal", "Th_learned", "tmin", "tmax",
                           "nt", "shift", "scale", "artifact_threshold", "nskip", "whitening_range",
                           "highpass_cutoff", "binning_depth", "sig_interp", "drift_smoothing", "nt0min", "dmin",
                           "dminx", "min_template_size", "template_sizes", "nearest_chans", "nearest_templates",
                           "max_channel_distance", "max_peels", "templates_from_data", "n_templates", "n_pcs",
                           "Th_single_ch", "acg_threshold", "ccg_threshold", "cluster_neighbors",
                           "cluster_downsampling", "max_cluster_subset", "x_centers", "duplicate_spike_ms",
                           "position_limit"};
    for (const char* n : names) {
        const ks::SettingSpec* s = ks::Settings::find(n);
        ASSERT_NE(s, nullptr) << n;
        EXPECT_TRUE(s->ks4) << n;
        EXPECT_FALSE(s->description.empty()) << n;
        EXPECT_FALSE(s->stage.empty()) << n;
    }
}

TEST(Settings, SetFromStringParsesEachType) {
    ks::Settings s;
    s.set_from_string("n_chan_bin=385");
    s.set_from_string("fs=2.5e4");
    s.set_from_string("tmax=inf");
    s.set_from_string("templates_from_data=False");
    s.set_from_string("drift_smoothing=[1, 0.5, 2]");
    s.set_from_string("common_reference=none");  // a choice named none is the string, not None
    EXPECT_EQ(s.get_string("common_reference"), "none");
    s.set_from_string("common_reference=mean");
    s.set_from_string("shift=-3.5");
    s.set_from_string("max_cluster_subset=None");
    EXPECT_EQ(s.get_int("n_chan_bin"), 385);
    EXPECT_EQ(s.get_float("fs"), 25000);
    EXPECT_TRUE(std::isinf(s.get_float("tmax")));
    EXPECT_FALSE(s.get_bool("templates_from_data"));
    EXPECT_EQ(s.get_list("drift_smoothing"), (std::vector<double>{1, 0.5, 2}));
    EXPECT_EQ(s.get_string("common_reference"), "mean");
    EXPECT_EQ(s.get_float("shift"), -3.5);
    EXPECT_TRUE(s.is_none("max_cluster_subset"));
    EXPECT_EQ(s.origin("fs"), "--set");
    EXPECT_EQ(s.changed().size(), 7u);  // tmax=inf is the default
}

TEST(Settings, OutOfRangeNamesSettingAndRange) {
    ks::Settings s;
    std::string msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("batch_size=0"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("batch_size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, inf]"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("Th_universal=0"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("not allowed"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("max_peels=10001"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("10000"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("nt=2.5"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("data_dtype=int8"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("int16"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("drift_smoothing=1,2"); }, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of([&] { s.set_from_string("fs=None"); }, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of([&] { s.set_from_string("fs"); }, &msg), ks::Exit::usage);
    // A rejected value leaves the previous one in place.
    EXPECT_EQ(s.get_int("batch_size"), 60000);
}

TEST(Settings, UnknownKeySuggestsNearestName) {
    ks::Settings s;
    std::string msg;
    EXPECT_EQ(code_of([&] { s.set_from_string("Th_lerned=7"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("did you mean 'Th_learned'"), std::string::npos) << msg;
    EXPECT_EQ(ks::Settings::suggest("nchan_bin"), "n_chan_bin");
    EXPECT_EQ(ks::Settings::suggest("batchsize"), "batch_size");
    EXPECT_EQ(ks::Settings::suggest("highpass"), "highpass_cutoff");
}

TEST(Settings, JsonFilesLaterWinsAndSetWinsOverFiles) {
    const std::string a = temp_file("a.json", R"({"n_chan_bin": 385, "fs": 30000.0, "Th_learned": 7})");
    const std::string b = temp_file("b.json", R"({"Th_learned": 6, "tmax": "inf", "drift_smoothing": [0.5, 1, 0.5],
                                                  "dmin": null, "templates_from_data": false})");
    ks::Settings s;
    s.load_json_file(a);
    s.load_json_file(b);
    EXPECT_EQ(s.get_float("Th_learned"), 6);
    EXPECT_EQ(s.origin("Th_learned"), b);
    EXPECT_EQ(s.get_int("n_chan_bin"), 385);
    EXPECT_FALSE(s.get_bool("templates_from_data"));
    s.set_from_string("Th_learned=5");
    EXPECT_EQ(s.get_float("Th_learned"), 5);
}

TEST(Settings, MalformedJsonNamesTheFile) {
    std::string msg;
    ks::Settings s;
    const std::string bad = temp_file("bad.json", "{\"fs\": 30000,");
    EXPECT_EQ(code_of([&] { s.load_json_file(bad); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    const std::string arr = temp_file("arr.json", "[1, 2]");
    EXPECT_EQ(code_of([&] { s.load_json_file(arr); }, &msg), ks::Exit::usage);
    const std::string unknown = temp_file("unk.json", R"({"n_chan": 64})");
    EXPECT_EQ(code_of([&] { s.load_json_file(unknown); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("n_chan_bin"), std::string::npos) << msg;
    const std::string wrong_type = temp_file("wt.json", R"({"nblocks": "five"})");
    EXPECT_EQ(code_of([&] { s.load_json_file(wrong_type); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("nblocks"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { s.load_json_file("/nonexistent/params.json"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("/nonexistent/params.json"), std::string::npos) << msg;
}

TEST(Settings, RequiredNoneIsAClearError) {
    ks::Settings s;
    std::string msg;
    EXPECT_EQ(code_of([&] { (void)s.get_int("n_chan_bin"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("n_chan_bin"), std::string::npos);
    EXPECT_NE(msg.find("--set n_chan_bin="), std::string::npos);
}

TEST(Settings, JsonByStageHoldsThatStageAndEarlierOnly) {
    ks::Settings s;
    const std::string filter = s.to_json("filter");
    EXPECT_NE(filter.find("\"highpass_cutoff\""), std::string::npos);
    EXPECT_EQ(filter.find("\"Th_learned\""), std::string::npos);
    EXPECT_EQ(filter.find("\"nskip\""), std::string::npos);
    const std::string match = s.to_json("match");
    EXPECT_NE(match.find("\"Th_learned\""), std::string::npos);
    EXPECT_NE(match.find("\"highpass_cutoff\""), std::string::npos);
    EXPECT_EQ(match.find("\"acg_threshold\""), std::string::npos);
    // Round trip: the full JSON loads back to the same values.
    s.set_from_string("Th_learned=7.25");
    s.set_from_string("n_chan_bin=64");
    ks::Settings t;
    t.load_json_text(s.to_json(), "roundtrip");
    EXPECT_TRUE(t.changed() == s.changed());
    EXPECT_EQ(t.get_float("Th_learned"), 7.25);
    EXPECT_TRUE(std::isinf(t.get_float("tmax")));
}

TEST(Settings, ConsistencyBetweenSettings) {
    std::string msg;
    auto check = [&](std::vector<std::string> sets) {
        ks::Settings s;
        for (const auto& kv : sets) s.set_from_string(kv);
        return code_of([&] { s.check_consistency(); }, &msg);
    };
    EXPECT_EQ(check({}), ks::Exit::ok);
    EXPECT_EQ(check({"nt=60"}), ks::Exit::usage);
    EXPECT_NE(msg.find("nt = 60"), std::string::npos) << msg;
    EXPECT_EQ(check({"nt0min=61"}), ks::Exit::usage);
    EXPECT_NE(msg.find("nt0min"), std::string::npos) << msg;
    EXPECT_EQ(check({"batch_size=10"}), ks::Exit::usage);
    EXPECT_NE(msg.find("batch_size = 10"), std::string::npos) << msg;
    EXPECT_EQ(check({"tmin=2", "tmax=1"}), ks::Exit::usage);
    EXPECT_NE(msg.find("tmin = 2"), std::string::npos) << msg;
    EXPECT_EQ(check({"nt=81", "nt0min=26", "batch_size=81"}), ks::Exit::ok);
}

TEST(Settings, HelpListsStageSettingsWithDefaults) {
    const std::string h = ks::Settings::help_for_stages({"whiten"});
    EXPECT_NE(h.find("nskip = 25"), std::string::npos) << h;
    EXPECT_NE(h.find("whitening_range = 32"), std::string::npos) << h;
    EXPECT_EQ(h.find("Th_learned"), std::string::npos) << h;
}

}  // namespace
