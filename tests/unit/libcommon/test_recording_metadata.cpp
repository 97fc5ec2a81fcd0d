// SpikeGLX .meta and Open Ephys structure.oebin metadata (formats/recording.md, "Metadata"),
// read from formats/examples/recording/{valid,invalid}, and how it fills the settings.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/recording.hpp"

namespace {

namespace fs = std::filesystem;
using ks::Error;
using ks::Exit;
using ks::RecordingMetadata;
using ks::Settings;

const std::string kExamples = std::string(KS_FORMATS_DIR) + "/examples/recording";
const std::string kValid = kExamples + "/valid";
const std::string kInvalid = kExamples + "/invalid";
const std::string kStream = "Rhythm_FPGA-100.0";

using ks::test::TempDir;

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

void write_bytes(const std::string& path, size_t n) {
    std::ofstream out(path, std::ios::binary);
    const std::vector<char> zeros(n, 0);
    out.write(zeros.data(), static_cast<std::streamsize>(n));
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The data file whose metadata an example describes: "<stem>.bin" beside a .meta, or the
// stream's continuous.dat under an Open Ephys folder.
std::string data_path_for(const std::string& example) {
    if (example.size() > 5 && example.substr(example.size() - 5) == ".meta") {
        return example.substr(0, example.size() - 5) + ".bin";
    }
    return example + "/continuous/" + kStream + "/continuous.dat";
}

ks::Probe probe_with(int n) {
    ks::Probe p;
    p.name = "probe_" + std::to_string(n) + ".json";
    for (int i = 0; i < n; ++i) {
        p.chanMap.push_back(i);
        p.xc.push_back(0);
        p.yc.push_back(20.0 * i);
        p.kcoords.push_back(0);
    }
    return p;
}

TEST(SpikeGlx, Neuropixels1ApFile) {
    const std::string meta = kValid + "/run_g0_t0.imec0.ap.meta";
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.imec0.ap.bin");
    EXPECT_EQ(m.source, "spikeglx");
    EXPECT_EQ(m.source_path, meta);
    ASSERT_TRUE(m.fs && m.n_chan_bin && m.n_ephys_channels && m.uv_per_bit && m.dtype);
    EXPECT_DOUBLE_EQ(*m.fs, 30000);
    EXPECT_EQ(*m.n_chan_bin, 385);
    EXPECT_EQ(*m.n_ephys_channels, 384);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 2.34375);  // 0.6 V / 512 / 500 * 1e6
    EXPECT_EQ(*m.dtype, ks::Dtype::int16);
}

TEST(SpikeGlx, LfFileUsesTheLfCountAndGain) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.imec0.lf.bin");
    ASSERT_TRUE(m.fs && m.n_chan_bin && m.n_ephys_channels && m.uv_per_bit);
    EXPECT_DOUBLE_EQ(*m.fs, 2500);
    EXPECT_EQ(*m.n_chan_bin, 385);
    EXPECT_EQ(*m.n_ephys_channels, 384);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 4.6875);  // 0.6 / 512 / 250 * 1e6
}

TEST(SpikeGlx, Neuropixels2HasGain80) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/np2_g0_t0.imec0.ap.bin");
    ASSERT_TRUE(m.fs && m.uv_per_bit && m.n_ephys_channels);
    EXPECT_DOUBLE_EQ(*m.fs, 30000);
    EXPECT_EQ(*m.n_ephys_channels, 384);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 0.5 / 8192 / 80 * 1e6);
}

TEST(SpikeGlx, MissingImMaxIntMeans512) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/old_no_maxint.imec0.ap.bin");
    ASSERT_TRUE(m.uv_per_bit);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 1.171875);  // 0.6 / 512 / 1000 * 1e6
}

TEST(SpikeGlx, NidqHasNoEphysCountOrGain) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.nidq.bin");
    EXPECT_EQ(m.source, "spikeglx");
    ASSERT_TRUE(m.fs && m.n_chan_bin);
    EXPECT_DOUBLE_EQ(*m.fs, 25000);
    EXPECT_EQ(*m.n_chan_bin, 9);
    EXPECT_FALSE(m.n_ephys_channels);
    EXPECT_FALSE(m.uv_per_bit);
}

