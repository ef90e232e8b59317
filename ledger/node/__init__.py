"""The long-running process: the node service (lock, forge loop, signals), its HTTP API, and the
record in the home directory through which other commands find it."""
