#include "bench_clients.h"

#include "runtime.h"
#include "sluice/socket.h"

#include <algorithm>
#include <cstring>

namespace sluice::tools {

namespace {

// Pause after an error before the next attempt (see retry_later()).
constexpr double kRetryPauseSeconds = 0.01;

std::uint64_t elapsed_since(std::uint64_t start_ns, std::uint64_t now_ns) noexcept
{
    // A timer may fire a hair before a due time (libev schedules against its
    // cached loop time): count that as zero, not as a wrapped-around value.
    return now_ns > start_ns ? now_ns - start_ns : 0;
}

std::uint64_t timeout_ns(const BenchWorker& worker) noexcept
{
    return static_cast<std::uint64_t>(worker.options().timeout.count());
}

} // namespace

BenchClient::BenchClient(BenchWorker& worker, unsigned global_index)
    : worker_(worker), global_index_(global_index), paced_(worker.options().rate > 0)
{
    timer_.bind<BenchClient, &BenchClient::on_timer>(worker.loop(), this);
    if (paced_) {
        // Clients are offset by 1/R so that together they send evenly, not in bursts.
        const double spacing_ns = 1e9 / worker.options().rate;
        first_due_ns_ = worker.origin_ns() + static_cast<std::uint64_t>(global_index * spacing_ns);
        interval_ns_ = spacing_ns * worker.options().concurrency;
    }
}

void BenchClient::next_request()
{
    if (!paced_) {
        intended_ns_ = monotonic_ns();
        begin_request();
        return;
    }
    const std::uint64_t due = first_due_ns_ + static_cast<std::uint64_t>(static_cast<double>(slot_++) * interval_ns_);
    intended_ns_ = due;
    const std::uint64_t now = monotonic_ns();
    if (due <= now) {
        begin_request();
        return;
    }
    // libev arms timers against the loop time cached at the start of this
    // iteration; refresh it so the request is not sent early by however long
    // this iteration's callbacks have run.
    worker_.loop().update_now();
    timer_.start(static_cast<double>(due - now) * 1e-9);
}

void BenchClient::retry_later()
{
    retrying_ = true;
    timer_.start(kRetryPauseSeconds);
}

bool BenchClient::start_tcp_connect(UniqueFd& fd, std::uint64_t now_ns)
{
    auto socket = start_connect(worker_.options().target);
    if (!socket) [[unlikely]] {
        worker_.count_error(connect_error_kind(socket.error()), now_ns);
        retry_later();
        return false;
    }
    fd = std::move(socket).value();
    set_nodelay(fd.get());
    return true;
}

void BenchClient::on_timer()
{
    if (retrying_) {
        retrying_ = false;
        next_request();
    } else {
        begin_request();
    }
}

void BenchClient::fill_pattern(std::byte* buffer, std::size_t size) const noexcept
{
    for (std::size_t i = 0; i < size; ++i)
        buffer[i] = static_cast<std::byte>((i * 131 + global_index_ * 7 + 1) & 0xff);
}

void BenchClient::stamp_sequence(std::byte* buffer, std::size_t size, std::uint64_t sequence) noexcept
{
    std::memcpy(buffer, &sequence, std::min(size, sizeof(sequence)));
}

// connect and rr modes: send `size` bytes, read the same bytes back, compare.
// rr keeps its connection; connect mode closes it after every reply and
// connects afresh for the next request, so the handshake is in the latency.
class TcpRequestClient final : public BenchClient {
public:
    TcpRequestClient(BenchWorker& worker, unsigned global_index, bool connect_per_request)
        : BenchClient(worker, global_index)
        , connect_per_request_(connect_per_request)
        , size_(worker.options().size)
        , request_(std::make_unique<std::byte[]>(size_))
        , reply_(std::make_unique<std::byte[]>(size_))
    {
        fill_pattern(request_.get(), size_);
    }