TEST(SpikeGlx, FileSizeMismatchIsAWarning) {
    TempDir dir;
    const std::string bin = dir.file("run_g0_t0.imec0.ap.bin");
    write_text(dir.file("run_g0_t0.imec0.ap.meta"), read_text(kValid + "/run_g0_t0.imec0.ap.meta"));
    write_bytes(bin, 46200);  // what fileSizeBytes says
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(*ks::find_recording_metadata(bin).n_chan_bin, 385);
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    write_bytes(bin, 385 * 2 * 10);
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(*ks::find_recording_metadata(bin).n_chan_bin, 385);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("warning"), std::string::npos) << err;
    EXPECT_NE(err.find("fileSizeBytes=46200"), std::string::npos) << err;
    EXPECT_NE(err.find("7700 bytes"), std::string::npos) << err;
}

TEST(SpikeGlx, WindowsLineEndingsAndBlankLines) {
    TempDir dir;
    write_text(dir.file("x.ap.meta"),
               "imSampRate=30000\r\n\r\nnSavedChans=385\r\nsnsApLfSy=384,0,1\r\ntypeThis=imec\r\n");
    const RecordingMetadata m = ks::find_recording_metadata(dir.file("x.ap.bin"));
    ASSERT_TRUE(m.fs && m.n_chan_bin && m.n_ephys_channels);
    EXPECT_DOUBLE_EQ(*m.fs, 30000);
    EXPECT_EQ(*m.n_chan_bin, 385);
    EXPECT_EQ(*m.n_ephys_channels, 384);
    EXPECT_FALSE(m.uv_per_bit);  // no ~imroTbl, no imAiRangeMax
}

TEST(OpenEphys, ContinuousStream) {
    const std::string oebin = kValid + "/openephys/structure.oebin";
    const RecordingMetadata m = ks::find_recording_metadata(data_path_for(kValid + "/openephys"));
    EXPECT_EQ(m.source, "openephys");
    EXPECT_EQ(m.source_path, oebin);
    ASSERT_TRUE(m.fs && m.n_chan_bin && m.uv_per_bit && m.dtype);
    EXPECT_DOUBLE_EQ(*m.fs, 30000);
    EXPECT_EQ(*m.n_chan_bin, 4);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 0.195);
    EXPECT_EQ(*m.dtype, ks::Dtype::int16);
    EXPECT_FALSE(m.n_ephys_channels);
}

TEST(OpenEphys, FolderNameWithoutTrailingSlash) {
    const RecordingMetadata m = ks::find_recording_metadata(
        kValid + "/openephys/continuous/Neuropix-PXI-101.ProbeA-LFP/continuous.dat");
    ASSERT_TRUE(m.fs && m.n_chan_bin && m.uv_per_bit);
    EXPECT_DOUBLE_EQ(*m.fs, 2500);
    EXPECT_EQ(*m.n_chan_bin, 384);
    EXPECT_DOUBLE_EQ(*m.uv_per_bit, 0.1949999928474426);
}

TEST(OpenEphys, MissingStreamNamesTheOebinAndTheStream) {
    const std::string oebin = kValid + "/openephys/structure.oebin";
    try {
        ks::find_recording_metadata(kValid + "/openephys/continuous/Acquisition_Board-100.Rhythm/continuous.dat");
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage);
        const std::string msg = e.what();
        EXPECT_NE(msg.find(oebin), std::string::npos) << msg;
        EXPECT_NE(msg.find("Acquisition_Board-100.Rhythm"), std::string::npos) << msg;
        EXPECT_NE(msg.find(kStream), std::string::npos) << msg;  // lists what is there
    }
}

