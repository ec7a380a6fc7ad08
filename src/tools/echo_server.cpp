#include "echo_server.h"

#include "sluice/socket.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace sluice::tools {

namespace {

// Accepts per wake-up, so a connect storm cannot starve established connections.
constexpr int kAcceptBatch = 64;
// Datagrams served per wake-up, for the same reason.
constexpr int kUdpBatch = 64;
// source mode sends 'a'..'z' over and over.
constexpr std::size_t kSourcePeriod = 26;

} // namespace

class EchoConnection;

// Accepts on one listening socket and owns what it accepted. Loop thread only.
class TcpEchoServer {
public:
    TcpEchoServer(EventLoop& loop, EchoMode mode, std::string greeting, UniqueFd listener);
    ~TcpEchoServer();

    // Destroys `connection`; the caller must return without touching it again.
    void close(EchoConnection* connection);

    EventLoop& loop() noexcept { return loop_; }
    EchoMode mode() const noexcept { return mode_; }
    const std::string& greeting() const noexcept { return greeting_; }
    // kEchoBufferSize bytes shared by this thread's connections: a read lands
    // here and is written straight back, so an idle connection holds no buffer.
    std::byte* scratch() noexcept { return scratch_.get(); }
    // kEchoBufferSize + kSourcePeriod bytes of 'a'..'z'; a write of up to
    // kEchoBufferSize from any offset below kSourcePeriod continues the pattern.
    const std::byte* source_pattern() const noexcept { return pattern_.get(); }

private:
    void on_acceptable(int revents);
    void drop_one_connection();

    EventLoop& loop_;
    EchoMode mode_;
    std::string greeting_;
    UniqueFd listener_;
    // Kept open so that at EMFILE one pending connection can still be accepted
    // and closed (muduo's trick); otherwise the level-triggered listener spins.
    UniqueFd spare_fd_;
    IoWatcher accept_io_;
    // Each connection knows its slot; removal swaps the last one in. O(1).
    std::vector<std::unique_ptr<EchoConnection>> connections_;
    std::unique_ptr<std::byte[]> scratch_;
    std::unique_ptr<std::byte[]> pattern_;
};

// One accepted TCP connection. Loop thread only.
//
// Echo and whoami: while nothing is pending it reads into the thread's scratch
// buffer and writes straight back. Bytes the socket did not take move into the
// connection's own buffer (allocated on first need, at most kEchoBufferSize)
// and reading stops until they are written: backpressure, bounded memory. Once
// the peer's FIN is read, everything read before it has been written, so the
// FIN is passed on with shutdown(SHUT_WR) and the socket closed.
class EchoConnection {
public:
    EchoConnection(TcpEchoServer& server, UniqueFd fd, std::size_t slot)
        : server_(server), fd_(std::move(fd)), slot_(slot)
    {
    }

    void start();
    std::size_t slot() const noexcept { return slot_; }
    void set_slot(std::size_t slot) noexcept { slot_ = slot; }

private:
    void on_io(int revents);
    void on_echo_io(int revents);
    void on_sink_io();
    void on_source_io(int revents);
    // Sends what it can of [data, data + length) now and keeps the rest.
    // Returns false when the connection was closed.
    bool send_or_keep(const std::byte* data, std::size_t length);
    void finish() { server_.close(this); }

    TcpEchoServer& server_;
    UniqueFd fd_;
    IoWatcher io_;
    std::size_t slot_;
    std::unique_ptr<std::byte[]> pending_;
    std::size_t pending_begin_ = 0;
    std::size_t pending_length_ = 0;  // > 0: reading is paused until written
    std::size_t source_offset_ = 0;   // position in the a..z period
};

TcpEchoServer::TcpEchoServer(EventLoop& loop, EchoMode mode, std::string greeting, UniqueFd listener)
    : loop_(loop)
    , mode_(mode)
    , greeting_(std::move(greeting))
    , listener_(std::move(listener))
    , spare_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC))
    , scratch_(std::make_unique<std::byte[]>(kEchoBufferSize))
    , pattern_(std::make_unique<std::byte[]>(kEchoBufferSize + kSourcePeriod))
{
    for (std::size_t i = 0; i < kEchoBufferSize + kSourcePeriod; ++i)
        pattern_[i] = static_cast<std::byte>('a' + i % kSourcePeriod);
    accept_io_.bind<TcpEchoServer, &TcpEchoServer::on_acceptable>(loop_, this, listener_.get());
    accept_io_.set_events(EV_READ);
}

