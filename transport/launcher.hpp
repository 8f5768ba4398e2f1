// Which launcher started this process. barge initialises MPI only under mpirun/srun, so a
// plain `barge copy` pays no MPI start-up.
#pragma once

#include <string>

namespace barge::transport {

enum class Launcher { kNone, kOpenMpi, kSlurm, kPmix };

struct LaunchInfo {
  Launcher launcher = Launcher::kNone;
  int rank = 0;
  int size = 1;
};

// Reads the launcher's environment (OMPI_COMM_WORLD_*, PMIX_RANK, SLURM_PROCID/NTASKS).
LaunchInfo detect_launcher();
const char* launcher_name(Launcher l);

}  // namespace barge::transport