TEST(RecordingMetadata, NoMetadataGivesAnEmptyStruct) {
    TempDir dir;
    write_bytes(dir.file("plain.bin"), 100);
    for (const std::string& p : {dir.file("plain.bin"), dir.file("plain.dat"), std::string("x.bin"),
                                 dir.file("continuous/s/continuous.dat")}) {
        const RecordingMetadata m = ks::find_recording_metadata(p);
        EXPECT_EQ(m.source, "") << p;
        EXPECT_FALSE(m.fs || m.n_chan_bin || m.n_ephys_channels || m.uv_per_bit || m.dtype) << p;
    }
}

// Every file in invalid/ is rejected with Exit::usage naming the metadata file and, for
// SpikeGLX, the key at fault; the README explains each one.
TEST(RecordingMetadata, InvalidExamplesAreRejected) {
    const std::map<std::string, std::string> key_named = {
        {"missing_equals.imec0.ap.meta", "line 4"},
        {"duplicate_key.imec0.ap.meta", "imSampRate"},
        {"samp_rate_text.imec0.ap.meta", "imSampRate"},
        {"samp_rate_zero.imec0.ap.meta", "imSampRate"},
        {"saved_chans_fraction.imec0.ap.meta", "nSavedChans"},
        {"snsaplfsy_two_counts.imec0.ap.meta", "snsApLfSy"},
        {"ephys_exceeds_saved.imec0.ap.meta", "snsApLfSy"},
        {"imrotbl_text_gain.imec0.ap.meta", "~imroTbl"},
        {"imrotbl_no_entries.imec0.ap.meta", "~imroTbl"},
        {"imrotbl_unclosed.imec0.ap.meta", "~imroTbl"},
        {"max_int_zero.imec0.ap.meta", "imMaxInt"},
        {"no_type_no_rate.imec0.ap.meta", "typeThis"},
        {"unknown_type.imec0.ap.meta", "typeThis"},
        {"file_size_text.imec0.ap.meta", "fileSizeBytes"},
        {"oebin_not_json", "JSON"},
        {"oebin_no_continuous", "continuous"},
        {"oebin_no_stream", kStream},
        {"oebin_no_folder_name", "folder_name"},
        {"oebin_text_sample_rate", "sample_rate"},
        {"oebin_fraction_num_channels", "num_channels"},
        {"oebin_zero_bit_volts", "bit_volts"},
    };
    const std::string readme = read_text(kExamples + "/README.md");
    std::set<std::string> seen;
    for (const auto& entry : fs::directory_iterator(kInvalid)) {
        const std::string name = entry.path().filename().string();
        seen.insert(name);
        SCOPED_TRACE(name);
        EXPECT_NE(readme.find("`" + name), std::string::npos) << "README.md does not explain " << name;
        const std::string meta_file = entry.is_directory() ? entry.path().string() + "/structure.oebin"
                                                           : entry.path().string();
        try {
            ks::find_recording_metadata(data_path_for(entry.path().string()));
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), Exit::usage) << e.what();
            const std::string msg = e.what();
            EXPECT_NE(msg.find(meta_file), std::string::npos) << msg;
            const auto it = key_named.find(name);
            ASSERT_NE(it, key_named.end()) << "no expectation for " << name;
            EXPECT_NE(msg.find(it->second), std::string::npos) << msg;
            EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        }
    }
    for (const auto& [name, key] : key_named) EXPECT_TRUE(seen.count(name)) << name << " missing from invalid/";
}

TEST(RecordingMetadata, ValidExamplesAreAllExplained) {
    const std::string readme = read_text(kExamples + "/README.md");
    for (const auto& entry : fs::directory_iterator(kValid)) {
        const std::string name = entry.path().filename().string();
        EXPECT_NE(readme.find("`" + name), std::string::npos) << "README.md does not explain " << name;
        EXPECT_NO_THROW(ks::find_recording_metadata(data_path_for(entry.path().string()))) << name;
    }
}

