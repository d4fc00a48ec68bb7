// AtomicDirectory and atomic_write_file: old or new state after any crash, never a partial one.
#include <csignal>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "prefdiff/run/atomic_dir.hpp"
#include "run_test_util.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::run;
using prefdiff::run::test::names_in;
using prefdiff::run::test::TempDir;

namespace {

std::string bytes(char c, std::size_t n) { return std::string(n, c); }

bool all_bytes_are(const std::string& s, char c) {
  return std::all_of(s.begin(), s.end(), [c](char x) { return x == c; });
}

// Forks a child that runs `body` forever (until killed); returns its pid once it has written one byte to
// the pipe (its first complete commit).
pid_t start_writer(const std::function<void(int ready_fd)>& body) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    body(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  char c;
  EXPECT_EQ(::read(fds[0], &c, 1), 1) << "the writer died before its first commit";
  ::close(fds[0]);
  return pid;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the writer was expected to be killed, not to exit";
}

}  // namespace

TEST(AtomicDirectory, InvisibleUntilCommitThenComplete) {
  TempDir tmp;
  fs::path final_path = tmp / "ckpt";
  AtomicDirectory dir(final_path);
  std::int64_t pid = 0;
  EXPECT_TRUE(is_temporary_name(dir.path().filename().string(), &pid));
  EXPECT_EQ(pid, ::getpid());
  EXPECT_EQ(dir.path().parent_path(), final_path.parent_path());  // same file system: rename is atomic
  dir.write_file("a.txt", "hello");
  dir.write_file("sub/deeper/b.bin", bytes('x', 1000));
  EXPECT_FALSE(fs::exists(final_path));
  dir.commit();
  EXPECT_TRUE(dir.committed());
  EXPECT_EQ(read_file(final_path / "a.txt"), "hello");
  EXPECT_EQ(read_file(final_path / "sub/deeper/b.bin").size(), 1000u);
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"ckpt"});
}

TEST(AtomicDirectory, NotCommittedKeepsTheOldStateAndCleansUp) {
  TempDir tmp;
  fs::path final_path = tmp / "ckpt";
  {
    AtomicDirectory v1(final_path);
    v1.write_file("w.bin", "old");
    v1.commit();
  }
  {
    AtomicDirectory v2(final_path);
    v2.write_file("w.bin", "new");
    v2.write_file("extra.bin", "new");
    // A failure in the trainer before commit(): the object goes away.
  }
  EXPECT_EQ(read_file(final_path / "w.bin"), "old");
  EXPECT_FALSE(fs::exists(final_path / "extra.bin"));
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"ckpt"});
}

TEST(AtomicDirectory, ProcessDyingBeforeCommitLeavesOldStateAndAStaleTemporaryThatIsCleaned) {
  TempDir tmp;
  fs::path final_path = tmp / "ckpt";
  {
    AtomicDirectory v1(final_path);
    v1.write_file("w.bin", "old");
    v1.commit();
  }
  pid_t child = ::fork();
  if (child == 0) {
    AtomicDirectory v2(final_path);
    v2.write_file("w.bin", "new");
    ::_exit(0);  // no destructors: as if killed just before commit()
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(read_file(final_path / "w.bin"), "old");
  ASSERT_EQ(names_in(tmp.path()).size(), 2u) << "the child's temporary folder should be left behind";

  // A live temporary of this process and an unrelated dot-file survive the cleanup.
  AtomicDirectory mine(tmp / "other");
  std::ofstream(tmp / ".keep.tmp-notapid-1") << "x";
  std::vector<fs::path> removed = remove_stale_temporaries(tmp.path());
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_NE(removed[0].filename().string().find(".ckpt.tmp-" + std::to_string(child) + "-"), std::string::npos);
  EXPECT_TRUE(fs::exists(mine.path()));
  EXPECT_TRUE(fs::exists(tmp / ".keep.tmp-notapid-1"));
  EXPECT_EQ(read_file(final_path / "w.bin"), "old");
}

TEST(AtomicDirectory, RefusesToReplaceUnlessAsked) {
  TempDir tmp;
  fs::path final_path = tmp / "ckpt";
  {
    AtomicDirectory v1(final_path);
    v1.write_file("w.bin", "old");
    v1.write_file("only_in_old.bin", "old");
    v1.commit();
  }
  AtomicDirectory v2(final_path);
  v2.write_file("w.bin", "new");
  try {
    v2.commit();
    FAIL() << "commit over an existing folder must throw";
  } catch (const RunError& e) {
    EXPECT_NE(std::string(e.what()).find(final_path.string() + "' already exists"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos);
  }
  EXPECT_EQ(read_file(final_path / "w.bin"), "old");
  v2.commit(/*replace_existing=*/true);
  EXPECT_EQ(read_file(final_path / "w.bin"), "new");
  EXPECT_FALSE(fs::exists(final_path / "only_in_old.bin"));
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"ckpt"}) << "the old contents must be removed";
}

