// BackendTable: the only state shared between threads.
//
// One cache-line slot per backend, every field a std::atomic, so workers, the
// health prober and the admin thread never take a lock and never share a line
// for two backends. Ownership of writes:
//   - health (up/down and why): the health prober only (and allocate(), for
//     a slot nobody else knows yet);
//   - active/total/bytes/failures: sessions on any worker (relaxed increments);
//   - admin state and weight: the admin/control thread;
//   - slot allocation: the control thread, at start and on reload.
// Balancers only read.
#pragma once

#include "sluice/duration_histogram.h"
#include "sluice/errors.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace sluice {

using BackendId = std::uint32_t;

enum class Health : std::uint8_t { Up, Down };

// Why a backend is in its health state (shown by `show servers`).
enum class HealthReason : std::uint8_t {
    None,               // up, or never checked
    ConnectionRefused,
    Timeout,
    Unreachable,
    Reset,
    PassiveFailures,    // max_fails connect failures from real traffic
    Other,
    WrongRole,          // a database check found a primary where a replica is wanted, or the reverse
    AuthFailed,         // a database check's login was refused
    BadReply,           // the reply was not what the check expects (expect, protocol error)
    HttpStatus,         // an http check got another status than expect_status
    Lagging,            // a replica is further behind than max_lag
    Unconfirmed,        // a role check has not yet confirmed the backend's role
    // Its DNS name has no usable answer (name_resolver.h); never picked until it has.
    UnresolvedPending,  // not answered yet
    UnresolvedNxDomain, // the name does not exist
    UnresolvedNoAddress,// no A/AAAA record
    ResolverTimeout,    // no resolver answered
    ResolverFailed,     // SERVFAIL, refused or a malformed answer
};

// The reason a backend whose name has no answer is down; None when resolved.
bool is_unresolved(HealthReason reason) noexcept;

enum class AdminState : std::uint8_t { Ready, Drain, Maint };

std::string_view to_string(Health health) noexcept;
std::string_view to_string(HealthReason reason) noexcept;
std::string_view to_string(AdminState state) noexcept;
std::optional<AdminState> parse_admin_state(std::string_view text) noexcept;
HealthReason reason_from(SysError error) noexcept;

struct alignas(64) BackendSlot {
    std::atomic<bool> in_use{false};
    std::atomic<Health> health{Health::Up};
    std::atomic<HealthReason> health_reason{HealthReason::None};
    std::atomic<AdminState> admin{AdminState::Ready};
    std::atomic<std::uint16_t> weight{1};
    std::atomic<std::uint32_t> active{0};        // sessions now, across all workers
    // Passive health: failures counted in a window that starts at the first one.
    // (Declared here, beside `active`, so the two 32-bit fields share 8 bytes and
    // the slot fits one 64-byte line.)
    std::atomic<std::uint32_t> window_failures{0};
    // Bumped each time the slot is given to a backend, so per-worker counters
    // (BackendCounters) of the slot's previous backend are not summed in.
    std::atomic<std::uint32_t> epoch{0};
    std::atomic<std::uint64_t> connect_failures{0};  // rare: failures only
    std::atomic<std::int64_t> window_start_ms{0};
    // While now < passive_down_until_ms the backend is treated as down.
    std::atomic<std::int64_t> passive_down_until_ms{0};
};
static_assert(sizeof(BackendSlot) == 64, "a backend slot is one cache line");

// Per-backend limits kept beside the slots, not in them (a slot is one line):
// the configured cap on sessions, and slow start's ramp. Same index as the
// slot (BackendId). Written by the control thread (limits) and by whoever
// brings the backend back (up_since_ms); read by workers when they pick.
struct BackendLimits {
    std::atomic<std::uint32_t> max_connections{0};  // 0 = no cap
    std::atomic<std::uint32_t> slow_start_ms{0};    // 0 = no ramp
    // When the backend last came into service (monotonic ms); 0 = it has
    // been in service since sluice started, so no ramp.
    std::atomic<std::int64_t> up_since_ms{0};
};

class BackendTable {
public:
    // Backends in all pools and all live generations (discovered ones too).
    // 100,000 slots are 6.4 MB, on the heap; per worker a BackendCounters
    // array adds 3.2 MB.
    static constexpr std::size_t kCapacity = 100'000;

    BackendTable();

    // --- data path (any worker thread) ---

    // Up, ready, and not passively marked down at `now_ms` (monotonic ms).
    bool usable(BackendId id, std::int64_t now_ms) const noexcept;
    void acquire(BackendId id) noexcept;   // a session starts using the backend
    void release(BackendId id) noexcept;   // that session ends
    // acquire(), but only while `active` is below the backend's
    // max_connections (a CAS loop, so the cap holds exactly across workers).
    // False when the backend is full; then nothing was taken.
    bool try_acquire(BackendId id) noexcept;
    // Below max_connections now (or no cap). A hint for balancers: only
    // try_acquire() decides.
    bool has_room(BackendId id) const noexcept;
    std::uint32_t max_connections(BackendId id) const noexcept
    {
        return limits_[id].max_connections.load(std::memory_order_relaxed);
    }
    // `full_weight` as slow start lets it take new sessions at `now_ms`, in
    // units of 1/kWeightScale: full_weight * kWeightScale once the ramp is
    // over (or with no slow start), else a share growing linearly with the
    // time since the backend came back, at least 1.
    static constexpr std::uint32_t kWeightScale = 256;
    std::uint32_t ramped_weight(BackendId id, std::uint16_t full_weight, std::int64_t now_ms) const noexcept;
    std::uint32_t active(BackendId id) const noexcept;
    std::uint16_t weight(BackendId id) const noexcept;
    std::uint32_t epoch(BackendId id) const noexcept { return slots_[id].epoch.load(std::memory_order_relaxed); }

