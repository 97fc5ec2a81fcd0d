#pragma once
// ks-match-sessions: the same neurons across recording sessions (formats/match-sessions.md).
// Reads ks-tools work folders (after ks-cluster --final; ks-curate's labels when present) or
// pyKilomatch's input folder, runs ks::sessions::match and writes pyKilomatch's result set plus a
// readable table and a picture.
#include <string>
#include <vector>

#include "ks/progress.hpp"
#include "ks/session_match.hpp"

namespace ks::match_sessions {

struct RunOptions {
    std::string tool = "ks-match-sessions";
    std::string command_line;
    std::string out_dir;
    std::vector<std::string> sessions;   // work folders, in session order
    std::string kilomatch_dir;           // or pyKilomatch's input layout
    std::string units = "good";          // good | all
    int max_spikes_per_unit = 500;       // spikes averaged into a mean waveform
    sessions::Params params;
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_units = 0, n_sessions = 0, n_identities = 0;
};

Summary run(const RunOptions& options);

}  // namespace ks::match_sessions
