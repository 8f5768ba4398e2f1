#!/bin/bash
# mpirun wrapper for fault tests: rank 1 runs with $FDST bind-mounted read-only in a mount
# namespace of its own (its reads work, its writes fail with EROFS); other ranks run as is.
if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then
  exec unshare -m --propagation private sh -c 'mount --bind -o ro "$0" "$0" && exec "$@"' "$FDST" "$@"
fi
exec "$@"
