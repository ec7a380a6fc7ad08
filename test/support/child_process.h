// A program under test, started with its stdout and stderr piped back.
//
// Integration tests wait on what the child says (a line, its exit) with a
// deadline, never on a fixed sleep. The destructor kills and reaps a child
// that is still running, so a failed REQUIRE leaves nothing behind.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace sluice::test {

class ChildProcess {
public:
    // Starts argv[0] (a path) with the given arguments. Throws on failure.
    explicit ChildProcess(const std::vector<std::string>& argv);
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const noexcept { return pid_; }

    // The next line of stdout without its '\n', or nullopt if the child
    // closed stdout or `timeout` passed first.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout);

    void send_signal(int signal) noexcept;

    // Waits for the child to exit, collecting all it writes meanwhile.
    // Returns its exit status (128 + signal if killed), or nullopt on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);

    // Everything read so far (stdout after the lines read_line() returned).
    const std::string& stdout_text() const noexcept { return stdout_; }
    const std::string& stderr_text() const noexcept { return stderr_; }

private:
    // Reads whatever is available on the open pipes, waiting up to `timeout`
    // for something to arrive.
    void pump(std::chrono::milliseconds timeout);

    pid_t pid_ = -1;
    int stdout_fd_ = -1;
    int stderr_fd_ = -1;
    std::string stdout_;
    std::string stderr_;
    std::optional<int> exit_status_;
};

// Reads a required environment variable (set by meson for the test).
std::string required_env(const char* name);

} // namespace sluice::test
