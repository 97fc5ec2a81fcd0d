// Reading drift/ and external motion (formats/motion.md).
#include "ks/kernels/motion_files.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ks/error.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"

namespace ks::drift {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad(const std::string& path, const std::string& what) { throw Error(Exit::usage, path + ": " + what); }

simdjson::dom::element load_json(simdjson::dom::parser& parser, simdjson::padded_string& text, const std::string& path) {
    if (simdjson::padded_string::load(path).get(text) != simdjson::SUCCESS) bad(path, "cannot read (missing?)");
    simdjson::dom::element root;
    if (auto err = parser.parse(text).get(root)) bad(path, std::string("not valid JSON (") + simdjson::error_message(err) + ")");
    return root;
}

std::vector<double> numbers(simdjson::dom::element e, const std::string& path, const std::string& key) {
    simdjson::dom::array a;
    if (e.get_array().get(a) != simdjson::SUCCESS) bad(path, "\"" + key + "\" must be a list of numbers");
    std::vector<double> out;
    for (simdjson::dom::element v : a) {
        double d;
        if (v.get_double().get(d) != simdjson::SUCCESS) bad(path, "\"" + key + "\" must hold numbers only");
        out.push_back(d);
    }
    return out;
}

void check_increasing(const std::vector<double>& v, const std::string& path, const std::string& what) {
    if (v.empty()) bad(path, what + " is empty");
    for (size_t i = 0; i < v.size(); ++i) {
        if (!std::isfinite(v[i])) bad(path, what + " holds a non-finite value");
        if (i > 0 && !(v[i] > v[i - 1])) bad(path, what + " must be strictly increasing");
    }
}

std::vector<double> npy_doubles(const std::string& path, int ndim) {
    const NpyArray a = read_npy(path);
    if (static_cast<int>(a.shape.size()) != ndim)
        bad(path, "expected a " + std::to_string(ndim) + "-D array, got " + std::to_string(a.shape.size()) + "-D");
    if (a.dtype != Dtype::float32 && a.dtype != Dtype::float64) bad(path, "expected float32 or float64 values");
    return a.as<double>();
}

std::vector<int64_t> npy_shape(const std::string& path) { return read_npy(path).shape; }

ExternalMotion from_arrays(const std::string& t_path, const std::string& d_path, const std::string& m_path) {
    ExternalMotion e;
    e.time_s = npy_doubles(t_path, 1);
    e.depth_um = npy_doubles(d_path, 1);
    const std::vector<int64_t> shape = npy_shape(m_path);
    if (shape.size() == 1 && e.depth_um.size() == 1) {
        e.displacement_um = npy_doubles(m_path, 1);
    } else {
        if (shape.size() != 2) bad(m_path, "expected a 2-D array (time bins, depth bins)");
        e.displacement_um = npy_doubles(m_path, 2);
        if (shape[1] != static_cast<int64_t>(e.depth_um.size()))
            bad(m_path, "has " + std::to_string(shape[1]) + " depth columns but " + d_path + " has " +
                            std::to_string(e.depth_um.size()) + " depths");
    }
    if (e.displacement_um.size() != e.time_s.size() * e.depth_um.size())
        bad(m_path, "has " + std::to_string(e.displacement_um.size() / std::max<size_t>(1, e.depth_um.size())) +
                        " time rows but " + t_path + " has " + std::to_string(e.time_s.size()) + " times");
    check_increasing(e.time_s, t_path, "the time bins");
    check_increasing(e.depth_um, d_path, "the depth bins");
    for (double v : e.displacement_um)
        if (!std::isfinite(v)) bad(m_path, "holds a non-finite displacement");
    return e;
}

ExternalMotion from_json(const std::string& path) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    const simdjson::dom::element root = load_json(parser, text, path);
    simdjson::dom::object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) bad(path, "expected a JSON object");
    ExternalMotion e;
    simdjson::dom::element el[3];
    const char* keys[3] = {"time_bins_s", "depth_bins_um", "displacement_um"};
    for (int k = 0; k < 3; ++k)
        if (obj[keys[k]].get(el[k]) != simdjson::SUCCESS)
            bad(path, std::string("\"") + keys[k] + "\" is missing (expected time_bins_s, depth_bins_um, displacement_um)");
    e.time_s = numbers(el[0], path, "time_bins_s");
    e.depth_um = numbers(el[1], path, "depth_bins_um");
    check_increasing(e.time_s, path, "\"time_bins_s\"");
    check_increasing(e.depth_um, path, "\"depth_bins_um\"");
    simdjson::dom::array rows;
    if (el[2].get_array().get(rows) != simdjson::SUCCESS)
        bad(path, "\"displacement_um\" must be a list with one row per time bin");
    if (rows.size() != e.time_s.size())
        bad(path, "\"displacement_um\" has " + std::to_string(rows.size()) + " rows but \"time_bins_s\" has " +
                      std::to_string(e.time_s.size()) + " times");
    for (simdjson::dom::element row : rows) {
        double d;
        if (e.depth_um.size() == 1 && row.get_double().get(d) == simdjson::SUCCESS) {
            e.displacement_um.push_back(d);
            continue;
        }
        const std::vector<double> r = numbers(row, path, "displacement_um");
        if (r.size() != e.depth_um.size())
            bad(path, "a row of \"displacement_um\" has " + std::to_string(r.size()) + " values but \"depth_bins_um\" has " +
                          std::to_string(e.depth_um.size()) + " depths");
        e.displacement_um.insert(e.displacement_um.end(), r.begin(), r.end());
    }
    for (double v : e.displacement_um)
        if (!std::isfinite(v)) bad(path, "\"displacement_um\" holds a non-finite value");
    return e;
}

