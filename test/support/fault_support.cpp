#include "fault_support.h"

#include "sha256.h"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::test {

// ---- soak switch ---------------------------------------------------------------

bool soak_enabled()
{
    const char* value = std::getenv("SLUICE_SOAK");
    return value && *value && std::string(value) != "0";
}

double soak_minutes()
{
    const char* value = std::getenv("SLUICE_SOAK_MINUTES");
    double minutes = value ? std::atof(value) : 0;
    return minutes > 0 ? minutes : 10;
}

void print_summary(const std::string& text) { fmt::print(stderr, "fault summary: {}\n", text); }

// ---- descriptors -----------------------------------------------------------------

long raise_own_fd_limit(long wanted)
{
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    auto target = static_cast<rlim_t>(wanted);
    if (limit.rlim_max != RLIM_INFINITY && target > limit.rlim_max)
        target = limit.rlim_max;
    if (limit.rlim_cur < target) {
        limit.rlim_cur = target;
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return static_cast<long>(limit.rlim_cur);
}

long hard_fd_limit()
{
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_max == RLIM_INFINITY ? 1L << 30 : static_cast<long>(limit.rlim_max);
}

// ---- checked streams -----------------------------------------------------------

namespace {

// xorshift64*: fast, deterministic, good enough to vary sizes and bytes.
class Rng {
public:
    explicit Rng(std::uint64_t seed) noexcept : x_(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL) {}
    std::uint64_t next() noexcept
    {
        x_ ^= x_ >> 12;
        x_ ^= x_ << 25;
        x_ ^= x_ >> 27;
        return x_ * 0x2545F4914F6CDD1DULL;
    }
    // 1..max
    std::size_t upto(std::size_t max) noexcept { return 1 + static_cast<std::size_t>(next() % max); }

private:
    std::uint64_t x_;
};

// The bytes one end sends, eight at a time from an Rng.
class ByteSource {
public:
    explicit ByteSource(std::uint64_t seed) noexcept : rng_(seed) {}
    void fill(char* out, std::size_t length) noexcept
    {
        while (length > 0) {
            if (used_ == sizeof(word_)) {
                std::uint64_t v = rng_.next();
                std::memcpy(word_, &v, sizeof(v));
                used_ = 0;
            }
            std::size_t take = std::min(length, sizeof(word_) - used_);
            std::memcpy(out, word_ + used_, take);
            used_ += take;
            out += take;
            length -= take;
        }
    }

private:
    Rng rng_;
    char word_[8]{};
    std::size_t used_ = sizeof(word_);
};

constexpr std::size_t kMaxIo = 256 * 1024;
// A slow reader reads this much, then pauses: at most 6.4 MB/s.
constexpr std::size_t kSlowReadBurst = 32 * 1024;
constexpr auto kSlowReadPause = 5ms;
constexpr int kSlowReceiveBuffer = 16 * 1024;
// A fixed receive buffer: autotuned, a receiver's buffer grows to megabytes
// while it reads fast and then swallows a held tail whole.
constexpr int kReceiveBuffer = 64 * 1024;
// An end holding its tail waits this long at most for the peer's FIN.
constexpr auto kMaxHold = 10s;

// Mostly large, often tiny: small writes and reads are where a relay's
// bookkeeping of partial transfers is tested, large ones fill the buffers.
std::size_t io_size(Rng& rng, bool small_only)
{
    std::uint64_t pick = rng.next() % 100;
    if (small_only)
        return pick < 50 ? rng.upto(64) : rng.upto(4096);
    if (pick < 20)
        return rng.upto(64);
    if (pick < 45)
        return rng.upto(4096);
    if (pick < 80)
        return rng.upto(65536);
    return rng.upto(kMaxIo);
}

// The header a client end sends before its bytes: the backend end's plan.
struct Header {
    char magic[4];
    std::uint32_t id;
    std::uint64_t send_bytes;
    std::uint64_t data_seed;
    std::uint64_t io_seed;
    std::uint64_t receive_bytes;
    std::uint64_t hold_tail;
    std::uint32_t flags;  // 1: shut first, 2: slow reader
    std::uint32_t reserved;
};
constexpr char kMagic[4] = {'S', 'L', 'F', 'T'};

bool recv_exactly(int fd, void* out, std::size_t length)
{
    auto p = static_cast<char*>(out);
    while (length > 0) {
        ssize_t n = ::recv(fd, p, length, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        length -= static_cast<std::size_t>(n);
    }
    return true;
}

bool send_exactly(int fd, const void* data, std::size_t length)
{
    auto p = static_cast<const char*>(data);
    while (length > 0) {
        ssize_t n = ::send(fd, p, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        length -= static_cast<std::size_t>(n);
    }
    return true;
}

} // namespace

FinBoard::FinBoard(std::size_t streams)
    : streams_(streams), client_(std::make_unique<std::atomic<bool>[]>(streams)),
      backend_(std::make_unique<std::atomic<bool>[]>(streams))
{
}

void FinBoard::reset() noexcept
{
    for (std::size_t i = 0; i < streams_; ++i) {
        client_[i] = false;
        backend_[i] = false;
    }
}

std::atomic<bool>* FinBoard::client(std::uint32_t id) noexcept { return id < streams_ ? &client_[id] : nullptr; }

std::atomic<bool>* FinBoard::backend(std::uint32_t id) noexcept { return id < streams_ ? &backend_[id] : nullptr; }

std::vector<StreamPlan> integrity_plans(int count, std::uint64_t bulk_bytes, std::uint64_t seed)
{
    Rng rng(seed);
    auto bulk = [&] { return bulk_bytes - rng.next() % (bulk_bytes / 4 + 1); };
    auto light = [&] { return rng.next() % (64 * 1024 + 1); };
    std::vector<StreamPlan> plans;
    for (int i = 0; i < count; ++i) {
        StreamPlan plan;
        plan.id = static_cast<std::uint32_t>(i);
        // Shapes, by i % 6: both bulk (three times: the common case), bulk up
        // and light down, light up and bulk down, one direction empty.
        switch (i % 6) {
        case 3:
            plan.client.send_bytes = bulk();
            plan.backend.send_bytes = light();
            break;
        case 4:
            plan.client.send_bytes = light();
            plan.backend.send_bytes = bulk();
            break;
        case 5:
            plan.client.send_bytes = (i / 6) % 2 ? 0 : bulk();
            plan.backend.send_bytes = (i / 6) % 2 ? bulk() : 0;
            break;
        default:
            plan.client.send_bytes = bulk();
            plan.backend.send_bytes = bulk();
        }
        plan.client.shut_first = i % 2 == 0;
        plan.backend.shut_first = !plan.client.shut_first;
        plan.client.receive_bytes = plan.backend.send_bytes;
        plan.backend.receive_bytes = plan.client.send_bytes;
        const bool slow = i % 8 == 7;
        for (EndPlan* end : {&plan.client, &plan.backend}) {
            end->data_seed = rng.next();
            end->io_seed = rng.next();
            end->slow_reader = slow;
            const std::uint64_t tail = (4u << 20) + rng.next() % ((1u << 20) + 1);
            if (!slow && end->receive_bytes >= tail + (1u << 20))
                end->hold_tail = tail;
        }
        plan.client.receive_buffer = slow ? kSlowReceiveBuffer : kReceiveBuffer;
        plans.push_back(plan);
    }
    return plans;
}

EndResult run_stream_end(int fd, const EndPlan& plan, Clock::time_point deadline, std::atomic<bool>* own_fin,
                         const std::atomic<bool>* peer_fin)
{
    const auto started = Clock::now();
    EndResult result;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    ByteSource source(plan.data_seed);
    Rng io(plan.io_seed);
    Sha256 sent_hash, received_hash;
    std::vector<char> out(kMaxIo), in(kMaxIo);
    std::size_t out_begin = 0, out_end = 0;  // generated, not yet written
    std::uint64_t generated = 0;
    // Until the peer's FIN, an end that shuts second sends an eighth: most of
    // its bytes then cross a half-closed session.
    const std::uint64_t before_fin = plan.shut_first ? plan.send_bytes : plan.send_bytes / 8;
    bool held = false;                  // the tail hold began (it happens once)
    Clock::time_point read_again_at{};  // reading paused until then

    while (result.error.empty()) {
        const std::uint64_t allowed = result.eof_seen ? plan.send_bytes : before_fin;
        if (!result.shut && result.sent == plan.send_bytes && (plan.shut_first || result.eof_seen)) {
            if (::shutdown(fd, SHUT_WR) != 0) {
                result.error = fmt::format("shutdown: {}", std::strerror(errno));
                break;
            }
            result.shut = true;
            if (own_fin)
                own_fin->store(true);
        }
        if (result.shut && result.eof_seen)
            break;
        auto now = Clock::now();
        if (now >= deadline) {
            result.error = fmt::format("deadline passed: sent {} of {}, our FIN {}, received {}, peer FIN {}",
                                       result.sent, plan.send_bytes, result.shut ? "sent" : "not sent",
                                       result.received, result.eof_seen ? "seen" : "never seen");
            break;
        }
        if (!held && plan.hold_tail > 0 && result.received + plan.hold_tail >= plan.receive_bytes) {
            held = true;
            read_again_at = now + kMaxHold;
        }
        if (held && now < read_again_at && peer_fin && peer_fin->load()) {
            read_again_at = now + 5ms;  // for the FIN to reach sluice
            peer_fin = nullptr;
        }
        const bool reading = !result.eof_seen && now >= read_again_at;
        const bool want_write = !result.shut && result.sent < allowed;
        auto wait = std::min<Clock::duration>(deadline - now, 100ms);
        if (!reading && now < read_again_at)
            wait = std::min<Clock::duration>(wait, read_again_at - now);
        pollfd p{fd, static_cast<short>((reading ? POLLIN : 0) | (want_write ? POLLOUT : 0)), 0};
        int ready = ::poll(&p, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
        if (ready < 0 && errno != EINTR) {
            result.error = fmt::format("poll: {}", std::strerror(errno));
            break;
        }
        if (ready <= 0)
            continue;
        if (reading && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            std::size_t budget = plan.slow_reader ? kSlowReadBurst : SIZE_MAX;
            for (int reads = 0; reads < 8 && !result.eof_seen && budget > 0; ++reads) {
                ssize_t n = ::recv(fd, in.data(), std::min(io_size(io, plan.slow_reader), budget), 0);
                if (n > 0) {
                    received_hash.update(in.data(), static_cast<std::size_t>(n));
                    result.received += static_cast<std::uint64_t>(n);
                    if (plan.slow_reader && (budget -= static_cast<std::size_t>(n)) == 0)
                        read_again_at = Clock::now() + kSlowReadPause;
                    continue;
                }
                if (n == 0) {
                    result.eof_seen = true;
                    break;
                }
                if (errno != EAGAIN && errno != EINTR)
                    result.error = fmt::format("recv after {} bytes: {}", result.received, std::strerror(errno));
                break;
            }
        }
        if (!result.error.empty() || !want_write || !(p.revents & POLLOUT))
            continue;
        if (out_begin == out_end) {
            std::size_t size = std::min<std::uint64_t>(io_size(io, false), allowed - generated);
            source.fill(out.data(), size);
            sent_hash.update(out.data(), size);
            generated += size;
            out_begin = 0;
            out_end = size;
        }
        ssize_t n = ::send(fd, out.data() + out_begin, out_end - out_begin, MSG_NOSIGNAL);
        if (n > 0) {
            out_begin += static_cast<std::size_t>(n);
            result.sent += static_cast<std::uint64_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            result.error = fmt::format("send after {} bytes: {}", result.sent, std::strerror(errno));
        }
    }
    result.sent_sha256 = sent_hash.hex_digest();
    result.received_sha256 = received_hash.hex_digest();
    result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return result;
}

StreamServer::StreamServer(std::chrono::milliseconds deadline, FinBoard& fins) : deadline_(deadline), fins_(fins)
{
    listen_fd_ = bind_loopback(SOCK_STREAM, &port_);
    // Accepted sockets inherit it; set after the handshake it would shrink a
    // window already granted.
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof(kReceiveBuffer));
    REQUIRE(::listen(listen_fd_, 1024) == 0);
    acceptor_ = std::thread([this] {
        while (true) {
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                return;  // shut down
            }
            set_receive_timeout(fd, 10s);  // for the header
            std::lock_guard lock(mutex_);
            // Join the handlers that are done, so a long soak does not pile
            // up finished threads.
            for (auto it = handlers_.begin(); it != handlers_.end();) {
                if (it->done->load()) {
                    it->thread.join();
                    it = handlers_.erase(it);
                } else {
                    ++it;
                }
            }
            auto done = std::make_shared<std::atomic<bool>>(false);
            handlers_.push_back({std::thread([this, fd, done] {
                                     serve(fd);
                                     ::close(fd);
                                     done->store(true);
                                 }),
                                 done});
        }
    });
}

StreamServer::~StreamServer()
{
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    for (auto& handler : handlers_)
        handler.thread.join();
}

std::string StreamServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

void StreamServer::serve(int fd)
{
    const auto deadline = Clock::now() + deadline_;
    Header header{};
    if (!recv_exactly(fd, &header, sizeof(header)) || std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0)
        return;  // not one of ours (a health probe, say): nothing to report
    EndPlan plan;
    plan.send_bytes = header.send_bytes;
    plan.data_seed = header.data_seed;
    plan.io_seed = header.io_seed;
    plan.receive_bytes = header.receive_bytes;
    plan.hold_tail = header.hold_tail;
    plan.shut_first = header.flags & 1;
    plan.slow_reader = header.flags & 2;
    EndResult result = run_stream_end(fd, plan, deadline, fins_.backend(header.id), fins_.client(header.id));
    std::lock_guard lock(mutex_);
    results_[header.id] = std::move(result);
}

std::map<std::uint32_t, EndResult> StreamServer::take_results()
{
    std::lock_guard lock(mutex_);
    return std::exchange(results_, {});
}

std::size_t StreamServer::finished()
{
    std::lock_guard lock(mutex_);
    return results_.size();
}

EndResult run_stream_client(std::uint16_t port, const StreamPlan& plan, Clock::time_point deadline, FinBoard& fins)
{
    EndResult result;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        result.error = fmt::format("socket: {}", std::strerror(errno));
        return result;
    }
    Fd owner(fd);
    // Before connect, so the window it advertises is small from the start.
    if (plan.client.receive_buffer > 0)
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &plan.client.receive_buffer, sizeof(int));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        result.error = fmt::format("connect: {}", std::strerror(errno));
        return result;
    }
    Header header{};
    std::memcpy(header.magic, kMagic, sizeof(kMagic));
    header.id = plan.id;
    header.send_bytes = plan.backend.send_bytes;
    header.data_seed = plan.backend.data_seed;
    header.io_seed = plan.backend.io_seed;
    header.receive_bytes = plan.backend.receive_bytes;
    header.hold_tail = plan.backend.hold_tail;
    header.flags = (plan.backend.shut_first ? 1u : 0u) | (plan.backend.slow_reader ? 2u : 0u);
    if (!send_exactly(fd, &header, sizeof(header))) {
        result.error = fmt::format("sending the header: {}", std::strerror(errno));
        return result;
    }
    return run_stream_end(fd, plan.client, deadline, fins.client(plan.id), fins.backend(plan.id));
}

