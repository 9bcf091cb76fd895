// latchkeyd against a real loopback socket: one test per message type,
// refusals (wrong secret, another process's token, limits), hostile frames,
// slow clients, graceful SIGTERM, and SIGKILL during a write load.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "net/auth.h"
#include "net/codec.h"
#include "net/wal.h"
#include "tests/latchkeyd_harness.h"
#include "tests/raw_client.h"

namespace latchkey::net {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using Client = RawClient;

std::unique_ptr<Client> Login(std::uint16_t port, std::uint64_t id, std::uint64_t inc = 1,
                              Role role = Role::kProcess) {
  auto c = std::make_unique<Client>(port);
  auto welcome = c->Authenticate(id, inc, role);
  EXPECT_TRUE(welcome && std::holds_alternative<WelcomeFrame>(*welcome));
  return c;
}

class LatchkeydTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    daemon_ = std::make_unique<Daemon>(dir_.path(), std::move(extra));
    ASSERT_NE(daemon_->port(), 0) << daemon_->Log();
  }
  void TearDown() override {
    if (HasFailure() && daemon_) std::fprintf(stderr, "latchkeyd log:\n%s", daemon_->Log().c_str());
  }
  std::uint16_t port() const { return daemon_->port(); }
  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(LatchkeydTest, AcquireCommitHeartbeatReleaseRoundTrip) {
  Start();
  auto a = Login(port(), 1);
  a->Send(core::Acquire{7, 1, {}, false});
  auto g = a->Expect<core::Granted>();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->session, 7u);
  EXPECT_EQ(g->request_id, 1u);
  ASSERT_NE(g->token, core::kNoToken);
  a->Send(core::Commit{7, g->token, 1, false, {{"cart", "3 items", false}}});
  auto ack = a->Expect<core::CommitAck>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->seq, 1u);
  a->Send(core::Heartbeat{5});
  auto hb = a->Expect<core::HeartbeatAck>();
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->seq, 5u);
  a->Send(core::Release{7, g->token});
  auto rel = a->Expect<core::ReleaseAck>();
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->token, g->token);
  a->Send(core::Acquire{7, 2, {}, false});
  auto g2 = a->Expect<core::Granted>();
  ASSERT_TRUE(g2);
  EXPECT_GT(g2->token, g->token);  // B2
  ASSERT_TRUE(g2->has_snapshot);
  EXPECT_EQ(g2->snapshot.at("cart"), "3 items");
}

TEST_F(LatchkeydTest, QueuedRecallThenGrantToTheNextClient) {
  Start();
  auto a = Login(port(), 1);
  auto b = Login(port(), 2);
  a->Send(core::Acquire{3, 1, {}, false});
  auto ga = a->Expect<core::Granted>();
  ASSERT_TRUE(ga);
  b->Send(core::Acquire{3, 1, {}, false});
  auto q = b->Expect<core::Queued>();
  ASSERT_TRUE(q);
  EXPECT_EQ(q->ahead, 0u);
  auto recall = a->Expect<core::Recall>();  // R7
  ASSERT_TRUE(recall);
  EXPECT_EQ(recall->token, ga->token);
  a->Send(core::Release{3, ga->token});
  ASSERT_TRUE(a->Expect<core::ReleaseAck>());
  auto gb = b->Expect<core::Granted>();  // R5
  ASSERT_TRUE(gb);
  EXPECT_GT(gb->token, ga->token);
}

TEST_F(LatchkeydTest, TryLockBusyCancelAndAdminMessages) {
  Start();
  auto a = Login(port(), 1);
  auto b = Login(port(), 2);
  auto admin = Login(port(), 99, 1, Role::kAdmin);
  a->Send(core::Acquire{4, 1, {}, false});
  auto ga = a->Expect<core::Granted>();
  ASSERT_TRUE(ga);
  b->Send(core::Acquire{4, 1, {}, true});
  ASSERT_TRUE(b->Expect<core::Busy>());  // B5
  b->Send(core::Acquire{4, 2, {}, false});
  ASSERT_TRUE(b->Expect<core::Queued>());
  ASSERT_TRUE(a->Expect<core::Recall>());
  b->Send(core::Cancel{4, 2});
  auto cancel = b->Expect<core::CancelAck>();
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->request_id, 2u);
  admin->Send(core::ForceRelease{4});
  auto revoked = a->Expect<core::Revoked>();
  ASSERT_TRUE(revoked);
  EXPECT_EQ(revoked->reason, core::Reason::kForceReleased);
  a->Send(core::Acquire{4, 2, {}, false});
  auto ga2 = a->Expect<core::Granted>();
  ASSERT_TRUE(ga2);
  admin->Send(core::AdminInvalidate{4});
  auto inv = a->Expect<core::Revoked>();
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->reason, core::Reason::kInvalidated);
  // An admin may not acquire; a process may not force-release.
  admin->Send(core::Acquire{4, 1, {}, false});
  auto e1 = admin->ExpectError();
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->code, ErrorCode::kNotPermitted);
  EXPECT_FALSE(e1->fatal);
  b->Send(core::ForceRelease{4});
  auto e2 = b->ExpectError();
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->code, ErrorCode::kNotPermitted);
}

