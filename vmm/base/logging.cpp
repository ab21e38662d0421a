#include "vmm/base/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace kiln {

Result<spdlog::level::level_enum> parse_log_level(std::string_view name) {
    static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
        {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
        {"error", spdlog::level::err},   {"off", spdlog::level::off},
    };
    for (auto [n, l] : kLevels)
        if (n == name) return l;
    return fail("unknown log level '{}' (trace, debug, info, warn, error, off)", name);
}

void setup_logging(spdlog::level::level_enum level) {
    // vCPU threads log too, so the sink is the locking one. The logger is not put in
    // spdlog's registry: an embedder may call this again, or have its own "kiln".
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("kiln", std::move(sink));
    logger->set_pattern("kiln: [%l] %v");
    logger->set_level(level);
    spdlog::set_default_logger(logger);
}

} // namespace kiln
