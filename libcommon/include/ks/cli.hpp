#pragma once
// The common command line of every tool (design.md "Command-line conventions"), parsed once:
// --work DIR, --params FILE (repeatable), --set KEY=VALUE (repeatable), --device, --threads,
// -q/--quiet, -v/--verbose, --help, --version, plus each tool's own options.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks {

struct OptionSpec {
    std::string name;      // "--rec"
    std::string metavar;   // "FILE"; empty for a flag
    std::string help;
    bool repeatable = false;
};

struct ToolSpec {
    std::string name;                    // "ks-filter"
    std::string usage;                   // "Usage: ks-filter --rec FILE --work DIR [options]\n<what it does>"
    std::vector<OptionSpec> options;     // the tool's own options
    std::vector<std::string> stages;     // settings of these stages are listed in --help
    bool uses_work_dir = true;           // --work accepted (and the lock + log file taken when writing)
    bool takes_lock = true;              // hold the work-folder lock while running
    bool uses_settings = true;           // --params/--set/--device accepted (tools that sort)
    bool positional = false;             // accepts positional arguments
    std::string positional_help;         // e.g. "FILE..."
    std::string epilog;                  // extra help text (outputs, examples)
};

class Cli {
public:
    const std::string& tool() const { return spec_->name; }
    Settings& settings() { return settings_; }
    const Settings& settings() const { return settings_; }

    bool has(const std::string& option) const;                  // given on the command line
    std::string get(const std::string& option, const std::string& fallback = "") const;
    std::vector<std::string> get_all(const std::string& option) const;
    const std::vector<std::string>& positional() const { return positional_; }

    const std::string& work_dir() const { return work_dir_; }   // "" when not given
    const std::string& device_name() const { return device_; }  // auto|cpu|cuda
    int threads() const { return threads_; }                     // 0 = OpenMP default
    bool quiet() const { return quiet_; }
    ProgressMode progress_mode() const;
    const std::string& command_line() const { return command_line_; }
    const std::vector<std::string>& params_files() const { return params_files_; }

private:
    friend int run_tool(const ToolSpec&, int, char**, const std::function<void(Cli&)>&);
    friend Cli parse_command_line(const ToolSpec&, const std::vector<std::string>&);
    const ToolSpec* spec_ = nullptr;
    Settings settings_;
    std::map<std::string, std::vector<std::string>> options_;
    std::vector<std::string> positional_;
    std::vector<std::string> params_files_;
    std::string work_dir_, device_ = "auto", command_line_;
    int threads_ = 0, verbosity_ = 0;
    bool quiet_ = false, help_ = false, version_ = false;
};

// Parses args (without argv[0]); throws Error(usage) on a bad option or setting.
Cli parse_command_line(const ToolSpec& spec, const std::vector<std::string>& args);

// The whole life of a tool: parse, --help/--version, logging, lock, run `body`, map any
// ks::Error to "<tool>: error: <message>" and its exit code, unexpected exceptions to 1.
// A bare call with no arguments prints usage to stdout and exits 0.
int run_tool(const ToolSpec& spec, int argc, char** argv, const std::function<void(Cli&)>& body);

std::string usage_text(const ToolSpec& spec);

}  // namespace ks
