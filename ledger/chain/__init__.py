"""The services a user drives: the chain facade with typed results, the mempool, the forger, replay
verification, parallel signature checks, and the JSON views of results."""
