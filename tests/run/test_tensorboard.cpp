// TensorBoard event files: CRC-32C against RFC 3720's vectors, TFRecord framing against bytes written by
// the tensorboard package's own RecordWriter, torn and damaged files, the writer's names, flush policy,
// crash behaviour, resume pruning, PNG checks and the metrics sink. (TensorBoard's readers read these
// files in tensorboard_e2e.py.)
#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/run/tensorboard/crc32c.hpp"
#include "prefdiff/run/tensorboard/tensorboard_sink.hpp"
#include "prefdiff/run/tensorboard/tensorboard_writer.hpp"
#include "prefdiff/run/tensorboard/tf_record.hpp"
#include "prefdiff/tensorboard/event.pb.h"
#include "run_test_util.hpp"

namespace fs = std::filesystem;
namespace pb = prefdiff::tensorboard;
using namespace prefdiff::run;
using prefdiff::run::test::names_in;
using prefdiff::run::test::TempDir;

namespace {

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string bytes_of(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// PNGs made with Pillow 13: Image.new(mode, (width, height)).save(buf, "PNG").
const std::string kPngRgb3x2 = unhex(
    "89504e470d0a1a0a0000000d49484452000000030000000208020000001216f14d0000000b49444154789c6360c00400001400017dfe"
    "1eee0000000049454e44ae426082");
const std::string kPngGrey4x1 = unhex(
    "89504e470d0a1a0a0000000d4948445200000004000000010800000000dc5750110000000d49444154789c636060606000000005000"
    "1a5f645400000000049454e44ae426082");
const std::string kPngRgba1x1 = unhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c636060606000000005000"
    "1a5f645400000000049454e44ae426082");
const std::string kPngGreyAlpha2x2 = unhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020804000000d8bfc5af0000000b49444154789c6360800100000a00017f80"
    "745e0000000049454e44ae426082");

struct FileRecords {
  std::vector<std::string> records;
  tfrecord::Tail tail;
  std::uint64_t good_bytes;
};

FileRecords records_of(const std::string& bytes) {
  std::istringstream in(bytes);
  tfrecord::RecordReader reader(in);
  FileRecords out;
  for (std::string r; reader.next(r);) out.records.push_back(r);
  out.tail = reader.tail();
  out.good_bytes = reader.good_bytes();
  return out;
}

std::vector<pb::Event> events_in(const fs::path& file) {
  std::vector<pb::Event> events;
  for (const std::string& r : records_of(read_file(file)).records) {
    pb::Event e;
    EXPECT_TRUE(e.ParseFromString(r)) << file;
    events.push_back(e);
  }
  return events;
}

std::vector<fs::path> event_files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const std::string& name : names_in(dir))
    if (is_event_file_name(name)) out.push_back(dir / name);
  return out;
}

// The (tag, step, value) of every scalar in the events, in file order.
std::vector<std::tuple<std::string, std::int64_t, float>> scalars_in(const std::vector<pb::Event>& events) {
  std::vector<std::tuple<std::string, std::int64_t, float>> out;
  for (const pb::Event& e : events)
    for (const auto& v : e.summary().value())
      if (v.value_case() == pb::Summary::Value::kSimpleValue) out.emplace_back(v.tag(), e.step(), v.simple_value());
  return out;
}

std::vector<std::int64_t> summary_steps(const std::vector<pb::Event>& events) {
  std::vector<std::int64_t> out;
  for (const pb::Event& e : events)
    if (e.has_summary()) out.push_back(e.step());
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TensorBoardOptions unsynced(std::int64_t resume_step = -1) {
  TensorBoardOptions o;
  o.resume_step = resume_step;
  o.fsync = false;  // the tests check what reaches the file, not the disk
  return o;
}

}  // namespace

// ------------------------------------------------------------------ CRC-32C and framing

