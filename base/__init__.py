"""The ground floor that the backends and the engine both stand on: deepntk's errors (`errors`), the training
losses (`losses`), the memory budget (`memory`), the checks at the boundary (`validate`), the version and the one
duration format (docs/backends.md#floors). It imports nothing of deepntk above it."""
