// Unix sockets bound to a path: stale sockets replaced, live ones and other files left alone,
// the path unlinked on destruction only while it is still ours, and the peer's credentials.
#include "zerodet/core/unix_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fstream>

#include "test_support.h"

namespace zerodet {
namespace {

using testing::TempDir;

TEST(UnixSocketTest, BindsWithOwnerOnlyPermissionsAndConnects) {
  const TempDir dir("unix-socket");
  const std::string path = dir.File("a.sock");
  auto listener = UnixListener::Bind(path, {});
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto client = ConnectUnix(path);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto peer = PeerCredentialsOf(client->get());
  ASSERT_TRUE(peer.ok());
  EXPECT_EQ(peer->uid, ::geteuid());
  EXPECT_EQ(peer->pid, ::getpid());
}

TEST(UnixSocketTest, ReplacesAStaleSocketButNotALiveOneOrAFile) {
  const TempDir dir("unix-socket");
  const std::string path = dir.File("a.sock");
  {
    // A socket bound and closed without unlinking: what a killed process leaves.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  auto first = UnixListener::Bind(path, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = UnixListener::Bind(path, {});
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find("another process"), std::string::npos);

  const std::string file = dir.File("plain");
  std::ofstream(file) << "data";
  auto over_file = UnixListener::Bind(file, {});
  EXPECT_EQ(over_file.status().code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(std::filesystem::exists(file));

  auto too_long = UnixListener::Bind("/tmp/" + std::string(MaxUnixSocketPath(), 'x'), {});
  EXPECT_EQ(too_long.status().code(), StatusCode::kInvalidArgument);
}

TEST(UnixSocketTest, UnlinksOnlyItsOwnSocket) {
  const TempDir dir("unix-socket");
  const std::string path = dir.File("a.sock");
  {
    auto listener = UnixListener::Bind(path, {});
    ASSERT_TRUE(listener.ok());
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  {
    auto listener = UnixListener::Bind(path, {});
    ASSERT_TRUE(listener.ok());
    // Someone removes it and puts a file of their own there.
    ASSERT_EQ(::unlink(path.c_str()), 0);
    std::ofstream(path) << "not yours";
  }
  EXPECT_TRUE(std::filesystem::exists(path)) << "another file was unlinked";
  // A moved-from listener leaves the path to the one it moved to.
  std::filesystem::remove(path);
  auto a = UnixListener::Bind(path, {});
  ASSERT_TRUE(a.ok());
  UnixListener b = std::move(a).value();
  { UnixListener moved_from; }
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(UnixSocketTest, ConnectErrorsSayWhatIsThere) {
  const TempDir dir("unix-socket");
  EXPECT_EQ(ConnectUnix(dir.File("none.sock")).status().code(), StatusCode::kNotFound);
  const std::string path = dir.File("a.sock");
  {
    auto listener = UnixListener::Bind(path, {});
    ASSERT_TRUE(listener.ok());
    listener->CloseAfterFork();  // closed, path left behind: nothing accepts
  }
  EXPECT_EQ(ConnectUnix(path).status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace zerodet