TEST(ApplyMetadata, FillsSettingsTheUserDidNotSet) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.imec0.ap.bin");
    Settings s;
    ::testing::internal::CaptureStderr();
    ks::apply_metadata(m, s);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(s.get_int("n_chan_bin"), 385);
    EXPECT_DOUBLE_EQ(s.get_float("fs"), 30000);
    EXPECT_EQ(s.get_string("data_dtype"), "int16");
    EXPECT_EQ(s.origin("n_chan_bin"), m.source_path);
    EXPECT_EQ(s.origin("fs"), m.source_path);
    EXPECT_EQ(s.origin("data_dtype"), m.source_path);
    EXPECT_NE(err.find(m.source_path), std::string::npos) << err;  // info line says where from
    EXPECT_NE(err.find("n_chan_bin=385"), std::string::npos) << err;
    EXPECT_EQ(err.find("warning"), std::string::npos) << err;
}

TEST(ApplyMetadata, UserValueWinsWithAWarning) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.imec0.ap.bin");
    Settings s;
    s.set_from_string("fs=25000");
    s.set_from_string("n_chan_bin=385");  // agrees: no warning for it
    s.set_from_string("data_dtype=float32");
    ::testing::internal::CaptureStderr();
    ks::apply_metadata(m, s);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_DOUBLE_EQ(s.get_float("fs"), 25000);
    EXPECT_EQ(s.origin("fs"), "--set");
    EXPECT_EQ(s.get_int("n_chan_bin"), 385);
    EXPECT_EQ(s.origin("n_chan_bin"), "--set");
    EXPECT_EQ(s.get_string("data_dtype"), "float32");
    EXPECT_NE(err.find("warning: setting fs=25000"), std::string::npos) << err;
    EXPECT_NE(err.find("30000"), std::string::npos) << err;
    EXPECT_NE(err.find("warning: setting data_dtype=float32"), std::string::npos) << err;
    EXPECT_EQ(err.find("n_chan_bin=385 (from"), std::string::npos) << err;
}

TEST(ApplyMetadata, EmptyMetadataChangesNothing) {
    Settings s;
    ks::apply_metadata(RecordingMetadata{}, s);
    EXPECT_TRUE(s.is_none("n_chan_bin"));
    EXPECT_EQ(s.origin("fs"), "default");
}

TEST(ApplyMetadata, OpenEphysRecordingOpensWithNoSettings) {
    const std::string dat = data_path_for(kValid + "/openephys");
    Settings s;
    ::testing::internal::CaptureStderr();
    ks::apply_metadata(ks::find_recording_metadata(dat), s);
    ::testing::internal::GetCapturedStderr();
    const ks::Recording rec(dat, s, probe_with(3));
    EXPECT_EQ(rec.info().n_chan_bin, 4);
    EXPECT_DOUBLE_EQ(rec.info().fs, 30000);
    EXPECT_EQ(rec.n_samples(), 10);
    std::vector<float> out(3 * 10);
    rec.read(0, 10, out.data());
    for (int c = 0; c < 3; ++c) {
        for (int t = 0; t < 10; ++t) EXPECT_EQ(out[static_cast<size_t>(c * 10 + t)], 28 * t + 7 * c - 100);
    }
}

TEST(CheckProbe, FewerChannelsWarnAndNonEphysRowsAreAnError) {
    const RecordingMetadata m = ks::find_recording_metadata(kValid + "/run_g0_t0.imec0.ap.bin");
    // A channel map that leaves out sites (Kilosort's `connected`) is allowed, with a warning.
    ::testing::internal::CaptureStderr();
    EXPECT_NO_THROW(ks::check_probe_against_metadata(m, probe_with(32)));
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("352 ephys rows will not be sorted"), std::string::npos) << err;
    EXPECT_NO_THROW(ks::check_probe_against_metadata(m, probe_with(384)));
    // Row 384 is the sync channel of a 385-row NP1.0 file.
    try {
        ks::check_probe_against_metadata(m, probe_with(385));
        ADD_FAILURE() << "accepted the sync row";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage);
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind("probe_385.json: uses file row 384, but " + m.source_path + " says only rows 0..383", 0), 0u)
            << msg;
    }
    EXPECT_NO_THROW(ks::check_probe_against_metadata(RecordingMetadata{}, probe_with(2)));
}

}  // namespace