// Value of column j at time t: linear between bin centres, constant beyond the ends.
double displacement_at(const ExternalMotion& e, int j, double t) {
    const size_t D = e.depth_um.size(), T = e.time_s.size();
    if (t <= e.time_s.front()) return e.displacement_um[j];
    if (t >= e.time_s.back()) return e.displacement_um[(T - 1) * D + j];
    const size_t i = static_cast<size_t>(std::upper_bound(e.time_s.begin(), e.time_s.end(), t) - e.time_s.begin());
    const double t0 = e.time_s[i - 1], t1 = e.time_s[i], w = (t - t0) / (t1 - t0);
    return (1 - w) * e.displacement_um[(i - 1) * D + j] + w * e.displacement_um[i * D + j];
}

}  // namespace

ExternalMotion load_external_motion(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) bad(path, "not found (expected a motion JSON file or folder)");
    ExternalMotion e;
    if (fs::is_directory(path, ec)) {
        const std::string d = path + "/";
        if (fs::exists(d + "displacement_seg0.npy", ec)) {
            if (fs::exists(d + "displacement_seg1.npy", ec))
                bad(path, "a SpikeInterface motion with several segments; only one segment is supported");
            e = from_arrays(d + "temporal_bins_s_seg0.npy", d + "spatial_bins_um.npy", d + "displacement_seg0.npy");
            e.source = "SpikeInterface motion folder " + path;
        } else if (fs::exists(d + "motion.npy", ec)) {
            e = from_arrays(d + "motion_time_s.npy", d + "motion_depth_um.npy", d + "motion.npy");
            e.source = "ks-sim ground truth " + path;
        } else if (fs::exists(d + "gt/motion.npy", ec)) {
            e = from_arrays(d + "gt/motion_time_s.npy", d + "gt/motion_depth_um.npy", d + "gt/motion.npy");
            e.source = "ks-sim ground truth " + path + "/gt";
        } else {
            bad(path, "a folder without displacement_seg0.npy (SpikeInterface) or motion.npy (ks-sim gt/)");
        }
    } else {
        e = from_json(path);
        e.source = "motion JSON " + path;
    }
    return e;
}

MotionEstimate motion_from_external(const ExternalMotion& e, int64_t batch_size, int n_batches, int64_t n_samples,
                                    double fs_hz, int64_t imin) {
    KS_ASSERT(batch_size > 0 && n_batches >= 1 && fs_hz > 0 && !e.time_s.empty() && !e.depth_um.empty() &&
                  e.displacement_um.size() == e.time_s.size() * e.depth_um.size(),
              "motion_from_external: bad arguments");
    MotionEstimate m;
    m.status = MotionStatus::ok;
    m.n_batches = n_batches;
    m.n_blocks = static_cast<int>(e.depth_um.size());
    m.yblk = e.depth_um;
    m.dshift.assign(static_cast<size_t>(n_batches) * m.n_blocks, 0.0);
    // Average over each batch by sampling it finely enough to see every bin (at least 16 points).
    const double bin_s = e.time_s.size() > 1 ? (e.time_s.back() - e.time_s.front()) / (e.time_s.size() - 1) : 1.0;
    for (int b = 0; b < n_batches; ++b) {
        const int64_t s0 = b * batch_size, s1 = std::min<int64_t>((b + 1) * batch_size, std::max<int64_t>(n_samples, s0 + 1));
        const double t0 = static_cast<double>(imin + s0) / fs_hz, t1 = static_cast<double>(imin + s1) / fs_hz;
        const int n_pts = std::max(16, static_cast<int>(std::ceil(4 * (t1 - t0) / bin_s)));
        for (int j = 0; j < m.n_blocks; ++j) {
            double sum = 0;
            for (int k = 0; k < n_pts; ++k) sum += displacement_at(e, j, t0 + (t1 - t0) * (k + 0.5) / n_pts);
            m.dshift[static_cast<size_t>(b) * m.n_blocks + j] = -sum / n_pts;
        }
    }
    return m;
}