    void check_timeout(std::uint64_t now_ns) override
    {
        if (state_ != State::Connecting && state_ != State::Waiting)
            return;
        if (elapsed_since(phase_started_ns_, now_ns) <= timeout_ns(worker_))
            return;
        worker_.count_error(state_ == State::Connecting ? ErrorKind::ConnectTimeout : ErrorKind::Timeout, now_ns);
        drop_connection();
        next_request();
    }

private:
    enum class State : std::uint8_t {
        Disconnected,
        Connecting,  // waiting for the handshake; a request is due once done
        Idle,        // connected, no request under way (open loop only)
        Waiting,     // request sent (or being sent), reply incomplete
    };

    void begin_request() override
    {
        if (state_ == State::Disconnected)
            connect();
        else
            send_request();
    }

    void connect()
    {
        const std::uint64_t now = monotonic_ns();
        if (!start_tcp_connect(fd_, now)) [[unlikely]]
            return;
        io_.bind<TcpRequestClient, &TcpRequestClient::on_io>(worker_.loop(), this, fd_.get());
        io_.set_events(EV_WRITE);
        state_ = State::Connecting;
        phase_started_ns_ = now;
    }

    void on_io(int revents)
    {
        switch (state_) {
        case State::Connecting:
            on_connected();
            return;
        case State::Waiting:
            if ((revents & EV_WRITE) && !flush_request())
                return;
            if (revents & EV_READ)
                read_reply();
            return;
        case State::Idle:
            on_idle_readable();
            return;
        case State::Disconnected:
            return;
        }
    }

    void on_connected()
    {
        const SysError error = connect_result(fd_.get());
        if (error != SysError::None) [[unlikely]] {
            fail(connect_error_kind(error));
            return;
        }
        ++worker_.stats_at(monotonic_ns()).connections;
        io_.set_events(EV_READ);
        send_request();
    }

    void send_request()
    {
        stamp_sequence(request_.get(), size_, ++sequence_);
        written_ = 0;
        received_ = 0;
        state_ = State::Waiting;
        phase_started_ns_ = monotonic_ns();
        flush_request();
    }

    // Writes what the socket takes; watches EV_WRITE only while some is left.
    // Returns false when the connection failed (and was dropped).
    bool flush_request()
    {
        if (written_ == size_)
            return true;
        IoResult sent = write_some(fd_.get(), request_.get() + written_, size_ - written_);
        if (!sent.ok()) {
            if (!sent.would_block()) [[unlikely]] {
                fail(io_error_kind(sent.error));
                return false;
            }
        } else {
            written_ += static_cast<std::size_t>(sent.bytes);
        }
        io_.set_events(written_ < size_ ? EV_READ | EV_WRITE : EV_READ);
        return true;
    }

    void read_reply()
    {
        IoResult got = read_some(fd_.get(), reply_.get() + received_, size_ - received_);
        if (!got.ok()) {
            if (!got.would_block()) [[unlikely]]
                fail(io_error_kind(got.error));
            return;
        }
        if (got.bytes == 0) [[unlikely]] {
            fail(received_ > 0 ? ErrorKind::ShortRead : ErrorKind::Closed);
            return;
        }
        received_ += static_cast<std::size_t>(got.bytes);
        if (received_ < size_)
            return;

        const std::uint64_t now = monotonic_ns();
        if (written_ < size_ || std::memcmp(reply_.get(), request_.get(), size_) != 0) [[unlikely]] {
            fail(ErrorKind::Corrupt);
            return;
        }
        BenchStats& stats = worker_.stats_at(now);
        ++stats.requests;
        stats.bytes_sent += size_;
        stats.bytes_received += size_;
        stats.latency.record(elapsed_since(intended_ns_, now));
        state_ = State::Idle;
        if (connect_per_request_)
            drop_connection();  // a plain close: FIN, as a real client would
        next_request();
    }

    // Open loop, between requests: the only thing that may arrive is the
    // target closing or resetting. The pending due-time timer reconnects.
    void on_idle_readable()
    {
        IoResult got = read_some(fd_.get(), worker_.scratch(), BenchWorker::kScratchSize);
        if (got.would_block())
            return;
        ErrorKind kind = !got.ok() ? io_error_kind(got.error) : got.bytes == 0 ? ErrorKind::Closed : ErrorKind::Corrupt;
        worker_.count_error(kind, monotonic_ns());
        drop_connection();
    }