    // A connect from real traffic failed. After `max_fails` failures within
    // `fail_timeout_ms` the backend is passively down for fail_timeout_ms
    // (max_fails == 0 disables this). Returns true when this call marked it down.
    bool record_connect_failure(BackendId id, std::int64_t now_ms, int max_fails,
                                std::int64_t fail_timeout_ms) noexcept;

    // --- health prober thread only ---
    void set_health(BackendId id, Health health, HealthReason reason) noexcept;
    void clear_passive_down(BackendId id) noexcept;

    // --- admin / control thread ---
    void set_admin(BackendId id, AdminState state) noexcept;
    void set_weight(BackendId id, std::uint16_t weight) noexcept;
    // From the backend's and its pool's config (start and reload).
    void set_limits(BackendId id, std::uint32_t max_connections, std::uint32_t slow_start_ms) noexcept;
    // The backend comes into service at `now_ms`: slow start ramps from here.
    // Also called by set_health (down -> up), set_admin (maint -> ready) and
    // a passive mark-down (for the moment it ends).
    void mark_came_up(BackendId id, std::int64_t now_ms) noexcept;
    // Finds a free slot, resets it to Ready with `weight` and `health` (Up
    // unless its pool must confirm a role first). nullopt when full.
    std::optional<BackendId> allocate(std::uint16_t weight, Health health = Health::Up,
                                      HealthReason reason = HealthReason::None) noexcept;
    void free(BackendId id) noexcept;

    // Changes whenever health, admin state or weight of any backend changes, so
    // a balancer with derived state (Maglev's lookup table) knows to rebuild.
    std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
    // Called right after every version change, on the thread that made it (a
    // worker's passive mark-down, the prober, the admin, the control thread).
    // Set once, before other threads use the table; must be cheap and
    // thread-safe: the server's wakes its control loop (ev_async_send) to
    // rebuild ip_hash lookups there, never on the thread that changed the table.
    void set_change_listener(std::function<void()> listener) { change_listener_ = std::move(listener); }

    const BackendSlot& slot(BackendId id) const noexcept { return slots_[id]; }
    BackendSlot& slot(BackendId id) noexcept { return slots_[id]; }

private:
    void bump_version() noexcept
    {
        version_.fetch_add(1, std::memory_order_acq_rel);
        if (change_listener_)
            change_listener_();
    }

    std::unique_ptr<BackendSlot[]> slots_;
    // Every slot below it is in use (control thread only): allocate() still
    // gives the lowest free slot, and filling the table costs O(capacity),
    // not O(capacity^2).
    std::size_t next_free_hint_ = 0;
    std::unique_ptr<BackendLimits[]> limits_;  // beside slots_, same index
    alignas(64) std::atomic<std::uint64_t> version_{1};
    std::function<void()> change_listener_;
};

// One worker's counts per backend: sessions started, bytes each way. Kept out
// of the table, whose slots every worker reads when it picks a backend: a
// write per transfer there would pull that line away from every other worker.
// Written by its worker alone (a load and a store, no locked read-modify-
// write), summed by the admin thread when asked. A line counts for one epoch
// of its slot; its worker resets it on the first count of a newer epoch, and
// readers ignore a line of another epoch.
//
// Connect times (sluice_backend_connect_duration_seconds) are a histogram per
// line, made by the worker at its first connect to that backend: a worker
// touches only the backends it talks to, so the table's capacity costs a
// pointer per line, not a histogram.
class BackendCounters {
public:
    struct Totals {
        std::uint64_t sessions = 0;
        std::uint64_t bytes_in = 0;   // to the backend
        std::uint64_t bytes_out = 0;  // from the backend
    };

    explicit BackendCounters(std::size_t capacity = BackendTable::kCapacity);
    ~BackendCounters();
    BackendCounters(const BackendCounters&) = delete;
    BackendCounters& operator=(const BackendCounters&) = delete;

    // --- the owning worker's thread ---
    void count_session(BackendId id, std::uint32_t epoch) noexcept { bump(line(id, epoch).sessions, 1); }
    void count_bytes(BackendId id, std::uint32_t epoch, std::uint64_t to_backend, std::uint64_t from_backend) noexcept
    {
        Line& l = line(id, epoch);
        bump(l.bytes_in, to_backend);
        bump(l.bytes_out, from_backend);
    }

    // A TCP connect to `id` took `seconds` (kConnectLadder). The first one
    // per backend allocates its histogram; without memory it is not counted.
    void count_connect_time(BackendId id, std::uint32_t epoch, double seconds) noexcept;

    // Any thread: this worker's counts for `id` in `epoch`.
    Totals read(BackendId id, std::uint32_t epoch) const noexcept;
    // Any thread: adds this worker's connect times for `id` in `epoch` to `into`.
    void read_connect_times(BackendId id, std::uint32_t epoch, HistogramCounts& into) const noexcept;

private:
    struct Line {
        std::atomic<std::uint32_t> epoch{0};
        std::atomic<std::uint64_t> sessions{0};
        std::atomic<std::uint64_t> bytes_in{0};
        std::atomic<std::uint64_t> bytes_out{0};
        // Made by the owning worker, published with release, freed with the counters.
        std::atomic<DurationHistogram*> connect_times{nullptr};
    };
    static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept
    {
        counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    Line& line(BackendId id, std::uint32_t epoch) noexcept;

    std::size_t capacity_;
    std::unique_ptr<Line[]> lines_;
};

// Milliseconds on CLOCK_MONOTONIC; the clock every table timestamp uses.
std::int64_t monotonic_ms() noexcept;

} // namespace sluice