MotionFile read_motion(const std::string& work_dir, int64_t expected_batch_size, int expected_n_batches) {
    const std::string dir = work_dir + "/drift";
    const std::string jpath = dir + "/drift.json";
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    std::error_code ec;
    if (!fs::exists(jpath, ec)) bad(jpath, "not found; run ks-drift --work " + work_dir + " first");
    const simdjson::dom::element root = load_json(parser, text, jpath);
    simdjson::dom::object extra;
    if (root["extra"].get_object().get(extra) != simdjson::SUCCESS) bad(jpath, "no \"extra\" object (not a ks-drift record?)");
    auto get_int = [&](const char* key) {
        int64_t v;
        if (extra[key].get_int64().get(v) != simdjson::SUCCESS) bad(jpath, std::string("\"extra.") + key + "\" is missing or not an integer");
        return v;
    };
    auto get_str = [&](const char* key) {
        std::string_view v;
        if (extra[key].get_string().get(v) != simdjson::SUCCESS) bad(jpath, std::string("\"extra.") + key + "\" is missing or not a string");
        return std::string(v);
    };
    if (get_str("format") != "ks-motion") bad(jpath, "\"extra.format\" is not \"ks-motion\"");
    if (get_int("version") != kMotionFormatVersion)
        bad(jpath, "motion format version " + std::to_string(get_int("version")) + "; this build reads version " +
                       std::to_string(kMotionFormatVersion) + " (rerun ks-drift)");
    MotionFile f;
    const std::string status = get_str("status");
    if (status == "ok") f.motion.status = MotionStatus::ok;
    else if (status == "disabled") f.motion.status = MotionStatus::disabled;
    else if (status == "too_few_spikes") f.motion.status = MotionStatus::too_few_spikes;
    else bad(jpath, "unknown status \"" + status + "\" (expected ok, disabled or too_few_spikes)");
    f.source = get_str("source");
    f.batch_size = get_int("batch_size");
    if (extra["sig_interp"].get_double().get(f.sig_interp_um) != simdjson::SUCCESS || !(f.sig_interp_um > 0))
        bad(jpath, "\"extra.sig_interp\" is missing or not a positive number");
    f.motion.n_batches = static_cast<int>(get_int("n_batches"));
    f.motion.n_blocks = static_cast<int>(get_int("n_blocks"));
    if (f.batch_size != expected_batch_size)
        bad(jpath, "made with batch_size " + std::to_string(f.batch_size) + ", but this run uses " +
                       std::to_string(expected_batch_size) + "; rerun ks-drift");
    if (f.motion.n_batches != expected_n_batches)
        bad(jpath, "has " + std::to_string(f.motion.n_batches) + " batches, but the filtered recording has " +
                       std::to_string(expected_n_batches) + "; rerun ks-drift");
    if (f.motion.n_blocks < 1) bad(jpath, "\"extra.n_blocks\" must be at least 1");

    const std::string dpath = dir + "/dshift.npy", ypath = dir + "/yblk.npy";
    const NpyArray d = read_npy_checked(dpath, Dtype::float64, 2);
    if (d.shape[0] != f.motion.n_batches || d.shape[1] != f.motion.n_blocks)
        bad(dpath, "shape (" + std::to_string(d.shape[0]) + ", " + std::to_string(d.shape[1]) + ") disagrees with " + jpath +
                       " (" + std::to_string(f.motion.n_batches) + ", " + std::to_string(f.motion.n_blocks) + ")");
    f.motion.dshift = d.as<double>();
    const NpyArray y = read_npy_checked(ypath, Dtype::float64, 1);
    if (y.shape[0] != f.motion.n_blocks)
        bad(ypath, "has " + std::to_string(y.shape[0]) + " block centres, " + jpath + " says " + std::to_string(f.motion.n_blocks));
    f.motion.yblk = y.as<double>();
    check_increasing(f.motion.yblk, ypath, "the block centres");
    for (double v : f.motion.dshift) {
        if (!std::isfinite(v)) bad(dpath, "holds a non-finite shift");
        if (f.motion.status != MotionStatus::ok && v != 0.0) bad(dpath, "is not all zero although the status is " + status);
    }
    return f;
}

}  // namespace ks::drift
