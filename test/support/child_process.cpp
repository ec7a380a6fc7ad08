#include "child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

extern char** environ;

namespace sluice::test {

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds left_until(Clock::time_point deadline)
{
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

} // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv)
{
    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe2 failed");

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);

    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(err[1]);
    stdout_fd_ = out[0];
    stderr_fd_ = err[0];
    if (rc != 0) {
        ::close(stdout_fd_);
        ::close(stderr_fd_);
        throw std::runtime_error("cannot start " + argv[0]);
    }
}

ChildProcess::~ChildProcess()
{
    if (!exit_status_) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }
    if (stdout_fd_ >= 0)
        ::close(stdout_fd_);
    if (stderr_fd_ >= 0)
        ::close(stderr_fd_);
}

void ChildProcess::pump(std::chrono::milliseconds timeout)
{
    pollfd fds[2];
    int count = 0;
    if (stdout_fd_ >= 0)
        fds[count++] = pollfd{stdout_fd_, POLLIN, 0};
    if (stderr_fd_ >= 0)
        fds[count++] = pollfd{stderr_fd_, POLLIN, 0};
    if (count == 0)
        return;
    if (::poll(fds, static_cast<nfds_t>(count), static_cast<int>(timeout.count())) <= 0)
        return;
    for (int i = 0; i < count; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char buffer[4096];
        ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
        bool is_stdout = fds[i].fd == stdout_fd_;
        if (n > 0) {
            (is_stdout ? stdout_ : stderr_).append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            ::close(fds[i].fd);
            (is_stdout ? stdout_fd_ : stderr_fd_) = -1;
        }
    }
}

std::optional<std::string> ChildProcess::read_line(std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (auto newline = stdout_.find('\n'); newline != std::string::npos) {
            std::string line = stdout_.substr(0, newline);
            stdout_.erase(0, newline + 1);
            return line;
        }
        if (stdout_fd_ < 0 || Clock::now() >= deadline)
            return std::nullopt;
        pump(left_until(deadline));
    }
}

void ChildProcess::send_signal(int signal) noexcept
{
    if (!exit_status_)
        ::kill(pid_, signal);
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    while (!exit_status_) {
        int status = 0;
        pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            exit_status_ = exit_code(status);
            break;
        }
        if (Clock::now() >= deadline)
            return std::nullopt;
        // Output arriving or the pipes closing wake us; a child that exits
        // with its pipes already closed is noticed within 10 ms.
        if (stdout_fd_ < 0 && stderr_fd_ < 0) {
            pollfd none{};
            ::poll(&none, 0, 10);
        } else {
            pump(std::min(left_until(deadline), std::chrono::milliseconds(10)));
        }
    }
    // Whatever is still buffered in the pipes once it has gone (bounded, in
    // case a grandchild inherited them).
    const auto drain_deadline = Clock::now() + std::chrono::seconds(2);
    while ((stdout_fd_ >= 0 || stderr_fd_ >= 0) && Clock::now() < drain_deadline)
        pump(left_until(drain_deadline));
    return exit_status_;
}

std::string required_env(const char* name)
{
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0')
        throw std::runtime_error(std::string(name) + " is not set (run the tests through meson test)");
    return value;
}

} // namespace sluice::test