    void fail(ErrorKind kind)
    {
        worker_.count_error(kind, monotonic_ns());
        drop_connection();
        retry_later();
    }

    void drop_connection()
    {
        io_.stop();
        fd_.reset();
        state_ = State::Disconnected;
    }

    const bool connect_per_request_;
    const std::size_t size_;
    State state_ = State::Disconnected;
    UniqueFd fd_;
    IoWatcher io_;  // declared after fd_: stopped before the fd is closed
    std::unique_ptr<std::byte[]> request_;
    std::unique_ptr<std::byte[]> reply_;
    std::size_t written_ = 0;
    std::size_t received_ = 0;
    std::uint64_t sequence_ = 0;
    std::uint64_t phase_started_ns_ = 0;  // connect or request start, for --timeout
};

// stream mode: writes `size`-byte chunks whenever the socket takes them and
// reads whatever comes back. bytes_received is what an echo target returned.
class TcpStreamClient final : public BenchClient {
public:
    using BenchClient::BenchClient;

    void check_timeout(std::uint64_t now_ns) override
    {
        if (state_ != State::Connecting || elapsed_since(connect_started_ns_, now_ns) <= timeout_ns(worker_))
            return;
        worker_.count_error(ErrorKind::ConnectTimeout, now_ns);
        drop_connection();
        next_request();
    }

private:
    enum class State : std::uint8_t { Disconnected, Connecting, Streaming };

    void begin_request() override
    {
        const std::uint64_t now = monotonic_ns();
        if (!start_tcp_connect(fd_, now)) [[unlikely]]
            return;
        io_.bind<TcpStreamClient, &TcpStreamClient::on_io>(worker_.loop(), this, fd_.get());
        io_.set_events(EV_WRITE);
        state_ = State::Connecting;
        connect_started_ns_ = now;
    }

    void on_io(int revents)
    {
        if (state_ == State::Connecting) {
            const SysError error = connect_result(fd_.get());
            if (error != SysError::None) [[unlikely]] {
                fail(connect_error_kind(error));
                return;
            }
            ++worker_.stats_at(monotonic_ns()).connections;
            state_ = State::Streaming;
            io_.set_events(EV_READ | EV_WRITE);
            return;
        }
        if (revents & EV_WRITE) {
            IoResult sent = write_some(fd_.get(), worker_.stream_chunk(), worker_.options().size);
            if (sent.ok()) {
                worker_.stats_at(monotonic_ns()).bytes_sent += static_cast<std::uint64_t>(sent.bytes);
            } else if (!sent.would_block()) [[unlikely]] {
                fail(io_error_kind(sent.error));
                return;
            }
        }
        if (revents & EV_READ) {
            IoResult got = read_some(fd_.get(), worker_.scratch(), BenchWorker::kScratchSize);
            if (got.ok() && got.bytes > 0) {
                worker_.stats_at(monotonic_ns()).bytes_received += static_cast<std::uint64_t>(got.bytes);
            } else if (!got.would_block()) [[unlikely]] {
                fail(got.ok() ? ErrorKind::Closed : io_error_kind(got.error));
                return;
            }
        }
    }

    void fail(ErrorKind kind)
    {
        worker_.count_error(kind, monotonic_ns());
        drop_connection();
        retry_later();
    }

    void drop_connection()
    {
        io_.stop();
        fd_.reset();
        state_ = State::Disconnected;
    }

    State state_ = State::Disconnected;
    UniqueFd fd_;
    IoWatcher io_;
    std::uint64_t connect_started_ns_ = 0;
};

// udp mode: one datagram of `size` bytes at a time on its own connected
// socket; the reply must be the same bytes. No reply within --timeout is a
// loss (ErrorKind::Timeout) and the next query goes out.
class UdpClient final : public BenchClient {
public:
    UdpClient(BenchWorker& worker, unsigned global_index)
        : BenchClient(worker, global_index)
        , size_(worker.options().size)
        , request_(std::make_unique<std::byte[]>(size_))
        , reply_(std::make_unique<std::byte[]>(size_ + 1))
    {
        fill_pattern(request_.get(), size_);
    }

