#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ks/error.hpp"
#include "ks/lock.hpp"

namespace {

std::string fresh_dir(const std::string& name) {
    const std::string d = ::testing::TempDir() + "ks_lock_" + name + "_" + std::to_string(getpid());
    std::system(("rm -rf '" + d + "'").c_str());
    return d;
}

bool exists(const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0;
}

TEST(WorkLock, SecondHolderGetsLockedNamingTheFirst) {
    const std::string d = fresh_dir("second");
    ks::WorkLock first(d, "ks-first");
    EXPECT_TRUE(exists(d + "/.lock"));
    try {
        ks::WorkLock second(d, "ks-second");
        FAIL() << "second lock succeeded";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::locked);
        const std::string msg = e.what();
        EXPECT_NE(msg.find("ks-first"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(getpid())), std::string::npos) << msg;
    }
}

TEST(WorkLock, ReleasedOnDestructionAndRetakable) {
    const std::string d = fresh_dir("release");
    { ks::WorkLock a(d, "ks-a"); }
    EXPECT_FALSE(exists(d + "/.lock"));
    ks::WorkLock b(d, "ks-b");
    EXPECT_FALSE(b.inherited());
}

TEST(WorkLock, LockOfADeadProcessIsTakenOver) {
    const std::string d = fresh_dir("stale");
    // A child takes the lock and dies without cleaning up (as under SIGKILL).
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto* lock = new ks::WorkLock(d, "ks-dead");  // never destroyed
        (void)lock;
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(exists(d + "/.lock"));
    std::ifstream f(d + "/.lock");
    std::string rec((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_NE(rec.find("ks-dead"), std::string::npos);
    ks::WorkLock taken(d, "ks-new");  // warns, does not throw
    EXPECT_FALSE(taken.inherited());
}

TEST(WorkLock, ChildOfTheHolderWithTheTokenProceeds) {
    const std::string d = fresh_dir("token");
    ks::WorkLock holder(d, "make");
    setenv("KS_LOCK_TOKEN", holder.token().c_str(), 1);
    {
        ks::WorkLock child(d, "ks-filter");
        EXPECT_TRUE(child.inherited());
    }
    EXPECT_TRUE(exists(d + "/.lock"));  // the inherited lock does not remove the holder's
    setenv("KS_LOCK_TOKEN", "wrong", 1);
    EXPECT_THROW(ks::WorkLock other(d, "ks-other"), ks::Error);
    unsetenv("KS_LOCK_TOKEN");
}

TEST(WorkLock, WorkFolderThatIsAFileIsUsageError) {
    const std::string f = fresh_dir("file");
    std::ofstream(f) << "x";
    try {
        ks::WorkLock l(f, "ks-x");
        FAIL();
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::usage);
    }
}

}  // namespace