TEST(AtomicDirectory, AnEmptyExistingFolderIsNotSilentlyReplaced) {
  // rename(2) would replace an empty folder; a run folder someone just created must not vanish.
  TempDir tmp;
  fs::create_directory(tmp / "ckpt");
  AtomicDirectory dir(tmp / "ckpt");
  dir.write_file("w.bin", "new");
  EXPECT_THROW(dir.commit(), RunError);
}

TEST(AtomicDirectory, WriteFileStaysInsideTheFolder) {
  TempDir tmp;
  AtomicDirectory dir(tmp / "ckpt");
  EXPECT_THROW(dir.write_file("../escape.txt", "x"), RunError);
  EXPECT_THROW(dir.write_file("/etc/passwd", "x"), RunError);
  EXPECT_THROW(dir.write_file("", "x"), RunError);
  EXPECT_FALSE(fs::exists(tmp / "escape.txt"));
}

TEST(AtomicDirectory, BeforeCommitHookRunsOnceBeforeTheRename) {
  TempDir tmp;
  AtomicDirectory dir(tmp / "ckpt");
  int calls = 0;
  dir.set_before_commit([&](AtomicDirectory& d) {
    ++calls;
    EXPECT_FALSE(fs::exists(d.final_path()));
    d.write_file("marker", "done");
  });
  dir.commit();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(read_file(tmp / "ckpt" / "marker"), "done");
}

TEST(AtomicDirectory, MovedObjectOwnsTheTemporary) {
  TempDir tmp;
  AtomicDirectory a(tmp / "ckpt");
  a.write_file("w", "1");
  AtomicDirectory b(std::move(a));
  b.commit();
  EXPECT_EQ(read_file(tmp / "ckpt" / "w"), "1");
}

TEST(AtomicDirectory, SigkillDuringRepeatedCommitsNeverLeavesAPartialFolder) {
  TempDir tmp;
  fs::path final_path = tmp / "ckpt";
  const std::size_t size = 256 * 1024;
  for (int round = 0; round < 6; ++round) {
    pid_t child = start_writer([&](int ready) {
      for (int k = 0;; ++k) {
        char c = static_cast<char>('a' + k % 26);
        AtomicDirectory dir(final_path);
        dir.write_file("model/weights.bin", bytes(c, size));
        dir.write_file("optimizer.bin", bytes(c, size / 2));
        dir.write_file("state.json", std::string("{\"k\":\"") + c + "\"}");
        dir.commit(true);
        if (k == 0) {
          ssize_t n = ::write(ready, "1", 1);
          (void)n;
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(3 + 7 * round));
    kill_and_reap(child);

    // Whatever the moment of the kill: a complete folder from one single iteration.
    ASSERT_TRUE(fs::is_directory(final_path)) << "round " << round;
    std::string w = read_file(final_path / "model/weights.bin");
    std::string o = read_file(final_path / "optimizer.bin");
    std::string s = read_file(final_path / "state.json");
    ASSERT_EQ(w.size(), size);
    ASSERT_EQ(o.size(), size / 2);
    char c = w[0];
    EXPECT_TRUE(all_bytes_are(w, c));
    EXPECT_TRUE(all_bytes_are(o, c));
    EXPECT_EQ(s, std::string("{\"k\":\"") + c + "\"}");
    // Cleaned as a run cleans its own folders, under their lock: without it, a kill between a temporary's
    // mkdir and its owner marker (microseconds) would leave one that no cleanup can prove abandoned.
    remove_stale_temporaries(tmp.path(), /*folder_is_locked=*/true);
    EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"ckpt"}) << "round " << round;
  }
}

TEST(AtomicWriteFile, ReplacesWholeFilesAndSurvivesSigkill) {
  TempDir tmp;
  fs::path file = tmp / "run.json";
  atomic_write_file(file, "first");
  EXPECT_EQ(read_file(file), "first");
  atomic_write_file(file, "second");
  EXPECT_EQ(read_file(file), "second");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"run.json"});

  const std::size_t size = 1 << 20;
  for (int round = 0; round < 4; ++round) {
    pid_t child = start_writer([&](int ready) {
      for (int k = 0;; ++k) {
        atomic_write_file(file, bytes(static_cast<char>('a' + k % 26), size));
        if (k == 0) {
          ssize_t n = ::write(ready, "1", 1);
          (void)n;
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(2 + 5 * round));
    kill_and_reap(child);
    std::string s = read_file(file);
    ASSERT_EQ(s.size(), size);
    EXPECT_TRUE(all_bytes_are(s, s[0]));
    remove_stale_temporaries(tmp.path());
    EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"run.json"});
  }
}

TEST(AtomicWriteFile, NamesTheFileWhenTheFolderIsMissing) {
  TempDir tmp;
  try {
    atomic_write_file(tmp / "missing" / "run.json", "x");
    FAIL();
  } catch (const RunError& e) {
    EXPECT_NE(std::string(e.what()).find((tmp / "missing").string()), std::string::npos) << e.what();
  }
}