TcpEchoServer::~TcpEchoServer() { accept_io_.stop(); }

void TcpEchoServer::on_acceptable(int)
{
    for (int i = 0; i < kAcceptBatch; ++i) {
        auto accepted = accept_connection(listener_.get(), nullptr);
        if (!accepted) {
            if (accepted.error() == SysError::TooManyFiles) [[unlikely]]
                drop_one_connection();
            // WouldBlock ends the batch; ECONNABORTED and friends are the
            // client's business: try again on the next wake-up.
            return;
        }
        set_nodelay(accepted.value().get());
        std::size_t slot = connections_.size();
        connections_.push_back(std::make_unique<EchoConnection>(*this, std::move(accepted).value(), slot));
        connections_.back()->start();
    }
}

void TcpEchoServer::drop_one_connection()
{
    spare_fd_.reset();
    auto accepted = accept_connection(listener_.get(), nullptr);
    accepted.value().reset();
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

void TcpEchoServer::close(EchoConnection* connection)
{
    std::size_t slot = connection->slot();
    if (slot != connections_.size() - 1) {
        std::swap(connections_[slot], connections_.back());
        connections_[slot]->set_slot(slot);
    }
    connections_.pop_back();
}

void EchoConnection::start()
{
    io_.bind<EchoConnection, &EchoConnection::on_io>(server_.loop(), this, fd_.get());
    switch (server_.mode()) {
    case EchoMode::Whoami: {
        const std::string& greeting = server_.greeting();
        if (!send_or_keep(reinterpret_cast<const std::byte*>(greeting.data()), greeting.size()))
            return;
        break;
    }
    case EchoMode::Source:
        io_.set_events(EV_READ | EV_WRITE);
        return;
    case EchoMode::Echo:
    case EchoMode::Sink:
        break;
    }
    if (pending_length_ == 0)
        io_.set_events(EV_READ);
}

void EchoConnection::on_io(int revents)
{
    switch (server_.mode()) {
    case EchoMode::Echo:
    case EchoMode::Whoami:
        on_echo_io(revents);
        return;
    case EchoMode::Sink:
        on_sink_io();
        return;
    case EchoMode::Source:
        on_source_io(revents);
        return;
    }
}

bool EchoConnection::send_or_keep(const std::byte* data, std::size_t length)
{
    IoResult written = write_some(fd_.get(), data, length);
    if (!written.ok() && !written.would_block()) {
        finish();
        return false;
    }
    std::size_t sent = written.ok() ? static_cast<std::size_t>(written.bytes) : 0;
    if (sent < length) {
        if (!pending_)
            pending_ = std::make_unique<std::byte[]>(kEchoBufferSize);
        pending_length_ = length - sent;
        pending_begin_ = 0;
        std::memcpy(pending_.get(), data + sent, pending_length_);
        io_.set_events(EV_WRITE);
    }
    return true;
}

void EchoConnection::on_echo_io(int revents)
{
    if (pending_length_ > 0) {
        // Only EV_WRITE is watched while bytes are pending.
        if (!(revents & EV_WRITE))
            return;
        IoResult written = write_some(fd_.get(), pending_.get() + pending_begin_, pending_length_);
        if (!written.ok()) {
            if (!written.would_block())
                finish();
            return;
        }
        pending_begin_ += static_cast<std::size_t>(written.bytes);
        pending_length_ -= static_cast<std::size_t>(written.bytes);
        if (pending_length_ == 0)
            io_.set_events(EV_READ);
        return;
    }

    std::byte* buffer = server_.scratch();
    IoResult got = read_some(fd_.get(), buffer, kEchoBufferSize);
    if (!got.ok()) {
        if (!got.would_block())
            finish();  // reset: nothing to pass on
        return;
    }
    if (got.bytes == 0) {
        // FIN, and nothing pending (we only read when nothing is): pass it on.
        shutdown_write(fd_.get());
        finish();
        return;
    }
    send_or_keep(buffer, static_cast<std::size_t>(got.bytes));
}

void EchoConnection::on_sink_io()
{
    IoResult got = read_some(fd_.get(), server_.scratch(), kEchoBufferSize);
    if (got.would_block())
        return;
    if (got.ok() && got.bytes == 0)
        shutdown_write(fd_.get());
    if (!got.ok() || got.bytes == 0)
        finish();
}

void EchoConnection::on_source_io(int revents)
{
    if (revents & EV_READ) {
        IoResult got = read_some(fd_.get(), server_.scratch(), kEchoBufferSize);
        if (!got.ok() && !got.would_block()) {
            finish();
            return;
        }
        // After the peer's FIN keep writing: a half-closed peer may still read.
        if (got.ok() && got.bytes == 0)
            io_.set_events(EV_WRITE);
    }
    if (revents & EV_WRITE) {
        IoResult written = write_some(fd_.get(), server_.source_pattern() + source_offset_, kEchoBufferSize);
        if (!written.ok()) {
            if (!written.would_block())
                finish();
            return;
        }
        source_offset_ = (source_offset_ + static_cast<std::size_t>(written.bytes)) % kSourcePeriod;
    }
}

// Serves datagrams on one UDP socket. Loop thread only.
class UdpEchoServer {
public:
    UdpEchoServer(EventLoop& loop, EchoMode mode, std::string greeting, UniqueFd socket);
    ~UdpEchoServer() { io_.stop(); }

private:
    void on_readable(int revents);

    EchoMode mode_;
    std::string greeting_;
    UniqueFd socket_;
    IoWatcher io_;
    // The greeting, then room for the largest datagram: whoami replies are
    // sent from here without copying the payload.
    std::unique_ptr<std::byte[]> buffer_;
};

namespace {
// Larger than any UDP payload, so nothing is ever truncated.
constexpr std::size_t kUdpReceiveSize = 65536;
constexpr int kUdpSocketBuffer = 4 * 1024 * 1024;
} // namespace

UdpEchoServer::UdpEchoServer(EventLoop& loop, EchoMode mode, std::string greeting, UniqueFd socket)
    : mode_(mode)
    , greeting_(mode == EchoMode::Whoami ? std::move(greeting) : std::string())
    , socket_(std::move(socket))
    , buffer_(std::make_unique<std::byte[]>(greeting_.size() + kUdpReceiveSize))
{
    std::memcpy(buffer_.get(), greeting_.data(), greeting_.size());
    // The default ~200 KiB queue holds only a few 64 KiB datagrams; many
    // clients at once would see drops that are the echo's, not the network's.
    set_buffer_sizes(socket_.get(), kUdpSocketBuffer, kUdpSocketBuffer);
    io_.bind<UdpEchoServer, &UdpEchoServer::on_readable>(loop, this, socket_.get());
    io_.set_events(EV_READ);
}

void UdpEchoServer::on_readable(int)
{
    std::byte* payload = buffer_.get() + greeting_.size();
    for (int i = 0; i < kUdpBatch; ++i) {
        SocketAddress peer;
        IoResult got = receive_from(socket_.get(), payload, kUdpReceiveSize, &peer);
        if (!got.ok())
            return;  // drained (or a stray error): wait for the next wake-up
        if (mode_ == EchoMode::Sink)
            continue;
        std::size_t length = std::min(greeting_.size() + static_cast<std::size_t>(got.bytes), kMaxUdpPayload);
        // A full send buffer drops the reply, as a congested network would.
        send_to(socket_.get(), buffer_.get(), length, peer);
    }
}

EchoWorker::EchoWorker(const EchoOptions& options, std::string name, UniqueFd socket)
{
    std::string greeting = name + "\n";
    if (options.udp)
        udp_ = std::make_unique<UdpEchoServer>(loop_, options.mode, std::move(greeting), std::move(socket));
    else
        tcp_ = std::make_unique<TcpEchoServer>(loop_, options.mode, std::move(greeting), std::move(socket));
}

EchoWorker::~EchoWorker() = default;

void EchoWorker::run()
{
    loop_.run();
    // Watchers must be stopped on the loop's thread: close everything here.
    tcp_.reset();
    udp_.reset();
}

void EchoWorker::stop()
{
    loop_.post([this] { loop_.break_loop(); });
}

} // namespace sluice::tools