TEST_F(LatchkeydTest, WrongSecretIsRejectedAndClosed) {
  Start();
  Client c(port());
  auto reply = c.Authenticate(1, 1, Role::kProcess, "not-the-secret");
  ASSERT_TRUE(reply && std::holds_alternative<ErrorFrame>(*reply));
  EXPECT_EQ(std::get<ErrorFrame>(*reply).code, ErrorCode::kAuthFailed);
  EXPECT_TRUE(c.WaitClosed());
  // Messages before authentication are refused too.
  Client d(port());
  ASSERT_TRUE(d.Recv());  // the challenge
  d.Send(core::Heartbeat{1});
  auto e = d.ExpectError();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::kUnexpectedFrame);
  EXPECT_TRUE(d.WaitClosed());
}

// B9: a client cannot use or release a lock it did not receive, even with
// the right token: the sender is its authenticated identity.
TEST_F(LatchkeydTest, AnotherProcessesTokenIsRefused) {
  Start();
  auto a = Login(port(), 1);
  auto b = Login(port(), 2);
  a->Send(core::Acquire{5, 1, {}, false});
  auto ga = a->Expect<core::Granted>();
  ASSERT_TRUE(ga);
  b->Send(core::Commit{5, ga->token, 1, false, {{"x", "stolen", false}}});
  auto r1 = b->Expect<core::Rejected>();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->reason, core::Reason::kNotHolder);
  b->Send(core::Release{5, ga->token});
  auto r2 = b->Expect<core::Rejected>();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->reason, core::Reason::kNotHolder);
  a->Send(core::Commit{5, ga->token, 1, false, {{"x", "mine", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>());
}

TEST_F(LatchkeydTest, MalformedTruncatedAndOversizedFramesCloseOnlyThatConnection) {
  Start({"--max-frame-bytes", "4096"});
  auto good = Login(port(), 1);
  {
    auto c = Login(port(), 2);
    c->SendRaw(std::string("\x05\x00\x00\x00\x01\x04\xff\xff\xff", 9));  // unknown kind 255
    auto e = c->ExpectError();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, ErrorCode::kMalformedFrame);
    EXPECT_TRUE(e->fatal);
    EXPECT_NE(e->text.find("at byte"), std::string::npos) << e->text;
    EXPECT_TRUE(c->WaitClosed());
  }
  {
    auto c = Login(port(), 3);
    c->SendRaw(std::string("\x00\x00\x01\x00", 4));  // 65536 > 4096
    auto e = c->ExpectError();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, ErrorCode::kFrameTooLarge);
    EXPECT_TRUE(c->WaitClosed());
  }
  {
    auto c = Login(port(), 5);
    std::string frame = EncodeFrame(Frame(core::Message(core::Heartbeat{1})));
    frame[4] = 7;  // a future protocol version
    c->SendRaw(frame);
    auto e = c->ExpectError();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, ErrorCode::kBadVersion);
    EXPECT_NE(e->text.find("version 7"), std::string::npos) << e->text;
    EXPECT_TRUE(c->WaitClosed());
  }
  {
    auto c = Login(port(), 4);
    std::string frame = EncodeFrame(Frame(core::Message(core::Heartbeat{1})));
    c->SendRaw(frame.substr(0, frame.size() - 3));  // truncated, then EOF
    c->ShutdownWrite();
    EXPECT_TRUE(c->WaitClosed());
  }
  {
    Client c(port());
    c.SendRaw("GET / HTTP/1.1\r\n\r\n");  // garbage before authentication
    EXPECT_TRUE(c.WaitClosed());
  }
  good->Send(core::Heartbeat{9});
  auto hb = good->Expect<core::HeartbeatAck>();
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->seq, 9u);
  EXPECT_NE(daemon_->Log().find("code=frame_too_large"), std::string::npos);
}