TEST(TemporaryNames, Pattern) {
  std::int64_t pid = 0;
  EXPECT_TRUE(is_temporary_name(".ckpt.tmp-123-4", &pid));
  EXPECT_EQ(pid, 123);
  EXPECT_TRUE(is_temporary_name(".step-00000100.tmp-77-0", &pid));
  EXPECT_EQ(pid, 77);
  EXPECT_TRUE(is_temporary_name(".metrics.csv.tmp-9-12"));
  EXPECT_FALSE(is_temporary_name("ckpt.tmp-1-2"));   // no leading dot
  EXPECT_FALSE(is_temporary_name(".tmp-1-2"));       // no target name
  EXPECT_FALSE(is_temporary_name(".a.tmp-x-1"));
  EXPECT_FALSE(is_temporary_name(".a.tmp-1-"));
  EXPECT_FALSE(is_temporary_name(".a.tmp--1"));
  EXPECT_FALSE(is_temporary_name(".lock"));
  EXPECT_FALSE(is_temporary_name("step-00000100"));
  fs::path t = temporary_sibling("/x/y/step-00000005");
  EXPECT_EQ(t.parent_path(), fs::path("/x/y"));
  EXPECT_TRUE(is_temporary_name(t.filename().string(), &pid));
  EXPECT_NE(temporary_sibling("/x/a"), temporary_sibling("/x/a"));
}

TEST(StaleTemporaries, LiveProcessesAreSparedUnlessTheFolderIsLocked) {
  TempDir tmp;
  // pid 1 always runs: unlocked cleaning must not touch its temporary (it could be writing it now).
  fs::create_directory(tmp / ".ckpt.tmp-1-0");
  fs::create_directory(tmp / ".other.tmp-1-0");
  EXPECT_TRUE(remove_stale_temporaries(tmp.path()).empty());
  // With the run folder's lock held, nobody else may write here: every foreign temporary is stale.
  std::vector<fs::path> removed = remove_stale_temporaries(tmp.path(), /*folder_is_locked=*/true, "ckpt");
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].filename(), ".ckpt.tmp-1-0");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{".other.tmp-1-0"});
}

// Without the folder's lock (a folder shared with other runs, such as run.output_dir) only a provably
// abandoned temporary goes: a folder its AtomicDirectory marked, made on this host by a process that is
// gone. A folder that only has the name pattern is someone's data.
TEST(StaleTemporaries, UnlockedCleaningRemovesOnlyWhatItsMakerMarkedAndLeft) {
  TempDir tmp;
  // A writer killed before its commit: its temporary has the marker; the writer is gone.
  const pid_t writer = ::fork();
  if (writer == 0) {
    AtomicDirectory dir(tmp / "ckpt");
    dir.write_file("w.bin", "half");
    ::_exit(0);  // no destructors
  }
  ASSERT_EQ(::waitpid(writer, nullptr, 0), writer);
  std::string abandoned;
  for (const std::string& n : names_in(tmp.path()))
    if (n.rfind(".ckpt.tmp-" + std::to_string(writer) + "-", 0) == 0) abandoned = n;
  ASSERT_TRUE(fs::exists(tmp / abandoned / ".prefdiff-temporary")) << abandoned;
  // Folders with the pattern and the same dead pid but no marker: a run named like a temporary.
  fs::create_directories(tmp / (".victim.tmp-" + std::to_string(writer) + "-0") / "checkpoints");
  // A marker from another host: its pid means nothing here.
  fs::create_directories(tmp / (".remote.tmp-" + std::to_string(writer) + "-0"));
  std::ofstream(tmp / (".remote.tmp-" + std::to_string(writer) + "-0") / ".prefdiff-temporary")
      << "pid " << writer << "\nstart 1\nhost another-machine-" << ::getpid() << "\n";
  // Our own pid, but another start time: an earlier process that had this pid (pid reuse).
  const std::string reused = ".old.tmp-" + std::to_string(::getpid()) + "-999";
  fs::create_directories(tmp / reused);
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::ofstream(tmp / reused / ".prefdiff-temporary") << "pid " << ::getpid() << "\nstart 1\nhost " << host << "\n";
  // A live AtomicDirectory of this process is never touched.
  AtomicDirectory live(tmp / "live");

  std::vector<fs::path> removed = remove_stale_temporaries(tmp.path());
  std::vector<std::string> names;
  for (const fs::path& p : removed) names.push_back(p.filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{abandoned, reused}));
  EXPECT_TRUE(fs::exists(tmp / (".victim.tmp-" + std::to_string(writer) + "-0") / "checkpoints"));
  EXPECT_TRUE(fs::exists(tmp / (".remote.tmp-" + std::to_string(writer) + "-0")));
  EXPECT_TRUE(fs::exists(live.path()));
  // The marker is gone from what is committed.
  live.write_file("a.txt", "x");
  live.commit();
  EXPECT_EQ(names_in(tmp / "live"), std::vector<std::string>{"a.txt"});
}
