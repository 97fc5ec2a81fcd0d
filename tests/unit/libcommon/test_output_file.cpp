// ks::OutputFile, write_file_atomic, read_text_file: atomic outputs and their errors.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>
#include <unistd.h>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/output_file.hpp"

namespace fs = std::filesystem;

namespace {

using ks::test::TempDir;

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class F>
void expect_error(F f, ks::Exit code, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "no exception; expected one mentioning " << needle;
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(OutputFile, CommitRenamesPartialOntoPath) {
    TempDir dir;
    const std::string path = dir / "out.txt";
    {
        ks::OutputFile f(path);
        EXPECT_EQ(f.partial_path(), path + ".partial");
        f.write("hello ");
        f.write(std::string("world"));
        EXPECT_TRUE(fs::exists(path + ".partial"));
        EXPECT_FALSE(fs::exists(path));  // nothing complete-looking before commit
        f.commit();
    }
    EXPECT_EQ(slurp(path), "hello world");
    EXPECT_FALSE(fs::exists(path + ".partial"));
}

TEST(OutputFile, ExceptionBeforeCommitLeavesNoFile) {
    TempDir dir;
    const std::string path = dir / "out.bin";
    try {
        ks::OutputFile f(path);
        f.write("partial data");
        throw std::runtime_error("stage failed");
    } catch (const std::runtime_error&) {
    }
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".partial"));
    EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(OutputFile, ReplacesAnExistingFileOnlyAtCommit) {
    TempDir dir;
    const std::string path = dir / "record.json";
    ks::write_file_atomic(path, "old");
    {
        ks::OutputFile f(path);
        f.write("new content");
        EXPECT_EQ(slurp(path), "old");
    }  // abandoned: the old file stays as it was
    EXPECT_EQ(slurp(path), "old");
    ks::write_file_atomic(path, "new content");
    EXPECT_EQ(slurp(path), "new content");
}

TEST(OutputFile, TruncatesAStalePartialFromAKilledRun) {
    TempDir dir;
    const std::string path = dir / "x.bin";
    std::ofstream(path + ".partial") << "stale bytes from an earlier run, longer than the new content";
    ks::write_file_atomic(path, "fresh");
    EXPECT_EQ(slurp(path), "fresh");
    EXPECT_FALSE(fs::exists(path + ".partial"));
}

TEST(OutputFile, SeekRewritesEarlierBytes) {
    TempDir dir;
    const std::string path = dir / "h.bin";
    ks::OutputFile f(path);
    f.write("HEADER--data");
    EXPECT_EQ(f.tell(), 12);
    f.seek(0);
    f.write("header");
    EXPECT_EQ(f.tell(), 6);
    f.commit();
    EXPECT_EQ(slurp(path), "header--data");
}

TEST(OutputFile, MissingFolderIsUsageNamingTheFolder) {
    TempDir dir;
    const std::string missing = dir / "no_such_folder";
    expect_error([&] { ks::OutputFile f(missing + "/out.npy"); }, ks::Exit::usage, missing);
    expect_error([&] { ks::write_file_atomic(missing + "/out.json", "{}"); }, ks::Exit::usage,
                 "folder " + missing + " does not exist");
}

TEST(OutputFile, ParentThatIsAFileIsUsage) {
    TempDir dir;
    const std::string file = dir / "plain_file";
    ks::write_file_atomic(file, "x");
    expect_error([&] { ks::OutputFile f(file + "/out.npy"); }, ks::Exit::usage, file);
}

// A real failed write without filling a disk: a file-size limit makes write() fail with EFBIG
// (SIGXFSZ ignored) exactly as ENOSPC would. Run in a child so the limit does not leak.
TEST(OutputFileDeathTest, FailedWriteIsResourcesAndLeavesNothing) {
    TempDir dir;
    const std::string path = dir / "big.bin";
    auto child = [&] {
        std::signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim {
            4096, 4096
        };
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
        const std::string chunk(1 << 20, 'x');
        try {
            ks::OutputFile f(path);
            for (int i = 0; i < 4; ++i) f.write(chunk);
            f.commit();
            _exit(11);  // the limit did not bite
        } catch (const ks::Error& e) {
            const std::string msg = e.what();
            if (e.code() != ks::Exit::resources) _exit(12);
            if (msg.find(path) == std::string::npos || msg.find("disk full?") == std::string::npos) _exit(13);
            if (fs::exists(path) || fs::exists(path + ".partial")) _exit(14);
            _exit(0);
        }
    };
    EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

TEST(ReadTextFile, ReadsWholeFileIncludingNulBytes) {
    TempDir dir;
    const std::string content("a\0b\nline 2\n", 11);
    ks::write_file_atomic(dir / "t.txt", content);
    EXPECT_EQ(ks::read_text_file(dir / "t.txt"), content);
    ks::write_file_atomic(dir / "empty.txt", "");
    EXPECT_EQ(ks::read_text_file(dir / "empty.txt"), "");
}

TEST(ReadTextFile, MissingOrFolderIsUsageNamingIt) {
    TempDir dir;
    expect_error([&] { ks::read_text_file(dir / "absent.json"); }, ks::Exit::usage, dir / "absent.json");
    expect_error([&] { ks::read_text_file(dir.path()); }, ks::Exit::usage, dir.path());
}

TEST(OutputFile, FolderOrEmptyPathIsUsageBeforeAnythingIsWritten) {
    TempDir dir;
    expect_error([&] { ks::OutputFile f(dir.path()); }, ks::Exit::usage, dir.path());
    EXPECT_FALSE(fs::exists(dir.path() + ".partial"));
    EXPECT_EQ(ks::test::exit_code_of([] { ks::OutputFile f(""); }), ks::Exit::usage);
    EXPECT_EQ(ks::test::exit_code_of([&] { ks::OutputFile f(dir.path() + "/"); }), ks::Exit::usage);
}