TEST_F(LatchkeydTest, SlowClientThatNeverReadsIsClosedOthersAreServed) {
  Start({"--max-outgoing-bytes", "262144"});
  auto writer = Login(port(), 1);
  writer->Send(core::Acquire{8, 1, {}, false});
  auto g = writer->Expect<core::Granted>();
  ASSERT_TRUE(g);
  writer->Send(core::Commit{8, g->token, 1, false, {{"blob", std::string(200000, 'b'), false}}});
  ASSERT_TRUE(writer->Expect<core::CommitAck>());
  writer->Send(core::Release{8, g->token});
  ASSERT_TRUE(writer->Expect<core::ReleaseAck>());

  Client slow(port(), 4096);
  ASSERT_TRUE(slow.Authenticate(2));
  // Each repeated Acquire is answered with a 200 kB snapshot it never reads.
  slow.Send(core::Acquire{8, 1, {}, false});
  for (int i = 0; i < 200; ++i) {
    if (!slow.Send(core::Acquire{8, 1, {}, false})) break;
  }
  auto other = Login(port(), 3);
  other->Send(core::Heartbeat{1});
  ASSERT_TRUE(other->Expect<core::HeartbeatAck>());
  for (int i = 0; i < 100 && daemon_->Log().find("slow client") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(daemon_->Log().find("slow client"), std::string::npos);
}

TEST_F(LatchkeydTest, LimitsAnswerWithClearNonFatalErrors) {
  Start({"--max-attributes", "2", "--max-attribute-value-bytes", "16", "--max-sessions-per-process",
         "1"});
  auto a = Login(port(), 1);
  a->Send(core::Acquire{1, 1, {}, false});
  auto g = a->Expect<core::Granted>();
  ASSERT_TRUE(g);
  a->Send(core::Commit{
      1, g->token, 1, false, {{"a", "1", false}, {"b", "2", false}, {"c", "3", false}}});
  auto e1 = a->ExpectError();
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->code, ErrorCode::kTooManyAttributes);
  EXPECT_FALSE(e1->fatal);
  a->Send(core::Commit{1, g->token, 1, false, {{"a", std::string(17, 'x'), false}}});
  auto e2 = a->ExpectError();
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->code, ErrorCode::kAttributeTooLarge);
  a->Send(core::Acquire{2, 2, {}, false});
  auto e3 = a->ExpectError();
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->code, ErrorCode::kTooManySessions);
  EXPECT_EQ(e3->session, 2u);
  // The connection still works.
  a->Send(core::Commit{1, g->token, 1, false, {{"a", "ok", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>());

  // The count is of the session after the commit: a name written twice
  // counts once, an erased one frees its place, a clear starts from none.
  a->Send(core::Commit{1, g->token, 2, false, {{"b", "1", false}, {"b", "2", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>()) << "a, b: at the limit";
  a->Send(core::Commit{1, g->token, 3, false, {{"c", "3", false}}});
  auto e4 = a->ExpectError();
  ASSERT_TRUE(e4);
  EXPECT_EQ(e4->code, ErrorCode::kTooManyAttributes) << "a, b, c";
  a->Send(core::Commit{1, g->token, 3, false, {{"c", "3", false}, {"a", "", true}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>()) << "b, c";
  a->Send(core::Commit{1, g->token, 4, false, {{"d", "4", false}, {"d", "", true}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>()) << "b, c: d written, then erased";
  a->Send(core::Commit{1, g->token, 5, true, {{"x", "1", false}, {"y", "2", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>()) << "cleared, then x, y";
  a->Send(core::Commit{
      1, g->token, 6, true, {{"x", "1", false}, {"y", "2", false}, {"z", "3", false}}});
  auto e5 = a->ExpectError();
  ASSERT_TRUE(e5);
  EXPECT_EQ(e5->code, ErrorCode::kTooManyAttributes) << "cleared, then x, y, z";
}

// Runs latchkeyd to completion (for option errors); returns its exit status
// and fills `output` with what it printed.
int RunLatchkeyd(const std::string& args, std::string* output) {
  std::string command = std::string(LATCHKEYD_PATH) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(LatchkeydTest, ConfigFileSetsOptionsAndRefusesUnknownKeys) {
  std::string config = dir_.path() + "/latchkeyd.toml";
  {
    std::ofstream out(config);
    out << "# latchkeyd settings\n"
           "max-frame-bytes = 4096\n"
           "fsync = \"never\"\n"
           "lease-ms = 1500\n";
  }
  Start({"--config", config});
  auto c = std::make_unique<Client>(port());
  auto welcome = c->Authenticate(1);
  ASSERT_TRUE(welcome && std::holds_alternative<WelcomeFrame>(*welcome));
  EXPECT_EQ(std::get<WelcomeFrame>(*welcome).max_frame_bytes, 4096u);
  EXPECT_EQ(std::get<WelcomeFrame>(*welcome).lease_us, 1'500'000u);
  EXPECT_NE(daemon_->Log().find("fsync=never"), std::string::npos);

  {
    std::ofstream out(config);
    out << "max-frame-byte = 4096\n";  // a typo
  }
  std::string output;
  int status = RunLatchkeyd("--config " + config + " --data-dir " + dir_.path() +
                                "/data2 --secret-file " + dir_.path() + "/secret",
                            &output);
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("max-frame-byte"), std::string::npos) << output;
}

// A log damaged in the middle (not torn at the end): latchkeyd refuses to
// start and says where; with --wal-damage truncate it starts from the prefix
// and keeps a copy of the damaged file.
TEST_F(LatchkeydTest, DamagedLogRefusesToStartUnlessTruncateIsAsked) {
  Start();
  {
    auto a = Login(port(), 1);
    a->Send(core::Acquire{1, 1, {}, false});
    auto g = a->Expect<core::Granted>();
    ASSERT_TRUE(g);
    for (std::uint64_t seq = 1; seq <= 40; ++seq) {
      a->Send(core::Commit{1, g->token, seq, false, {{"k" + std::to_string(seq), "v", false}}});
      ASSERT_TRUE(a->Expect<core::CommitAck>());
    }
  }
  ASSERT_EQ(daemon_->Signal(SIGTERM), 0);
  std::string log_path;
  for (const auto& e : fs::directory_iterator(dir_.path() + "/data")) log_path = e.path().string();
  auto size = fs::file_size(log_path);
  auto read = Wal::Read(log_path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  std::uint64_t middle = read.value().valid_bytes / 2;  // of the records, not the zeros after
  {
    std::fstream f(log_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(middle));
    f.put('\x7f');
    f.seekp(static_cast<std::streamoff>(middle + 1));
    f.put('\x01');
  }
  std::string args = "--listen 127.0.0.1:0 --data-dir " + dir_.path() + "/data --secret-file " +
                     dir_.path() + "/secret";
  std::string output;
  EXPECT_EQ(RunLatchkeyd(args, &output), 1);
  EXPECT_NE(output.find("damaged, not torn"), std::string::npos) << output;
  EXPECT_EQ(fs::file_size(log_path), size);  // refused: nothing dropped

  Start({"--wal-damage", "truncate"});
  EXPECT_NE(daemon_->Log().find("event=wal_damage_truncated"), std::string::npos);
  bool copy_kept = false;
  for (const auto& e : fs::directory_iterator(dir_.path() + "/data")) {
    if (e.path().filename().string().find(".damaged-") != std::string::npos) {
      copy_kept = fs::file_size(e.path()) == size;
    }
  }
  EXPECT_TRUE(copy_kept);
  auto b = Login(port(), 2);
  b->Send(core::Heartbeat{1});
  EXPECT_TRUE(b->Expect<core::HeartbeatAck>());
}

// One HTTP request to 127.0.0.1:`port`; returns the whole response.
std::string HttpRequest(std::uint16_t port, const std::string& request) {
  Client c(port);
  if (!c.connected() || !c.SendRaw(request)) return "";
  return c.ReadAll();
}

// The value of the sample `line_start` (e.g. `latchkey_grants_total ` or
// `latchkey_rejects_total{reason="busy"} `) in an exposition, or -1.
double Sample(const std::string& exposition, const std::string& line_start) {
  std::size_t at = exposition.find("\n" + line_start);
  if (at == std::string::npos) return -1;
  return std::stod(exposition.substr(at + 1 + line_start.size()));
}

// B10: the Prometheus endpoint counts grants, queueing, recalls, commits,
// refusals by reason, wait and hold times, fsyncs, batches and connections.
TEST_F(LatchkeydTest, MetricsEndpointServesPrometheusText) {
  Start({"--metrics-listen", "127.0.0.1:0"});
  std::uint16_t metrics_port = 0;
  {
    std::ifstream in(dir_.path() + "/port");
    std::uint16_t p = 0;
    in >> p >> metrics_port;
  }
  ASSERT_NE(metrics_port, 0);
  auto a = Login(port(), 1);
  auto b = Login(port(), 2);
  a->Send(core::Acquire{3, 1, {}, false});
  auto g = a->Expect<core::Granted>();
  ASSERT_TRUE(g);
  a->Send(core::Commit{3, g->token, 1, false, {{"cart", "1", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>());
  b->Send(core::Acquire{3, 1, {}, true});  // try-lock: busy
  ASSERT_TRUE(b->Expect<core::Busy>());
  b->Send(core::Acquire{3, 2, {}, false});  // waits; a is recalled
  ASSERT_TRUE(b->Expect<core::Queued>());
  ASSERT_TRUE(a->Expect<core::Recall>());
  std::this_thread::sleep_for(20ms);
  a->Send(core::Release{3, g->token});
  ASSERT_TRUE(a->Expect<core::ReleaseAck>());
  ASSERT_TRUE(b->Expect<core::Granted>());
  b->Send(core::Commit{3, g->token, 1, false, {}});  // a's old token
  auto rejected = b->Expect<core::Rejected>();
  ASSERT_TRUE(rejected);
  std::string reason(core::ReasonName(rejected->reason));

  std::string response = HttpRequest(metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << response;
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  std::string body = response.substr(response.find("\r\n\r\n") + 4);
  EXPECT_EQ(Sample(body, "latchkey_grants_total "), 2);
  EXPECT_EQ(Sample(body, "latchkey_queued_total "), 1);
  EXPECT_EQ(Sample(body, "latchkey_recalls_total "), 1);
  EXPECT_EQ(Sample(body, "latchkey_commits_total "), 1);
  EXPECT_EQ(Sample(body, "latchkey_rejects_total{reason=\"busy\"} "), 1);
  EXPECT_EQ(Sample(body, "latchkey_rejects_total{reason=\"" + reason + "\"} "), 1);
  EXPECT_EQ(Sample(body, "latchkey_sessions_held "), 1);
  EXPECT_EQ(Sample(body, "latchkey_queue_length "), 0);
  EXPECT_EQ(Sample(body, "latchkey_wait_seconds_count "), 2);
  EXPECT_GE(Sample(body, "latchkey_wait_seconds_sum "), 0.02);  // b waited for a's release
  EXPECT_EQ(Sample(body, "latchkey_hold_seconds_count "), 1);
  EXPECT_EQ(Sample(body, "latchkey_wait_seconds_bucket{le=\"+Inf\"} "), 2);
  EXPECT_GE(Sample(body, "latchkey_wal_fsyncs_total "), 3);  // --fsync always
  EXPECT_EQ(Sample(body, "latchkey_wal_fsync_seconds_count "),
            Sample(body, "latchkey_wal_fsyncs_total "));
  EXPECT_GE(Sample(body, "latchkey_wal_batch_records_count "), 3);
  EXPECT_EQ(Sample(body, "latchkey_connections_authenticated "), 2);
  EXPECT_EQ(Sample(body, "latchkey_messages_received_total{kind=\"Acquire\"} "), 3);
  EXPECT_NE(body.find("# TYPE latchkey_wait_seconds histogram"), std::string::npos);

  EXPECT_EQ(HttpRequest(metrics_port, "GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(HttpRequest(metrics_port, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0),
            0u);
  EXPECT_EQ(HttpRequest(metrics_port, "hello\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
}

// Writes a self-signed certificate for localhost / 127.0.0.1 and its key
// (EC P-256) as PEM files.
bool WriteSelfSignedCertificate(const std::string& cert_file, const std::string& key_file) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  bool ok = key != nullptr && cert != nullptr;
  if (ok) {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    ok = san != nullptr && X509_add_ext(cert, san, -1) == 1;
    X509_EXTENSION_free(san);
    ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
  }
  FILE* c = ok ? std::fopen(cert_file.c_str(), "w") : nullptr;
  FILE* k = ok ? std::fopen(key_file.c_str(), "w") : nullptr;
  ok = c != nullptr && k != nullptr && PEM_write_X509(c, cert) == 1 &&
       PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (c != nullptr) std::fclose(c);
  if (k != nullptr) std::fclose(k);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

// --tls-cert/--tls-key: every connection is TLS; a client that verifies the
// certificate speaks the protocol as usual; a plain-TCP client gets nothing
// and is closed; the HMAC authentication still applies inside TLS.
TEST_F(LatchkeydTest, TlsConnectionsWorkAndPlainOnesAreRefused) {
  std::string cert = dir_.path() + "/cert.pem", key = dir_.path() + "/key.pem";
  ASSERT_TRUE(WriteSelfSignedCertificate(cert, key));
  Start({"--tls-cert", cert, "--tls-key", key});
  EXPECT_NE(daemon_->Log().find("tls=1"), std::string::npos);
  {
    Client c(port());
    ASSERT_TRUE(c.StartTls(cert));
    auto welcome = c.Authenticate(1);
    ASSERT_TRUE(welcome && std::holds_alternative<WelcomeFrame>(*welcome));
    c.Send(core::Acquire{4, 1, {}, false});
    auto g = c.Expect<core::Granted>();
    ASSERT_TRUE(g);
    c.Send(core::Commit{4, g->token, 1, false, {{"over", "tls", false}}});
    ASSERT_TRUE(c.Expect<core::CommitAck>());
  }
  {
    Client c(port());
    ASSERT_TRUE(c.StartTls(cert));
    auto answer = c.Authenticate(2, 1, Role::kProcess, "not-the-secret");
    ASSERT_TRUE(answer && std::holds_alternative<ErrorFrame>(*answer));
    EXPECT_EQ(std::get<ErrorFrame>(*answer).code, ErrorCode::kAuthFailed);
  }
  {
    Client c(port());
    EXPECT_FALSE(c.StartTls(cert, "some-other-host"));  // the name is checked
  }
  {
    Client c(port());  // plain TCP to a TLS server
    c.SendRaw(EncodeFrame(Frame(core::Message(core::Heartbeat{1}))));
    EXPECT_FALSE(c.Recv(1000ms).has_value());
    EXPECT_TRUE(c.WaitClosed());
  }
  EXPECT_NE(daemon_->Log().find("event=tls_handshake_failed"), std::string::npos);

  std::string output;
  std::string args = "--data-dir " + dir_.path() + "/data2 --secret-file " + dir_.path() +
                     "/secret --tls-cert " + cert + " --tls-key " + cert;  // not a key
  EXPECT_NE(RunLatchkeyd(args, &output), 0);
  EXPECT_NE(output.find("cannot use TLS key " + cert), std::string::npos) << output;
}

TEST_F(LatchkeydTest, SigtermFlushesAndExitsCleanly) {
  Start({"--fsync", "batch", "--fsync-interval-ms", "1000"});
  auto a = Login(port(), 1);
  a->Send(core::Acquire{1, 1, {}, false});
  auto g = a->Expect<core::Granted>();
  ASSERT_TRUE(g);
  a->Send(core::Commit{1, g->token, 1, false, {{"k", "v", false}}});
  ASSERT_TRUE(a->Expect<core::CommitAck>());
  int status = daemon_->Signal(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(daemon_->Log().find("event=stopped"), std::string::npos);
  // B7: after restart the holder reclaims its tenure and its write is there.
  Start();
  auto b = Login(port(), 1);
  b->Send(core::Reclaim{1, g->token});
  auto rc = b->Expect<core::ReclaimAck>();
  ASSERT_TRUE(rc);
  b->Send(core::Release{1, g->token});
  ASSERT_TRUE(b->Expect<core::ReleaseAck>());
  b->Send(core::Acquire{1, 2, {}, false});
  auto g2 = b->Expect<core::Granted>();
  ASSERT_TRUE(g2);
  EXPECT_GT(g2->token, g->token);
  EXPECT_EQ(g2->snapshot.at("k"), "v");
}

// B3 + B2: SIGKILL during a pipelined write load, three times. Every write
// acknowledged before the kill is present after restart, and the session's
// tokens keep increasing across restarts.
TEST_F(LatchkeydTest, SigkillDuringWriteLoadLosesNoAcknowledgedWrite) {
  std::mt19937 rng(12345);
  std::set<std::string> acknowledged;
  core::Token last_token = core::kNoToken;
  for (int round = 0; round < 4; ++round) {
    // fdatasyncs on the loop (the default), on one helper thread, on several.
    const char* syncs[] = {"0", "1", "4"};
    Start({"--grace-ms", "200", "--compact-bytes", "20000", "--max-attributes", "1000000",
           "--max-concurrent-syncs", syncs[round % 3]});
    // A new incarnation each round: the predecessor's tenure ends at once.
    auto c = Login(port(), 1, static_cast<std::uint64_t>(round + 1));
    c->Send(core::Acquire{42, 1, {}, false});
    auto g = c->Expect<core::Granted>(5000ms);
    ASSERT_TRUE(g) << "round " << round;
    EXPECT_GT(g->token, last_token) << "round " << round;
    last_token = g->token;
    for (const std::string& key : acknowledged) {
      ASSERT_TRUE(g->snapshot.count(key))
          << "acknowledged write " << key << " lost, round " << round;
    }
    if (round == 3) break;  // the last round only verifies
    pid_t pid = daemon_->pid();
    int delay_ms = std::uniform_int_distribution<int>(100, 300)(rng);
    std::thread killer([pid, delay_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(pid, SIGKILL);
    });
    std::map<std::uint64_t, std::string> in_flight;
    std::uint64_t next_seq = 1;
    int acked_this_round = 0;
    for (;;) {
      while (in_flight.size() < 8) {
        std::string key = "r" + std::to_string(round) + "-" + std::to_string(next_seq);
        if (!c->Send(core::Commit{42, g->token, next_seq, false, {{key, "v", false}}})) break;
        in_flight[next_seq++] = key;
      }
      auto f = c->Recv(2000ms);
      if (!f) break;  // killed
      auto* m = std::get_if<core::Message>(&*f);
      if (m == nullptr || !std::holds_alternative<core::CommitAck>(*m)) {
        ADD_FAILURE() << "round " << round << ": expected CommitAck, got frame " << f->index()
                      << (m ? " " + std::string(core::MessageKindName(core::KindOf(*m))) : "")
                      << (std::holds_alternative<ErrorFrame>(*f) ? std::get<ErrorFrame>(*f).text
                                                                 : "");
        if (m && std::holds_alternative<core::Rejected>(*m)) {
          ADD_FAILURE() << "rejected: " << core::ReasonName(std::get<core::Rejected>(*m).reason);
        }
        break;
      }
      auto seq = std::get<core::CommitAck>(*m).seq;
      if (!in_flight.count(seq)) {
        ADD_FAILURE() << "ack for seq " << seq << " not in flight";
        break;
      }
      acknowledged.insert(in_flight[seq]);
      in_flight.erase(seq);
      ++acked_this_round;
    }
    killer.join();
    daemon_->Signal(SIGKILL);
    EXPECT_GT(acked_this_round, 0) << "round " << round;
  }
  EXPECT_GT(acknowledged.size(), 10u);
  // The load was large enough to compact the log, so recovery also read snapshots.
  EXPECT_NE(daemon_->Log().find("event=compacted"), std::string::npos);
  std::printf("acknowledged writes across rounds: %zu\n", acknowledged.size());
}

// B3 + B2 with several clients at once (so group commits carry records of
// many connections): six processes, each on its own session, pipeline
// commits while latchkeyd is SIGKILLed, three times. After every restart
// each process's grant holds every write acknowledged to it before, and
// each session's token kept increasing. Just before each kill the metrics
// show group commits of more than one record.
TEST_F(LatchkeydTest, SigkillWithManyConcurrentClientsLosesNoAcknowledgedWrite) {
  constexpr int kClients = 6;
  constexpr int kRounds = 3;
  std::mt19937 rng(777);
  std::array<std::set<std::string>, kClients> acknowledged;
  std::array<core::Token, kClients> last_token{};
  bool grouped = false;
  for (int round = 0; round <= kRounds; ++round) {
    Start({"--metrics-listen", "127.0.0.1:0", "--grace-ms", "200", "--compact-bytes", "50000",
           "--max-attributes", "1000000"});
    std::uint16_t metrics_port = 0;
    {
      std::ifstream in(dir_.path() + "/port");
      std::uint16_t p = 0;
      in >> p >> metrics_port;
    }
    std::atomic<bool> killed{false};
    std::atomic<int> acked_so_far{0};
    std::string scraped;
    std::thread killer;
    if (round < kRounds) {
      pid_t pid = daemon_->pid();
      int delay_ms = std::uniform_int_distribution<int>(200, 400)(rng);
      killer = std::thread([&, pid, delay_ms] {
        // Not before the clients are under way, however slow the machine
        // (a sanitizer build on a busy CI host can take long to log in).
        auto give_up = std::chrono::steady_clock::now() + 30s;
        while (acked_so_far.load() <= 2 * kClients && std::chrono::steady_clock::now() < give_up) {
          std::this_thread::sleep_for(5ms);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        scraped = HttpRequest(metrics_port, "GET /metrics HTTP/1.1\r\n\r\n");
        ::kill(pid, SIGKILL);
        killed = true;
      });
    }
    std::vector<std::thread> clients;
    std::array<int, kClients> acked_this_round{};
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        core::SessionId session = 100 + static_cast<core::SessionId>(i);
        auto c =
            Login(port(), static_cast<std::uint64_t>(i + 1), static_cast<std::uint64_t>(round + 1));
        c->Send(core::Acquire{session, 1, {}, false});
        auto g = c->Expect<core::Granted>(5000ms);
        if (!g) {
          if (!killed) ADD_FAILURE() << "client " << i << " round " << round << ": no grant";
          return;
        }
        EXPECT_GT(g->token, last_token[i]) << "client " << i << " round " << round;
        last_token[i] = g->token;
        for (const std::string& key : acknowledged[i]) {
          EXPECT_TRUE(g->snapshot.count(key))
              << "acknowledged write " << key << " lost, round " << round;
        }
        if (round == kRounds) return;  // the last round only verifies
        std::map<std::uint64_t, std::string> in_flight;
        std::uint64_t next_seq = 1;
        for (;;) {
          while (in_flight.size() < 4) {
            std::string key = "c" + std::to_string(i) + "-r" + std::to_string(round) + "-" +
                              std::to_string(next_seq);
            if (!c->Send(core::Commit{session, g->token, next_seq, false, {{key, "v", false}}})) {
              break;
            }
            in_flight[next_seq++] = key;
          }
          auto f = c->Recv(2000ms);
          if (!f) break;  // killed
          auto* m = std::get_if<core::Message>(&*f);
          if (m == nullptr || !std::holds_alternative<core::CommitAck>(*m)) {
            ADD_FAILURE() << "client " << i << ": expected CommitAck";
            break;
          }
          auto seq = std::get<core::CommitAck>(*m).seq;
          if (!in_flight.count(seq)) {
            ADD_FAILURE() << "client " << i << ": ack for seq " << seq << " not in flight";
            break;
          }
          acknowledged[i].insert(in_flight[seq]);
          in_flight.erase(seq);
          ++acked_this_round[i];
          ++acked_so_far;
        }
      });
    }
    for (auto& t : clients) t.join();
    if (killer.joinable()) killer.join();
    daemon_->Signal(SIGKILL);
    if (round < kRounds) {
      int acked = 0;
      for (int n : acked_this_round) acked += n;
      EXPECT_GT(acked, kClients) << "round " << round;
      std::string body = scraped.substr(std::min(scraped.size(), scraped.find("\r\n\r\n") + 4));
      double batches = Sample(body, "latchkey_wal_batch_records_count ");
      double single = Sample(body, "latchkey_wal_batch_records_bucket{le=\"1\"} ");
      EXPECT_GT(batches, 0) << scraped;
      if (batches > single) grouped = true;
    }
    if (HasFailure()) break;
  }
  EXPECT_TRUE(grouped) << "no group commit carried more than one record";
  std::size_t total = 0;
  for (const auto& keys : acknowledged) total += keys.size();
  std::printf("acknowledged writes across clients and rounds: %zu\n", total);
}

}  // namespace
}  // namespace latchkey::net