TEST(Crc32c, Rfc3720Vectors) {
  // RFC 3720, appendix B.4 (the CRC bytes there are listed in wire order, least significant first).
  EXPECT_EQ(tfrecord::crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(tfrecord::crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(tfrecord::crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(tfrecord::crc32c(down), 0x113FDB5Cu);
  const std::string read10 = bytes_of({0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                       0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                                       0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                                       0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00});
  EXPECT_EQ(tfrecord::crc32c(read10), 0xD9963A56u);
  // The CRC catalogue's check value for CRC-32C, and the empty input.
  EXPECT_EQ(tfrecord::crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(tfrecord::crc32c(""), 0u);
}

TEST(Crc32c, ContinuesOverPiecesAndMasksAsTensorFlow) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  for (std::size_t cut = 0; cut <= text.size(); ++cut)
    EXPECT_EQ(tfrecord::crc32c(text.substr(cut), tfrecord::crc32c(text.substr(0, cut))), tfrecord::crc32c(text));
  // masked_crc32c(b"123456789") from tensorboard.compat.tensorflow_stub.pywrap_tensorflow.
  EXPECT_EQ(tfrecord::mask_crc(0xE3069283u), 0xC78AB0E5u);
  for (std::uint32_t c : {0u, 1u, 0xE3069283u, 0xffffffffu, 0x80000000u})
    EXPECT_EQ(tfrecord::unmask_crc(tfrecord::mask_crc(c)), c);
}

TEST(TfRecord, FramesAsTensorBoardsRecordWriter) {
  // Bytes from tensorboard.summary.writer.record_writer.RecordWriter (tensorboard 2.21).
  EXPECT_EQ(tfrecord::frame(""), unhex("000000000000000029039807d8ea82a2"));
  EXPECT_EQ(tfrecord::frame("hello"), unhex("0500000000000000eab2043e") + "hello" + unhex("bb1f1c19"));
  std::string big;
  for (int rep = 0; rep < 3; ++rep)
    for (int i = 0; i < 256; ++i) big.push_back(static_cast<char>(i));
  EXPECT_EQ(tfrecord::frame(big), unhex("000300000000000033532732") + big + unhex("1d2aeac9"));
}

TEST(TfRecord, ReadsBackEveryRecordAndStopsAtATornTail) {
  const std::vector<std::string> data{"", "a", std::string(1000, 'x'), "last record"};
  std::string file;
  for (const std::string& d : data) tfrecord::append_framed(file, d);
  FileRecords all = records_of(file);
  EXPECT_EQ(all.records, data);
  EXPECT_EQ(all.tail, tfrecord::Tail::kClean);
  EXPECT_EQ(all.good_bytes, file.size());

  // A crash can stop the file at any byte: the records before the cut are all there, the rest is a torn tail.
  const std::size_t last_start = file.size() - tfrecord::frame(data.back()).size();
  for (std::size_t cut = 0; cut < file.size(); ++cut) {
    FileRecords part = records_of(file.substr(0, cut));
    std::size_t complete = 0, end = 0;
    for (const std::string& d : data) {
      if (end + tfrecord::frame(d).size() > cut) break;
      end += tfrecord::frame(d).size();
      ++complete;
    }
    ASSERT_EQ(part.records.size(), complete) << "cut at " << cut;
    EXPECT_TRUE(std::equal(part.records.begin(), part.records.end(), data.begin()));
    EXPECT_EQ(part.good_bytes, end);
    EXPECT_EQ(part.tail, cut == end ? tfrecord::Tail::kClean : tfrecord::Tail::kTruncated) << "cut at " << cut;
    if (cut >= last_start) {
      EXPECT_EQ(part.records.size(), data.size() - 1);
    }
  }
}

TEST(TfRecord, AFlippedBitIsCorruptionNotData) {
  std::string file = tfrecord::frame("first") + tfrecord::frame("second");
  const std::size_t second = tfrecord::frame("first").size();
  for (std::size_t at : {second + 0, second + 9, second + 13, file.size() - 1}) {  // length, its CRC, data, CRC
    std::string damaged = file;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
    FileRecords r = records_of(damaged);
    ASSERT_EQ(r.records.size(), 1u) << "flip at " << at;
    EXPECT_EQ(r.records[0], "first");
    EXPECT_EQ(r.tail, tfrecord::Tail::kCorrupt) << "flip at " << at;
  }
}

TEST(TfRecord, AHugeDamagedLengthIsATruncationNotAnAllocation) {
  // A length of 2^62 with a matching CRC (a file cut inside a record of that claimed size): no 4 EiB buffer.
  std::string header(8, '\0');
  header[7] = 0x40;
  std::string file = header;
  const std::uint32_t c = tfrecord::mask_crc(tfrecord::crc32c(header));
  for (int i = 0; i < 4; ++i) file.push_back(static_cast<char>((c >> (8 * i)) & 0xff));
  file += "a little data";
  FileRecords r = records_of(file);
  EXPECT_TRUE(r.records.empty());
  EXPECT_EQ(r.tail, tfrecord::Tail::kTruncated);
}

// ------------------------------------------------------------------ the writer

TEST(TensorBoardWriter, FirstRecordIsTheFileVersionAndNameIsTensorBoards) {
  TempDir tmp;
  const double before = static_cast<double>(std::time(nullptr));
  fs::path file;
  {
    TensorBoardWriter tb(tmp.path(), unsynced());
    file = tb.path();
    EXPECT_EQ(file.parent_path(), tmp.path());
    EXPECT_EQ(tb.records_written(), 1u);  // the header is on disk at once
  }
  const std::string name = file.filename().string();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  // events.out.tfevents.<10-digit time>.<host>.<pid>.<n>
  ASSERT_EQ(name.rfind(kEventFilePrefix, 0), 0u) << name;
  const std::string rest = name.substr(std::string(kEventFilePrefix).size());
  const std::int64_t t = std::stoll(rest.substr(0, 10));
  EXPECT_GE(t, static_cast<std::int64_t>(before));
  EXPECT_LE(t, static_cast<std::int64_t>(before) + 60);
  const std::string h = host;
  if (std::all_of(h.begin(), h.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'; })) {
    EXPECT_EQ(rest.substr(10, h.size() + 2), "." + h + ".");
  }
  EXPECT_NE(rest.find("." + std::to_string(::getpid()) + "."), std::string::npos) << name;

  std::vector<pb::Event> events = events_in(file);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[0].source_metadata().writer(), "prefdiff");
  EXPECT_GE(events[0].wall_time(), before);
  EXPECT_LT(events[0].wall_time(), before + 60);
}

TEST(TensorBoardWriter, ScalarsAndImagesAreEventsWithStepsAndWallTimes) {
  TempDir tmp;
  fs::path file;
  {
    TensorBoardWriter tb(tmp.path(), unsynced());
    file = tb.path();
    tb.add_scalar("loss", 0.693147, 10, 1700000000.25);
    tb.add_scalars({{"rewards/accuracies", 0.5}, {"lr", 1e-5}, {"nan", std::nan("")}}, 20, 1700000001.5);
    tb.add_scalars({}, 30);  // nothing to log: no event
    tb.add_image("validation/00", kPngRgb3x2, 2, 3, 20, 1700000002.0);
    tb.add_image("validation/01", kPngGrey4x1, 1, 4, 20);
    tb.add_image("validation/02", kPngRgba1x1, 1, 1, 20);
    tb.add_image("validation/03", kPngGreyAlpha2x2, 2, 2, 20);
  }
  std::vector<pb::Event> events = events_in(file);
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[1].step(), 10);
  EXPECT_DOUBLE_EQ(events[1].wall_time(), 1700000000.25);
  ASSERT_EQ(events[1].summary().value_size(), 1);
  EXPECT_EQ(events[1].summary().value(0).tag(), "loss");
  // A serialisation is exact: the stored float32 is the caller's double rounded once, bit for bit.
  EXPECT_TRUE(same_bits(events[1].summary().value(0).simple_value(), static_cast<float>(0.693147)));
  ASSERT_EQ(events[2].summary().value_size(), 3);  // one row, one event; tags in sorted order
  EXPECT_EQ(events[2].summary().value(0).tag(), "lr");
  EXPECT_TRUE(same_bits(events[2].summary().value(0).simple_value(), static_cast<float>(1e-5)));
  EXPECT_TRUE(std::isnan(events[2].summary().value(1).simple_value()));
  EXPECT_EQ(events[2].summary().value(2).tag(), "rewards/accuracies");
  EXPECT_DOUBLE_EQ(events[2].wall_time(), 1700000001.5);

  const struct {
    std::string tag, png;
    int height, width, colorspace;
  } images[] = {{"validation/00", kPngRgb3x2, 2, 3, 3},
                {"validation/01", kPngGrey4x1, 1, 4, 1},
                {"validation/02", kPngRgba1x1, 1, 1, 4},
                {"validation/03", kPngGreyAlpha2x2, 2, 2, 2}};
  for (int i = 0; i < 4; ++i) {
    const pb::Event& e = events[3 + i];
    EXPECT_EQ(e.step(), 20);
    ASSERT_EQ(e.summary().value_size(), 1);
    EXPECT_EQ(e.summary().value(0).tag(), images[i].tag);
    const auto& im = e.summary().value(0).image();
    EXPECT_EQ(im.height(), images[i].height);
    EXPECT_EQ(im.width(), images[i].width);
    EXPECT_EQ(im.colorspace(), images[i].colorspace) << images[i].tag;
    EXPECT_EQ(im.encoded_image_string(), images[i].png);
  }
  EXPECT_GT(events[4].wall_time(), 1.6e9);  // now, when not given
}

TEST(TensorBoardWriter, RefusesWhatIsNotAPngOfTheGivenSize) {
  TempDir tmp;
  TensorBoardWriter tb(tmp.path(), unsynced());
  auto message = [&](const std::string& png, int h, int w) {
    try {
      tb.add_image("validation/00", png, h, w, 1);
    } catch (const RunError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(std::string(200, '\x7f'), 2, 3).find("not a PNG file"), std::string::npos);
  EXPECT_NE(message(kPngRgb3x2.substr(0, 20), 2, 3).find("not a PNG file"), std::string::npos);
  const std::string swapped = message(kPngRgb3x2, 3, 2);
  EXPECT_NE(swapped.find("2 pixels high and 3 wide"), std::string::npos) << swapped;
  EXPECT_NE(swapped.find("HINT"), std::string::npos);
  EXPECT_THROW(tb.add_scalar("", 1.0, 1), RunError);
  tb.close();
  EXPECT_EQ(tb.records_written(), 1u);  // nothing refused got in
}

TEST(TensorBoardWriter, FlushesEveryNRecordsEveryNBytesAndOnClose) {
  TempDir tmp;
  TensorBoardOptions o = unsynced();
  o.flush_every_records = 3;
  o.flush_every_bytes = 1000;
  o.flush_every_seconds = 3600;
  TensorBoardWriter tb(tmp.path(), o);
  auto on_disk = [&] { return records_of(read_file(tb.path())).records.size(); };
  tb.add_scalar("a", 1, 1);
  tb.add_scalar("a", 2, 2);
  EXPECT_EQ(on_disk(), 1u);  // header only
  tb.add_scalar("a", 3, 3);
  EXPECT_EQ(on_disk(), 4u);
  EXPECT_EQ(tb.records_written(), 4u);
  tb.add_scalar("a", 4, 4);
  tb.flush();
  EXPECT_EQ(on_disk(), 5u);
  tb.add_image("big", kPngRgb3x2 + std::string(2000, '\0'), 2, 3, 5);  // over flush_every_bytes: at once
  EXPECT_EQ(on_disk(), 6u);
  tb.add_scalar("a", 6, 6);
  EXPECT_EQ(on_disk(), 6u);
  tb.close();
  EXPECT_EQ(on_disk(), 7u);
  EXPECT_THROW(tb.add_scalar("a", 7, 7), RunError);
}

TEST(TensorBoardWriter, FlushesWhenTheLastFlushIsOlderThanTheTimeLimit) {
  TempDir tmp;
  TensorBoardOptions o = unsynced();
  o.flush_every_records = 1000;
  o.flush_every_seconds = 0.2;
  TensorBoardWriter tb(tmp.path(), o);
  tb.add_scalar("a", 1, 1);
  EXPECT_EQ(tb.records_written(), 1u);
  ::usleep(300000);
  tb.add_scalar("a", 2, 2);
  EXPECT_EQ(tb.records_written(), 3u);
}

TEST(TensorBoardWriter, AKilledWriterLosesOnlyItsUnflushedTail) {
  // The child flushes every 4 records and tells the parent after each flush how many are on disk, then is
  // killed at a random moment (mid-write included). The file must hold at least what was reported, every
  // record complete except possibly a torn last one, and never a damaged record.
  for (int trial = 0; trial < 5; ++trial) {
    TempDir tmp;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      TensorBoardOptions o;
      o.flush_every_records = 4;
      o.fsync = false;
      TensorBoardWriter tb(tmp.path(), o);
      const std::string image = kPngRgb3x2 + std::string(30000 + 7919 * trial, '\x55');
      for (std::int64_t step = 1;; ++step) {
        const std::size_t before = tb.records_written();
        if (step % 3 == 0)
          tb.add_image("validation/00", image, 2, 3, step);
        else
          tb.add_scalar("loss", static_cast<double>(step), step);
        const std::uint64_t now = tb.records_written();
        if (now != before && ::write(fds[1], &now, sizeof now) != sizeof now) ::_exit(1);
      }
    }
    ::close(fds[1]);
    std::uint64_t reported = 0, n = 0;
    for (int flushes = 0; flushes < 20 + 7 * trial && ::read(fds[0], &n, sizeof n) == sizeof n; ++flushes) reported = n;
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status));
    const std::vector<fs::path> files = event_files_in(tmp.path());
    ASSERT_EQ(files.size(), 1u);
    FileRecords r = records_of(read_file(files[0]));
    EXPECT_NE(r.tail, tfrecord::Tail::kCorrupt);
    EXPECT_GE(r.records.size(), reported);
    for (std::size_t i = 1; i < r.records.size(); ++i) {
      pb::Event e;
      ASSERT_TRUE(e.ParseFromString(r.records[i]));
      EXPECT_EQ(e.step(), static_cast<std::int64_t>(i));  // in order, none missing before the tail
    }
  }
}