// ---- short connections -------------------------------------------------------------

int connect_or_fail(std::uint16_t port, std::chrono::milliseconds receive_timeout)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        int saved = errno;
        ::close(fd);
        errno = saved;
        return -1;
    }
    set_receive_timeout(fd, receive_timeout);
    return fd;
}

ShortConnectionLoad::ShortConnectionLoad(std::uint16_t port, int threads)
{
    for (int t = 0; t < threads; ++t)
        threads_.emplace_back([this, port, t] { run(port, t); });
}

ShortConnectionLoad::~ShortConnectionLoad() { stop(); }

void ShortConnectionLoad::stop()
{
    stop_ = true;
    for (auto& thread : threads_)
        if (thread.joinable())
            thread.join();
}

std::uint64_t ShortConnectionLoad::ok_by(const std::string& backend)
{
    std::lock_guard lock(mutex_);
    auto it = ok_by_.find(backend);
    return it == ok_by_.end() ? 0 : it->second;
}

std::vector<ShortConnectionLoad::Failure> ShortConnectionLoad::failures()
{
    std::lock_guard lock(mutex_);
    return failures_;
}

void ShortConnectionLoad::run(std::uint16_t port, int thread)
{
    for (std::uint64_t n = 0; !stop_; ++n) {
        const auto started = Clock::now();
        std::string backend, why;
        int fd = connect_or_fail(port, 5s);
        if (fd < 0) {
            why = fmt::format("connect: {}", std::strerror(errno));
        } else {
            Fd client(fd);
            backend = recv_line(client);
            const std::string message = fmt::format("client {} request {}\n", thread, n);
            if (backend.empty())
                why = "closed before the backend's greeting";
            else if (!send_exactly(client, message.data(), message.size()))
                why = fmt::format("send: {}", std::strerror(errno));
            else if (recv_line(client) + "\n" != message)
                why = "echo missing or wrong";
        }
        std::lock_guard lock(mutex_);
        if (why.empty()) {
            ++ok_by_[backend];
            ++ok_;
        } else {
            failures_.push_back({started, backend, why});
        }
    }
}

