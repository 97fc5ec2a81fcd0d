#pragma once
// Helpers shared by the unit tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ks/error.hpp"

namespace ks::test {

// A fresh directory under the test temp dir, removed with everything in it at scope exit.
class TempDir {
public:
    explicit TempDir(const std::string& prefix = "ks_test") {
        std::string tmpl = ::testing::TempDir() + prefix + "_XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    std::string operator/(const std::string& name) const { return file(name); }
    // Writes `content` to `name` in the directory and returns its path.
    std::string write(const std::string& name, const std::string& content) const {
        std::ofstream(file(name), std::ios::binary) << content;
        return file(name);
    }

private:
    std::string path_;
};

// The exit code of the ks::Error `f` throws (Exit::ok when it throws none); its message in *msg.
inline Exit exit_code_of(const std::function<void()>& f, std::string* msg = nullptr) {
    try {
        f();
    } catch (const Error& e) {
        if (msg) *msg = e.what();
        return e.code();
    }
    return Exit::ok;
}

}  // namespace ks::test