TEST(TensorBoardWriter, NewFileSortsAfterEveryExistingOneEvenInTheSameSecondOrAfterClockSkew) {
  TempDir tmp;
  // A file "from the future" (another host's clock) and one of a pid that sorts after ours.
  write_file_synced(tmp / "events.out.tfevents.4102444800.other-host.1.0", "");
  const std::string same_second_later = std::string(kEventFilePrefix) + "4102444801.zzz.99999999.0";
  write_file_synced(tmp / same_second_later, "");
  TensorBoardWriter tb(tmp.path(), unsynced());
  const std::string mine = tb.path().filename().string();
  EXPECT_GT(mine, same_second_later);
  EXPECT_EQ(mine.substr(0, std::string(kEventFilePrefix).size() + 10), std::string(kEventFilePrefix) + "4102444802");
  EXPECT_EQ(names_in(tmp.path()).back(), mine);
}

TEST(TensorBoardWriter, OneWriterPerRunFolder) {
  TempDir tmp;
  auto tb = std::make_unique<TensorBoardWriter>(tmp.path(), unsynced());
  try {
    TensorBoardWriter second(tmp.path() / "." / "", unsynced(0));
    ADD_FAILURE() << "a second writer on the same folder was allowed";
  } catch (const RunError& e) {
    EXPECT_NE(std::string(e.what()).find("already has an open TensorBoard writer"), std::string::npos) << e.what();
  }
  tb->close();
  TensorBoardWriter next(tmp.path(), unsynced(0));  // after close(): a resume may open it again
  EXPECT_EQ(event_files_in(tmp.path()).size(), 2u);
}