    void check_timeout(std::uint64_t now_ns) override
    {
        if (!waiting_ || elapsed_since(sent_ns_, now_ns) <= timeout_ns(worker_))
            return;
        worker_.count_error(ErrorKind::Timeout, now_ns);
        waiting_ = false;
        next_request();
    }

private:
    void begin_request() override
    {
        if (!fd_ && !open_socket())
            return;
        stamp_sequence(request_.get(), size_, ++sequence_);
        IoResult sent = write_some(fd_.get(), request_.get(), size_);
        const std::uint64_t now = monotonic_ns();
        if (!sent.ok()) [[unlikely]] {
            // A full socket buffer (EAGAIN/ENOBUFS) is a local drop: "other".
            worker_.count_error(io_error_kind(sent.error), now);
            retry_later();
            return;
        }
        waiting_ = true;
        sent_ns_ = now;
    }

    bool open_socket()
    {
        auto socket = open_connected_udp(worker_.options().target);
        if (!socket) [[unlikely]] {
            worker_.count_error(ErrorKind::ConnectFailed, monotonic_ns());
            retry_later();
            return false;
        }
        fd_ = std::move(socket).value();
        io_.bind<UdpClient, &UdpClient::on_readable>(worker_.loop(), this, fd_.get());
        io_.set_events(EV_READ);
        return true;
    }

    void on_readable(int)
    {
        // A few datagrams per wake-up: stale replies may queue behind the
        // current one.
        for (int i = 0; i < 8; ++i) {
            IoResult got = read_some(fd_.get(), reply_.get(), size_ + 1);
            if (!got.ok()) {
                if (got.would_block())
                    return;
                // An ICMP error (port unreachable: ECONNREFUSED) answers the
                // query under way, if any.
                if (waiting_) {
                    worker_.count_error(io_error_kind(got.error), monotonic_ns());
                    waiting_ = false;
                    retry_later();
                }
                return;
            }
            if (!waiting_)
                continue;  // a late reply to a query already counted as lost
            const auto length = static_cast<std::size_t>(got.bytes);
            const std::uint64_t now = monotonic_ns();
            if (length == size_ && std::memcmp(reply_.get(), request_.get(), size_) == 0) {
                BenchStats& stats = worker_.stats_at(now);
                ++stats.requests;
                stats.bytes_sent += size_;
                stats.bytes_received += size_;
                stats.latency.record(elapsed_since(intended_ns_, now));
            } else if (is_earlier_reply(length)) {
                continue;
            } else {
                worker_.count_error(ErrorKind::Corrupt, now);
            }
            waiting_ = false;
            next_request();
        }
    }

    // Same length and same bytes past the sequence stamp: an echo of one of
    // our earlier queries that arrived after its timeout.
    bool is_earlier_reply(std::size_t length) const noexcept
    {
        constexpr std::size_t stamp = sizeof(std::uint64_t);
        if (length != size_)
            return false;
        return size_ <= stamp || std::memcmp(reply_.get() + stamp, request_.get() + stamp, size_ - stamp) == 0;
    }

    const std::size_t size_;
    UniqueFd fd_;
    IoWatcher io_;
    std::unique_ptr<std::byte[]> request_;
    std::unique_ptr<std::byte[]> reply_;  // size + 1: a longer reply is seen as such
    std::uint64_t sequence_ = 0;
    std::uint64_t sent_ns_ = 0;
    bool waiting_ = false;
};

std::unique_ptr<BenchClient> BenchClient::create(BenchWorker& worker, unsigned global_index)
{
    switch (worker.options().mode) {
    case BenchMode::Connect: return std::make_unique<TcpRequestClient>(worker, global_index, true);
    case BenchMode::Rr: return std::make_unique<TcpRequestClient>(worker, global_index, false);
    case BenchMode::Stream: return std::make_unique<TcpStreamClient>(worker, global_index);
    case BenchMode::Udp: return std::make_unique<UdpClient>(worker, global_index);
    }
    return nullptr;
}

} // namespace sluice::tools
