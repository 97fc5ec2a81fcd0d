#include "ks/cli.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <omp.h>
#include <unistd.h>

#include "ks/error.hpp"
#include "ks/lock.hpp"
#include "ks/log.hpp"
#include "ks/version.hpp"

namespace ks {
namespace {

const std::vector<OptionSpec>& common_options() {
    static const std::vector<OptionSpec> o = {
        {"--work", "DIR", "work folder for this recording's outputs (locked while the tool writes)", false},
        {"--params", "FILE", "JSON object of settings by Kilosort4 name (repeatable; later files win)", true},
        {"--set", "KEY=VALUE", "one setting (repeatable; wins over --params)", true},
        {"--device", "D", "auto (CUDA when a GPU is usable, else CPU), cpu or cuda [auto]", false},
        {"--threads", "N", "CPU threads [all cores]", false},
        {"--quiet", "", "only warnings and errors (also -q)", false},
        {"--verbose", "", "more detail; repeat for more (also -v)", false},
        {"--help", "", "this help (also -h)", false},
        {"--version", "", "print the version", false},
    };
    return o;
}

// Whether a common option applies to this tool.
bool offered(const ToolSpec& spec, const std::string& name) {
    if (name == "--work") return spec.uses_work_dir;
    if (name == "--params" || name == "--set" || name == "--device") return spec.uses_settings;
    return true;
}

std::string quote_arg(const std::string& a) {
    if (!a.empty() && a.find_first_of(" \t\n'\"\\$`*?[]{}()<>|&;") == std::string::npos) return a;
    std::string q = "'";
    for (char c : a) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

void append_options(std::string& out, const std::vector<OptionSpec>& opts) {
    for (const auto& o : opts) {
        std::string line = "  " + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
        if (line.size() < 26) line.resize(26, ' ');
        else line += "\n" + std::string(26, ' ');
        out += line + o.help + "\n";
    }
}

}  // namespace

bool Cli::has(const std::string& option) const { return options_.count(option) > 0; }

std::string Cli::get(const std::string& option, const std::string& fallback) const {
    auto it = options_.find(option);
    return (it == options_.end() || it->second.empty()) ? fallback : it->second.back();
}

std::vector<std::string> Cli::get_all(const std::string& option) const {
    auto it = options_.find(option);
    return it == options_.end() ? std::vector<std::string>{} : it->second;
}

ProgressMode Cli::progress_mode() const { return Progress::default_mode(quiet_); }

std::string usage_text(const ToolSpec& spec) {
    std::string out = spec.usage;
    if (!out.empty() && out.back() != '\n') out += "\n";
    if (!spec.options.empty()) {
        out += "\nOptions:\n";
        append_options(out, spec.options);
    }
    out += "\nCommon options:\n";
    std::vector<OptionSpec> common;
    for (const auto& o : common_options())
        if (offered(spec, o.name)) common.push_back(o);
    append_options(out, common);
    if (!spec.stages.empty()) {
        const std::string table = Settings::help_for_stages(spec.stages);
        if (!table.empty()) out += "\nSettings (--set KEY=VALUE, --params FILE; Kilosort4 names and defaults):\n" + table;
    }
    if (!spec.epilog.empty()) out += "\n" + spec.epilog + (spec.epilog.back() == '\n' ? "" : "\n");
    out += "\nExit codes: 0 ok, 1 internal error, 2 bad usage or input, 3 recording cannot be sorted,\n"
           "4 environment (e.g. no GPU), 5 resources (memory, disk), 6 work folder locked.\n";
    return out;
}

Cli parse_command_line(const ToolSpec& spec, const std::vector<std::string>& args) {
    Cli cli;
    cli.spec_ = &spec;
    for (const auto& a : args) cli.command_line_ += (cli.command_line_.empty() ? "" : " ") + quote_arg(a);
    cli.command_line_ = spec.name + (cli.command_line_.empty() ? "" : " " + cli.command_line_);

    auto find_opt = [&](const std::string& name) -> const OptionSpec* {
        for (const auto& o : spec.options)
            if (o.name == name) return &o;
        for (const auto& o : common_options())
            if (o.name == name && offered(spec, name)) return &o;
        return nullptr;
    };
    std::vector<std::string> sets;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string a = args[i];
        if (a == "-q") a = "--quiet";
        else if (a == "-v") a = "--verbose";
        else if (a.size() > 2 && a[0] == '-' && a[1] == 'v' && a.find_first_not_of('v', 1) == std::string::npos) {
            cli.verbosity_ += static_cast<int>(a.size()) - 1;  // -vv, -vvv
            continue;
        }
        else if (a == "-h") a = "--help";
        if (a.size() < 2 || a[0] != '-' || a == "-") {
            if (!spec.positional) throw Error(Exit::usage, "unexpected argument '" + a + "' (see --help)");
            cli.positional_.push_back(a);
            continue;
        }
        std::string value;
        bool inline_value = false;
        if (a.rfind("--", 0) == 0) {
            const auto eq = a.find('=');
            if (eq != std::string::npos) {
                value = a.substr(eq + 1);
                a = a.substr(0, eq);
                inline_value = true;
            }
        }
        const OptionSpec* o = find_opt(a);
        if (!o) throw Error(Exit::usage, "unknown option '" + a + "' (see --help)");
        if (o->metavar.empty()) {
            if (inline_value) throw Error(Exit::usage, "option " + a + " takes no value");
            if (a == "--quiet") cli.quiet_ = true;
            else if (a == "--verbose") ++cli.verbosity_;
            else if (a == "--help") cli.help_ = true;
            else if (a == "--version") cli.version_ = true;
            else cli.options_[a].push_back("");
            continue;
        }
        if (!inline_value) {
            if (i + 1 >= args.size()) throw Error(Exit::usage, "option " + a + " needs a value (" + o->metavar + ")");
            value = args[++i];
        }
        // An empty value is almost always an unset shell variable ($REC): never read it as "not given".
        if (value.empty()) throw Error(Exit::usage, "option " + a + " has an empty value (expected " + o->metavar + ")");
        if ((a == "--work" || a == "--device" || a == "--threads") && cli.options_.count(a))
            throw Error(Exit::usage, "option " + a + " given twice");
        if (a == "--work" || a == "--device" || a == "--threads") cli.options_[a].push_back(value);
        if (a == "--work") cli.work_dir_ = value;
        else if (a == "--params") cli.params_files_.push_back(value);
        else if (a == "--set") sets.push_back(value);
        else if (a == "--device") {
            if (value != "auto" && value != "cpu" && value != "cuda")
                throw Error(Exit::usage, "--device " + value + ": expected auto, cpu or cuda");
            cli.device_ = value;
        } else if (a == "--threads") {
            char* end = nullptr;
            const long n = std::strtol(value.c_str(), &end, 10);
            if (!end || *end || n < 1 || n > 4096) throw Error(Exit::usage, "--threads " + value + ": expected a whole number >= 1");
            cli.threads_ = static_cast<int>(n);
        } else {
            auto& slot = cli.options_[a];
            if (!o->repeatable && !slot.empty()) throw Error(Exit::usage, "option " + a + " given twice");
            slot.push_back(value);
        }
    }
    if (cli.help_ || cli.version_) return cli;
    // Settings: files in order, then --set (wins).
    for (const auto& f : cli.params_files_) cli.settings_.load_json_file(f);
    for (const auto& s : sets) cli.settings_.set_from_string(s);
    if (spec.uses_settings) cli.settings_.check_consistency();
    return cli;
}

int run_tool(const ToolSpec& spec, int argc, char** argv, const std::function<void(Cli&)>& body) {
    log::init(spec.name, log::Level::info);
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() && !spec.usage.empty()) {
        std::fputs(usage_text(spec).c_str(), stdout);
        return 0;
    }
    Exit code = Exit::ok;
    std::string created_work_dir;  // a work folder this run made, removed again if bad usage leaves it empty
    try {
        Cli cli = parse_command_line(spec, args);
        if (cli.help_) {
            std::fputs(usage_text(spec).c_str(), stdout);
            return 0;
        }
        if (cli.version_) {
            std::printf("%s %s (%s)\n", spec.name.c_str(), KS_VERSION, KS_GIT_DESCRIBE);
            return 0;
        }
        const int level = cli.quiet_ ? static_cast<int>(log::Level::warn)
                                     : std::min(static_cast<int>(log::Level::info) + cli.verbosity_,
                                                static_cast<int>(log::Level::trace));
        log::init(spec.name, static_cast<log::Level>(level));
        if (cli.threads_ > 0) omp_set_num_threads(cli.threads_);
        std::unique_ptr<WorkLock> lock;
        if (spec.uses_work_dir && !cli.work_dir_.empty()) {
            if (access(cli.work_dir_.c_str(), F_OK) != 0) created_work_dir = cli.work_dir_;
            if (spec.takes_lock) lock = std::make_unique<WorkLock>(cli.work_dir_, spec.name);
            log::open_file(cli.work_dir_ + "/ks-tools.log");
            log::debug("command: %s", cli.command_line_.c_str());
        }
        body(cli);
        log::close_file();
    } catch (const Error& e) {
        code = e.code();
        log::error("%s", e.what());
    } catch (const std::bad_alloc&) {
        code = Exit::resources;
        log::error("out of memory");
    } catch (const std::exception& e) {
        code = Exit::internal;
        log::error("unexpected failure: %s; please report this as a bug", e.what());
    }
    log::close_file();
    if (code == Exit::usage && !created_work_dir.empty()) {
        // Nothing was produced: do not leave a folder holding only the log of a mistyped command.
        std::remove((created_work_dir + "/ks-tools.log").c_str());
        rmdir(created_work_dir.c_str());  // fails, harmlessly, when anything else is in it
    }
    // A late write error on stdout (full disk, closed pipe) must not pass silently.
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        if (code == Exit::ok) {
            log::error("%s", errno_message("cannot write to standard output").c_str());
            code = Exit::resources;
        }
    }
    return static_cast<int>(code);
}

}  // namespace ks