TEST(TensorBoardWriter, ANewRunRefusesAFolderWithPrefdiffEventsButNotOtherFiles) {
  TempDir tmp;
  EXPECT_THROW(TensorBoardWriter(tmp / "missing", unsynced()), RunError);
  // Another program's event file (no prefdiff header): left alone.
  pb::Event foreign;
  foreign.set_file_version("brain.Event:2");
  const std::string foreign_bytes = tfrecord::frame(foreign.SerializeAsString());
  write_file_synced(tmp / "events.out.tfevents.1000000000.elsewhere", foreign_bytes);
  { TensorBoardWriter tb(tmp.path(), unsynced()); }
  try {
    TensorBoardWriter again(tmp.path(), unsynced());
    ADD_FAILURE() << "a new run was allowed into a folder with a run's events";
  } catch (const RunError& e) {
    EXPECT_NE(std::string(e.what()).find("HINT: pass the resume step"), std::string::npos) << e.what();
  }
  EXPECT_EQ(event_files_in(tmp.path()).size(), 2u);  // the refused writer left no file behind
  EXPECT_EQ(read_file(tmp / "events.out.tfevents.1000000000.elsewhere"), foreign_bytes);
}

// ------------------------------------------------------------------ resume

TEST(TensorBoardWriter, ResumeCutsEventsAfterTheCheckpointAndMarksTheRestart) {
  TempDir tmp;
  fs::path first;
  {
    TensorBoardWriter tb(tmp.path(), unsynced());
    first = tb.path();
    for (std::int64_t step = 10; step <= 100; step += 10) tb.add_scalar("loss", 1.0 / step, step);
    tb.add_image("validation/00", kPngRgb3x2, 2, 3, 100);
  }
  // A crash tore the last record.
  { std::ofstream(first, std::ios::binary | std::ios::app) << tfrecord::frame("torn").substr(0, 9); }

  fs::path second;
  {
    TensorBoardWriter tb(tmp.path(), unsynced(50));
    second = tb.path();
    for (std::int64_t step = 60; step <= 80; step += 10) tb.add_scalar("loss", -1.0 / step, step);
  }
  std::vector<pb::Event> old_events = events_in(first);
  EXPECT_EQ(summary_steps(old_events), (std::vector<std::int64_t>{10, 20, 30, 40, 50}));
  EXPECT_EQ(records_of(read_file(first)).tail, tfrecord::Tail::kClean);
  EXPECT_TRUE(same_bits(std::get<2>(scalars_in(old_events).back()), static_cast<float>(1.0 / 50)));

  std::vector<pb::Event> new_events = events_in(second);
  ASSERT_GE(new_events.size(), 2u);
  EXPECT_EQ(new_events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(new_events[1].session_log().status(), pb::SessionLog::START);
  EXPECT_EQ(new_events[1].step(), 51);  // Python's loader drops steps >= 51 it has seen
  EXPECT_EQ(summary_steps(new_events), (std::vector<std::int64_t>{60, 70, 80}));
  EXPECT_GT(second.filename(), first.filename());

  // A second resume from an earlier checkpoint cuts both files, START markers included.
  { TensorBoardWriter tb(tmp.path(), unsynced(20)); }
  EXPECT_EQ(summary_steps(events_in(first)), (std::vector<std::int64_t>{10, 20}));
  new_events = events_in(second);
  ASSERT_EQ(new_events.size(), 1u);
  EXPECT_EQ(new_events[0].file_version(), "brain.Event:2");
}

TEST(TensorBoardWriter, ResumeKeepsOutOfOrderEventsAtOrBeforeTheStepByRewritingTheFile) {
  TempDir tmp;
  fs::path first;
  {
    TensorBoardWriter tb(tmp.path(), unsynced());
    first = tb.path();
    for (std::int64_t step : {1, 2, 5, 6, 3, 7, 4}) tb.add_scalar("x", static_cast<double>(step), step);
  }
  { TensorBoardWriter tb(tmp.path(), unsynced(4)); }
  EXPECT_EQ(summary_steps(events_in(first)), (std::vector<std::int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(events_in(first)[0].source_metadata().writer(), "prefdiff");
  for (const std::string& name : names_in(tmp.path()))
    EXPECT_FALSE(is_temporary_name(name)) << name;  // the rewrite's temporary is gone

  // Nothing past the step and a clean tail: the file is not touched at all.
  const std::string bytes = read_file(first);
  { TensorBoardWriter tb(tmp.path(), unsynced(4)); }
  EXPECT_EQ(read_file(first), bytes);
}

TEST(TensorBoardWriter, ResumeNeverTouchesAnotherProgramsEventFile) {
  TempDir tmp;
  pb::Event header, late;
  header.set_file_version("brain.Event:2");
  late.set_step(1000);
  late.mutable_summary()->add_value()->set_tag("theirs");
  const std::string foreign = tfrecord::frame(header.SerializeAsString()) + tfrecord::frame(late.SerializeAsString());
  write_file_synced(tmp / "events.out.tfevents.1000000000.elsewhere", foreign);
  { TensorBoardWriter tb(tmp.path(), unsynced(5)); }
  EXPECT_EQ(read_file(tmp / "events.out.tfevents.1000000000.elsewhere"), foreign);
}

// ------------------------------------------------------------------ the metrics sink

TEST(TensorBoardSink, MirrorsMetricsRowsWithTheirKeysAndLeavesTheMetricsFilesAsTheyWere) {
  TempDir tmp;
  const fs::path with = tmp / "with", without = tmp / "without";
  fs::create_directories(with / "run");
  fs::create_directories(without / "run");
  fs::path file;
  auto log_rows = [](MetricsLogger& m) {
    m.add(metric::kLoss, 0.7);
    m.add(metric::kLoss, 0.5);
    m.add(metric::kAccuracy, 0.25);
    m.set(metric::kLr, 3e-6);
    m.log_window(10, 0.125);
    m.write_eval(10, 0.125, {{"rewards/accuracies", 0.75}, {"loss", std::nan("")}});
    m.write_row(20, 0.25, {{metric::kLoss, 0.4}, {metric::kGradNorm, 12.5}});
  };
  {
    MetricsLogger plain(without / "run", MetricsOptions{true, -1, false});
    log_rows(plain);
    TensorBoardWriter tb(with / "run", unsynced());
    file = tb.path();
    MetricsLogger m(with / "run", MetricsOptions{true, -1, false});
    m.add_row_sink(tensorboard_sink(tb));
    log_rows(m);
  }
  EXPECT_EQ(read_file(with / "run/metrics.jsonl"), read_file(without / "run/metrics.jsonl"));
  EXPECT_EQ(read_file(with / "run/metrics.csv"), read_file(without / "run/metrics.csv"));

  std::vector<pb::Event> events = events_in(file);
  ASSERT_EQ(events.size(), 4u);  // header + one event per row
  using S = std::tuple<std::string, std::int64_t, float>;
  auto scalars = scalars_in(events);
  ASSERT_EQ(scalars.size(), 9u);
  std::vector<S> expected{
      S{"epoch", 10, 0.125f}, S{"loss", 10, 0.6f}, S{"lr", 10, 3e-6f}, S{"rewards/accuracies", 10, 0.25f},
      S{"eval/loss", 10, NAN}, S{"eval/rewards/accuracies", 10, 0.75f},  // no epoch on a validation row
      S{"epoch", 20, 0.25f}, S{"grad_norm", 20, 12.5f}, S{"loss", 20, 0.4f}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(std::get<0>(scalars[i]), std::get<0>(expected[i])) << i;
    EXPECT_EQ(std::get<1>(scalars[i]), std::get<1>(expected[i])) << i;
    const float got = std::get<2>(scalars[i]), want = std::get<2>(expected[i]);
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << i;
    else
      EXPECT_FLOAT_EQ(got, want) << std::get<0>(expected[i]);
  }
}
