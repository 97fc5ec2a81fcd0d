#include <gtest/gtest.h>

#include "ks/cli.hpp"
#include "ks/error.hpp"

namespace {

ks::ToolSpec spec() {
    ks::ToolSpec s;
    s.name = "ks-test";
    s.usage = "Usage: ks-test [options]\n";
    s.options = {{"--rec", "FILE", "recording"}, {"--flag", "", "a flag"}, {"--many", "X", "repeatable", true}};
    s.stages = {"whiten"};
    return s;
}

ks::Exit code_of(const std::vector<std::string>& args, std::string* msg = nullptr) {
    const ks::ToolSpec sp = spec();
    try {
        ks::parse_command_line(sp, args);
    } catch (const ks::Error& e) {
        if (msg) *msg = e.what();
        return e.code();
    }
    return ks::Exit::ok;
}

TEST(Cli, ParsesCommonAndOwnOptions) {
    const ks::ToolSpec sp = spec();
    ks::Cli cli = ks::parse_command_line(
        sp, {"--rec", "a.bin", "--work=out", "--set", "nskip=5", "--flag", "--many", "1", "--many", "2", "--device", "cpu",
             "--threads", "3", "-q"});
    EXPECT_EQ(cli.get("--rec"), "a.bin");
    EXPECT_EQ(cli.work_dir(), "out");
    EXPECT_TRUE(cli.has("--flag"));
    EXPECT_EQ(cli.get_all("--many"), (std::vector<std::string>{"1", "2"}));
    EXPECT_EQ(cli.device_name(), "cpu");
    EXPECT_EQ(cli.threads(), 3);
    EXPECT_TRUE(cli.quiet());
    EXPECT_EQ(cli.settings().get_int("nskip"), 5);
    EXPECT_NE(cli.command_line().find("ks-test --rec a.bin"), std::string::npos);
}

TEST(Cli, MisuseIsUsageError) {
    std::string msg;
    EXPECT_EQ(code_of({"--nope"}, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("--nope"), std::string::npos);
    EXPECT_EQ(code_of({"--rec"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--rec", "a", "--rec", "b"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"stray"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--device", "gpu"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--threads", "0"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--flag=1"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--rec", ""}, &msg), ks::Exit::usage);  // an unset $REC
    EXPECT_NE(msg.find("empty value"), std::string::npos);
    EXPECT_EQ(code_of({"--work", "a", "--work", "b"}, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of({"--set", "batch_size=10"}, &msg), ks::Exit::usage);  // smaller than nt
    EXPECT_EQ(code_of({"--set", "Th_lerned=3"}, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("Th_learned"), std::string::npos);
}

TEST(Cli, SetWinsOverParamsRegardlessOfOrder) {
    const std::string f = ::testing::TempDir() + "ks_cli_params.json";
    FILE* fp = fopen(f.c_str(), "w");
    fputs("{\"nskip\": 7, \"whitening_range\": 16}", fp);
    fclose(fp);
    const ks::ToolSpec sp = spec();
    ks::Cli cli = ks::parse_command_line(sp, {"--set", "nskip=3", "--params", f});
    EXPECT_EQ(cli.settings().get_int("nskip"), 3);
    EXPECT_EQ(cli.settings().get_int("whitening_range"), 16);
}

TEST(Cli, UsageTextListsOptionsSettingsAndExitCodes) {
    const std::string u = ks::usage_text(spec());
    EXPECT_NE(u.find("--rec FILE"), std::string::npos);
    EXPECT_NE(u.find("--params FILE"), std::string::npos);
    EXPECT_NE(u.find("nskip = 25"), std::string::npos);
    EXPECT_NE(u.find("6 work folder locked"), std::string::npos);
}

}  // namespace
