#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "ks/log.hpp"
#include "ks/progress.hpp"

namespace {

TEST(Progress, LinesModePrintsAFinalLineWithCounts) {
    ks::log::init("ks-test", ks::log::Level::info);
    testing::internal::CaptureStderr();
    {
        ks::Progress p(ks::ProgressMode::lines, "filtering", 4, "batches");
        for (int i = 0; i < 4; ++i) p.advance();
        p.finish();
        EXPECT_EQ(p.done(), 4);
    }
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("ks-test: filtering 100% (4/4 batches)"), std::string::npos) << err;
}

TEST(Progress, NoneModePrintsNothing) {
    testing::internal::CaptureStderr();
    {
        ks::Progress p(ks::ProgressMode::none, "x", 10, "items");
        p.advance(10);
        p.finish();
    }
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Progress, QuietMeansNone) { EXPECT_EQ(ks::Progress::default_mode(true), ks::ProgressMode::none); }

TEST(Log, LevelsFilterStderrAndFileGetsInfoAndAbove) {
    const std::string path = ::testing::TempDir() + "ks_log_test.log";
    std::remove(path.c_str());
    ks::log::init("ks-test", ks::log::Level::warn);
    ks::log::open_file(path);
    testing::internal::CaptureStderr();
    ks::log::info("quiet info %d", 1);
    ks::log::warn("a warning %s", "here");
    ks::log::debug("debug line");
    const std::string err = testing::internal::GetCapturedStderr();
    ks::log::close_file();
    EXPECT_EQ(err, "ks-test: warning: a warning here\n");
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    EXPECT_NE(ss.str().find("quiet info 1"), std::string::npos);
    EXPECT_NE(ss.str().find("warning: a warning here"), std::string::npos);
    EXPECT_EQ(ss.str().find("debug line"), std::string::npos);
    ks::log::init("ks-test", ks::log::Level::info);
}

}  // namespace
