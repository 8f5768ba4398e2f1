#include "transport/launcher.hpp"

#include <cstdlib>
#include <string>

namespace barge::transport {
namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (end && *end == '\0' && n >= 0 && n < (1L << 30)) ? static_cast<int>(n) : fallback;
}
}  // namespace

LaunchInfo detect_launcher() {
  LaunchInfo info;
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    info.launcher = Launcher::kOpenMpi;
    info.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    info.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
  } else if (std::getenv("PMIX_RANK") && std::getenv("SLURM_STEP_ID")) {
    info.launcher = Launcher::kSlurm;
    info.rank = env_int("SLURM_PROCID", env_int("PMIX_RANK", 0));
    info.size = env_int("SLURM_NTASKS", 1);
  } else if (std::getenv("PMIX_RANK")) {
    info.launcher = Launcher::kPmix;
    info.rank = env_int("PMIX_RANK", 0);
    info.size = env_int("PMIX_SIZE", 1);
  }
  return info;
}

const char* launcher_name(Launcher l) {
  switch (l) {
    case Launcher::kOpenMpi:
      return "mpirun";
    case Launcher::kSlurm:
      return "srun";
    case Launcher::kPmix:
      return "pmix";
    case Launcher::kNone:
      break;
  }
  return "none";
}

}  // namespace barge::transport