// ---- sluice under a descriptor limit ---------------------------------------------

namespace {
constexpr const char* kPrlimit = "/usr/bin/prlimit";
} // namespace

LimitedSluice::LimitedSluice(const std::string& config_text, long fd_limit)
{
    std::string text = config_text;
    for (std::size_t at; (at = text.find("@DIR@")) != std::string::npos;)
        text.replace(at, 5, dir_.path());
    std::string config_path = dir_.write("sluice.toml", text);
    INFO("prlimit(1) comes with util-linux");
    REQUIRE(::access(kPrlimit, X_OK) == 0);
    const std::vector<std::string> args{fmt::format("--nofile={}:{}", fd_limit, fd_limit), "--",
                                        binary_from_env("SLUICE_BIN"), "-c", config_path};
    process_ = std::make_unique<Process>(kPrlimit, args);
    auto started = process_->wait_for_line("sluice started", 10s);
    INFO(process_->output());
    REQUIRE(started);
    const std::string all = process_->output();
    const std::string marker = "listening on ";
    std::size_t pos = 0;
    while ((pos = all.find("listener ", pos)) != std::string::npos) {
        auto end = all.find('\n', pos);
        std::string line = all.substr(pos, end - pos);
        pos = end;
        auto at = line.find(marker);
        if (at == std::string::npos)
            continue;
        std::string name = line.substr(9, line.find(' ', 9) - 9);
        std::string address = line.substr(at + marker.size());
        address = address.substr(0, address.find(' '));
        ports_[name] = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    }
}

std::uint16_t LimitedSluice::port(const std::string& listener) const
{
    auto it = ports_.find(listener);
    REQUIRE(it != ports_.end());
    return it->second;
}

long started_max_sessions(const std::string& log)
{
    const std::string marker = "sluice started: ";
    auto at = log.find(marker);
    if (at == std::string::npos)
        return -1;
    at = log.find(" max ", at + marker.size());
    return at == std::string::npos ? -1 : std::atol(log.c_str() + at + 5);
}

} // namespace sluice::test
